"""Acceptance of the walking skeleton on the real local stack.

Postgres 15 -> embedded Debezium -> tansu broker -> raw CDC assets materialized through Dagster's API ->
DuckDB. Each test uses its own consumer group and warehouse file and first lands whatever the topics already
hold (a baseline), so tests do not depend on each other's order, even after one restarts the broker.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Producer, TopicPartition
from dagster import AssetKey, DagsterRun, DagsterRunStatus, build_sensor_context

from corisync_assets.cdc.reconcile import lsn_int
from corisync_assets.cdc.resnapshot import resnapshot
from corisync_assets.cdc.sensors import build_lag_sensor
from corisync_assets.environment import local_secrets_file
from corisync_assets.local import broker, postgres
from corisync_assets.local import stack as local_stack
from corisync_assets.local.procs import pid_alive, spawn, stop_pid, wait_until
from tests.support.pipeline import TABLES, Pipeline, assert_equal_to_postgres, pg_connect

pytestmark = pytest.mark.stack


@pytest.fixture
def pg(stack):
    with pg_connect(stack) as conn:
        yield conn


def new_user(pg, role="learner") -> int:
    tag = uuid.uuid4().hex[:10]
    return pg.execute(
        "INSERT INTO users (email, full_name, country_code, role, bio, preferences, last_login_at) "
        "VALUES (%s, %s, 'PT', %s, %s, '{\"lang\": \"pt\", \"n\": 1.50}', now()) RETURNING user_id",
        (f"{tag}@example.org", f"Ana {tag}", role, "long bio " * 400),
    ).fetchone()[0]


def new_course(pg) -> int:
    tag = uuid.uuid4().hex[:10]
    return pg.execute(
        "INSERT INTO courses (code, title, category, level, price, duration_hours, is_published, tags) "
        "VALUES (%s, 'Data “Engineering” ñ', 'data', 'advanced', 12345678.91, 12.5, true, '[\"sql\"]') "
        "RETURNING course_id", (f"C-{tag}",),
    ).fetchone()[0]


def changelog_ops(pipe: Pipeline, table: str, since_rows: int) -> list[str]:
    with pipe.warehouse.connect(read_only=True) as con:
        return [op for (op,) in con.execute(
            f"SELECT op FROM raw_cdc.{table}__changelog ORDER BY kafka_offset OFFSET {since_rows}").fetchall()]


def landed(pipe: Pipeline, sql: str) -> list[tuple] | None:
    """The query's rows in the warehouse, or None while a table or column it reads has not landed yet."""
    import duckdb

    try:
        with pipe.warehouse.connect(read_only=True) as con:
            return con.execute(sql).fetchall()
    except (duckdb.CatalogException, duckdb.BinderException):
        return None


def changelog_len(pipe: Pipeline, table: str) -> int:
    try:
        return pipe.warehouse.row_count(f"{table}__changelog")
    except Exception:
        return 0


def test_end_to_end_current_state_and_changelog(pipe, pg):
    before = {t: changelog_len(pipe, t) for t in TABLES}
    u1, u2, u3 = new_user(pg), new_user(pg), new_user(pg)
    trainer = new_user(pg, "trainer")
    course = new_course(pg)
    pg.execute("UPDATE users SET full_name = 'Ana Updated', is_active = false, country_code = NULL WHERE user_id = %s",
               (u1,))
    pg.execute("UPDATE users SET last_login_at = now(), preferences = '{\"lang\": \"en\"}' WHERE user_id = %s", (u2,))
    pg.execute("DELETE FROM users WHERE user_id = %s", (u3,))
    pg.execute("UPDATE courses SET price = 0.01, description = NULL WHERE course_id = %s", (course,))
    e1 = pg.execute("INSERT INTO enrollments (user_id, course_id, amount_paid) VALUES (%s, %s, 99.99) "
                    "RETURNING enrollment_id", (u1, course)).fetchone()[0]
    pg.execute("INSERT INTO enrollments (user_id, course_id) VALUES (%s, %s)", (u2, course))
    pg.execute("UPDATE enrollments SET status = 'completed', progress_pct = 100, completed_at = now() "
               "WHERE enrollment_id = %s", (e1,))
    tr = pg.execute("INSERT INTO trainings (course_id, trainer_id, location, starts_at, ends_at, capacity) VALUES "
                    "(%s, %s, 'Lisboa', '2026-12-01 09:00+01', '2026-12-01 17:00+01', 20) RETURNING training_id",
                    (course, trainer)).fetchone()[0]
    pg.execute("INSERT INTO training_attendance (training_id, user_id) VALUES (%s, %s)", (tr, u1))
    pg.execute("UPDATE training_attendance SET attended = true, checked_in_at = now(), feedback_score = 5 "
               "WHERE training_id = %s AND user_id = %s", (tr, u1))
    expected = {"users": ["c", "c", "c", "c", "u", "u", "d"], "courses": ["c", "u"],
                "enrollments": ["c", "c", "u"], "trainings": ["c"], "training_attendance": ["c", "u"]}
    pipe.wait_for_lag({t: len(ops) for t, ops in expected.items()})

    metadata = pipe.materialize()

    for table, ops in expected.items():
        assert changelog_ops(pipe, table, before[table]) == ops, table
        assert metadata[table]["events_landed"] == len(ops)
        assert metadata[table]["consumer_lag_after"] == 0
        assert_equal_to_postgres(pg, pipe.warehouse, table)
    users = metadata["users"]
    assert (users["events_c"], users["events_u"], users["events_d"]) == (4, 2, 1)
    assert users["tombstones"] == 1
    assert 0 <= users["freshness_seconds"] < 600
    assert set(users["offset_ranges"]) == {"0"}

    again = pipe.materialize()  # nothing new: lands nothing
    assert all(m["events_landed"] == 0 and m["messages_consumed"] == 0 for m in again.values())
    for table in TABLES:
        assert changelog_len(pipe, table) == before[table] + len(expected[table])


def test_lag_sensor_counts_exact_lag_requests_one_run_when_stalled_and_does_not_pile_up(pipe, pg):
    user = new_user(pg)
    for i in range(4):
        pg.execute("UPDATE users SET full_name = %s WHERE user_id = %s", (f"Name {i}", user))
    pipe.wait_for_lag({"users": 5})
    sensor = build_lag_sensor(pipe.connector, threshold=0, stall_s=1.0)
    all_raw = {AssetKey(["raw_cdc", t]) for t in TABLES}
    cursor = [None]

    def tick():
        with build_sensor_context(instance=pipe.instance, resources={"kafka": pipe.kafka},
                                  cursor=cursor[0]) as ctx:
            result = sensor(ctx)
        cursor[0] = result.cursor
        lag = {o.asset_key.path[-1]: o.metadata["consumer_lag"].value for o in result.asset_events}
        return lag, [set(r.asset_selection) for r in result.run_requests]

    lag, requests = tick()
    assert lag == {t: 5 if t == "users" else 0 for t in TABLES}
    assert requests == []  # offsets just seen: a lander may be about to commit
    time.sleep(1.2)
    lag, requests = tick()
    assert requests == [all_raw]  # nobody consumed for stall_s: one run lands every table together

    in_flight = DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED,
                           asset_selection=frozenset(all_raw))
    pipe.instance.add_run(in_flight)
    lag, requests = tick()
    assert lag["users"] == 5 and requests == []  # the running run will take it: no pile-up
    pipe.instance.delete_run(in_flight.run_id)

    # a consumer making progress (the lander) moves the committed offset: lag alone requests nothing
    info = pipe.kafka.lag([pipe.topic("users")])[(pipe.topic("users"), 0)]
    committed = info.committed if info.committed is not None else info.low_watermark

    def commit(offset: int) -> None:
        consumer = pipe.kafka.consumer()
        consumer.commit(offsets=[TopicPartition(pipe.topic("users"), 0, offset)], asynchronous=False)
        consumer.close()

    commit(committed + 1)
    lag, requests = tick()
    assert lag["users"] == 4 and requests == []
    time.sleep(1.2)
    lag, requests = tick()  # ... but once it stops moving, the sensor requests the catch-up run
    assert lag["users"] == 4 and requests == [all_raw]
    commit(committed)  # give the skipped event back before landing

    pipe.materialize()
    lag, requests = tick()
    assert lag == dict.fromkeys(TABLES, 0) and requests == []


@pytest.mark.pollutes_topics
def test_poison_message_goes_to_dead_letters_and_ingestion_goes_on(pipe, pg, stack):
    first = new_user(pg)
    pipe.wait_for_lag({"users": 1})
    producer = Producer({**stack.kafka_client_config(), "batch.num.messages": 1})
    producer.produce(pipe.topic("users"), key=b'{"user_id": -1}', value=b"\x00not a debezium event")
    producer.flush(10)
    second = new_user(pg)
    pipe.wait_for_lag({"users": 3})

    metadata = pipe.materialize()

    assert metadata["users"]["dead_letters"] == 1 and metadata["users"]["events_landed"] == 2
    with pipe.warehouse.connect(read_only=True) as con:
        dead = con.execute("SELECT kafka_topic, kafka_partition, kafka_offset, error FROM raw_cdc._dead_letters"
                           ).fetchall()
        landed = {r[0] for r in con.execute("SELECT user_id FROM raw_cdc.users").fetchall()}
    assert len(dead) == 1 and dead[0][0] == pipe.topic("users") and "not JSON" in dead[0][3]
    assert {first, second} <= landed
    assert_equal_to_postgres(pg, pipe.warehouse, "users")
    # loud: the users asset's ERROR check fails, says how many and why; other tables' checks pass
    name, passed, meta = pipe.checks["users"]
    assert (name, passed, meta["dead_letters_held"], meta["dead_letters_this_run"]) == ("no_dead_letters", False, 1, 1)
    assert list(meta["errors"]) == [dead[0][3]]
    assert all(pipe.checks[t][1] for t in TABLES if t != "users")
    # and it stays failed while the dead letter is held, even in a run that lands nothing new
    pipe.materialize()
    assert pipe.checks["users"][1] is False and pipe.checks["users"][2]["dead_letters_this_run"] == 0


CRASHING_LAND = textwrap.dedent("""
    import os, sys
    from corisync_assets.cdc.assets import routes
    from corisync_assets.cdc.connector_config import load_connector_config
    from corisync_assets.cdc.landing import land_changes
    from corisync_assets.environment import settings
    from corisync_assets.resources.kafka import KafkaResource
    from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
    bootstrap, group, path = sys.argv[1:4]
    def die(batches, results):  # killed after the warehouse write, before the commit
        os._exit(17 if any(r.new_events for r in results) else 18)
    connector = load_connector_config(settings().connector_config)
    land_changes(KafkaResource(bootstrap_servers=bootstrap, consumer_group=group), DuckDBWarehouse(path=path),
                 routes(connector), tx_topic=connector.transaction_topic, collections=connector.collections,
                 after_write=die)
""")


def test_kill_runner_and_ingest_between_write_and_commit(pipe, pg, stack):
    users = [new_user(pg) for _ in range(3)]
    for u in users:
        pg.execute("UPDATE users SET bio = 'changed' WHERE user_id = %s", (u,))
    pipe.wait_for_lag({"users": 6})
    os.kill(stack_runner_pid(stack), signal.SIGKILL)  # Debezium dies before its offset flush
    pg.execute("DELETE FROM users WHERE user_id = %s", (users[0],))  # written while the runner is down
    proc = subprocess.run([sys.executable, "-c", CRASHING_LAND, stack.kafka_bootstrap, pipe.group,
                           str(pipe.warehouse_path)], capture_output=True, timeout=120)
    assert proc.returncode == 17, proc.stderr.decode()[-2000:]
    assert pipe.lag()["users"] >= 6  # landed but not committed

    # the runner restarts from its last flushed offsets (it may re-emit: event identity dedupes)
    assert local_stack.up(stack, out=lambda _l: None).debezium == "started"
    pipe.wait_for_lag({"users": 7})
    pipe.materialize()

    assert_equal_to_postgres(pg, pipe.warehouse, "users")
    with pipe.warehouse.connect(read_only=True) as con:
        total, distinct = con.execute("SELECT count(*), count(DISTINCT event_id) FROM raw_cdc.users__changelog"
                                      ).fetchone()
        per_user = con.execute(
            "SELECT op, count(*) FROM raw_cdc.users__changelog WHERE CAST(key->>'user_id' AS BIGINT) = ? "
            "AND op <> 'r' GROUP BY op ORDER BY op", [users[0]]).fetchall()
    assert total == distinct
    assert per_user == [("c", 1), ("d", 1), ("u", 1)]


def stack_runner_pid(s) -> int:
    pid = local_stack.dbz_pid(s)
    assert pid is not None, "Debezium runner is not running"
    return pid


def test_broker_restart_converges_and_offsets_are_not_identity(pipe, pg, stack):
    keep, gone = new_user(pg), new_user(pg)
    pipe.materialize()
    pg.execute("UPDATE users SET full_name = 'after landing' WHERE user_id = %s", (keep,))
    pg.execute("DELETE FROM users WHERE user_id = %s", (gone,))
    pipe.wait_for_lag({"users": 2})
    offsets_before = pipe.kafka.lag([pipe.topic("users")])

    broker.stop(stack)  # memory-only: the two events above are lost with the broker, never landed
    result = local_stack.up(stack, out=lambda _l: None)
    assert result.broker == "started" and result.debezium == "started"
    late = new_user(pg)  # its offset number on the new broker was already used on the old one
    # the re-snapshot (one `r` per other row) and the streamed insert of `late`
    pipe.wait_for_lag({"users": pg.execute("SELECT count(*) FROM users").fetchone()[0]})
    end_before = max(i.high_watermark for i in offsets_before.values())
    pipe.materialize()

    assert_equal_to_postgres(pg, pipe.warehouse, "users")  # update applied, deleted row gone, late row present
    with pipe.warehouse.connect(read_only=True) as con:
        dupes = con.execute("SELECT count(*) - count(DISTINCT user_id) FROM raw_cdc.users").fetchone()[0]
        late_ops = con.execute("SELECT op FROM raw_cdc.users__changelog WHERE CAST(key->>'user_id' AS BIGINT) = ? "
                               "AND op = 'c'", [late]).fetchall()
        reused = con.execute("SELECT count(*) FROM raw_cdc.users__changelog WHERE kafka_offset < ?",
                             [end_before]).fetchone()[0]
    assert dupes == 0
    assert late_ops == [("c",)]
    assert reused > 0  # offsets were reused after the restart, yet nothing was taken for already landed
    for table in TABLES:
        assert_equal_to_postgres(pg, pipe.warehouse, table)


TYPE_SAMPLES_DDL = """
CREATE TABLE IF NOT EXISTS type_samples (
  id bigint PRIMARY KEY, t time, ttz timetz, labels text[], counts integer[], ref uuid, doc xml, addr inet,
  span interval, span2 interval, small integer, m money, r int4range, h hstore, f float8, f4 real, nu numeric, d date,
  ts timestamp, tz timestamptz, b bytea, ch char(3), dropped text, renamed text, grid integer[][],
  words text[][], days date[], net cidr, mac macaddr, pct percent_d, label label_d)"""
#: domains over numeric(5,2) and text, created before the table
DOMAINS_DDL = ("DROP DOMAIN IF EXISTS percent_d CASCADE; DROP DOMAIN IF EXISTS label_d CASCADE; "
               "CREATE DOMAIN percent_d AS numeric(5,2) CHECK (VALUE BETWEEN 0 AND 100); "
               "CREATE DOMAIN label_d AS varchar(20) NOT NULL DEFAULT 'none'")
#: id -> (net, mac, pct, label)
NETWORK_DOMAINS = {1: ("10.1.0.0/16", "08:00:2b:01:02:03", "12.50", "x,y"), 2: ("::1/128", None, "100.00", "ñ"),
                   3: (None, None, None, "none")}
#: id -> (grid, words, days): arrays of two and three dimensions with NULLs, quotes and commas (Debezium's own
#: mapping sends them as [null, null]: CoriSync's PostgresTypesConverter sends their JSON), a date array
ARRAYS_ND = {
    1: ([[1, 2], [3, None]], [["a", "b,c"], [None, 'q"t}']], ["2024-01-31", None, "0001-01-01"]),
    2: ([[[1], [2]], [[3], [4]]], [["{x}", "ñ"]], []),
    3: (None, None, None),
}
#: id -> (m, r, h, f, f4, nu, d, ts, tz, b, ch, dropped, renamed): money, ranges, hstore, NaN/+-Infinity/-0,
#: unconstrained numeric NaN, +-infinity dates and timestamps, year 1, a DST night, bytea, padded char
MORE_TYPES = {
    1: ("12.34", "[1,5)", 'a=>1, "b c"=>NULL', "NaN", "-Infinity", "NaN", "infinity", "infinity", "infinity",
        b"\x00\xff", "ab", "d1", "r1"),
    2: ("-1.50", "empty", "", "-0", "Infinity", "123.456", "0001-01-01", "2024-03-31 02:30:00",
        "2024-03-31 01:30:00+00", b"", "abc", None, "r2"),
    3: (None, None, None, None, None, None, "-infinity", "-infinity", "-infinity", None, None, "d3", None),
}
MORE_COLUMNS = ("m", "r", "h", "f", "f4", "nu", "d", "ts", "tz", "b", "ch", "dropped", "renamed")


def _same_float(a, b) -> bool:
    import math

    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))


#: ... the last two: intervals (span, span2) with years and months, negative parts, fractions of a second and
#: more than 24 hours
TYPE_SAMPLES_ROWS = [
    (1, "12:34:56.123456", "14:30:00.5+02", ["a", "b,c", None, 'q"t', "{x}", "ñ"], [1, None, 3],
     "0b6f6c2e-8f0e-4d7a-9a43-0d2f1e3c4b5a", "<a x=\"1\">t</a>", "10.1.2.3/8", "1 year 2 months 3 days 04:05:06.78",
     "-1 year -2 months +3 days -04:05:06.78"),
    (2, "24:00:00", "00:00:00-05", [], None, None, None, "::1", "100 hours 0.000001 seconds", "-0.5 seconds"),
    (3, None, None, None, [], None, None, None, "1 mon -40 days 25:00:00", "-1 days +23:59:59.999999"),
]


def pg_utc(column: str) -> str:
    """A timestamptz column's text in UTC to the microsecond, in Postgres (infinity as itself)."""
    return (f"CASE WHEN isfinite({column}) THEN to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') "
            f"ELSE {column}::text END")


def duckdb_utc(column: str) -> str:
    """The same text of a landed TIMESTAMPTZ, in DuckDB."""
    return (f"CASE WHEN isfinite({column}) THEN strftime(timezone('UTC', {column}), '%Y-%m-%d %H:%M:%S.%f') "
            f"ELSE CAST({column} AS VARCHAR) END")


def decoded(rows: list[tuple], json_cols: tuple[int, ...]) -> list[list]:
    """Rows with the JSON texts at ``json_cols`` parsed (Postgres' and DuckDB's spacing differ)."""
    return [[json.loads(v) if i in json_cols and v is not None else v for i, v in enumerate(r)] for r in rows]


def pg_interval_fields(column: str) -> str:
    """Postgres' three fields of an interval (months, days, microseconds) from its parts, in Postgres."""
    return (f"(extract(year FROM {column}) * 12 + extract(month FROM {column}))::bigint, "
            f"extract(day FROM {column})::bigint, (extract(hour FROM {column}) * 3600000000 "
            f"+ extract(minute FROM {column}) * 60000000 + extract(microsecond FROM {column}))::bigint")


def duckdb_interval_fields(column: str) -> str:
    """The same three fields of a landed DuckDB INTERVAL."""
    return (f"datepart('year', {column}) * 12 + datepart('month', {column}), datepart('day', {column}), "
            f"datepart('hour', {column}) * 3600000000 + datepart('minute', {column}) * 60000000 "
            f"+ datepart('microsecond', {column})")


def assert_intervals_as_in_postgres(pg, pipe: Pipeline) -> None:
    want = pg.execute(f"SELECT id, {pg_interval_fields('span')}, {pg_interval_fields('span2')} FROM type_samples "
                      "ORDER BY id").fetchall()
    with pipe.warehouse.connect(read_only=True) as con:
        got = con.execute(f"SELECT id, {duckdb_interval_fields('span')}, {duckdb_interval_fields('span2')} "
                          "FROM raw_cdc.type_samples ORDER BY id").fetchall()
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'type_samples' AND column_name LIKE 'span%'").fetchall())
    assert got == [tuple(r) for r in want]
    assert types == {"span": "INTERVAL", "span2": "INTERVAL"}


def test_column_types_through_the_real_connector(stack, pg, tmp_path, monkeypatch):
    """Times, arrays, uuid/xml/inet, intervals (``interval.handling.mode=string``: Postgres' months, days and
    microseconds in an INTERVAL) and more through Postgres -> the real Debezium connector -> landing, streamed
    and re-read by an incremental snapshot; expected values from Postgres itself. Then schema changes: on this
    table, and on a second one under continuous writes (schema_changes_under_writes). Both tables are added
    to a copy of the connector config and the runner restarted with it once (restored afterwards)."""
    pg.execute("CREATE EXTENSION IF NOT EXISTS hstore")  # a trusted extension: the database owner may
    pg.execute("DROP TABLE IF EXISTS type_samples, evolving_writes")
    pg.execute(DOMAINS_DDL)
    pg.execute(TYPE_SAMPLES_DDL)
    pg.execute(EVOLVING_DDL)
    config = json.loads(stack.connector_config.read_text())
    config["config"]["table.include.list"] += ",public.type_samples,public.evolving_writes"
    path = tmp_path / "connector.json"
    path.write_text(json.dumps(config))
    try:
        monkeypatch.setenv("CORISYNC_CONNECTOR_CONFIG", str(path))
        local_stack.stop_debezium(stack)
        local_stack.start_debezium(stack)
        pipe = Pipeline(stack.model_copy(update={"connector_config": path}), tmp_path / "warehouse.duckdb")
        pg.execute("DELETE FROM type_samples")
        with pg.cursor() as cur:
            cur.executemany("INSERT INTO type_samples VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 7)",
                            TYPE_SAMPLES_ROWS)
            cur.executemany(f"UPDATE type_samples SET ({', '.join(MORE_COLUMNS)}) = "
                            f"({', '.join(['%s'] * len(MORE_COLUMNS))}) WHERE id = %s",
                            [(*values, i) for i, values in MORE_TYPES.items()])
            cur.executemany("UPDATE type_samples SET (grid, words, days) = (%s, %s, %s::date[]) WHERE id = %s",
                            [(*values, i) for i, values in ARRAYS_ND.items()])
            cur.executemany("UPDATE type_samples SET (net, mac, pct, label) = (%s, %s, %s, %s) WHERE id = %s",
                            [(*values, i) for i, values in NETWORK_DOMAINS.items()])
        deadline, metadata = time.monotonic() + 90, {}
        while time.monotonic() < deadline:
            metadata = {**metadata, **{k: v for k, v in pipe.materialize().items() if v["events_landed"]}}
            # the last write (row 3's network/domain update, after its other updates) has landed; counting
            # events would not do: the runner's snapshot of the newly captured table may read the rows as well,
            # depending on when it starts
            if landed(pipe, "SELECT label FROM raw_cdc.type_samples WHERE id = 3") == [("none",)]:
                break
            time.sleep(1)
        want = pg.execute(
            "SELECT id, t::text, (ttz AT TIME ZONE 'UTC')::text, array_to_json(labels)::text, "
            "array_to_json(counts)::text, ref::text, doc::text, nullif(format('%s', addr), ''), "
            "array_to_json(grid)::text, array_to_json(words)::text, array_to_json(days)::text "
            "FROM type_samples ORDER BY id").fetchall()
        with pipe.warehouse.connect(read_only=True) as con:
            got = con.execute(
                "SELECT id, CAST(t AS VARCHAR), CAST(ttz AS VARCHAR), CAST(labels AS VARCHAR), "
                "CAST(counts AS VARCHAR), ref, doc, addr, CAST(grid AS VARCHAR), CAST(words AS VARCHAR), "
                "CAST(days AS VARCHAR) FROM raw_cdc.type_samples ORDER BY id").fetchall()
            dead = con.execute("SELECT count(*) FROM raw_cdc._dead_letters WHERE source_table = 'type_samples'"
                               ).fetchone()[0] if "_dead_letters" in {r[0] for r in con.execute(
                                   "SELECT table_name FROM information_schema.tables").fetchall()} else 0
        assert dead == 0
        assert len(got) == len(want) == len(TYPE_SAMPLES_ROWS)
        json_cols = (3, 4, 8, 9, 10)
        assert decoded(got, json_cols) == decoded(want, json_cols)
        assert "type_warnings" not in metadata["type_samples"]  # every column has a faithful type
        # cidr and macaddr as their text; domains as their base type (a numeric one through CoriSync's converter:
        # Debezium names only the domain, not its base type)
        want = pg.execute("SELECT id, net::text, mac::text, pct::text, label::text FROM type_samples ORDER BY id"
                          ).fetchall()
        with pipe.warehouse.connect(read_only=True) as con:
            got = con.execute("SELECT id, net, mac, CAST(pct AS VARCHAR), label FROM raw_cdc.type_samples "
                              "ORDER BY id").fetchall()
            types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                     "WHERE table_name = 'type_samples' AND column_name IN ('net', 'pct', 'label')"
                                     ).fetchall())
        assert got == want
        assert types == {"net": "VARCHAR", "pct": "DECIMAL(5,2)", "label": "VARCHAR"}
        assert_intervals_as_in_postgres(pg, pipe)
        more = ("m::numeric::text, r::text, hstore_to_json(h)::text, f, f4, nu::text, d::text, ts::text, "
                "CASE WHEN isfinite(tz) THEN to_char(tz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') "
                "ELSE tz::text END, encode(b, 'hex'), ch")
        want = pg.execute(f"SELECT id, {more} FROM type_samples ORDER BY id").fetchall()
        with pipe.warehouse.connect(read_only=True) as con:
            got = con.execute(
                "SELECT id, CAST(m AS VARCHAR), r, CAST(h AS VARCHAR), f, f4, nu, CAST(d AS VARCHAR), "
                "CAST(ts AS VARCHAR), CASE WHEN isfinite(tz) THEN strftime(timezone('UTC', tz), '%Y-%m-%d %H:%M:%S') "
                "ELSE CAST(tz AS VARCHAR) END, lower(hex(b)), ch FROM raw_cdc.type_samples ORDER BY id").fetchall()
            types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                     "WHERE table_name = 'type_samples'").fetchall())
        assert (types["m"], types["f"], types["f4"], types["d"], types["b"]) == (
            "DECIMAL(19,2)", "DOUBLE", "FLOAT", "DATE", "BLOB")
        for g, w in zip(got, want, strict=True):
            assert _same_float(g[4], w[4]) and _same_float(g[5], w[5]), (g, w)
            h = (json.loads(g[3]) if g[3] is not None else None, json.loads(w[3]) if w[3] is not None else None)
            assert h[0] == h[1], (g, w)
            assert [v for i, v in enumerate(g) if i not in (3, 4, 5)] == [
                v for i, v in enumerate(w) if i not in (3, 4, 5)], (g, w)

        # schema changes under the same stream: a column added with a default (existing rows read it in
        # Postgres), a widened type; then rows that use both
        # a new NOT NULL column with a default, a widened type, a dropped and a renamed column (drop + add: the
        # warehouse keeps the old column, with its values up to the change, as it keeps a dropped one)
        pg.execute("ALTER TABLE type_samples ADD COLUMN late_col text NOT NULL DEFAULT 'it''s late'")
        pg.execute("ALTER TABLE type_samples ALTER COLUMN small TYPE bigint")
        pg.execute("ALTER TABLE type_samples DROP COLUMN dropped")
        pg.execute("ALTER TABLE type_samples RENAME COLUMN renamed TO renamed_to")
        # (row 4 also after year 9999: Debezium signs such a timestamptz, +10000-01-01T12:00:00.000000Z)
        pg.execute("INSERT INTO type_samples (id, small, late_col, renamed_to, span, d, ts, tz) VALUES "
                   "(4, 5000000000, 'x', 'n4', '-12 years -11 months', '10000-01-01', '10000-01-01 12:00:00', "
                   "'10000-01-01 12:00:00.5+00'), (5, NULL, DEFAULT, NULL, NULL, NULL, NULL, NULL)")
        pg.execute("UPDATE type_samples SET renamed_to = 'n1' WHERE id = 1")
        pipe.materialize_until(lambda: landed(pipe, "SELECT renamed_to FROM raw_cdc.type_samples WHERE id = 1")
                               == [("n1",)], timeout=90)
        want = pg.execute("SELECT id, small, late_col, renamed_to FROM type_samples ORDER BY id").fetchall()
        with pipe.warehouse.connect(read_only=True) as con:
            got = con.execute("SELECT id, small, late_col, renamed_to FROM raw_cdc.type_samples ORDER BY id").fetchall()
            kept = con.execute("SELECT id, dropped, renamed FROM raw_cdc.type_samples ORDER BY id").fetchall()
        # drop + add: a renamed column holds values from the rename on (rows changed since); a re-read fills it
        assert [r[:3] for r in got] == [r[:3] for r in want]
        assert [r[3] for r in got] == ["n1", None, None, "n4", None] != [r[3] for r in want]
        # rows changed after the change read NULL in the old columns; the others keep their last values
        assert kept == [(1, None, None), (2, None, "r2"), (3, "d3", None), (4, None, None), (5, None, None)]
        resnapshot(stack, pipe.connector, "public.type_samples")
        deadline = time.monotonic() + 90
        while got != want and time.monotonic() < deadline:
            pipe.materialize()
            with pipe.warehouse.connect(read_only=True) as con:
                got = con.execute("SELECT id, small, late_col, renamed_to FROM raw_cdc.type_samples "
                                  "ORDER BY id").fetchall()
        assert got == want
        # the re-read sends +/-infinity dates differently from the stream (see envelope.DATE_INFINITY)
        want = pg.execute(f"SELECT id, d::text, ts::text, {pg_utc('tz')} FROM type_samples ORDER BY id").fetchall()
        with pipe.warehouse.connect(read_only=True) as con:
            got = con.execute(f"SELECT id, CAST(d AS VARCHAR), CAST(ts AS VARCHAR), {duckdb_utc('tz')} "
                              "FROM raw_cdc.type_samples ORDER BY id").fetchall()
        assert got == want
        assert_intervals_as_in_postgres(pg, pipe)  # ... and intervals the same way as the stream
        # arrays of any dimension read by the snapshot (JDBC) as by the stream (pgoutput)
        want = pg.execute("SELECT id, array_to_json(grid)::text, array_to_json(words)::text, "
                          "array_to_json(days)::text FROM type_samples ORDER BY id").fetchall()
        with pipe.warehouse.connect(read_only=True) as con:
            got = con.execute("SELECT id, CAST(grid AS VARCHAR), CAST(words AS VARCHAR), CAST(days AS VARCHAR) "
                              "FROM raw_cdc.type_samples ORDER BY id").fetchall()
            snapshot_ops = con.execute("SELECT count(*) FROM raw_cdc.type_samples__changelog WHERE op = 'r'"
                                       ).fetchone()[0]
        assert snapshot_ops >= len(want)  # the values above came from the re-read
        assert decoded(got, (1, 2, 3)) == decoded(want, (1, 2, 3))

        schema_changes_under_writes(stack, pg, pipe)  # captured by the same runner: no second restart
    finally:
        monkeypatch.delenv("CORISYNC_CONNECTOR_CONFIG")
        local_stack.stop_debezium(stack)
        local_stack.start_debezium(stack)
        pg.execute("DROP TABLE IF EXISTS type_samples, evolving_writes")
        pg.execute("DROP DOMAIN IF EXISTS percent_d, label_d")


NANO_DDL = "CREATE TABLE nano_samples (id bigint PRIMARY KEY, ts timestamp, ts3 timestamp(3), tz timestamptz, t time)"
#: timestamps in the range of nanoseconds since the epoch as an int64 (1677-09-21 .. 2262-04-11), a DST night,
#: the epoch, the micros of a day's end, +/-infinity (snapshotted and streamed: the first three rows are there
#: before the runner starts); and (row 5) timestamps outside that range
NANO_ROWS = [
    (0, "infinity", "-infinity", "infinity", "00:00:00.5"),
    (1, "2024-03-31 01:59:59.999999", "2024-03-31 02:30:00.123", "2024-03-31 00:59:59.999999+00", "23:59:59.999999"),
    (2, "1970-01-01 00:00:00", "1969-12-31 23:59:59.999", "2024-10-27 01:30:00.5+00", "00:00:00"),
    (3, "1677-09-22 00:00:00.000001", "2262-04-10 23:59:59.999", "1900-01-01 00:00:00+00", "12:00:00.000001"),
    (4, None, None, None, None),
    (5, "2500-01-01 00:00:00", "0001-01-01 00:00:00", "3000-01-01 00:00:00+00", "10:00:00"),
    (6, "infinity", "-infinity", "-infinity", "24:00:00"),
]


def test_nanosecond_precision_mode_through_the_real_connector(stack, pg, tmp_path):
    """``time.precision.mode=nanoseconds`` (issue #9 §1): timestamps as NanoTimestamp and times as NanoTime
    land as TIMESTAMP_NS and TIME equal to Postgres' text, through a second embedded Debezium runner of its own
    (its own name, slot, topic prefix and home; the session's runner keeps its config): read by the initial
    snapshot (JDBC), then streamed (pgoutput). Expected values from Postgres itself. A timestamp outside the
    range of int64 nanoseconds is sent as NULL by Debezium itself (it logs "outside the representable range"):
    pinned here as the documented limit of that mode."""
    pg.execute("DROP TABLE IF EXISTS nano_samples")
    pg.execute(NANO_DDL)
    with pg.cursor() as cur:
        cur.executemany("INSERT INTO nano_samples VALUES (%s, %s, %s, %s, %s)", NANO_ROWS[:3])
    config = json.loads(stack.connector_config.read_text())
    config["name"] = "nano-samples"
    config["config"].update({"table.include.list": "public.nano_samples", "topic.prefix": "nano",
                             "slot.name": "corisync_nano", "time.precision.mode": "nanoseconds",
                             "notification.sink.topic.name": "nano.notifications"})
    path = tmp_path / "connector.json"
    path.write_text(json.dumps(config))
    nano = stack.model_copy(update={"connector_config": path})  # the stack, seen through the second config
    home = tmp_path / "nano"
    home.mkdir()
    if local_secrets_file(stack.home).exists():  # the stack's generated passwords (the CDC user's)
        shutil.copy(local_secrets_file(stack.home), local_secrets_file(home))
    pidfile = home / "run" / "debezium.pid"
    env = {**os.environ, "CORISYNC_HOME": str(home), "CORISYNC_CONNECTOR_CONFIG": str(path)}
    try:
        pid = spawn([sys.executable, "-m", local_stack.RUNNER_MODULE], log=home / "stdout.log", pidfile=pidfile,
                    cwd=home / "debezium", env=env)
        assert wait_until(lambda: not pid_alive(pid) or local_stack.slot_active(nano), 180)
        assert pid_alive(pid), (home / "stdout.log").read_text()[-2000:]
        with pg.cursor() as cur:  # streamed: new rows, and an update of a snapshotted one
            cur.executemany("INSERT INTO nano_samples VALUES (%s, %s, %s, %s, %s)", NANO_ROWS[3:])
            cur.execute("UPDATE nano_samples SET ts = ts + interval '1 microsecond' WHERE id = 2")
        pipe = Pipeline(nano, tmp_path / "warehouse.duckdb")
        pipe.materialize_until(lambda: landed(pipe, "SELECT CAST(ts AS VARCHAR) FROM raw_cdc.nano_samples "
                                          "WHERE id = 2") == [("1970-01-01 00:00:00.000001",)], timeout=90)
        want = pg.execute(f"SELECT id, ts::text, ts3::text, {pg_utc('tz')}, t::text FROM nano_samples "
                          "ORDER BY id").fetchall()
        with pipe.warehouse.connect(read_only=True) as con:
            got = con.execute(f"SELECT id, CAST(ts AS VARCHAR), CAST(ts3 AS VARCHAR), {duckdb_utc('tz')}, "
                              "CAST(t AS VARCHAR) FROM raw_cdc.nano_samples ORDER BY id").fetchall()
            types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                     "WHERE table_name = 'nano_samples'").fetchall())
            ops = dict(con.execute("SELECT op, count(*) FROM raw_cdc.nano_samples__changelog GROUP BY op"
                                   ).fetchall())
        assert (types["ts"], types["ts3"], types["tz"], types["t"]) == (
            "TIMESTAMP_NS", "TIMESTAMP_NS", "TIMESTAMP WITH TIME ZONE", "TIME")
        # both paths: the snapshot's reads (the runner may also re-read the table incrementally) and the stream
        assert ops["r"] >= 3 and (ops["c"], ops["u"]) == (len(NANO_ROWS) - 3, 1), ops
        # Debezium sends NULL for row 5's timestamps (years 2500 and 1); the reconciliation check reports such rows
        assert [r[1:3] for r in got if r[0] == 5] == [(None, None)] != [r[1:3] for r in want if r[0] == 5]
        assert [r for r in got if r[0] != 5] == [r for r in want if r[0] != 5]
    finally:
        stop_pid(pidfile, local_stack.RUNNER_MODULE, timeout=60)
        wait_until(lambda: not local_stack.slot_active(nano), 15)
        postgres.psql(stack, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                      "WHERE slot_name = 'corisync_nano'", db=stack.pg_database)
        pg.execute("DROP TABLE IF EXISTS nano_samples")


EVOLVING_DDL = """
CREATE TABLE evolving_writes (
  id bigint PRIMARY KEY, n integer NOT NULL, label varchar(10), amount numeric(6,2), gone text, old_name text)"""
#: issue #9 §3, applied one by one while a writer keeps changing the table: (name, ALTER, the `after` field it
#: adds and the one it removes in the change events, as Debezium sends them)
EVOLUTION = [
    ("add without default", "ADD COLUMN plain text", "plain", None),
    ("add with default", "ADD COLUMN with_default text DEFAULT 'it''s a default'", "with_default", None),
    ("drop", "DROP COLUMN gone", None, "gone"),
    ("int -> bigint", "ALTER COLUMN n TYPE bigint", None, None),
    ("varchar(10) -> text", "ALTER COLUMN label TYPE text", None, None),
    ("numeric(6,2) -> numeric(12,4)", "ALTER COLUMN amount TYPE numeric(12,4)", None, None),
    ("rename", "RENAME COLUMN old_name TO new_name", "new_name", "old_name"),
    ("add NOT NULL", "ADD COLUMN required text NOT NULL DEFAULT 'req'", "required", None),
]
SEEDED = 30


class Writer(threading.Thread):
    """Keeps inserting, updating and deleting rows of evolving_writes on its own connection (autocommit, a
    statement every ~10 ms) until stopped, counting every write as (op, id). Once a change widened a column it
    writes values only the wider type holds (``widened``: names of EVOLUTION steps done)."""

    def __init__(self, stack) -> None:
        super().__init__(daemon=True)
        self.stack, self.stop, self.widened = stack, threading.Event(), set()
        self.writes: list[tuple[str, int]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        rng, live, next_id = random.Random(7), list(range(1, SEEDED + 1)), 1000
        try:
            with pg_connect(self.stack) as conn:
                conn.prepare_threshold = None  # no server-side plans held across the ALTERs
                while not self.stop.is_set():
                    i = len(self.writes)
                    big = 5_000_000_000 if "int -> bigint" in self.widened else 0
                    label = ("a label longer than ten" if "varchar(10) -> text" in self.widened else "w") + str(i)[-3:]
                    amount = "123456.7891" if "numeric(6,2) -> numeric(12,4)" in self.widened else "12.34"
                    if i % 5 == 4 and len(live) > SEEDED:
                        victim = live.pop(SEEDED)  # one the writer inserted: seeded rows stay
                        conn.execute("DELETE FROM evolving_writes WHERE id = %s", (victim,))
                        self.writes.append(("d", victim))
                    elif i % 2 == 0:
                        conn.execute("INSERT INTO evolving_writes (id, n, label, amount) VALUES (%s, %s, %s, %s)",
                                     (next_id, big + i, label, amount))
                        live.append(next_id)
                        self.writes.append(("c", next_id))
                        next_id += 1
                    else:
                        row = rng.choice(live)
                        conn.execute("UPDATE evolving_writes SET n = n + 1 + %s, label = %s, amount = %s "
                                     "WHERE id = %s", (big, label, amount, row))
                        self.writes.append(("u", row))
                    time.sleep(0.01)
        except BaseException as exc:  # reported by the test
            self.error = exc


def schema_changes_under_writes(stack, pg, pipe: Pipeline) -> None:
    """Issue #9 §3 on a table under continuous writes: the changes of EVOLUTION one by one while a writer
    thread inserts, updates and deletes (landing now and then meanwhile); then: the changelog holds one event
    for every write, events of every change's old and new shape, and current state follows Postgres (existing
    rows read an added column's default; a renamed column fills on a re-read)."""
    pg.execute("INSERT INTO evolving_writes SELECT g, g, 's' || g, g * 1.25, 'gone ' || g, 'old ' || g "
               f"FROM generate_series(1, {SEEDED}) g")
    writer = Writer(stack)
    writer.start()
    boundaries = []  # WAL positions (before, after) of each change
    try:
        for step, (name, alter, _added, _removed) in enumerate(EVOLUTION):
            done = len(writer.writes)
            deadline = time.monotonic() + 10
            while len(writer.writes) < done + 4 and writer.error is None:  # writes between two changes
                assert time.monotonic() < deadline, f"the writer stalled before {name!r}"
                time.sleep(0.01)
            before = lsn_int(pg.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
            pg.execute(f"ALTER TABLE evolving_writes {alter}")
            boundaries.append((before, lsn_int(pg.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])))
            writer.widened.add(name)
            if step % 2:
                pipe.materialize()  # some changes land between the schema changes, some in one batch across them
        done = len(writer.writes)
        while len(writer.writes) < done + 4 and writer.error is None:
            time.sleep(0.01)
    finally:
        writer.stop.set()
        writer.join(10)
    assert writer.error is None, writer.error

    expected = Counter(("c", i) for i in range(1, SEEDED + 1)) + Counter(writer.writes)

    def changelog() -> list[tuple]:
        return landed(pipe, "SELECT op, CAST(key->>'id' AS BIGINT), source_lsn, CAST(after AS VARCHAR) "
                            "FROM raw_cdc.evolving_writes__changelog WHERE op <> 'r'") or []

    pipe.materialize_until(lambda: Counter((op, k) for op, k, _, _ in changelog()) == expected, timeout=60,
                           what="(every write of the writer in the changelog)")
    events = [(lsn, json.loads(after)) for op, _, lsn, after in changelog() if op in ("c", "u")]
    for (name, _alter, added, removed), (before, after) in zip(EVOLUTION, boundaries, strict=True):
        old = [row for lsn, row in events if lsn < before]
        new = [row for lsn, row in events if lsn > after]
        assert old and new, f"{name}: no writes on both sides of the change"
        for field in filter(None, (added, removed)):  # the changelog keeps each version as it came
            assert all((field in row) == (field == removed) for row in old), (name, field)
            assert all((field in row) == (field == added) for row in new), (name, field)
    new_n = [row["n"] for lsn, row in events if lsn > boundaries[3][1]]
    assert max(new_n) > 2**31  # values only the widened types hold came through
    assert any(len(row["label"]) > 10 for lsn, row in events if lsn > boundaries[4][1])
    assert "123456.7891" in {row["amount"] for lsn, row in events if lsn > boundaries[5][1]}

    # current state follows: every column but the renamed one (drop + add: it holds values from the rename on)
    columns = "id, n, label, amount, plain, with_default, required"
    want = pg.execute(f"SELECT {columns} FROM evolving_writes ORDER BY id").fetchall()
    with pipe.warehouse.connect(read_only=True) as con:
        got = con.execute(f"SELECT {columns} FROM raw_cdc.evolving_writes ORDER BY id").fetchall()
        landed_columns = {r[0] for r in con.execute("DESCRIBE raw_cdc.evolving_writes").fetchall()}
        # rows last changed before the column with a default was added: they read the default, as in Postgres
        stale = con.execute("SELECT count(*) FROM raw_cdc.evolving_writes WHERE _cdc_lsn < ?",
                            [boundaries[1][0]]).fetchone()[0]
    assert got == want
    assert stale > 0 and {r[5] for r in want} == {"it's a default"}
    assert {"plain", "with_default", "required", "new_name", "gone", "old_name"} <= landed_columns
    resnapshot(stack, pipe.connector, "public.evolving_writes")  # ... and a re-read fills the renamed column

    def equal() -> bool:
        try:
            return assert_equal_to_postgres(pg, pipe.warehouse, "evolving_writes") > 0
        except AssertionError:
            return False

    pipe.materialize_until(equal, timeout=60, what="(evolving_writes after its re-read)")
