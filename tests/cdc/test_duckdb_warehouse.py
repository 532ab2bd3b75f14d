"""DuckDB landing semantics on real DuckDB files (no broker): upserts, idempotence, truncate, snapshots."""

import json
from decimal import Decimal

import duckdb
import pytest

from corisync_assets.cdc.envelope import Decoder
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
from tests.support.debezium_events import change_stream, course_row, envelope, expected_state


def batch_of(messages, start_offset=0, partition=0):
    d = Decoder("courses")
    for i, (key, value) in enumerate(messages):
        d.add("tc4a.public.courses", partition, start_offset + i, key, value)
    return d.batch


@pytest.fixture
def wh(tmp_path):
    return DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))


def current(wh, order="course_id"):
    with wh.connect(read_only=True) as con:
        cur = con.execute(f"SELECT * FROM raw_cdc.courses ORDER BY {order}")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def test_current_state_matches_replay_and_changelog_has_every_change(wh):
    messages = list(change_stream(3000, ids=400))
    result = wh.land(batch_of(messages))
    assert result.new_events == 3000 and result.duplicates == 0
    expected = expected_state(3000, ids=400)
    rows = current(wh)
    assert [r["course_id"] for r in rows] == sorted(expected)
    for r in rows:
        e = expected[r["course_id"]]
        assert r["price"] == Decimal(e["price"])
        assert r["title"] == e["title"] and r["description"] == e["description"]
        assert json.loads(r["tags"]) == json.loads(e["tags"])
        assert r["seats"] == e["seats"]
        assert r["created_at"].isoformat().replace("+00:00", "Z").startswith(e["created_at"][:19])
    assert wh.row_count("courses__changelog") == 3000


def test_landing_twice_changes_nothing(wh):
    messages = list(change_stream(500, ids=50))
    wh.land(batch_of(messages))
    before = current(wh)
    again = wh.land(batch_of(messages, start_offset=10_000))  # same events, other offsets (restarted broker)
    assert again.new_events == 0 and again.duplicates == 500
    assert wh.row_count("courses__changelog") == 500
    assert [(r["course_id"], r["_cdc_lsn"]) for r in current(wh)] == [(r["course_id"], r["_cdc_lsn"]) for r in before]


def test_batches_split_anywhere_give_the_same_state(tmp_path):
    messages = list(change_stream(1000, ids=80))
    whole = DuckDBWarehouse(path=str(tmp_path / "a.duckdb"))
    whole.land(batch_of(messages))
    split = DuckDBWarehouse(path=str(tmp_path / "b.duckdb"))
    for i in range(0, len(messages), 137):
        split.land(batch_of(messages[i:i + 137], start_offset=i))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "_cdc_landed_at"} for r in rows]  # noqa: E731
    assert strip(current(whole)) == strip(current(split))


def test_truncate_clears_then_later_events_apply(wh):
    k1, v1 = envelope("c", 1, None, course_row(1), lsn=10, txid=1, ts_ms=1)
    k2, v2 = envelope("c", 2, None, course_row(2), lsn=20, txid=2, ts_ms=2)
    _, vt = envelope("t", None, None, None, lsn=30, txid=3, ts_ms=3)
    k3, v3 = envelope("c", 3, None, course_row(3), lsn=40, txid=4, ts_ms=4)
    wh.land(batch_of([(k1, v1)]))
    wh.land(batch_of([(k2, v2), (None, vt), (k3, v3)], start_offset=1))
    assert [r["course_id"] for r in current(wh)] == [3]
    with wh.connect(read_only=True) as con:
        ops = con.execute("SELECT op FROM raw_cdc.courses__changelog ORDER BY kafka_offset").fetchall()
    assert [o for (o,) in ops] == ["c", "c", "t", "c"]


def test_finished_snapshot_removes_rows_deleted_while_events_were_lost(wh):
    rows = {i: course_row(i) for i in (1, 2, 3)}
    wh.land(batch_of([envelope("c", i, None, r, lsn=100 + i, txid=i, ts_ms=i) for i, r in rows.items()]))
    # row 2 was deleted, but its delete event was on a broker that lost its log: a re-snapshot at LSN 500
    snap = [envelope("r", 1, None, rows[1], lsn=500, txid=9, ts_ms=9, snapshot="first"),
            envelope("r", 3, None, rows[3], lsn=500, txid=9, ts_ms=9, snapshot="last")]
    wh.land(batch_of(snap, start_offset=0))
    assert [r["course_id"] for r in current(wh)] == [1, 3]


def test_dead_letters_land_once(wh):
    good = envelope("c", 1, None, course_row(1), lsn=10, txid=1, ts_ms=1)
    batch = batch_of([(b"k", b"garbage"), good])
    assert wh.land(batch).dead_letters == 1
    assert wh.land(batch_of([(b"k", b"garbage"), good])).dead_letters == 0
    with wh.connect(read_only=True) as con:
        row = con.execute("SELECT source_table, kafka_topic, kafka_partition, kafka_offset, error, value "
                          "FROM raw_cdc._dead_letters").fetchall()
    assert row == [("courses", "tc4a.public.courses", 0, 0, row[0][4], "garbage")]
    assert "not" in row[0][4]
    assert [r["course_id"] for r in current(wh)] == [1]
    assert wh.dead_letter_summary() == {"courses": {row[0][4]: 1}}


def test_no_dead_letters_no_summary(wh):
    assert wh.dead_letter_summary() == {}
    wh.land(batch_of([envelope("c", 1, None, course_row(1), lsn=10, txid=1, ts_ms=1)]))
    assert wh.dead_letter_summary() == {}


def test_new_source_column_is_added(wh):
    from tests.support import debezium_events as ev

    wh.land(batch_of([envelope("c", 1, None, course_row(1), lsn=10, txid=1, ts_ms=1)]))
    extra = {"type": "string", "optional": True, "field": "language"}
    schema = ev.value_schema("courses", [*ev.COURSE_FIELDS, extra])
    import orjson

    value = orjson.dumps({"schema": schema, "payload": {
        "before": None, "after": {**course_row(2), "language": "fr"}, "op": "c",
        "source": {"lsn": 20, "txId": 2, "ts_ms": 2, "snapshot": "false"}}})
    wh.land(batch_of([(ev.course_key(2), value)], start_offset=1))
    rows = current(wh)
    assert [(r["course_id"], r["language"]) for r in rows] == [(1, None), (2, "fr")]


def test_failed_landing_leaves_nothing_half_written(wh, monkeypatch):
    wh.land(batch_of([envelope("c", 1, None, course_row(1), lsn=10, txid=1, ts_ms=1)]))
    bad = course_row(2)
    bad["price"] = "not a number"
    with pytest.raises(duckdb.Error):
        wh.land(batch_of([envelope("c", 2, None, bad, lsn=20, txid=2, ts_ms=2)], start_offset=1))
    assert wh.row_count("courses__changelog") == 1
    assert [r["course_id"] for r in current(wh)] == [1]


def test_one_transaction_over_several_writes_is_all_or_nothing_and_lands_as_each_alone(wh, tmp_path):
    """A run's writes share one transaction (``land_all(..., commit=False)``): another connection sees none of
    them before the last write commits; then the state is the plain-Python replay. Debezium re-emitted
    changes 200-273 after the second write (a restart before its offset flush): one write holds only
    changes already landed, the next one some of them and new ones; each change lands once."""
    messages = list(change_stream(1000, ids=80))
    expected = expected_state(1000, ids=80)
    stream = messages[:274] + messages[200:274] + messages[274:]  # as the topic holds them
    chunks = [(i, stream[i:i + 37 if i == 274 else i + 137]) for i in (0, 137, 274, 311)]
    chunks += [(i, stream[i:i + 137]) for i in range(448, len(stream), 137)]
    assert [m for _, c in chunks for m in c] == stream
    with wh.session():
        results = []
        for n, (offset, chunk) in enumerate(chunks):
            results += wh.land_all([batch_of(chunk, start_offset=offset)], commit=n == len(chunks) - 1)
            if n == len(chunks) - 2:  # all but the last written, nothing committed
                with duckdb.connect(wh.path) as other:  # the same database instance, another connection
                    assert other.execute("SELECT count(*) FROM information_schema.tables "
                                         "WHERE table_schema = 'raw_cdc' AND table_name LIKE 'courses%'"
                                         ).fetchone()[0] == 0
    assert sum(r.new_events for r in results) == 1000
    assert sum(r.duplicates for r in results) == len(batch_of(messages[200:274]))  # events, not tombstones
    assert wh.row_count("courses__changelog") == 1000
    rows = current(wh)
    assert [r["course_id"] for r in rows] == sorted(expected)
    assert all(r["title"] == expected[r["course_id"]]["title"] for r in rows)


def test_a_failed_write_rolls_back_the_whole_open_transaction(wh):
    wh.land(batch_of([envelope("c", 1, None, course_row(1), lsn=10, txid=1, ts_ms=1)]))
    good = batch_of([envelope("c", 2, None, course_row(2), lsn=20, txid=2, ts_ms=2)], start_offset=1)
    bad_row = course_row(3)
    bad_row["price"] = "not a number"
    bad = batch_of([envelope("c", 3, None, bad_row, lsn=30, txid=3, ts_ms=3)], start_offset=2)
    with wh.session():
        wh.land_all([good], commit=False)
        wh.land_all([bad], commit=False)
        with pytest.raises(duckdb.Error):  # the bad price fails its cast when the transaction's rows are folded
            wh.land_all([], commit=True)
        assert wh.row_count("courses__changelog") == 1  # neither the good event nor the bad one
        # the next write starts a new transaction: the rolled-back event lands again
        wh.land_all([batch_of([envelope("c", 2, None, course_row(2), lsn=20, txid=2, ts_ms=2)], start_offset=1)])
    assert wh.row_count("courses__changelog") == 2
    assert [r["course_id"] for r in current(wh)] == [1, 2]


def test_a_column_added_inside_one_transaction_gives_earlier_rows_its_default(wh):
    """Rows of the same transaction landed before the schema change take the new column's default, as
    Postgres gives it to existing rows (and as landing each write alone does)."""
    import orjson

    from tests.support import debezium_events as ev

    extra = {"type": "string", "optional": True, "field": "language", "default": "en"}
    schema = ev.value_schema("courses", [*ev.COURSE_FIELDS, extra])
    value = orjson.dumps({"schema": schema, "payload": {
        "before": None, "after": {**course_row(2), "language": "fr"}, "op": "c",
        "source": {"lsn": 20, "txId": 2, "ts_ms": 2, "snapshot": "false"}}})
    with wh.session():
        wh.land_all([batch_of([envelope("c", 1, None, course_row(1), lsn=10, txid=1, ts_ms=1)])], commit=False)
        wh.land_all([batch_of([(ev.course_key(2), value)], start_offset=1)])
    assert [(r["course_id"], r["language"]) for r in current(wh)] == [(1, "en"), (2, "fr")]


def test_an_open_transaction_needs_a_session(wh):
    with pytest.raises(ValueError, match="session"):
        wh.land_all([batch_of([envelope("c", 1, None, course_row(1), lsn=10, txid=1, ts_ms=1)])], commit=False)
