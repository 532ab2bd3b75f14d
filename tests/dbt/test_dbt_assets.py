"""The dbt assets run through Dagster over a fixture warehouse; marts checked against figures computed in
Python from the simulated platform (tests/dbt/expected.py), not from the marts' SQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import duckdb
import pytest

from corisync_assets.dbt import corisync_dbt_assets, dbt_asset_keys, dbt_resource
from corisync_assets.dbt.assets import AUTOMATION_CONDITION_TAG
from corisync_assets.dbt.warehouse_adapter import WarehouseAdapter
from corisync_assets.environment import warehouse_resource
from tests.dbt import expected
from tests.support.dbt_build import BuiltWarehouse
from tests.support.dbt_build import rows as _rows

pytestmark = pytest.mark.timeout(600)


def test_full_build_materializes_everything_and_passes_checks(built: BuiltWarehouse) -> None:
    assert built.result.success
    materialized = {m.asset_key for m in built.result.get_asset_materialization_events()}
    assert materialized == set(corisync_dbt_assets.keys)
    evaluations = built.result.get_asset_check_evaluations()
    assert {e.asset_check_key for e in evaluations} == set(corisync_dbt_assets.check_keys)
    failed = [e.asset_check_key.to_user_string() for e in evaluations if not e.passed]
    assert failed == []
    print(f"\ndbt build of {len(materialized)} assets + {len(evaluations)} checks: {built.build_seconds:.1f}s")


def test_materializations_carry_row_counts_schema_and_lineage(built: BuiltWarehouse) -> None:
    by_key = {
        e.asset_key: e.step_materialization_data.materialization.metadata
        for e in built.result.get_asset_materialization_events()
    }
    funnel = by_key[dg.AssetKey(["marts", "mart_enrollment_funnel"])]
    expected_groups = len(expected.enrollment_funnel(built.platform))
    assert funnel["dagster/row_count"].value == expected_groups
    columns = {c.name for c in funnel["dagster/column_schema"].value.columns}
    assert {"course_id", "enrollment_month", "enrolled", "started", "completion_rate"} <= columns
    lineage = funnel["dagster/column_lineage"].value.deps_by_column
    assert dg.AssetKey(["staging", "stg_courses"]) in {d.asset_key for d in lineage["course_code"]}
    # views get schema but no row count (dagster-dbt does not count views)
    stg = by_key[dg.AssetKey(["staging", "stg_users"])]
    assert "dagster/column_schema" in stg and "dagster/row_count" not in stg and "preview" not in stg
    assert [c.name for c in stg["dagster/column_schema"].value.columns] == list(
        _rows(built, "select * from staging.stg_users limit 1")[0])
    # a table's row count, as the warehouse counts it
    snapshot = by_key[dg.AssetKey(["snapshots", "snp_courses"])]
    assert snapshot["dagster/row_count"].value == len(_rows(built, "select * from snapshots.snp_courses"))


def _assert_previews(built: BuiltWarehouse, by_key: dict) -> None:
    """Each mart carries a row count, a column schema and a preview: rows of the table, as read here."""
    marts = dbt_asset_keys("marts")
    assert len(marts) >= 4
    for key in marts:
        meta = by_key[key]
        table = _rows(built, f"select * from marts.{key.path[-1]}")
        assert meta["dagster/row_count"].value == len(table), key
        assert [c.name for c in meta["dagster/column_schema"].value.columns] == list(table[0]), key
        preview = [r.data for r in meta["preview"].value.records]
        assert len(preview) == min(5, len(table)), key
        as_shown = [{k: v if v is None or isinstance(v, bool | int | str) else
                     (float(v) if isinstance(v, float | Decimal) else v.isoformat()) for k, v in r.items()}
                    for r in table]
        for record in preview:
            assert any(record == pytest.approx(row) for row in as_shown), (key, record)


def test_each_mart_carries_a_preview_of_its_rows(built: BuiltWarehouse) -> None:
    _assert_previews(built, {e.asset_key: e.step_materialization_data.materialization.metadata
                             for e in built.result.get_asset_materialization_events()})


def test_automation_builds_count_table_rows_in_the_warehouse_without_dbts_in_process_adapter(
        built: BuiltWarehouse) -> None:
    """An automation run (tagged as Dagster tags them) streams materializations without lineage and records
    each staging table's row count, from one warehouse query, as an observation; marts carry their row count,
    schema and preview, and their checks still follow their materializations."""
    funnel, users = dg.AssetKey(["marts", "mart_enrollment_funnel"]), dg.AssetKey(["staging", "stg_users"])
    result = dg.materialize(
        [corisync_dbt_assets], selection=[funnel, users],
        resources={"dbt": dbt_resource(built.settings), "warehouse": warehouse_resource(built.settings)},
        instance=dg.DagsterInstance.ephemeral(), tags={AUTOMATION_CONDITION_TAG: "true"},
    )
    assert result.success
    materialized = {e.asset_key: e.step_materialization_data.materialization.metadata
                    for e in result.get_asset_materialization_events()}
    assert set(materialized) == {funnel, users}
    assert "dagster/column_schema" not in materialized[users] and "dagster/column_lineage" not in materialized[funnel]
    assert materialized[funnel]["dagster/row_count"].value == len(expected.enrollment_funnel(built.platform))
    assert len(materialized[funnel]["preview"].value.records) == 5
    observations = [e.event_specific_data.asset_observation for e in result.all_events
                    if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION]
    assert [o for o in observations if "dagster/row_count" in o.metadata] == []  # a view is not counted
    order = [e.event_type for e in result.all_events
             if (e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and e.asset_key == funnel)
             or (e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
                 and e.event_specific_data.asset_check_key.asset_key == funnel)]
    assert order[0] == dg.DagsterEventType.ASSET_MATERIALIZATION and len(order) > 1, order


def test_automation_builds_carry_mart_previews(built: BuiltWarehouse) -> None:
    marts = dbt_asset_keys("marts")
    result = dg.materialize(
        [corisync_dbt_assets], selection=marts,
        resources={"dbt": dbt_resource(built.settings), "warehouse": warehouse_resource(built.settings)},
        instance=dg.DagsterInstance.ephemeral(), tags={AUTOMATION_CONDITION_TAG: "true"},
    )
    assert result.success
    _assert_previews(built, {e.asset_key: e.step_materialization_data.materialization.metadata
                             for e in result.get_asset_materialization_events()})


def test_metadata_is_read_from_the_warehouse_only_when_asked_for(built: BuiltWarehouse) -> None:
    """No dbt adapter in Dagster's process: with a warehouse, dagster-dbt gets the warehouse's stand-in (which
    answers from the file, as DuckDB itself lists the columns); without one, nothing."""
    dbt = dbt_resource(built.settings)
    assert dbt.cli(["debug", "--config-dir"]).wait().adapter is None
    adapter = dbt.cli(["debug", "--config-dir"], metadata_from=warehouse_resource(built.settings)).wait().adapter
    assert isinstance(adapter, WarehouseAdapter)
    try:
        database = _rows(built, "select current_database() as d")[0]["d"]
        relation = adapter.Relation.create(database=database, schema="staging", identifier="stg_users")
        want = [(r["column_name"], r["data_type"]) for r in _rows(
            built, "select column_name, data_type from information_schema.columns where table_schema = 'staging' "
                   "and table_name = 'stg_users' order by ordinal_position")]
        assert [(c.name, c.data_type) for c in adapter.get_columns_in_relation(relation)] == want
        assert str(relation) == f'"{database}"."staging"."stg_users"'
        assert adapter.execute(f"select count(*) from {relation}", fetch=True)[1][0][0] == len(
            _rows(built, "select * from staging.stg_users"))
        missing = adapter.Relation.create(database=database, schema="staging", identifier="no_such_model")
        assert adapter.get_columns_in_relation(missing) == []
    finally:
        adapter.cleanup_connections()


def test_the_code_location_loads_without_dbt_core() -> None:
    """dbt-core stays in dbt's processes (corisync_assets/no_dbt_core.py): a fresh process loads the code
    location with every dbt asset, and has imported no dbt-core module."""
    import subprocess
    import sys

    probe = ("import sys, corisync_assets.definitions as d; keys = d.defs.resolve_all_asset_keys(); "
             "print(len(keys), sorted({m.partition('.')[0] for m in sys.modules} & {'dbt', 'dbt_common'}), "
             "'dagster_dbt' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         timeout=120).stdout.split("\n")[-2]
    assert out.endswith(" [] True"), out
    assert int(out.split()[0]) >= len(corisync_dbt_assets.keys)


def test_enrollment_funnel(built: BuiltWarehouse) -> None:
    want = expected.enrollment_funnel(built.platform)
    got = {
        (r["course_id"], r["enrollment_month"]): r for r in _rows(built, "select * from marts.mart_enrollment_funnel")
    }
    assert set(got) == set(want)
    for key, w in want.items():
        g = got[key]
        assert (g["enrolled"], g["started"], g["completed"], g["dropped"]) == (
            w["enrolled"],
            w["started"],
            w["completed"],
            w["dropped"],
        ), key
        assert g["start_rate"] == pytest.approx(w["start_rate"])
        assert g["completion_rate"] == pytest.approx(w["completion_rate"])
    # the fixture has enrollments that started and then dropped out: they count as started
    assert sum(w["started"] for w in want.values()) > sum(w["completed"] for w in want.values())


def test_course_completion(built: BuiltWarehouse) -> None:
    want = expected.course_completion(built.platform)
    got = {r["course_id"]: r for r in _rows(built, "select * from marts.mart_course_completion")}
    assert set(got) == set(want)
    for cid, w in want.items():
        g = got[cid]
        for col in ("enrollments", "active", "completed", "dropped", "revenue"):
            assert g[col] == w[col], (cid, col)
        for col in ("completion_rate", "finished_completion_rate", "avg_days_to_complete"):
            assert g[col] == pytest.approx(w[col]), (cid, col)


def test_active_learners_weekly(built: BuiltWarehouse) -> None:
    want = expected.active_learners_weekly(built.platform)
    got = {r["week_start"]: r for r in _rows(built, "select * from marts.mart_active_learners_weekly")}
    assert set(got) == set(want)
    assert all(w.weekday() == 0 for w in got)  # ISO weeks start on Monday
    for week, w in want.items():
        g = got[week]
        assert (g["active_learners"], g["activity_events"], g["learners_logged_in"]) == (
            w["active_learners"],
            w["activity_events"],
            w["learners_logged_in"],
        ), week


def test_training_attendance(built: BuiltWarehouse) -> None:
    want = expected.training_attendance(built.platform)
    got = {(r["trainer_id"], r["location"]): r for r in _rows(built, "select * from marts.mart_training_attendance")}
    assert set(got) == set(want)
    assert any(loc == "Online" for _, loc in got)  # 'online' and ' Online ' were merged
    for key, w in want.items():
        g = got[key]
        for col, value in w.items():
            if isinstance(value, float):
                assert g[col] == pytest.approx(value), (key, col)
            else:
                assert g[col] == value, (key, col)


def test_dim_users_first_and_last_activity(built: BuiltWarehouse) -> None:
    want = expected.dim_users(built.platform)
    got = {r["user_id"]: r for r in _rows(built, "select * from marts.dim_users")}
    assert set(got) == set(want)
    for uid, w in want.items():
        for col, value in w.items():
            assert got[uid][col] == value, (uid, col)


def test_course_snapshot_keeps_history(built: BuiltWarehouse) -> None:
    rows = _rows(built, "select course_id, price, dbt_valid_to from snapshots.snp_courses order by course_id")
    assert len(rows) == len(built.platform.entities["courses"])  # first run: one open version per course
    assert all(r["dbt_valid_to"] is None for r in rows)


def test_incremental_changelog_model_appends_only_new_events(built: BuiltWarehouse) -> None:
    """A later landing of enrollment changes: the incremental model merges just those events."""
    key = dg.AssetKey(["marts", "fct_enrollment_events"])
    before = _rows(built, "select count(*) as n from marts.fct_enrollment_events")[0]["n"]
    landed = datetime(2025, 5, 2, 6, 0, tzinfo=UTC)
    con = duckdb.connect(str(built.path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        last = con.execute(
            "select after from raw_cdc.enrollments__changelog where op in ('c', 'u') order by source_lsn desc limit 1"
        ).fetchone()[0]
        after = json.loads(last)
        new_after = {**after, "progress_pct": "99.00"}
        for i in range(3):
            con.execute(
                "insert into raw_cdc.enrollments__changelog values "
                "(?, 'u', ?, ?, ?, ?, ?, ?, 'false', 'tc4a.public.enrollments', 0, ?, ?)",
                [
                    f"late-{i}",
                    json.dumps({"enrollment_id": after["enrollment_id"]}),
                    json.dumps(after),
                    json.dumps(new_after),
                    9_000_000 + i,
                    9000 + i,
                    int((landed - timedelta(hours=1)).timestamp() * 1000) + i,
                    90_000 + i,
                    landed,
                ],
            )
    finally:
        con.close()
    result = dg.materialize(
        [corisync_dbt_assets],
        selection=[key],
        resources={"dbt": dbt_resource(built.settings), "warehouse": warehouse_resource(built.settings)},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    rows = _rows(built, "select event_id from marts.fct_enrollment_events")
    assert len(rows) == before + 3
    assert len({r["event_id"] for r in rows}) == len(rows)


def test_marts_have_freshness(built: BuiltWarehouse) -> None:
    """Every mart, and nothing else, carries the 26 h time-window policy (Dagster's freshness daemon evaluates
    it: tests/e2e/test_sensor_driven.py sees it pass after an automation build)."""
    from datetime import timedelta

    from corisync_assets.dbt import dbt_definitions

    graph = dbt_definitions(built.settings).resolve_asset_graph()
    with_policy = {k for k in graph.get_all_asset_keys() if graph.get(k).freshness_policy is not None}
    assert with_policy == set(dbt_asset_keys("marts"))
    policy = graph.get(dbt_asset_keys("marts")[0]).freshness_policy
    assert policy.fail_window.to_timedelta() == timedelta(hours=26)


def test_marts_still_build_after_the_raw_tables_change_shape(built: BuiltWarehouse, tmp_path) -> None:
    """What schema changes in Postgres do to the raw layer (#9 §3): a column added (a RENAME too: drop + add;
    dropped columns stay), an int widened to bigint, a numeric given more precision. dbt staging selects its
    columns, so staging and the marts over it build on a copy of the warehouse changed that way, with the
    same rows as before."""
    from tests.support.dbt_build import altered_copy

    int_col = _rows(built, "SELECT column_name FROM information_schema.columns WHERE table_schema = 'raw_cdc' "
                           "AND table_name = 'enrollments' AND data_type = 'INTEGER' LIMIT 1")
    widen = [f'ALTER TABLE raw_cdc.enrollments ALTER COLUMN "{c["column_name"]}" TYPE BIGINT' for c in int_col]
    s = altered_copy(built, tmp_path, "ALTER TABLE raw_cdc.users ADD COLUMN nickname VARCHAR",
                     "ALTER TABLE raw_cdc.enrollments ALTER COLUMN progress_pct TYPE DECIMAL(12,4)", *widen)
    marts = [dg.AssetKey(["marts", "dim_users"]), dg.AssetKey(["marts", "fct_enrollment_events"])]
    result = dg.materialize(
        [corisync_dbt_assets], selection=dg.AssetSelection.assets(*marts).upstream(),
        resources={"dbt": dbt_resource(s), "warehouse": warehouse_resource(s)},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    built_keys = {e.asset_key for e in result.get_asset_materialization_events()}
    assert set(marts) <= built_keys and dg.AssetKey(["staging", "stg_users"]) in built_keys
    for table in ("marts.dim_users", "marts.fct_enrollment_events"):
        sql = f"select count(*) as n from {table}"
        with duckdb.connect(str(s.warehouse_path), read_only=True) as con:
            after = con.execute(sql).fetchone()[0]
        assert after == _rows(built, sql)[0]["n"] > 0, table
