"""BigQueryWarehouse against the BigQuery emulator.

BigQuery cannot run here; the `bqemulator` emulator stands in for it (BigQuery's REST API, the Storage
Write API over gRPC, GoogleSQL scripts with transactions, MERGE, JSON functions, over DuckDB). The same
client calls, the same appends and the same fold script run against real BigQuery in prod. Events are
Debezium-shaped (tests/support), decoded by the project's Decoder, landed through the warehouse resource
(appends to `_cdc_stream`), folded into changelog and current state (`fold`), and checked against a
plain-Python replay (`expected_state`) and against the DuckDB reference implementation fed the same batches.
What the emulator cannot show (the exact requests per cycle and per fold, failing appends, request sizes,
table options) is tested against request-level doubles in test_bigquery_requests.py.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from decimal import Decimal

import orjson
import pytest

from corisync_assets.cdc.envelope import ChangeBatch, Decoder
from corisync_assets.environment import ConfigError, Settings
from corisync_assets.resources.warehouse import canonical
from corisync_assets.resources.warehouse.base import DEAD_LETTERS, LandResult
from corisync_assets.resources.warehouse.bigquery import (
    CYCLES,
    EMULATOR_PROJECT,
    STREAM,
    BigQueryWarehouse,
    bq_type,
    schema_field,
)
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
from tests.support.debezium_events import (
    COURSE_FIELDS,
    COURSES_KEY_SCHEMA,
    SOURCE_SCHEMA,
    change_stream,
    course_row,
    envelope,
    expected_state,
    value_schema,
)

TOPIC = "tc4a.public.courses"


class Feed:
    """Decodes (key, value) pairs into batches with increasing Kafka offsets, as the consumer would."""

    def __init__(self, table: str = "courses", topic: str = TOPIC) -> None:
        self.decoder = Decoder(table)
        self.topic = topic
        self.offset = 0

    def batch(self, messages) -> ChangeBatch:
        for key, value in messages:
            self.decoder.add(self.topic, 0, self.offset, key, value)
            self.offset += 1
        return self.decoder.reset()


def restarted(wh: BigQueryWarehouse) -> BigQueryWarehouse:
    """The same warehouse as seen by a new process (nothing remembered of what was appended)."""
    return BigQueryWarehouse(project=wh.project, dataset=wh.dataset, emulator_host=wh.emulator_host)


def rows(wh: BigQueryWarehouse, table: str, order_by: str) -> list[dict]:
    result = wh.client().query(f"SELECT * FROM {wh._sql_ref(table)} ORDER BY {order_by}").result()
    return [dict(r.items()) for r in result]


def duck_rows(wh: DuckDBWarehouse, table: str, order_by: str) -> list[dict]:
    with wh.connect() as con:
        cur = con.execute(f'SELECT * FROM raw_cdc."{table}" ORDER BY {order_by}')
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def as_instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_state(actual: list[dict], expected: dict[int, dict]) -> None:
    assert [r["course_id"] for r in actual] == sorted(expected)
    for row in actual:
        exp = expected[row["course_id"]]
        assert row["code"] == exp["code"] and row["title"] == exp["title"]
        assert row["description"] == exp["description"] and row["level"] == exp["level"]
        assert row["price"] == Decimal(exp["price"])
        assert row["is_published"] is exp["is_published"]
        assert row["tags"] == orjson.loads(exp["tags"])
        assert row["seats"] == exp["seats"]
        assert row["created_at"] == as_instant(exp["created_at"])


def test_change_stream_lands_as_expected_state(bq_warehouse: BigQueryWarehouse) -> None:
    """Three batches of a Debezium stream (inserts, updates, deletes + tombstones) are appended, one cycle
    each, without touching changelog and current state; one fold brings both up: the current state is the
    replayed state, the changelog has one row per event, before/after/key kept as JSON."""
    n = 300
    messages = list(change_stream(n))
    feed = Feed()
    total = 0
    started = time.monotonic()
    for part in (messages[:100], messages[100:220], messages[220:]):
        batch = feed.batch(part)
        result = bq_warehouse.land(batch)
        assert result == LandResult(len(batch), 0, 0)
        total += len(batch)
    elapsed = time.monotonic() - started
    assert total == n  # tombstones are not events
    assert bq_warehouse.row_count(STREAM) == n and bq_warehouse.row_count(CYCLES) == 3
    assert bq_warehouse.row_count("courses") == 0 == bq_warehouse.row_count("courses__changelog")
    folded = bq_warehouse.fold(force=True)
    assert folded["cycles"] == 3 and folded["new_events"] == {"courses": n}
    assert bq_warehouse.fold(force=True) is None  # nothing left
    assert_state(rows(bq_warehouse, "courses", "course_id"), expected_state(n))
    log = rows(bq_warehouse, "courses__changelog", "source_lsn")
    assert len(log) == n == len({r["event_id"] for r in log})
    events = [orjson.loads(v)["payload"] for _k, v in messages if v is not None]
    assert [r["op"] for r in log] == [e["op"] for e in events]
    assert [r["source_lsn"] for r in log] == [e["source"]["lsn"] for e in events]
    deletes = [r for r in log if r["op"] == "d"]
    assert deletes and all(r["after"] is None and r["before"]["course_id"] == r["key"]["course_id"]
                           for r in deletes)
    first = log[0]
    assert first["before"] is None and first["after"] == events[0]["after"] and first["kafka_offset"] == 0
    print(f"appended {n} events in 3 cycles in {elapsed:.2f}s, folded in {folded['seconds']:.2f}s")


def test_landing_twice_changes_nothing(bq_warehouse: BigQueryWarehouse) -> None:
    """Re-landing a batch (a consumer restarted before committing its offsets) is a no-op: the same process
    does not append it again; a new process appends it again (at-least-once), and the fold drops what the
    changelog already holds. A batch that repeats an event (a re-emitted message at a later offset) lands
    it once."""
    feed = Feed()
    messages = list(change_stream(100))
    batch = feed.batch(messages[:90])
    n = len(batch)
    assert bq_warehouse.land(batch).new_events == n
    bq_warehouse.fold(force=True)
    state = rows(bq_warehouse, "courses", "course_id")
    log = rows(bq_warehouse, "courses__changelog", "event_id")
    assert bq_warehouse.land(batch) == LandResult(0, n, 0)
    assert bq_warehouse.fold(force=True) is None and bq_warehouse.row_count(STREAM) == n
    # a new process does not know what was appended: it appends again, twice; the fold keeps one of each
    again = restarted(bq_warehouse)
    assert again.land(batch) == LandResult(n, 0, 0)
    assert restarted(bq_warehouse).land(batch) == LandResult(n, 0, 0)
    assert bq_warehouse.row_count(STREAM) == 3 * n
    folded = again.fold(force=True)
    assert folded["cycles"] == 2 and folded["new_events"] == {}  # two cycles, nothing new in them
    assert rows(bq_warehouse, "courses", "course_id") == state
    assert rows(bq_warehouse, "courses__changelog", "event_id") == log
    # the rest of the stream, with a repeat of its last event inside the batch
    rest = messages[90:]
    repeat = next(m for m in reversed(rest) if m[1] is not None)
    batch2 = feed.batch([*rest, repeat])
    assert bq_warehouse.land(batch2) == LandResult(len(batch2) - 1, 1, 0)
    assert bq_warehouse.fold(force=True)["new_events"] == {"courses": len(batch2) - 1}
    assert_state(rows(bq_warehouse, "courses", "course_id"), expected_state(100))
    assert bq_warehouse.row_count("courses__changelog") == 100


def test_dead_letters_land_once(bq_warehouse: BigQueryWarehouse) -> None:
    """Messages that are not Debezium events land in _dead_letters with the error, next to good events,
    and the same message dead-lettered twice is one row."""
    feed = Feed()
    key, value = next(change_stream(1))
    batch = feed.batch([(key, value), (b'{"id": 1}', b"not json at all"), (None, value)])
    assert len(batch) == 1 and len(batch.dead_letters) == 2
    assert bq_warehouse.land(batch) == LandResult(1, 0, 2)
    assert bq_warehouse.fold(force=True)["dead_letters"] == 2
    dead = rows(bq_warehouse, DEAD_LETTERS, "kafka_offset")
    assert [(d["source_table"], d["kafka_topic"], d["kafka_offset"]) for d in dead] == [
        ("courses", TOPIC, 1), ("courses", TOPIC, 2)]
    assert dead[0]["error"].startswith("DecodeError: not JSON") and dead[0]["value"] == "not json at all"
    assert dead[0]["key"] == '{"id": 1}' and dead[1]["key"] is None
    assert "without a key" in dead[1]["error"] and dead[1]["landed_at"] is not None
    assert bq_warehouse.land(batch) == LandResult(0, 1, 0)
    assert restarted(bq_warehouse).land(batch) == LandResult(1, 0, 2)  # a new process appends them again
    assert bq_warehouse.fold(force=True)["dead_letters"] == 0
    assert bq_warehouse.row_count(DEAD_LETTERS) == 2
    assert bq_warehouse.dead_letter_summary() == {"courses": {dead[0]["error"]: 1, dead[1]["error"]: 1}}
    # `corisync dead-letters list` reads them
    listed = bq_warehouse.dead_letters("courses")
    assert [(d.offset, d.key, d.value, d.replayed) for d in listed] == [
        (1, '{"id": 1}', "not json at all", False), (2, None, dead[1]["value"], False)]
    assert bq_warehouse.dead_letters("users") == []


def test_dead_letters_replay_as_on_duckdb(bq_warehouse: BigQueryWarehouse) -> None:
    """The scenario of tests/cdc/test_dead_letter_replay.py: replayed events land (a load job and the fold's
    statements with the replay guard), a row's newer change wins, garbage stays pending; twice is once."""
    from corisync_assets.cdc.dead_letters import replay
    from tests.cdc.test_dead_letter_replay import _expected, _land_as_the_old_code_did

    _land_as_the_old_code_did(bq_warehouse)
    bq_warehouse.fold(force=True)
    report = replay(bq_warehouse, "courses", out=lambda _: None)
    assert (report.pending, report.replayed, report.new_events, report.already_landed) == (4, 3, 3, 0)
    state = {r["course_id"]: r["title"] for r in rows(bq_warehouse, "courses", "course_id")}
    assert state == _expected()
    assert [r["source_lsn"] for r in rows(bq_warehouse, "courses__changelog", "source_lsn")] == [
        100, 110, 120, 130, 140, 150]
    assert bq_warehouse.dead_letter_summary() == {"courses": {"DecodeError: not JSON": 1}}
    assert [(d.offset, d.replayed) for d in bq_warehouse.dead_letters("courses")] == [
        (0, True), (2, True), (4, True), (6, False)]
    again = replay(bq_warehouse, "courses", out=lambda _: None)
    assert (again.pending, again.replayed, again.new_events) == (1, 0, 0)
    assert {r["course_id"]: r["title"] for r in rows(bq_warehouse, "courses", "course_id")} == state


# --- the same batches through DuckDB (the reference) and BigQuery --------------------------------------

EXTRA_FIELD = {"type": "string", "optional": True, "field": "category", "parameters": {
    "__debezium.source.column.type": "TEXT"}}
EVOLVED_SCHEMA = value_schema("courses", [*COURSE_FIELDS, EXTRA_FIELD])


def evolved(op: str, cid: int, row: dict, lsn: int) -> tuple[bytes, bytes]:
    source = {"version": "3.6.3.Final", "connector": "postgresql", "name": "tc4a", "ts_ms": 1_764_100_000_000,
              "snapshot": "false", "db": "tc4a", "schema": "public", "table": "courses", "txId": 9000,
              "lsn": lsn}
    value = {"schema": EVOLVED_SCHEMA, "payload": {"before": None, "after": row, "source": source, "op": op,
                                                  "ts_ms": 1_764_100_000_005}}
    key = {"schema": COURSES_KEY_SCHEMA, "payload": {"course_id": cid}}
    return orjson.dumps(key), orjson.dumps(value)


def truncate(lsn: int) -> tuple[None, bytes]:
    schema = {"type": "struct", "optional": False, "name": "tc4a.public.courses.Envelope", "fields": [
        SOURCE_SCHEMA, {"type": "string", "optional": False, "field": "op"}]}
    source = {"version": "3.6.3.Final", "connector": "postgresql", "name": "tc4a", "ts_ms": 1_764_050_000_000,
              "snapshot": "false", "db": "tc4a", "schema": "public", "table": "courses", "txId": 8000,
              "lsn": lsn}
    return None, orjson.dumps({"schema": schema, "payload": {"source": source, "op": "t", "ts_ms": 1}})


def scenario() -> list[list[tuple[bytes | None, bytes | None]]]:
    """Batches covering every rule of the reference: upserts, deletes, in-batch repeats, a truncate with
    older and newer events in its batch, a snapshot end marker, a new source column, dead letters."""
    stream = list(change_stream(120))
    lsn = 2_000_000
    batches = [stream[:70], [*stream[70:], stream[5]]]
    batches.append([
        envelope("u", 3, None, course_row(3, 99), lsn, 1, 1_764_040_000_000),
        truncate(lsn + 16),
        envelope("c", 500, None, course_row(500), lsn + 32, 2, 1_764_060_000_000),
        envelope("c", 501, None, course_row(501), lsn + 48, 3, 1_764_060_000_001),
        (None, b"{broken"),
    ])
    snap = lsn + 1000
    batches.append([
        envelope("c", 502, None, course_row(502), lsn + 64, 4, 1_764_070_000_000),
        envelope("r", 500, None, course_row(500, 1), snap, 5, 1_764_080_000_000, snapshot="first"),
    ])
    batches.append([
        envelope("r", 501, None, course_row(501, 1), snap, 5, 1_764_080_000_001, snapshot="last"),
        envelope("u", 500, None, course_row(500, 2), snap + 16, 6, 1_764_090_000_000),
    ])
    batches.append([
        evolved("c", 503, {**course_row(503), "category": "data"}, snap + 32),
        evolved("u", 501, {**course_row(501, 3), "category": "ops"}, snap + 48),
        envelope("d", 500, course_row(500, 2), None, snap + 64, 7, 1_764_095_000_000),
    ])
    return batches


def normalized(row: dict, json_cols: tuple[str, ...], drop: tuple[str, ...]) -> dict:
    out = {}
    for k, v in row.items():
        if k in drop:
            continue
        if k in json_cols and isinstance(v, str):
            v = json.loads(v)
        out[k] = v
    return out


def assert_same_as_reference(bq_warehouse: BigQueryWarehouse, duck: DuckDBWarehouse) -> None:
    current = [normalized(r, ("tags",), ("_cdc_landed_at",)) for r in duck_rows(duck, "courses", "course_id")]
    assert [normalized(r, (), ("_cdc_landed_at",)) for r in rows(bq_warehouse, "courses", "course_id")] == current
    order = "source_lsn, kafka_offset"
    log = [normalized(r, ("key", "before", "after"), ("landed_at",)) for r in duck_rows(duck, "courses__changelog",
                                                                                          order)]
    assert [normalized(r, (), ("landed_at",)) for r in rows(bq_warehouse, "courses__changelog", order)] == log
    dead = [normalized(r, (), ("landed_at",)) for r in duck_rows(duck, DEAD_LETTERS, "kafka_offset")]
    assert [normalized(r, (), ("landed_at",)) for r in rows(bq_warehouse, DEAD_LETTERS, "kafka_offset")] == dead


@pytest.mark.parametrize("fold_every_batch", [True, False], ids=["fold-each-cycle", "one-fold-for-all"])
def test_same_result_as_duckdb_reference(bq_warehouse: BigQueryWarehouse, tmp_path, fold_every_batch) -> None:
    """Differential test: every batch of `scenario()` lands through both warehouses with the same
    LandResult (one cycle per batch in BigQuery); folded after every cycle, or once for all of them, current
    state, changelog and dead letters equal DuckDB's, which applies each batch at once (landing times
    aside)."""
    duck = DuckDBWarehouse(path=str(tmp_path / "reference.duckdb"))
    feed_bq, feed_duck = Feed(), Feed()
    for i, messages in enumerate(scenario()):
        b_bq, b_duck = feed_bq.batch(messages), feed_duck.batch(messages)
        assert bq_warehouse.land(b_bq) == duck.land(b_duck), f"batch {i}"
        if fold_every_batch:
            bq_warehouse.fold(force=True)
            assert_same_as_reference(bq_warehouse, duck)
    if not fold_every_batch:
        assert bq_warehouse.fold(force=True)["cycles"] == len(scenario())
        assert_same_as_reference(bq_warehouse, duck)
    current = duck_rows(duck, "courses", "course_id")
    assert [r["course_id"] for r in current] == [501, 503]  # truncate, snapshot end and delete applied
    assert current[0]["category"] == "ops" and current[0]["_cdc_lsn"] == 2_001_048
    assert bq_warehouse.row_count(DEAD_LETTERS) == 1


# --- cycles across tables, and the cadence of folds --------------------------------------------------------

ARCHIVE_TOPIC = "tc4a.public.courses_archive"


def test_fold_is_a_consistent_cut_across_tables(bq_warehouse: BigQueryWarehouse, monkeypatch) -> None:
    """A cycle lands two tables' batches. The lander dies after appending the second cycle's events but
    before its marker: the fold leaves both tables as of the first cycle (not one table ahead of the other).
    The next process lands the same events again (offsets were not committed) as a complete cycle: the fold
    brings both tables up together, each event once, the orphaned rows of the dead cycle never folded."""
    messages = [m for m in change_stream(160) if m[1] is not None]  # events only: slices are exact
    courses, archive = Feed("courses"), Feed("courses_archive", ARCHIVE_TOPIC)
    first = [courses.batch(messages[:80]), archive.batch(messages[:40])]
    assert [r.new_events for r in bq_warehouse.land_all(first)] == [len(first[0]), len(first[1])]

    second = [courses.batch(messages[80:]), archive.batch(messages[40:])]
    appended = []
    append = BigQueryWarehouse._append

    def die_before_marker(self, table, row_type, spec, rows):  # the process dies between appends and marker
        if table == CYCLES:
            raise ConnectionError("lander killed")
        appended.append(table)
        append(self, table, row_type, spec, rows)

    monkeypatch.setattr(BigQueryWarehouse, "_append", die_before_marker)
    with pytest.raises(ConnectionError):
        bq_warehouse.land_all(second)
    monkeypatch.undo()
    assert appended == [STREAM] and bq_warehouse.row_count(STREAM) == 320  # every event is there ...
    folded = bq_warehouse.fold(force=True)  # ... but only the complete cycle is folded
    assert folded["cycles"] == 1 and folded["new_events"] == {"courses": 80, "courses_archive": 40}
    assert_state(rows(bq_warehouse, "courses", "course_id"), expected_state(80, ids=40))
    assert_state(rows(bq_warehouse, "courses_archive", "course_id"), expected_state(40, ids=40))

    after_restart = restarted(bq_warehouse)
    assert [r.new_events for r in after_restart.land_all(second)] == [len(second[0]), len(second[1])]
    folded = after_restart.fold(force=True)
    assert folded["cycles"] == 1 and folded["new_events"] == {"courses": 80, "courses_archive": 120}
    assert_state(rows(bq_warehouse, "courses", "course_id"), expected_state(160, ids=40))
    assert_state(rows(bq_warehouse, "courses_archive", "course_id"), expected_state(160, ids=40))
    for table in ("courses__changelog", "courses_archive__changelog"):
        log = rows(bq_warehouse, table, "source_lsn")
        assert len(log) == 160 == len({r["event_id"] for r in log})
    assert after_restart.fold(force=True) is None  # the dead cycle's rows stay unfolded for good


def test_folding_cycles_again_changes_nothing(bq_warehouse: BigQueryWarehouse) -> None:
    """If the record of a fold were lost (or two folds raced past their re-check), the same cycles would be
    folded again: nothing changes, since events already in the changelog and known dead letters are
    dropped."""
    feed = Feed()
    bq_warehouse.land(feed.batch([*list(change_stream(40)), (None, b"{broken")]))
    first = bq_warehouse.fold(force=True)
    assert first["new_events"] == {"courses": 40} and first["dead_letters"] == 1
    state, log = rows(bq_warehouse, "courses", "course_id"), rows(bq_warehouse, "courses__changelog", "event_id")
    bq_warehouse.client().query(f"DELETE FROM {bq_warehouse._sql_ref('_cdc_folded')} WHERE TRUE").result()
    again = bq_warehouse.fold(force=True)
    assert again["cycles"] == 1 and again["new_events"] == {} and again["dead_letters"] == 0
    assert rows(bq_warehouse, "courses", "course_id") == state
    assert rows(bq_warehouse, "courses__changelog", "event_id") == log
    assert bq_warehouse.row_count(DEAD_LETTERS) == 1


def test_fold_cadence(bq_emulator, bq_warehouse: BigQueryWarehouse) -> None:
    """fold() without force (the lander calls it every cycle): due at a process's first call (an earlier
    process may have left cycles), then only when this process landed something and fold_interval_s passed."""
    wh = BigQueryWarehouse(project=bq_warehouse.project, dataset=bq_warehouse.dataset,
                           emulator_host=bq_emulator.host, fold_interval_s=3600)
    feed = Feed()
    messages = list(change_stream(20))
    restarted(bq_warehouse).land(feed.batch(messages[:10]))  # left by an earlier process
    assert wh.fold()["new_events"] == {"courses": 10}  # first call: due
    assert wh.fold() is None  # nothing landed since
    wh.land(feed.batch(messages[10:]))
    assert wh.fold() is None  # within the interval
    assert wh.fold(force=True)["new_events"] == {"courses": 10}
    assert_state(rows(wh, "courses", "course_id"), expected_state(20))


def test_table_schema_follows_source(bq_warehouse: BigQueryWarehouse) -> None:
    """Column types: exact NUMERIC(10,2) for numeric(10,2), TIMESTAMP for timestamptz, JSON for jsonb."""
    bq_warehouse.land(Feed().batch(change_stream(4)))
    table = bq_warehouse.client().get_table(bq_warehouse._ref("courses"))
    types = {f.name: (f.field_type, f.precision, f.scale) for f in table.schema}
    # the emulator's catalog drops NUMERIC parameters (stores DECIMAL(38,9)); what we ask BigQuery for:
    assert types["price"][0] == "NUMERIC"
    price = next(c for c in Feed().batch(change_stream(1)).schema.columns if c.name == "price")
    assert (schema_field(price).precision, schema_field(price).scale, bq_type(price)) == (10, 2, "NUMERIC(10, 2)")
    assert types["created_at"][0] == "TIMESTAMP" and types["tags"][0] == "JSON"
    assert types["course_id"][0] in ("INTEGER", "INT64") and types["is_published"][0] in ("BOOLEAN", "BOOL")
    assert [f.name for f in table.schema][-4:] == ["_cdc_op", "_cdc_lsn", "_cdc_ts_ms", "_cdc_landed_at"]


def test_existing_relations(bq_warehouse: BigQueryWarehouse) -> None:
    """Which dbt relations exist, from tables.list (no job): what dbt's test deferral asks."""
    bq_warehouse.land(Feed().batch(change_stream(2)))
    ds = bq_warehouse.dataset
    assert bq_warehouse.existing_relations([(ds, "courses"), (ds, "stg_courses"), ("no_such_dataset", "x")]) == {
        (ds, "courses")}


# --- errors ---------------------------------------------------------------------------------------------


def test_missing_dataset_names_it_and_the_variable(bq_emulator) -> None:
    wh = BigQueryWarehouse(project=bq_emulator.project, dataset="no_such_dataset", emulator_host=bq_emulator.host)
    with pytest.raises(ConfigError) as err:
        wh.land(Feed().batch(change_stream(2)))
    assert "no_such_dataset" in str(err.value) and "CORISYNC_BQ_RAW_DATASET" in str(err.value)


def test_bad_table_name_is_rejected(bq_warehouse: BigQueryWarehouse) -> None:
    batch = Feed("courses; DROP TABLE x").batch(change_stream(1))
    with pytest.raises(ValueError, match="not a valid SQL identifier"):
        bq_warehouse.land(batch)


def test_unreachable_endpoint_fails_in_seconds() -> None:
    from tests.bigquery.emulator import free_port

    wh = BigQueryWarehouse(project=EMULATOR_PROJECT, dataset="raw", emulator_host=f"127.0.0.1:{free_port()}",
                           retry_deadline_s=2, request_timeout_s=5)
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - any transport error, as long as it is quick
        wh.land(Feed().batch(change_stream(2)))
    assert time.monotonic() - started < 10


def test_missing_credentials_names_google_application_credentials(monkeypatch, tmp_path) -> None:
    """Prod (no emulator) without usable credentials: one message naming GOOGLE_APPLICATION_CREDENTIALS."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    wh = BigQueryWarehouse(project="corisync-prod", dataset="corisync_raw")
    with pytest.raises(ConfigError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        wh.land(Feed().batch(change_stream(2)))


def test_from_settings() -> None:
    s = Settings(bigquery_emulator_host="127.0.0.1:9999", bq_raw_dataset="raw_x", bq_location="US")
    wh = BigQueryWarehouse.from_settings(s)
    assert (wh.project, wh.dataset, wh.location, wh.emulator_host, wh.kind) == (
        EMULATOR_PROJECT, "raw_x", "US", "127.0.0.1:9999", "bigquery")
    assert wh.grpc_host == "127.0.0.1:10009"  # the emulator's gRPC port: REST port + 10
    with pytest.raises(ConfigError, match="CORISYNC_GCP_PROJECT"):
        BigQueryWarehouse.from_settings(Settings())


def test_times_arrays_and_unknown_types(bq_warehouse: BigQueryWarehouse) -> None:
    """The column types of tests/cdc/test_column_types.py (there against DuckDB), appended and folded: TIME from
    milli/micro/nanoseconds, JSON arrays (NULL elements, quotes, commas, nesting), DATETIME from nanoseconds (kept
    to micros, BigQuery's precision), the exact text of a time with zone and of values without a mapping.
    GoogleSQL's TIME ends at 23:59:59.999999, so Postgres' 24:00:00 (row 2) is not compared here."""
    from datetime import timedelta

    from tests.cdc.test_column_types import ROWS, _batch

    assert bq_warehouse.land(_batch(ROWS)) == LandResult(len(ROWS), 0, 0)
    bq_warehouse.fold(force=True)
    got = {r["id"]: r for r in rows(bq_warehouse, "samples", "id")}
    assert sorted(got) == [r["id"] for r in ROWS]
    midnight = datetime(2000, 1, 1)
    for want in ROWS:
        row = got[want["id"]]
        if want["t_us"] < 86_400_000_000:
            assert row["t_us"] == (midnight + timedelta(microseconds=want["t_us"])).time()
        assert row["t_ms"] == (midnight + timedelta(milliseconds=want["t_ms"])).time()
        assert row["t_ns"] == (midnight + timedelta(microseconds=want["t_ns"] // 1000)).time()
        assert row["t_tz"] == want["t_tz"]
        assert row["ts_ns"] == datetime(1970, 1, 1) + timedelta(microseconds=want["ts_ns"] // 1000)
        assert row["labels"] == want["labels"] and row["grid"] == want["grid"]
        assert row["span"] == (str(want["span"]) if want["span"] is not None else None)
        assert (json.loads(row["spot"]) if row["spot"] is not None else None) == want["spot"]


def test_added_column_with_default(bq_warehouse: BigQueryWarehouse) -> None:
    """As tests/cdc/test_column_types.py::test_added_column_with_default_and_widened_type against DuckDB: rows
    folded before the column was added, and events older than it folded after, read its default; NULL set
    explicitly stays NULL. (int -> bigint is INT64 either way here.)"""
    from tests.cdc.test_column_types import ID, _events

    small = {"type": "int32", "optional": True, "field": "n"}
    late = {"type": "string", "optional": True, "default": "it's late", "field": "late"}
    feed = Feed("evolving", "tc4a.public.evolving")
    bq_warehouse.land(feed.batch(_events([ID, small], [{"id": 1, "n": 1}, {"id": 2, "n": 2}], 10)))
    bq_warehouse.fold(force=True)
    bq_warehouse.land(feed.batch([
        *_events([ID, small], [{"id": 3, "n": 3}], 20),
        *_events([ID, small, late], [{"id": 4, "n": 4, "late": None}, {"id": 5, "n": 5, "late": "x"}], 30)]))
    bq_warehouse.fold(force=True)
    got = [(r["id"], r["n"], r["late"]) for r in rows(bq_warehouse, "evolving", "id")]
    assert got == [(1, 1, "it's late"), (2, 2, "it's late"), (3, 3, "it's late"), (4, 4, None), (5, 5, "x")]


def test_first_fold_spanning_an_added_column_with_default(bq_warehouse: BigQueryWarehouse) -> None:
    """As tests/cdc/test_column_types.py::test_first_landing_spanning_an_added_column_with_default on DuckDB: the
    first fold holds events from before and after the column was added; the older rows read the default."""
    from tests.cdc.test_column_types import ID, _events

    late = {"type": "string", "optional": True, "default": "it's late", "field": "late"}
    bq_warehouse.land(Feed("evolving", "tc4a.public.evolving").batch([
        *_events([ID], [{"id": 1}, {"id": 2}], 10),
        *_events([ID, late], [{"id": 3, "late": None}, {"id": 4, "late": "x"}], 20)]))
    bq_warehouse.fold(force=True)
    got = [(r["id"], r["late"]) for r in rows(bq_warehouse, "evolving", "id")]
    assert got == [(1, "it's late"), (2, "it's late"), (3, None), (4, "x")]


# --- the lake's partitions (web tables), as on DuckDB (tests/web/test_lake_load.py) ----------------------


def test_lake_partitions_swap_in_as_on_duckdb(bq_warehouse: BigQueryWarehouse, tmp_path) -> None:
    """Each date's Parquet files through a load job into staging, then the same DELETE + INSERT script;
    local files on the emulator (load_table_from_file), gs:// URIs in prod."""
    from corisync_assets.web.tables import WEB_EVENTS
    from tests.web.lake_scenario import D1, D2, D3, EXPECTED_FIRST, EXPECTED_SECOND, files, first_lake, second_lake

    def got() -> set:
        return {(r["event_id"], r["event_date"]) for r in rows(bq_warehouse, "web_events", "event_id")}

    lake = tmp_path / "lake"
    first_lake(lake)
    assert bq_warehouse.replace_partitions({WEB_EVENTS: files(lake, WEB_EVENTS, [D1, D2])}) == {"web_events": 5}
    assert got() == EXPECTED_FIRST
    bq_warehouse.replace_partitions({WEB_EVENTS: files(lake, WEB_EVENTS, [D1, D2])})
    assert got() == EXPECTED_FIRST
    second_lake(lake)
    assert bq_warehouse.replace_partitions({WEB_EVENTS: files(lake, WEB_EVENTS, [D1, D2, D3])}) == {
        "web_events": 5}
    assert got() == EXPECTED_SECOND


def test_a_finished_resnapshot_drops_rows_older_than_its_request_as_on_duckdb(bq_warehouse, tmp_path) -> None:
    """A re-read's end marker (``ChangeBatch.snapshot_ends``: the request's WAL position) removes current-state
    rows whose last event is older (their deletes were lost); re-read rows (incremental reads: a higher LSN)
    and later changes stay; the changelog keeps everything. Same batches into DuckDB for the reference."""
    from tests.cdc.test_column_types import ID, _events

    n = {"type": "int32", "optional": True, "field": "n"}
    duck = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    feeds = {bq_warehouse: Feed("resnap", "tc4a.public.resnap"), duck: Feed("resnap", "tc4a.public.resnap")}
    before = [{"id": i, "n": i} for i in (1, 2, 3, 4)]  # 3 and 4 get deleted while the deletes are lost
    reread = [{"id": 1, "n": 1}, {"id": 2, "n": 20}]  # the re-read, after the request at LSN 50
    for wh, feed in feeds.items():
        wh.land(feed.batch(_events([ID, n], before, 10)))
        end = feed.batch(_events([ID, n], reread, 60))
        end.snapshot_ends.append(50)
        wh.land(end)
        empty = feed.batch([])  # a marker may also come alone (an empty table, or nothing new)
        empty.snapshot_ends.append(50)
        wh.land(empty)
        wh.fold(force=True)
    got = [(r["id"], r["n"]) for r in rows(bq_warehouse, "resnap", "id")]
    assert got == [(1, 1), (2, 20)] == [(r["id"], r["n"]) for r in duck_rows(duck, "resnap", "id")]
    assert bq_warehouse.row_count("resnap__changelog") == len(before) + len(reread) == duck.row_count(
        "resnap__changelog")


def test_infinities_nan_and_money(bq_warehouse: BigQueryWarehouse) -> None:
    """Postgres' +/-infinity (dates and timestamps as Debezium encodes them: wrapped epoch days, PgJDBC's
    constants, the text 'infinity') land as the ends of BigQuery's ranges (GoogleSQL has no infinity; DuckDB
    keeps infinity, tests/cdc/test_raw_cdc_e2e.py); unconstrained numeric NaN as Postgres' text 'NaN', a NaN in
    a numeric(p,s) as NULL; money as NUMERIC(19, 2). Wire values as the real connector sent them in that test."""
    from datetime import date
    from decimal import Decimal

    from tests.cdc.test_column_types import ID, _events

    fields = [
        ID,
        {"type": "int32", "optional": True, "name": "io.debezium.time.Date", "version": 1, "field": "d"},
        {"type": "int64", "optional": True, "name": "io.debezium.time.MicroTimestamp", "version": 1, "field": "ts"},
        {"type": "string", "optional": True, "name": "io.debezium.time.ZonedTimestamp", "version": 1, "field": "tz"},
        {"type": "string", "optional": True, "field": "nu",
         "parameters": {"__debezium.source.column.type": "NUMERIC", "__debezium.source.column.length": "131089"}},
        {"type": "string", "optional": True, "field": "m", "parameters": {"__debezium.source.column.type": "MONEY"}},
        {"type": "string", "optional": True, "field": "fx", "parameters": {
            "__debezium.source.column.type": "NUMERIC", "__debezium.source.column.length": "6",
            "__debezium.source.column.scale": "2"}},
        {"type": "int64", "optional": True, "name": "io.debezium.time.NanoTimestamp", "version": 1, "field": "tsn"},
    ]
    wire = [{"id": 1, "d": -2147472692, "ts": 9223372036825200000, "tz": "infinity", "nu": "NAN", "m": "12.34",
             "fx": "NAN", "tsn": 2**63 - 1},
            {"id": 2, "d": -2147472691, "ts": -9223372036832400000, "tz": "-infinity", "nu": "1.5", "m": "-1.50",
             "fx": "12.50", "tsn": -2**63},
            {"id": 3, "d": -719162, "ts": 0, "tz": "2024-03-31T01:30:00.000000Z", "nu": None, "m": None, "fx": None,
             "tsn": 1_000}]
    bq_warehouse.land(Feed("infinities", "tc4a.public.infinities").batch(_events(fields, wire, 10)))
    bq_warehouse.fold(force=True)
    got = [(r["d"], r["ts"], r["tz"], r["nu"], r["m"], r["fx"], r["tsn"])
           for r in rows(bq_warehouse, "infinities", "id")]
    utc = datetime.fromisoformat("2024-03-31T01:30:00+00:00")
    # numeric(6,2) NaN: NULL (a NUMERIC has no NaN); infinity as nanoseconds (the ends of a long): as above
    assert got == [
        (date(9999, 12, 31), datetime(9999, 12, 31, 23, 59, 59, 999999),
         datetime.fromisoformat("9999-12-31T23:59:59.999999+00:00"), "NaN", Decimal("12.34"), None,
         datetime(9999, 12, 31, 23, 59, 59, 999999)),
        (date(1, 1, 1), datetime(1, 1, 1), datetime.fromisoformat("0001-01-01T00:00:00+00:00"), "1.5",
         Decimal("-1.50"), Decimal("12.50"), datetime(1, 1, 1)),
        (date(1, 1, 1), datetime(1970, 1, 1), utc, None, None, None, datetime(1970, 1, 1, 0, 0, 0, 1))]


def test_dates_and_timestamps_outside_years_1_to_9999_land_as_null(bq_warehouse: BigQueryWarehouse) -> None:
    """GoogleSQL's DATE, DATETIME and TIMESTAMP hold years 0001..9999; Postgres reaches 4713 BC and 5874897 AD.
    Beyond, a value lands as NULL rather than failing the fold of every table (real BigQuery rejects it; the
    emulator has no such limit, so without the rule these rows would read as far dates). The ends themselves
    land as they are (the last microsecond of 9999 excepted for the DATETIME: the emulator computes
    TIMESTAMP_MICROS through a double and reads it as 10000-01-01). Wire values as the real connector sends
    them (tests/cdc/test_column_types.py)."""
    from datetime import date

    from tests.cdc.test_column_types import FAR_FIELDS, FAR_ROWS, _events

    ends = [{"id": 10, "d": 2_932_896, "ts": 253_402_300_799_000_000, "tz": "9999-12-31T23:59:59.999999Z"},
            {"id": 11, "d": -719_162, "ts": -62_135_596_800_000_000, "tz": "0001-01-01T00:00:00.000000Z"}]
    bq_warehouse.land(Feed("far", "tc4a.public.far").batch(_events(FAR_FIELDS, [*FAR_ROWS, *ends], 10)))
    bq_warehouse.fold(force=True)
    got = [(r["id"], r["d"], r["ts"], r["tz"]) for r in rows(bq_warehouse, "far", "id")]
    assert got == [*((r["id"], None, None, None) for r in FAR_ROWS),
                   (10, date(9999, 12, 31), datetime(9999, 12, 31, 23, 59, 59),
                    datetime.fromisoformat("9999-12-31T23:59:59.999999+00:00")),
                   (11, date(1, 1, 1), datetime(1, 1, 1), datetime.fromisoformat("0001-01-01T00:00:00+00:00"))]


def test_intervals_land_as_their_three_fields_as_on_duckdb(bq_warehouse: BigQueryWarehouse) -> None:
    """As tests/cdc/test_column_types.py::test_intervals_land_as_their_three_fields on DuckDB: Debezium's interval
    text folds into an INTERVAL column with Postgres' months, days and microseconds kept apart (read through the
    reconciliation's canonical text, checked against the same hand-worked fields). The sample at the ends of
    Postgres' range is left out: it lies beyond GoogleSQL's (+/-10000 years; the emulator has no such limit)."""
    from tests.cdc.test_column_types import INTERVALS, interval_events

    inside = {text: fields for text, fields in INTERVALS.items() if abs(fields[0]) <= 120_000}
    assert len(inside) == len(INTERVALS) - 1
    bq_warehouse.land(Feed("intervals", "tc4a.public.intervals").batch(interval_events(inside)))
    bq_warehouse.fold(force=True)
    table = bq_warehouse.client().get_table(bq_warehouse._ref("intervals"))
    assert {f.name: f.field_type for f in table.schema}["iv"] == "INTERVAL"
    got = [r[0] for r in bq_warehouse._query(
        f"SELECT {canonical.interval_text(canonical.BIGQUERY, 'iv')} FROM {bq_warehouse._sql_ref('intervals')} "
        "ORDER BY id")]
    assert got == ["|".join(map(str, fields)) for fields in inside.values()] + [None]


def test_dropped_and_renamed_columns_as_on_duckdb(bq_warehouse: BigQueryWarehouse, tmp_path) -> None:
    """As through the real connector on DuckDB (test_column_types_through_the_real_connector): after a DROP
    COLUMN the warehouse keeps the column, NULL for rows changed since; a RENAME is a drop plus an add (the new
    column holds values from the rename on). Same batches into DuckDB for the reference."""
    from tests.cdc.test_column_types import ID, _events

    old = {"type": "string", "optional": True, "field": "old_name"}
    gone = {"type": "string", "optional": True, "field": "gone"}
    new = {"type": "string", "optional": True, "field": "new_name"}
    duck = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    for wh in (bq_warehouse, duck):
        feed = Feed("renames", "tc4a.public.renames")
        wh.land(feed.batch(_events([ID, old, gone], [{"id": 1, "old_name": "a", "gone": "x"},
                                                     {"id": 2, "old_name": "b", "gone": "y"}], 10)))
        wh.fold(force=True)
        wh.land(feed.batch(_events([ID, new], [{"id": 2, "new_name": "b2"}, {"id": 3, "new_name": "c"}], 20)))
        wh.fold(force=True)
    expected = [(1, "a", "x", None), (2, None, None, "b2"), (3, None, None, "c")]
    assert [(r["id"], r["old_name"], r["gone"], r["new_name"]) for r in rows(bq_warehouse, "renames", "id")] \
        == expected == [(r["id"], r["old_name"], r["gone"], r["new_name"]) for r in duck_rows(duck, "renames", "id")]
