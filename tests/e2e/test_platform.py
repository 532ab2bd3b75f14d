"""The whole platform on demo data: Postgres -> Debezium -> broker -> raw CDC -> dbt (checks) -> marts.

Everything is materialized through Dagster's API, as "Materialize all" in the UI does, and the marts'
figures are checked against SQL run on Postgres itself (not against the marts' own SQL).
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from dagster import materialize

from corisync_assets.cdc.assets import build_raw_cdc_assets
from corisync_assets.cdc.connector_config import load_connector_config
from corisync_assets.dbt import corisync_dbt_assets, dbt_resource
from corisync_assets.environment import resources
from corisync_assets.local.demo import run_demo
from corisync_assets.resources.kafka import KafkaResource
from corisync_assets.web.assets import build_web_assets
from tests.support.pipeline import TABLES, assert_equal_to_postgres, pg_connect

pytestmark = pytest.mark.stack


def wait_until_delivered(kafka: KafkaResource, topics: list[str], quiet_s: float = 4.0, timeout: float = 120) -> None:
    """Debezium has delivered everything once the high watermarks stop moving for `quiet_s`."""
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        marks = {k: v.high_watermark for k, v in kafka.lag(topics).items()}
        if marks != last:
            last, since = marks, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.5)
    raise AssertionError("CDC topics kept growing")


@pytest.fixture(scope="module")
def platform(stack):
    # web traffic too, through the stack's collector: "Materialize all" runs the Spark assets and the web marts
    run_demo(force_seed=True, rate=40, duration=6, random_seed=11, s=stack, out=lambda _line: None,
             web_visitors=20)
    with pg_connect(stack) as pg:  # some trainings took place, so attendance marts have data
        pg.execute("UPDATE trainings SET status = 'completed' WHERE training_id IN "
                   "(SELECT training_id FROM trainings ORDER BY training_id LIMIT 4)")
    connector = load_connector_config(stack.connector_config)
    res = {**resources(stack), "dbt": dbt_resource(stack)}
    wait_until_delivered(res["kafka"], connector.topics)
    result = materialize([*build_raw_cdc_assets(connector), build_web_assets(stack.web_topic), corisync_dbt_assets],
                         resources=res,
                         raise_on_error=False)
    return stack, res, result


def marts(res, sql: str) -> list[tuple]:
    with res["warehouse"].connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def test_everything_materializes_and_every_check_passes(platform):
    _, _, result = platform
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert len(checks) >= 20
    failed = [(c.asset_key.to_user_string(), c.check_name) for c in checks if not c.passed]
    assert failed == []


def test_raw_layer_equals_postgres(platform):
    stack, res, _ = platform
    with pg_connect(stack) as pg:
        for table in TABLES:
            assert assert_equal_to_postgres(pg, res["warehouse"], table) > 0, table


def test_course_completion_matches_postgres(platform):
    stack, res, _ = platform
    with pg_connect(stack) as pg:
        expected = pg.execute("""
            SELECT c.course_id, count(e.enrollment_id),
                   count(*) FILTER (WHERE e.status = 'completed'), count(*) FILTER (WHERE e.status = 'dropped'),
                   coalesce(sum(e.amount_paid), 0)
            FROM courses c LEFT JOIN enrollments e USING (course_id) GROUP BY 1 ORDER BY 1""").fetchall()
    actual = marts(res, "SELECT course_id, enrollments, completed, dropped, revenue "
                        "FROM marts.mart_course_completion ORDER BY 1")
    assert [(a, b, c, d, Decimal(str(e))) for a, b, c, d, e in actual] == [
        (a, b, c, d, Decimal(e)) for a, b, c, d, e in expected]
    assert sum(r[1] for r in expected) > 0


def test_training_attendance_matches_postgres(platform):
    stack, res, _ = platform
    with pg_connect(stack) as pg:
        expected = pg.execute("""
            SELECT t.trainer_id, t.location, count(a.user_id), count(*) FILTER (WHERE a.attended),
                   count(a.user_id) FILTER (WHERE a.attended IS NOT TRUE)
            FROM trainings t LEFT JOIN training_attendance a USING (training_id)
            WHERE t.status = 'completed' GROUP BY 1, 2 ORDER BY 1, 2""").fetchall()
    actual = marts(res, "SELECT trainer_id, location, registrations, attended, no_shows "
                        "FROM marts.mart_training_attendance ORDER BY 1, 2")
    assert actual == expected and expected


def test_user_dimension_matches_postgres(platform):
    stack, res, _ = platform
    with pg_connect(stack) as pg:
        expected = pg.execute("SELECT user_id, email FROM users ORDER BY 1").fetchall()
    assert marts(res, "SELECT user_id, email FROM marts.dim_users ORDER BY 1") == expected
