"""The raw layer is always a transactionally consistent cut of Postgres, on the real stack.

A writer commits interleaved parent and child rows (a user, then in the *next* transaction enrollments and
attendance referencing it; sometimes both in one transaction; sometimes deleting a parent, which cascades)
while the lander lands continuously. A sampler reads the warehouse many times meanwhile: every sample must
satisfy the foreign keys Postgres enforces (checked with plain SQL written here). Landing per topic on its
own schedule breaks this whenever a child's topic is read before its parent's; the transaction cut may not.
At the end the raw tables equal Postgres.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from corisync_assets.cdc.connector_config import load_connector_config
from corisync_assets.cdc.lander import Lander
from corisync_assets.resources.kafka import KafkaResource
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
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
            course = pg.execute("SELECT course_id FROM courses ORDER BY course_id LIMIT 1").fetchone()[0]
            training = pg.execute("SELECT training_id FROM trainings ORDER BY training_id LIMIT 1").fetchone()[0]
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


def test_every_sample_of_the_raw_layer_keeps_postgres_foreign_keys(stack, tmp_path):
    connector = load_connector_config(stack.connector_config)
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap, consumer_group=f"cut-{uuid.uuid4().hex[:8]}")
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    reported: list = []
    lander = Lander(kafka, warehouse, connector, reporter=reported.extend, poll_s=0.1)
    stop, errors = threading.Event(), []
    landing = threading.Thread(target=lander.run, args=(stop,), daemon=True)
    landing.start()
    write = threading.Thread(target=writer, args=(stack, 120, errors), daemon=True)
    try:
        deadline = time.monotonic() + 120
        while lander.events_landed == 0 and time.monotonic() < deadline:  # the topics' history first
            time.sleep(0.2)
        write.start()
        samples, violations = 0, []
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
    assert all(e.metadata["source_transactions_landed"].value >= 0 for e in reported)
