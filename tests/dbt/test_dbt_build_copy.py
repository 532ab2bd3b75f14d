"""dbt builds in a copy of the DuckDB warehouse and publishes what it built (``Warehouse.dbt_build`` /
``publish_dbt_build``), so writers of the warehouse (the lander) are kept out only for the copy and the
publish, not for the whole build. Real DuckDB files and, in the second test, the real dbt project run
through Dagster; expected values are written out here or read from the warehouse before the build."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
import filelock
import pytest

from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
from corisync_assets.resources.warehouse.writer_slot import writer_slot_path
from tests.support.dbt_build import BuiltWarehouse, altered_copy, rows_at

pytestmark = pytest.mark.timeout(600)


def _sql(path: str | Path, *statements: str) -> None:
    con = duckdb.connect(str(path))
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()


def test_publish_puts_the_copys_relations_into_the_warehouse_and_keeps_what_landed_meanwhile(tmp_path) -> None:
    wh = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"), lock_timeout_s=5)
    _sql(wh.path,
         "CREATE SCHEMA raw_cdc", "CREATE TABLE raw_cdc.users (id INTEGER)",
         "INSERT INTO raw_cdc.users VALUES (1), (2)",
         "CREATE SCHEMA marts", "CREATE TABLE marts.totals (n INTEGER)", "INSERT INTO marts.totals VALUES (0)",
         "CREATE VIEW marts.was_view AS SELECT 1 AS x", "CREATE TABLE marts.was_table (x INTEGER)",
         "CREATE TABLE marts.not_built (x INTEGER)", "INSERT INTO marts.not_built VALUES (7)")
    with wh.dbt_build() as build:
        assert build is not None and Path(build).name == "warehouse.duckdb" and build != wh.path
        assert rows_at(Path(build), "SELECT id FROM raw_cdc.users ORDER BY id") == [{"id": 1}, {"id": 2}]
        # what dbt would do in the copy: rebuild a table, chain views (each after the one it reads), turn a
        # view into a table and a table into a view, describe a table and a column
        _sql(build,
             "CREATE OR REPLACE TABLE marts.totals AS SELECT count(*)::INTEGER AS n FROM raw_cdc.users",
             "CREATE VIEW marts.v1 AS SELECT n * 10 AS n10 FROM marts.totals",
             "CREATE VIEW marts.v2 AS SELECT n10 + 1 AS n11 FROM marts.v1",
             "DROP VIEW marts.was_view", "CREATE TABLE marts.was_view AS SELECT 2 AS x",
             "DROP TABLE marts.was_table", "CREATE VIEW marts.was_table AS SELECT 3 AS x",
             "COMMENT ON TABLE marts.totals IS 'Users counted.'", "COMMENT ON COLUMN marts.totals.n IS 'how many'")
        # the lander, while dbt builds: not held up by the build, and not undone by the publish
        started = time.monotonic()
        with wh.exclusive(), wh.connect() as con:
            con.execute("INSERT INTO raw_cdc.users VALUES (3)")
        assert time.monotonic() - started < 2.0
        with wh.exclusive():
            published = wh.publish_dbt_build([("marts", "totals"), ("marts", "v1"), ("marts", "v2"),
                                              ("marts", "was_view"), ("marts", "was_table"), ("marts", "not_built"),
                                              ("marts", "absent")])
    assert published == 6  # all but "absent", which the copy lacks; not_built comes back as it was
    read = rows_at(Path(wh.path), "SELECT (SELECT n FROM marts.totals) AS n, (SELECT n11 FROM marts.v2) AS n11, "
                                  "(SELECT x FROM marts.was_view) AS a, (SELECT x FROM marts.was_table) AS b, "
                                  "(SELECT x FROM marts.not_built) AS c, (SELECT count(*) FROM raw_cdc.users) AS users")
    assert read == [{"n": 2, "n11": 21, "a": 2, "b": 3, "c": 7, "users": 3}]  # dbt counted the 2 users of its cut
    kinds = rows_at(Path(wh.path), "SELECT table_name, table_type FROM information_schema.tables "
                                   "WHERE table_schema = 'marts' ORDER BY 1")
    assert {r["table_name"]: r["table_type"] for r in kinds} == {
        "not_built": "BASE TABLE", "totals": "BASE TABLE", "v1": "VIEW", "v2": "VIEW", "was_table": "VIEW",
        "was_view": "BASE TABLE"}
    assert rows_at(Path(wh.path), "SELECT comment FROM duckdb_tables() WHERE table_name = 'totals'") == [
        {"comment": "Users counted."}]
    assert rows_at(Path(wh.path), "SELECT comment FROM duckdb_columns() WHERE table_name = 'totals'") == [
        {"comment": "how many"}]


def test_a_publish_that_fails_changes_nothing(tmp_path) -> None:
    wh = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"), lock_timeout_s=5)
    _sql(wh.path, "CREATE SCHEMA marts", "CREATE TABLE marts.a (x INTEGER)", "INSERT INTO marts.a VALUES (1)")
    with wh.dbt_build() as build:
        # b reads a table that is not published (not among the relations): its view cannot be created there
        _sql(build, "CREATE OR REPLACE TABLE marts.a AS SELECT 2 AS x", "CREATE TABLE marts.hidden AS SELECT 1 AS y",
             "CREATE VIEW marts.b AS SELECT y FROM marts.hidden")
        with wh.exclusive(), pytest.raises(duckdb.Error):
            wh.publish_dbt_build([("marts", "a"), ("marts", "b")])
    assert rows_at(Path(wh.path), "SELECT x FROM marts.a") == [{"x": 1}]
    assert rows_at(Path(wh.path), "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts'") == [
        {"table_name": "a"}]


def test_the_lander_writes_while_dbt_builds_and_dbt_reads_the_cut_taken_before(built: BuiltWarehouse,
                                                                                 tmp_path) -> None:
    """The real dbt build through Dagster on a copy of the built warehouse. While dbt holds its build copy, a
    writer takes the warehouse's slot and lands a new user at once; the build's dim_users is that of the
    cut taken before (the new user is not in it), the landed user is still in the raw table after the publish,
    and the next build has them."""
    from corisync_assets.dbt import corisync_dbt_assets, dbt_resource
    from corisync_assets.environment import warehouse_resource

    s = altered_copy(built, tmp_path)
    wh = warehouse_resource(s)
    users_before = {r["user_id"] for r in rows_at(s.warehouse_path, "SELECT user_id FROM marts.dim_users")}
    new_id = max(users_before) + 1_000_000
    dim_users = dg.AssetKey(["marts", "dim_users"])
    resources = {"dbt": dbt_resource(s), "warehouse": wh}
    outcome: dict = {}

    def build() -> None:
        outcome["result"] = dg.materialize([corisync_dbt_assets], resources=resources,
                                           instance=dg.DagsterInstance.ephemeral())

    dbt_slot = filelock.FileLock(writer_slot_path(wh.build_path), timeout=0)

    def dbt_holds_its_copy() -> bool:
        try:
            dbt_slot.acquire()
        except filelock.Timeout:
            return True
        dbt_slot.release()
        return False

    builder = threading.Thread(target=build)
    builder.start()
    deadline = time.monotonic() + 300
    while not dbt_holds_its_copy():
        assert builder.is_alive() and time.monotonic() < deadline, "dbt never opened its build copy"
        time.sleep(0.05)
    started = time.monotonic()
    with wh.exclusive(), wh.connect() as con:
        con.execute("INSERT INTO raw_cdc.users SELECT * REPLACE (? AS user_id, 'new-' || email AS email) "
                    "FROM raw_cdc.users ORDER BY user_id LIMIT 1", [new_id])
    landed_in = time.monotonic() - started
    assert dbt_holds_its_copy(), "dbt was done before the write: nothing shown"
    builder.join(timeout=300)
    assert outcome["result"].success
    print(f"\nlanded while dbt built, in {landed_in:.2f}s")
    assert landed_in < 5.0
    raw = {r["user_id"] for r in rows_at(s.warehouse_path, "SELECT user_id FROM raw_cdc.users")}
    assert new_id in raw
    assert {r["user_id"] for r in rows_at(s.warehouse_path, "SELECT user_id FROM marts.dim_users")} == users_before
    again = dg.materialize([corisync_dbt_assets], selection=dg.AssetSelection.assets(dim_users).upstream(),
                           resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert again.success
    assert {r["user_id"] for r in rows_at(s.warehouse_path, "SELECT user_id FROM marts.dim_users")} == (
        users_before | {new_id})


def test_an_automation_build_records_a_materialization_once_the_warehouse_answers_with_it(built: BuiltWarehouse,
                                                                                          tmp_path) -> None:
    """A build in the copy records a materialization only when the warehouse itself already answers with what
    it reports. Views over the raw tables that the warehouse holds already stream live (their rows are the raw
    tables' own); everything else is recorded after the publish: here a staging view dropped from the warehouse
    before the build, the snapshot (a table) and every mart. Order read from the run's event log against the
    publish's log line."""
    from corisync_assets.dbt import corisync_dbt_assets, dbt_resource
    from corisync_assets.dbt.assets import AUTOMATION_CONDITION_TAG
    from corisync_assets.environment import warehouse_resource

    s = altered_copy(built, tmp_path, "DROP VIEW staging.stg_courses")
    views_before = {("staging", r["table_name"]) for r in rows_at(
        s.warehouse_path, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'staging' "
                          "AND table_type = 'VIEW'")}
    assert views_before and ("staging", "stg_courses") not in views_before
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([corisync_dbt_assets], instance=instance, tags={AUTOMATION_CONDITION_TAG: "true"},
                            resources={"dbt": dbt_resource(s), "warehouse": warehouse_resource(s)})
    assert result.success
    logs = instance.all_logs(result.run_id)
    published = next(i for i, e in enumerate(logs) if e.user_message.startswith("published "))
    recorded = [(i, tuple(e.dagster_event.asset_key.path)) for i, e in enumerate(logs) if e.dagster_event is not None
                and e.dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]
    live = {key for i, key in recorded if i < published}
    after = {key for i, key in recorded if i > published}
    assert live, "nothing streamed while dbt built: every event waited for the publish"
    assert live <= views_before, live - views_before
    assert ("staging", "stg_courses") in after
    assert ("snapshots", "snp_courses") in after
    assert {key for _, key in recorded if key[0] == "marts"} <= after
    assert len(recorded) == len(live) + len(after)


def test_live_views_are_views_the_warehouse_holds_over_raw_tables_only() -> None:
    """Over the project's manifest: a staging view the warehouse holds is live; one it lacks is not, nor is a
    view that reads it (stg_web_events joins stg_web_identities); a reporting view over a mart (a table dbt
    rebuilds) is not, even when the warehouse holds it; no table is."""
    import json

    from corisync_assets.dbt.assets import dbt_relations, live_views
    from corisync_assets.dbt.project import corisync_dbt_project

    manifest = json.loads(corisync_dbt_project.manifest_path.read_text())
    relations = dbt_relations(manifest)
    key = {k.path[-1]: k for k in relations}
    everything = set(relations.values())
    live = live_views(manifest, everything)
    assert key["stg_users"] in live and key["stg_web_events"] in live
    assert key["rpt_course_completion"] not in live and key["dim_users"] not in live
    assert key["snp_courses"] not in live
    without_identities = live_views(manifest, everything - {relations[key["stg_web_identities"]]})
    assert key["stg_web_identities"] not in without_identities and key["stg_web_events"] not in without_identities
    assert key["stg_users"] in without_identities
    assert live_views(manifest, None) == set() == live_views(manifest, set())
