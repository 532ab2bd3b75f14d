"""The raw layer is always a transactionally consistent cut of Postgres, on the real stack.

A writer commits interleaved parent and child rows (a user, then in the *next* transaction enrollments and
attendance referencing it; sometimes both in one transaction; sometimes deleting a parent, which cascades)
while the lander lands continuously. A sampler reads the warehouse many times meanwhile: every sample must
satisfy the foreign keys Postgres enforces (checked with plain SQL written here). Landing per topic on its
own schedule breaks this whenever a child's topic is read before its parent's; the transaction cut may not.
At the end the raw tables equal Postgres, and automation, evaluated on a fresh Dagster instance that holds
only the lander's materializations, builds the real dbt project on that cut with every dbt test passing
(relationships tests included) and none left out.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from dagster import (
    AssetMaterialization,
    AssetSelection,
    AssetSpec,
    DagsterInstance,
    Definitions,
    evaluate_automation_conditions,
    materialize,
)

from corisync_assets.airbyte.connections import CONNECTIONS
from corisync_assets.airbyte.translator import airbyte_asset_key
from corisync_assets.cdc.assets import build_raw_cdc_assets
from corisync_assets.cdc.connector_config import load_connector_config
from corisync_assets.cdc.lander import Lander, dagster_reporter
from corisync_assets.dbt import corisync_dbt_assets, dbt_resource
from corisync_assets.resources.kafka import KafkaResource
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
from corisync_assets.web.assets import web_asset_key
from corisync_assets.web.tables import WEB_TABLES
from tests.support.pipeline import TABLES, assert_equal_to_postgres, pg_connect

pytestmark = pytest.mark.stack

ORPHANS = {
    "enrollments.user_id": "SELECT count(*) FROM raw_cdc.enrollments c ANTI JOIN raw_cdc.users p USING (user_id)",
    "enrollments.course_id": "SELECT count(*) FROM raw_cdc.enrollments c ANTI JOIN raw_cdc.courses p "
                             "USING (course_id)",
    "training_attendance.user_id": "SELECT count(*) FROM raw_cdc.training_attendance c "
                                   "ANTI JOIN raw_cdc.users p USING (user_id)",
    "training_attendance.training_id": "SELECT count(*) FROM raw_cdc.training_attendance c "
                                       "ANTI JOIN raw_cdc.trainings p USING (training_id)",
    "trainings.trainer_id": "SELECT count(*) FROM raw_cdc.trainings c "
                            "ANTI JOIN raw_cdc.users p ON p.user_id = c.trainer_id",
}


def writer(stack, rounds: int, errors: list) -> None:
    try:
        with pg_connect(stack) as pg:
            tag = uuid.uuid4().hex[:10]
            course = pg.execute("INSERT INTO courses (code, title, category, level, price, duration_hours) VALUES "
                                "(%s, 'Cut', 'data', 'beginner', 10, 2) RETURNING course_id",
                                (f"CUT-{tag}",)).fetchone()[0]
            trainer = pg.execute("INSERT INTO users (email, full_name, country_code, role) VALUES "
                                 "(%s, 'trainer', 'PT', 'trainer') RETURNING user_id",
                                 (f"{tag}-t@cut.org",)).fetchone()[0]
            training = pg.execute("INSERT INTO trainings (course_id, trainer_id, location, starts_at, ends_at, "
                                  "capacity) VALUES (%s, %s, 'Porto', now(), now() + interval '2 hours', 500) "
                                  "RETURNING training_id", (course, trainer)).fetchone()[0]
            previous = None
            for i in range(rounds):
                tag = uuid.uuid4().hex[:10]
                user = pg.execute("INSERT INTO users (email, full_name, country_code, role) VALUES "
                                  "(%s, 'cut', 'PT', 'learner') RETURNING user_id", (f"{tag}@cut.org",)).fetchone()[0]
                if i % 3 == 0:  # parent and children in one transaction
                    with pg.transaction():
                        other = pg.execute("INSERT INTO users (email, full_name, country_code, role) VALUES "
                                           "(%s, 'cut', 'PT', 'learner') RETURNING user_id",
                                           (f"{tag}-b@cut.org",)).fetchone()[0]
                        pg.execute("INSERT INTO enrollments (user_id, course_id) VALUES (%s, %s)", (other, course))
                pg.execute("INSERT INTO enrollments (user_id, course_id) VALUES (%s, %s)", (user, course))
                pg.execute("INSERT INTO training_attendance (training_id, user_id) VALUES (%s, %s)",
                           (training, user))
                if previous is not None and i % 4 == 0:  # cascades to its enrollment and attendance
                    pg.execute("DELETE FROM users WHERE user_id = %s", (previous,))
                previous = user
    except Exception as exc:  # surfaced by the test
        errors.append(exc)


def tables_in(warehouse: DuckDBWarehouse) -> set[str]:
    if not Path(warehouse.path).exists():
        return set()
    with warehouse.exclusive(), warehouse.connect(read_only=True) as con:
        return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                          "WHERE table_schema = 'raw_cdc'").fetchall()}


def test_every_sample_of_the_raw_layer_keeps_postgres_foreign_keys(stack, tmp_path):
    connector = load_connector_config(stack.connector_config)
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap, consumer_group=f"cut-{uuid.uuid4().hex[:8]}")
    settings = stack.model_copy(update={"duckdb_path": tmp_path / "warehouse.duckdb"})
    warehouse = DuckDBWarehouse(path=str(settings.warehouse_path))
    instance = DagsterInstance.ephemeral()
    reported: list = []
    to_instance = dagster_reporter(instance)

    def report(events):
        reported.extend(events)
        to_instance(events)

    lander = Lander(kafka, warehouse, connector, reporter=report, poll_s=0.1)
    # the automation sensor's first tick, before anything landed (as when `make dev` starts)
    resources = {"kafka": kafka, "warehouse": warehouse, "dbt": dbt_resource(settings)}
    web_keys = [web_asset_key(name) for name in WEB_TABLES]
    airbyte_keys = [airbyte_asset_key(c.name, s.name) for c in CONNECTIONS for s in c.streams]
    defs = Definitions(assets=[*build_raw_cdc_assets(connector), *(AssetSpec(k) for k in web_keys + airbyte_keys),
                               corisync_dbt_assets], resources=resources)
    dbt_selection = AssetSelection.assets(corisync_dbt_assets)
    before_landing = evaluate_automation_conditions(defs, instance, asset_selection=dbt_selection)
    assert before_landing.total_requested == 0  # raw tables missing: nothing to build yet
    stop, errors = threading.Event(), []
    landing = threading.Thread(target=lander.run, args=(stop,), daemon=True)
    landing.start()
    write = threading.Thread(target=writer, args=(stack, 120, errors), daemon=True)
    try:
        write.start()
        samples, violations = 0, []
        deadline = time.monotonic() + 120
        while not set(TABLES) <= tables_in(warehouse):  # a table exists once its first change landed
            assert time.monotonic() < deadline, "the lander did not land every table"
            time.sleep(0.1)
        while write.is_alive() or samples < 20:
            with warehouse.exclusive(), warehouse.connect(read_only=True) as con:
                counts = {name: con.execute(sql).fetchone()[0] for name, sql in ORPHANS.items()}
            samples += 1
            violations += [(samples, counts)] if any(counts.values()) else []
            time.sleep(0.05)
        write.join()
        assert not errors, errors
        with pg_connect(stack) as pg:
            expected = {t: pg.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}

        def caught_up() -> bool:
            with warehouse.exclusive(), warehouse.connect(read_only=True) as con:
                return all(con.execute(f"SELECT count(*) FROM raw_cdc.{t}").fetchone()[0] == n
                           for t, n in expected.items())

        deadline = time.monotonic() + 120
        while not caught_up():
            assert time.monotonic() < deadline, "the lander did not catch up with Postgres"
            time.sleep(0.5)
    finally:
        stop.set()
        landing.join(30)
    assert violations == [], f"{len(violations)} of {samples} samples broke a foreign key: {violations[:3]}"
    assert samples >= 20
    with pg_connect(stack) as pg:
        for table in TABLES:
            assert_equal_to_postgres(pg, warehouse, table)
    # the lander reported its work as materializations of the raw assets, with transaction counts
    assert {e.asset_key.path[-1] for e in reported} == set(TABLES)
    assert sum(e.metadata["source_transactions_landed"].value for e in reported) > 0

    # the web assets' first run on a fresh deployment, with no web event yet: empty tables (the CDC-only
    # models do not wait for it; the web models do, as their parents are missing until then)
    with warehouse.exclusive():
        warehouse.replace_partitions({table: {} for table in WEB_TABLES.values()})
    for key in web_keys:
        instance.report_runless_asset_event(AssetMaterialization(key))
    # automation on a fresh instance that only saw the lander: it requests the whole dbt project at once, but
    # for the models over the Airbyte syncs, which wait for their first sync (their parents are missing)
    evaluation = evaluate_automation_conditions(defs, instance, asset_selection=dbt_selection,
                                                cursor=before_landing.cursor)
    requested = {key for key in corisync_dbt_assets.keys if evaluation.get_num_requested(key)}
    waiting = AssetSelection.assets(*airbyte_keys).downstream().resolve(defs.resolve_asset_graph())
    assert waiting & set(corisync_dbt_assets.keys)
    assert requested == set(corisync_dbt_assets.keys) - waiting
    result = materialize([corisync_dbt_assets], instance=instance, selection=sorted(requested, key=str),
                         resources={"dbt": resources["dbt"], "warehouse": warehouse})
    assert result.success
    checks = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    failed = [c.check_name for c in checks if not c.passed]
    assert checks and not failed, failed
    assert any("relationships" in c.check_name for c in checks)
