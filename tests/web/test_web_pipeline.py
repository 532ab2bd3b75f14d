"""The web path on the real stack: the collector (served in this process, real Kafka producer) -> tansu ->
Spark (``spark-submit`` through Dagster Pipes, ``local[2]``) -> Parquet lake -> DuckDB, offsets committed
to the consumer group only after the load. Expected values are computed here in plain Python from the
events the test posts (the job's code is not reused for them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import pytest

from corisync_assets.environment import Settings
from corisync_assets.resources.kafka import KafkaResource
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
from corisync_assets.web.assets import WebPipeline, build_web_assets, web_asset_key
from corisync_assets.web.collector import CollectorConfig, start_in_thread
from tests.web.spark.model import reference

pytestmark = [pytest.mark.stack, pytest.mark.slow]

GAP = timedelta(minutes=30)
A_SPAN = 2 * GAP + timedelta(minutes=5)  # visitor a's first to last event in `scenario`
KEY, OTHER_KEY = "site-key-" + uuid.uuid4().hex, "app-key-" + uuid.uuid4().hex


@dataclass
class Web:
    url: str
    topic: str
    kafka: KafkaResource
    warehouse: DuckDBWarehouse
    pipeline: WebPipeline
    assets: dg.AssetsDefinition

    def post(self, batch: list, key: str = KEY) -> httpx.Response:
        return httpx.post(self.url + "/v1/batch", json={"batch": batch}, auth=(key, ""), timeout=30)

    def materialize(self, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
        return dg.materialize([self.assets], instance=instance or dg.DagsterInstance.ephemeral(),
                              resources={"kafka": self.kafka, "warehouse": self.warehouse, "web": self.pipeline},
                              raise_on_error=False)

    def rows(self, sql: str) -> list[tuple]:
        con = duckdb.connect(self.warehouse.path, read_only=True)
        try:
            con.execute("SET TimeZone = 'UTC'")
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def lag(self) -> int:
        return sum(i.lag for i in self.kafka.lag([self.topic], group=self.pipeline.consumer_group).values())


@pytest.fixture
def web(stack: Settings, tmp_path: Path):
    topic = f"web.events.t{uuid.uuid4().hex[:10]}"
    config = CollectorConfig.from_settings(stack, write_keys={"site": KEY, "app": OTHER_KEY}, topic=topic,
                                           dlq_topic=topic + ".dlq", port=0)
    running = start_in_thread(config, port=0)
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap)
    pipeline = WebPipeline(topic=topic, consumer_group="corisync-web-" + topic, lake_uri=str(tmp_path / "lake"),
                           spark_master="local[2]", driver_memory="1g")
    try:
        yield Web(running.url, topic, kafka, DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb")), pipeline,
                  build_web_assets(topic))
    finally:
        running.stop()


def ev(anon: str, at: datetime, path: str = "/", kind: str = "page_view", user: int | None = None,
       course: int | None = None) -> dict:
    return {"event_id": str(uuid.uuid4()), "event_type": kind, "schema_version": 1, "anonymous_id": anon,
            "user_id": user, "occurred_at": at.isoformat(), "page_url": "https://tc4a.example" + path,
            "page_path": path, "referrer": None, "user_agent": "pytest", "course_id": course, "properties": {}}


def scenario(now: datetime) -> tuple[list[dict], list[dict]]:
    """(valid events in posting order, duplicates included; invalid events). Visitor a: the 30-minute
    boundary (exactly 30 min: same session; 30 min 1 s: new one) and a login; b: late (hours before
    now) and out of order; c: one event. Visitor a's 65 minutes stay on one UTC day (two sessions that
    view /courses/7 on one day) at any time the suite runs: shortly after midnight they move back 2 h."""
    t0 = now.replace(microsecond=0) - timedelta(hours=3)
    if t0.date() != (t0 + A_SPAN).date():
        t0 -= timedelta(hours=2)
    a = [ev("anon-a", t0, "/"), ev("anon-a", t0 + GAP, "/courses/7", "course_page_view", course=7),
         ev("anon-a", t0 + 2 * GAP + timedelta(seconds=1), "/login", "login", user=41),
         ev("anon-a", t0 + A_SPAN, "/courses/7", "course_page_view", user=41, course=7)]
    late = now - timedelta(hours=6)
    b = [ev("anon-b", late + timedelta(minutes=20), "/search", "search"), ev("anon-b", late, "/"),
         ev("anon-b", late + timedelta(minutes=10), "/courses/9", "course_page_view", course=9)]
    c = [ev("anon-c", now - timedelta(minutes=1), "/about")]
    valid = [*a, *b, *c, a[1], b[0]]  # two exact duplicates (same event_id, same body)
    invalid = [{**ev("anon-x", now), "event_id": "not-a-uuid"},
               {k: v for k, v in ev("anon-x", now).items() if k != "anonymous_id"},
               {**ev("anon-x", now), "user_id": "forty-one"},
               {**ev("anon-x", now), "schema_version": 2},
               {**ev("anon-x", now), "event_type": "teleport"}]
    return valid, invalid


def expected_sessions(events: list[dict], received: datetime) -> set[tuple]:
    """The plain-Python reference of tests/web/spark/model.py (not the job's code) over the posted events:
    dedupe by event_id, per visitor by (occurred_at, event_id), more than 30 min apart = a new session."""
    return {(s["anonymous_id"], s["user_id"], s["session_start"], s["session_end"], s["event_count"],
             s["page_count"], s["entry_page"], s["exit_page"], s["duration_s"])
            for s in reference(_stored(events, received))["sessions"]}


def _stored(events: list[dict], received: datetime) -> list[dict]:
    """The posted events as the reference takes them (as if delivered in posting order)."""
    return [{**e, "occurred_at": datetime.fromisoformat(e["occurred_at"]), "received_at": received,
             "session_id": None, "source": "site", "kafka_partition": 0, "kafka_offset": i}
            for i, e in enumerate(events)]


def expected_page_daily(events: list[dict], received: datetime) -> set[tuple]:
    return {(d["day"], d["page_path"], d["course_id"], d["page_views"], d["visitors"], d["sessions"])
            for d in reference(_stored(events, received))["page_daily"]}


def warehouse_page_daily(web: Web) -> set[tuple]:
    return set(web.rows("SELECT day, page_path, course_id, page_views, visitors, sessions "
                        "FROM raw_web.web_page_daily"))


def warehouse_sessions(web: Web) -> set[tuple]:
    return {(a, u, s.astimezone(UTC), e.astimezone(UTC), n, p, entry, exit_, d) for a, u, s, e, n, p, entry, exit_, d in
            web.rows("SELECT anonymous_id, user_id, session_start, session_end, event_count, page_count, "
                     "entry_page, exit_page, duration_s FROM raw_web.web_sessions")}


def dlq(web: Web, expected: int) -> list[dict]:
    import json

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": web.kafka.bootstrap_servers, "group.id": "t-" + uuid.uuid4().hex,
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(web.topic + ".dlq", 0, 0)])
    out = []
    try:
        for _ in range(50):
            out += [json.loads(m.value()) for m in consumer.consume(100, timeout=0.5) if m.error() is None]
            if len(out) >= expected:
                break
    finally:
        consumer.close()
    return out


def lag_sensor_requests(web: Web, stack: Settings, instance: dg.DagsterInstance) -> list[set]:
    """The web assets' run requests of the Kafka-lag sensor (covering this test's topic and group)."""
    from corisync_assets.cdc.connector_config import load_connector_config
    from corisync_assets.cdc.sensors import LagTarget, build_lag_sensor

    keys = tuple(web_asset_key(n) for n in ("events", "sessions", "page_daily"))
    target = LagTarget("web", web.topic, web.pipeline.consumer_group, keys, keys[0])
    sensor = build_lag_sensor(load_connector_config(stack.connector_config), targets=(target,))
    ctx = dg.build_sensor_context(instance=instance, resources={"kafka": web.kafka})
    return [set(r.asset_selection) for r in sensor(ctx).run_requests if set(r.asset_selection) & set(keys)]


def test_every_valid_event_lands_once_invalid_ones_in_the_dlq_and_sessions_match(web: Web, stack: Settings) -> None:
    """... and the Kafka-lag sensor requests the Spark assets while the group lags, not after the run."""
    instance = dg.DagsterInstance.ephemeral()
    assert lag_sensor_requests(web, stack, instance) == []  # an empty topic: no lag
    now = datetime.now(UTC)
    valid, invalid = scenario(now)
    responses = [web.post(valid[:6]), web.post([*valid[6:], *invalid])]
    assert [r.status_code for r in responses] == [200, 200]
    bodies = [r.json() for r in responses]
    assert sum(b["accepted"] for b in bodies) == len(valid)  # duplicates are accepted, deduped downstream
    rejected = bodies[1]["rejected"]
    assert sorted(r["index"] for r in rejected) == list(range(len(valid) - 6, len(valid) - 6 + len(invalid)))
    assert all(r["error"] for r in rejected)
    letters = dlq(web, len(invalid))
    assert len(letters) == len(invalid) and all(letter["error"] for letter in letters)
    assert web.lag() == len(valid)
    keys = {web_asset_key(n) for n in ("events", "sessions", "page_daily")}
    assert lag_sensor_requests(web, stack, instance) == [keys]

    result = web.materialize(instance)
    assert result.success
    assert lag_sensor_requests(web, stack, instance) == []
    # the job's stage lines reach the run's log through Pipes
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("dedupe:" in m and "new events" in m for m in logged), logged[-20:]
    ids = [r[0] for r in web.rows("SELECT event_id FROM raw_web.web_events")]
    assert sorted(ids) == sorted({e["event_id"] for e in valid})  # every valid event, exactly once
    assert warehouse_sessions(web) == expected_sessions(valid, now)
    assert web.lag() == 0  # committed after the load
    mats = {m.asset_key: m.metadata for m in result.asset_materializations_for_node("web_events_spark")}
    meta = mats[web_asset_key("events")]
    assert meta["messages_read"].value == len(valid)
    assert meta["duplicates"].value == len(valid) - len({e["event_id"] for e in valid})
    unique = {e["event_id"]: e for e in valid}.values()  # received ~now; none is within minutes of 1 h late
    assert meta["late_events"].value == sum(now - datetime.fromisoformat(e["occurred_at"]) > timedelta(hours=1)
                                            for e in unique)
    assert set(mats) == {web_asset_key(n) for n in ("events", "sessions", "page_daily")}
    checks = result.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [True]
    assert warehouse_page_daily(web) == expected_page_daily(valid, now)
    # course page 7 was viewed twice by one visitor in two sessions on one day
    assert web.rows("SELECT page_views, visitors, sessions FROM raw_web.web_page_daily "
                    "WHERE page_path = '/courses/7'") == [(2, 1, 2)]

    again = web.materialize()  # nothing new: nothing changes
    assert again.success
    assert sorted(r[0] for r in web.rows("SELECT event_id FROM raw_web.web_events")) == sorted(ids)


def test_a_crash_between_the_write_and_the_commit_loses_and_duplicates_nothing(web: Web, monkeypatch) -> None:
    valid, _ = scenario(datetime.now(UTC))
    assert web.post(valid).status_code == 200

    def crash(*_args, **_kwargs):
        raise RuntimeError("killed after the write, before the offset commit")

    with monkeypatch.context() as m:
        m.setattr(KafkaResource, "commit", crash)
        crashed = web.materialize()
    assert not crashed.success
    assert web.lag() == len(valid)  # nothing committed: the next run reads the same offsets
    tables = ("web_events", "web_sessions", "web_page_daily")
    before = {t: sorted(web.rows(f"SELECT * FROM raw_web.{t}")) for t in tables}
    assert len(before["web_events"]) == len({e["event_id"] for e in valid})

    rerun = web.materialize()
    assert rerun.success
    after = {t: sorted(web.rows(f"SELECT * FROM raw_web.{t}")) for t in tables}
    assert after == before  # same content: no duplicate, no loss
    assert web.lag() == 0


def test_write_keys_rate_limits_reach_nothing_without_a_key(web: Web) -> None:
    valid, _ = scenario(datetime.now(UTC))
    assert httpx.post(web.url + "/v1/batch", json={"batch": valid[:2]}, timeout=10).status_code == 401
    assert web.post(valid[:2], key="wrong").status_code == 401
    assert web.lag() == 0  # nothing produced
    assert web.post(valid[:2], key=OTHER_KEY).status_code == 200
    assert web.lag() == 2


def test_spark_submit_runs_as_batch_work_under_nice(tmp_path) -> None:
    """The Spark job yields the CPU to the real-time path (lander, dbt, Dagster): its command starts with
    ``nice -n 10``, which gives what it starts that niceness (the Spark runs of the tests above go through
    the same command); ``niceness=0`` leaves the command as spark-submit alone."""

    command = WebPipeline(lake_uri=str(tmp_path / "lake")).spark_submit()
    assert command[:3] == ["nice", "-n", "10"] and command[3].endswith("/bin/spark-submit")
    probe = subprocess.run([*command[:3], sys.executable, "-c", "import os; print(os.nice(0))"],
                           capture_output=True, text=True, check=True)
    assert int(probe.stdout) == min(19, os.nice(0) + 10)
    assert WebPipeline(lake_uri=str(tmp_path / "lake"), niceness=0).spark_submit()[0].endswith("/bin/spark-submit")


def test_the_spark_pool_is_configured_before_dagster_starts_and_an_operators_limit_stays() -> None:
    """``ensure_pool_limits`` puts ``web_spark`` in the instance's pools with limit 1 (so the run queue enforces
    it from its first iteration) and leaves a limit an operator set alone."""
    from corisync_assets.web.assets import SPARK_POOL, ensure_pool_limits

    with dg.DagsterInstance.ephemeral() as instance:
        storage = instance.event_log_storage
        assert SPARK_POOL not in storage.get_concurrency_keys()
        assert ensure_pool_limits(instance) == [SPARK_POOL]
        assert storage.get_concurrency_info(SPARK_POOL).slot_count == 1
        assert ensure_pool_limits(instance) == []
    with dg.DagsterInstance.ephemeral() as instance:
        instance.event_log_storage.set_concurrency_slots(SPARK_POOL, 3)
        assert ensure_pool_limits(instance) == []
        assert instance.event_log_storage.get_concurrency_info(SPARK_POOL).slot_count == 3


def test_corisync_pools_configures_the_instance_of_dagster_home(tmp_path) -> None:
    """``corisync pools`` (what prod compose's daemon runs before ``dagster-daemon run``) puts ``web_spark`` with
    limit 1 into the instance of ``$DAGSTER_HOME`` (here a fresh one, SQLite storage), says so, does nothing the
    second time, and leaves an operator's own limit alone."""
    from corisync_assets.web.assets import SPARK_POOL

    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    cli = [str(Path(sys.executable).with_name("corisync")), "pools"]

    def pools() -> str:
        done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def limit() -> int:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            return instance.event_log_storage.get_concurrency_info(SPARK_POOL).slot_count

    assert pools() == f"pools configured: {SPARK_POOL}"
    assert limit() == 1
    assert pools() == "pools: already configured"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.set_concurrency_slots(SPARK_POOL, 3)
    assert pools() == "pools: already configured"
    assert limit() == 3
