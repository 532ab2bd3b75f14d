"""The reconciliation check (``reconciles_with_postgres``) on the real stack.

One table with many column types and a composite text key (quotes, non-ASCII) is added to a copy of the
connector config for this module (the runner restarts with it once, and once more to restore the original),
and filled through Postgres; Debezium streams it and each test lands it into its own warehouse file. The
failures of issue #9 are then injected into that file (a row deleted, a row added, a default missing, a
``time`` column turned into microseconds, the whole table gone) and changes are committed while a check runs.
Expected keys, counts and chunk numbers come from Postgres and plain Python, not from the check.
"""

from __future__ import annotations

import json
import math
import random
import struct
import time
import uuid
from dataclasses import dataclass

import pytest

from corisync_assets.cdc.assets import routes
from corisync_assets.cdc.connector_config import ConnectorConfig, load_connector_config
from corisync_assets.cdc.landing import land_changes
from corisync_assets.cdc.reconcile import FIRST_N, TableRef, TableResult, reconcile
from corisync_assets.local import stack as local_stack
from corisync_assets.resources.kafka import KafkaResource
from corisync_assets.resources.warehouse import canonical
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
from corisync_assets.resources.warehouse.reader import open_reader
from tests.support.pipeline import pg_connect

pytestmark = pytest.mark.stack

TABLE = "reconcile_samples"
REF = TableRef("public", TABLE, TABLE)
DDL = f"""
DROP TABLE IF EXISTS {TABLE};
DROP TYPE IF EXISTS reconcile_mood;
CREATE TYPE reconcile_mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE {TABLE} (
  region text, code varchar(40), amount numeric(10,2), ratio numeric, score double precision, weight real,
  active boolean, grade char(3), born date, opens time, opens_tz timetz, seen timestamp, seen_tz timestamptz,
  doc jsonb, raw json, tags text[], counts int[], ref uuid, blob bytea, mood reconcile_mood, span interval,
  late text DEFAULT 'late',
  PRIMARY KEY (region, code))"""
ROWS = f"""
INSERT INTO {TABLE} (region, code, amount, ratio, score, weight, active, grade, born, opens, opens_tz, seen, seen_tz,
                     doc, raw, tags, counts, ref, blob, mood, span) VALUES
('eu', 'O''Brien "q"', 12.5, 12.5000, 0.1, 0.1, true, 'ab', '2024-02-29', '12:34:56.123456', '14:30:00.5+02',
 '2024-01-05 12:34:56.5', '2024-03-31 02:30:00+02', '{{"b": 1, "a": [1, 2], "long key": null}}', '{{"b": 1,  "a": 2}}',
 ARRAY['a', 'b,c', NULL, 'q"t', '{{x}}', 'ñ'], ARRAY[1, NULL, 3], '0b6f6c2e-8f0e-4d7a-9a43-0d2f1e3c4b5a', '\\x0102ff',
 'happy', '1 year 2 months 3 days 04:05:06.78'),
('Zürich', 'ñandú', 'NaN', 'NaN', '-Infinity', 'NaN', false, NULL, '0001-01-01', '24:00:00', '00:00:00-05',
 '1970-01-01 00:00:00', '2024-10-27 01:30:00+01', '[]', 'null', '{{}}', '{{}}', NULL, '', 'sad', NULL),
('日本', '東京', 0, 0.000001, 1e300, -0.0, NULL, 'xyz', '2024-02-29', '00:00:00.000001', NULL, NULL, '-infinity',
 '"s"', NULL, NULL, NULL, NULL, NULL, 'ok', '-1 years -2 months +3 days -100:05:06.000001'),
('eu', 'a,b', -99.99, 123456789012345678901234567890.123456789, 5e-324, 1.5e-40, true, NULL, NULL, NULL,
 '23:59:59+14', '2000-02-29 23:59:59.999', NULL, '{{"a": {{"b": [1.50, 2e3, true]}}}}', NULL, ARRAY[]::text[], NULL,
 NULL, NULL, NULL, NULL);
INSERT INTO {TABLE} (region, code, amount, ratio, score, weight, active, grade, born, opens, seen, seen_tz, doc,
                     tags, counts, span)
SELECT 'gen', 'k' || lpad(g::text, 3, '0'), g * 1.25, g, g / 7.0, g / 3.0, g % 2 = 0, 'g' || g % 10,
       date '2020-01-01' + g,
       time '00:00' + g * interval '61 seconds', timestamp '2024-01-01' + g * interval '1 hour 1.5 seconds',
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 day 1 microsecond', jsonb_build_object('g', g),
       ARRAY['t' || g], ARRAY[g, g * 2], make_interval(months => 7 - g, days => g % 5 - 2, hours => g * 7,
                                                      secs => (g - 12) * 1.000037)
FROM generate_series(1, 24) g"""


@dataclass
class Samples:
    stack: object
    connector: ConnectorConfig  # captures only the samples table (what the tests land and check)
    rows: int


@pytest.fixture(scope="module")
def samples(stack, tmp_path_factory):
    """The samples table, captured by the runner (restarted with a config that adds it) and filled."""
    tmp = tmp_path_factory.mktemp("reconcile")
    config = json.loads(stack.connector_config.read_text())
    config["config"]["table.include.list"] += f",public.{TABLE}"
    runner_config = tmp / "connector.json"
    runner_config.write_text(json.dumps(config))
    config["config"]["table.include.list"] = f"public.{TABLE}"
    only_samples = tmp / "samples-connector.json"
    only_samples.write_text(json.dumps(config))
    with pg_connect(stack) as pg:
        pg.execute(DDL)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CORISYNC_CONNECTOR_CONFIG", str(runner_config))
        local_stack.stop_debezium(stack)
        local_stack.start_debezium(stack)
    try:
        with pg_connect(stack) as pg:
            pg.execute(ROWS)
            n = pg.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
        connector = load_connector_config(only_samples)
        _wait_for_messages(stack, connector, n)
        yield Samples(stack, connector, n)
    finally:
        local_stack.stop_debezium(stack)
        local_stack.start_debezium(stack)
        with pg_connect(stack) as pg:
            pg.execute(f"DROP TABLE IF EXISTS {TABLE}; DROP TYPE IF EXISTS reconcile_mood")


def _end_offset(stack, connector: ConnectorConfig) -> int:
    """Messages on the samples topic so far (0 before it exists)."""
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap, consumer_group="unused")
    return sum(info.high_watermark for info in kafka.lag(connector.topics).values())


def _wait_for_messages(stack, connector: ConnectorConfig, at_least: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while _end_offset(stack, connector) < at_least:
        assert time.monotonic() < deadline, f"Debezium did not deliver {at_least} messages in {timeout}s"
        time.sleep(0.2)


@dataclass
class Checker:
    """Runs the check against one warehouse file with one consumer group, landing the samples topic only."""

    samples: Samples
    warehouse: DuckDBWarehouse
    kafka: KafkaResource

    def land(self) -> int:
        c = self.samples.connector
        return land_changes(self.kafka, self.warehouse, routes(c), tx_topic=c.transaction_topic,
                            collections=c.collections, notification_topic=c.notification_topic).new_events

    def run(self, chunk_rows: int = 100_000, after_point=None):
        point, _landed, (result,) = reconcile(
            lambda: pg_connect(self.samples.stack), lambda: open_reader(self.warehouse), [REF],
            slot=self.samples.connector.get("slot.name"), land=self.land, chunk_rows=chunk_rows,
            after_point=after_point)
        return point, result

    def duckdb(self, *statements: str | tuple[str, list]) -> None:
        """Change the warehouse file behind the landing's back: statements, or (statement, parameters)."""
        with self.warehouse.connect() as con:
            for statement in statements:
                sql, params = statement if isinstance(statement, tuple) else (statement, [])
                con.execute(sql, params)


@pytest.fixture
def checker(samples, tmp_path) -> Checker:
    return Checker(samples, DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb")),
                   KafkaResource(bootstrap_servers=samples.stack.kafka_bootstrap,
                                 consumer_group=f"reconcile-{uuid.uuid4().hex[:8]}"))


def pg_keys(stack) -> list[tuple[str, str]]:
    """Every key in bytewise order (the check's order)."""
    with pg_connect(stack) as pg:
        return [tuple(r) for r in pg.execute(
            f'SELECT region, code FROM {TABLE} ORDER BY region COLLATE "C", code COLLATE "C"').fetchall()]


def listed(result: TableResult) -> list[tuple]:
    return [(d["key"]["region"], d["key"]["code"], d["difference"], tuple(d.get("columns", ())))
            for d in result.metadata()["first_differing_keys"]]


def test_clean_pipeline_passes(checker, samples):
    _point, result = checker.run()
    meta = result.metadata()
    assert result.passed, meta
    assert (meta["postgres_rows"], meta["warehouse_rows"], meta["keys_compared"]) == (samples.rows,) * 3
    assert meta["keys_differing"] == 0 and meta["first_differing_keys"] == []
    assert meta["columns_not_compared"] == {}
    assert {"score", "weight", "opens_tz", "doc", "tags", "span"} <= set(meta["columns_compared"])
    # equal chunk digests: both sides spelled every row the same and read the chunk in the same key order
    assert (meta["chunks"], meta["chunks_differing"], meta["changed_during_check"]) == (1, 0, 0)
    assert meta["rows_per_second"] > 0


def test_injected_failures_are_reported_with_their_keys(checker, samples):
    checker.run()  # lands everything
    keys = pg_keys(samples.stack)
    gone, nulled = keys[3], keys[-2]
    checker.duckdb(
        (f"DELETE FROM raw_cdc.{TABLE} WHERE region = ? AND code = ?", list(gone)),
        (f"INSERT INTO raw_cdc.{TABLE} SELECT * REPLACE ('zz' AS region, 'extra ü' AS code) FROM raw_cdc.{TABLE} "
         "WHERE region = ? AND code = ?", list(keys[4])),
        # a column NULL in the warehouse where Postgres has its default
        (f"UPDATE raw_cdc.{TABLE} SET late = NULL WHERE region = ? AND code = ?", list(nulled)),
    )

    _point, result = checker.run()

    meta = result.metadata()
    assert not result.passed
    assert (meta["missing_in_warehouse"], meta["extra_in_warehouse"], meta["values_differ"]) == (1, 1, 1)
    assert meta["keys_differing"] == 3 and meta["postgres_rows"] == samples.rows
    assert meta["warehouse_rows"] == samples.rows  # one gone, one extra: the count alone would not tell
    expected = sorted([(*gone, "missing_in_warehouse", ()), ("zz", "extra ü", "extra_in_warehouse", ()),
                       (*nulled, "values_differ", ("late",))], key=lambda k: (k[0].encode(), k[1].encode()))
    assert listed(result) == expected


def test_time_landed_as_microseconds_differs_in_that_column(checker, samples):
    checker.run()
    checker.duckdb(f"ALTER TABLE raw_cdc.{TABLE} ALTER opens SET DATA TYPE BIGINT USING "
                   "hour(opens) * 3600000000 + minute(opens) * 60000000 + microsecond(opens)")

    _point, result = checker.run()

    with pg_connect(samples.stack) as pg:
        with_time = [tuple(r) for r in pg.execute(
            f'SELECT region, code FROM {TABLE} WHERE opens IS NOT NULL ORDER BY region COLLATE "C", code COLLATE "C"'
        ).fetchall()]
    assert not result.passed and result.metadata()["values_differ"] == len(with_time) > FIRST_N
    assert listed(result) == [(*k, "values_differ", ("opens",)) for k in with_time[:FIRST_N]]


def test_chunks_by_composite_key_range(checker, samples):
    _point, result = checker.run(chunk_rows=4)
    assert result.passed
    assert (result.metadata()["chunks"], result.metadata()["chunks_differing"]) == (
        samples.rows // 4 + 1, 0)  # the last chunk is open-ended

    keys = pg_keys(samples.stack)
    picked = [keys[0], keys[13], keys[-1]]  # chunks 0, 3 and the last: non-ASCII and quoted keys among them
    assert len({keys.index(k) // 4 for k in picked}) == 3
    assert any("'" in code or not code.isascii() or not region.isascii() for region, code in picked)
    checker.duckdb(*[(f"UPDATE raw_cdc.{TABLE} SET amount = -1 WHERE region = ? AND code = ?", list(k))
                     for k in picked])

    _point, result = checker.run(chunk_rows=4)

    meta = result.metadata()
    assert (meta["chunks"], meta["chunks_differing"], meta["keys_compared"]) == (samples.rows // 4 + 1, 3,
                                                                                 samples.rows)
    assert listed(result) == [(*k, "values_differ", ("amount",)) for k in picked]


def test_whole_table_missing_fails_through_the_dagster_job(checker, samples):
    from dagster import AssetCheckSeverity, DagsterInstance, DefaultScheduleStatus, Definitions

    from corisync_assets.cdc.reconcile_check import (
        RECONCILE_CHECK,
        RECONCILE_JOB,
        RECONCILE_SCHEDULE,
        reconciliation_definitions,
    )

    recon = reconciliation_definitions(samples.connector)
    defs = Definitions.merge(recon, Definitions(resources={"kafka": checker.kafka, "warehouse": checker.warehouse}))
    job = defs.resolve_job_def(RECONCILE_JOB)
    schedule = defs.resolve_schedule_def(RECONCILE_SCHEDULE)
    assert (schedule.job_name, schedule.cron_schedule, schedule.default_status) == (
        RECONCILE_JOB, "30 4 * * *", DefaultScheduleStatus.RUNNING)

    def evaluate():
        run = job.execute_in_process(instance=DagsterInstance.ephemeral())
        assert run.success and not run.get_asset_materialization_events()  # checks only
        (evaluation,) = run.get_asset_check_evaluations()
        assert (evaluation.asset_key.path, evaluation.check_name, evaluation.severity) == (
            ["raw_cdc", TABLE], RECONCILE_CHECK, AssetCheckSeverity.ERROR)
        return evaluation.passed, {k: v.value for k, v in evaluation.metadata.items()}

    passed, meta = evaluate()  # lands the table, then compares
    assert passed and meta["keys_compared"] == samples.rows and meta["events_landed_before_compare"] >= samples.rows
    checker.duckdb(f"DROP TABLE raw_cdc.{TABLE}")

    passed, meta = evaluate()

    assert not passed
    assert (meta["warehouse_table_exists"], meta["missing_in_warehouse"], meta["postgres_rows"]) == (
        False, samples.rows, samples.rows)
    assert [(d["key"]["region"], d["key"]["code"]) for d in meta["first_differing_keys"]] == \
        pg_keys(samples.stack)[:FIRST_N]


def test_changes_committed_during_the_check_are_left_out(checker, samples):
    checker.run()
    keys = pg_keys(samples.stack)
    updated, spanning, deleted = keys[1], keys[2], keys[5]
    inserted = ("gen", f"during-{uuid.uuid4().hex[:6]}")
    stack = samples.stack
    before = samples.rows
    # a transaction that writes before the snapshot and commits after it: its event's LSN is below the point
    open_tx = pg_connect(stack)
    open_tx.autocommit = False
    open_tx.execute(f"UPDATE {TABLE} SET amount = 77 WHERE region = %s AND code = %s", spanning)
    end = _end_offset(stack, samples.connector)

    def during(point):
        open_tx.commit()
        with pg_connect(stack) as pg:
            pg.execute(f"UPDATE {TABLE} SET grade = 'new' WHERE region = %s AND code = %s", updated)
            pg.execute(f"DELETE FROM {TABLE} WHERE region = %s AND code = %s", deleted)
            pg.execute(f"INSERT INTO {TABLE} (region, code) VALUES (%s, %s)", inserted)
        _wait_for_messages(stack, samples.connector, end + 5)  # 2 updates, a delete + its tombstone, an insert

    try:
        point, result = checker.run(after_point=during)
    finally:
        open_tx.close()

    meta = result.metadata()
    assert result.passed, (listed(result), meta["changed_during_check"], point)
    assert meta["changed_during_check"] == 4
    assert meta["keys_compared"] == before + 1 - 4  # the snapshot's keys and the inserted one, less the changed
    with checker.warehouse.connect(read_only=True) as con:
        lsn = con.execute(f"SELECT max(source_lsn) FROM raw_cdc.{TABLE}__changelog WHERE op = 'u' AND "
                          "key->>'region' = ? AND key->>'code' = ?", list(spanning)).fetchone()[0]
    assert lsn < point.lsn  # left out by its transaction (in progress at the snapshot), not by its LSN

    _point, result = checker.run()  # the next check sees them as ordinary rows
    assert result.passed and result.metadata()["changed_during_check"] == 0
    assert result.metadata()["keys_compared"] == before


def test_floats_hash_by_their_bits(stack):
    """float8 and float4 render as their IEEE bits on both sides (Postgres' and DuckDB's decimal digits of a
    double differ for some values); expected from Python's struct."""
    import duckdb

    rng = random.Random(9)
    values = [0.1, -0.0, 0.0, 5e-324, -2.2250738585072014e-308, 1.7976931348623157e308, 56417077398011824.0,
              math.inf, -math.inf, 1.5, 1e300]
    values += [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(300)]
    values = [v for v in values if not math.isnan(v)] + [math.nan]
    expected = ["NaN" if math.isnan(v) else struct.pack(">d", v).hex() for v in values]
    con = duckdb.connect()
    con.execute("CREATE TABLE f (i INTEGER, x DOUBLE)")
    con.executemany("INSERT INTO f VALUES (?, ?)", list(enumerate(values)))
    duck = [r[0] for r in con.execute(f"SELECT {canonical.float_bits(canonical.DUCKDB, 'x')} FROM f ORDER BY i")
            .fetchall()]
    with pg_connect(stack) as pg:
        texts = ["NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity") if math.isinf(v) else repr(v)
                 for v in values]
        pg_bits = [r[0] for r in pg.execute(
            f"SELECT {canonical.float_bits(canonical.POSTGRES, 'x::float8')} FROM unnest(%s::text[]) "
            "WITH ORDINALITY AS t(x, i) ORDER BY i", (texts,)).fetchall()]
    assert duck == expected and pg_bits == expected


def test_key_values_from_the_wire_match_postgres(stack):
    """The changelog's key JSON (Debezium's wire form) renders as Postgres renders the key."""
    cases = [  # (Postgres type, SQL literal, wire value, nanoseconds per wire unit)
        ("bigint", "-9223372036854775808", -9223372036854775808, 1000), ("numeric(10,2)", "12.50", "12.50", 1000),
        ("text", "O'Brien ñ", "O'Brien ñ", 1000), ("char(5)", "ab", "ab   ", 1000), ("boolean", "true", True, 1000),
        ("uuid", "0b6f6c2e-8f0e-4d7a-9a43-0d2f1e3c4b5a", "0b6f6c2e-8f0e-4d7a-9a43-0d2f1e3c4b5a", 1000),
        ("date", "2024-02-29", 19782, 1000), ("date", "1969-12-31", -1, 1000),
        ("time", "12:34:56.5", 45_296_500_000, 1000), ("time", "24:00:00", 86_400_000_000, 1000),
        ("timestamp", "2024-01-05 12:34:56.123456", 1_704_458_096_123_456, 1000),
        ("timestamp(3)", "2024-01-05 12:34:56.123", 1_704_458_096_123, 1_000_000),
        ("timestamptz", "2024-01-05 12:34:56.5+02", "2024-01-05T10:34:56.5Z", 1000),
        # past 9999 and BC, as the real connector sends them (tests/cdc/test_column_types.py)
        ("date", "10000-01-01", 2_932_897, 1000), ("date", "0001-01-01 BC", -719_528, 1000),
        ("date", "4713-01-01 BC", -2_440_550, 1000), ("date", "5874897-12-31", 2_145_042_905, 1000),
        ("timestamp", "10000-01-01 12:00:00", 253_402_344_000_000_000, 1000),
        ("timestamp", "4713-01-01 00:00:00.25 BC", -210_863_519_999_750_000, 1000),
        ("timestamptz", "10000-01-01 12:00:00.5+00", "+10000-01-01T12:00:00.500000Z", 1000),
        ("timestamptz", "0001-01-01 00:00:00+00 BC", "0000-01-01T00:00:00.000000Z", 1000),
        ("timestamptz", "4713-01-01 00:00:00+00 BC", "-4712-01-01T00:00:00.000000Z", 1000),
        ("interval", "-1 years -2 mons +3 days -100:05:06.78", "P-1Y-2M3DT-100H-5M-6.78S", 1000),
        ("interval", "-1 days +23:59:59.999999", "P0Y0M-1DT23H59M59.999999S", 1000),
        ("interval", "-00:00:00.5", "P0Y0M0DT0H0M-0.5S", 1000),
    ]
    with pg_connect(stack) as pg:
        pg.execute("SET TimeZone = 'UTC'")
        for type_name, literal, wire, unit in cases:
            base = pg.execute("SELECT typname FROM pg_type WHERE oid = %s::regtype", (type_name,)).fetchone()[0]
            col = canonical.classify("k", type_name, base, "b", None, None, 5 if base == "bpchar" else None, "C")
            want = pg.execute(f"SELECT {canonical.postgres_text(col, 'k')} FROM (SELECT %s::{type_name} AS k) t",
                              (literal,)).fetchone()[0]
            assert canonical.wire_key_text(col, wire, time_unit_ns=unit) == want, type_name
