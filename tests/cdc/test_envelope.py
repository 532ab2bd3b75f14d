"""Pure decoding of Debezium envelopes (no broker): ops, schema types, dead letters, identity."""

import json
from collections import Counter

import orjson
import pytest

from corisync_assets.cdc.envelope import Decoder, event_id, split_converter_json
from tests.support.debezium_events import COURSES_VALUE_SCHEMA, change_stream, course_key, course_row, envelope


def decode(messages):
    d = Decoder("courses")
    for offset, (key, value) in enumerate(messages):
        d.add("tc4a.public.courses", 0, offset, key, value)
    return d.batch


def test_ops_and_schema_types():
    messages = list(change_stream(40, ids=10))
    batch = decode(messages)
    expected_ops = Counter(json.loads(v)["payload"]["op"] for _, v in messages if v is not None)
    assert batch.ops == expected_ops and set(expected_ops) == {"c", "u", "d"}
    assert batch.tombstones == sum(1 for _, v in messages if v is None) == expected_ops["d"]
    assert not batch.dead_letters
    types = {c.name: (c.logical_type, c.precision, c.scale) for c in batch.schema.columns}
    assert types["price"] == ("decimal", 10, 2)
    assert types["created_at"][0] == "timestamptz"
    assert types["tags"][0] == "json"
    assert types["seats"][0] == "int32"
    assert types["is_published"][0] == "bool"
    assert batch.schema.primary_key == ("course_id",)
    assert len(set(batch.meta["event_id"])) == len(batch)
    assert batch.offsets == {("tc4a.public.courses", 0): (0, len(messages) - 1)}


def test_payload_kept_exact():
    row = course_row(3)
    row["price"] = "12345678.91"
    key, value = envelope("c", 3, None, row, lsn=99, txid=5, ts_ms=1000)
    batch = decode([(key, value)])
    payload = orjson.loads(batch.meta["payload"][0])
    assert payload["after"]["price"] == "12345678.91"  # a string: never through a float
    assert batch.meta["lsn"] == [99] and batch.meta["txid"] == [5] and batch.meta["ts_ms"] == [1000]
    assert orjson.loads(batch.meta["key"][0]) == {"course_id": 3}


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (b"not json at all {", "not JSON"),
        (b'{"before": null, "after": {"course_id": 1}, "op": "c"}', "not a Debezium envelope"),
        (orjson.dumps({"schema": COURSES_VALUE_SCHEMA, "payload": {"op": "x", "source": {"lsn": 1}}}), "unknown op"),
        (orjson.dumps({"schema": COURSES_VALUE_SCHEMA, "payload": {"op": "c", "source": {}}}), "no source.lsn"),
        (orjson.dumps({"schema": COURSES_VALUE_SCHEMA, "payload": {"op": "c", "source": {"lsn": 2}}}), "without an"),
    ],
)
def test_malformed_messages_become_dead_letters(value, error):
    good_key, good_value = envelope("c", 1, None, course_row(1), lsn=10, txid=1, ts_ms=1)
    batch = decode([(course_key(1), value), (good_key, good_value)])
    assert len(batch.dead_letters) == 1
    assert error in batch.dead_letters[0].error
    assert batch.dead_letters[0].offset == 0
    assert len(batch) == 1 and batch.meta["offset"] == [1]  # the event after the poison still decodes


def test_truncate_has_no_key():
    _, value = envelope("t", None, None, None, lsn=500, txid=9, ts_ms=1)
    key, first = envelope("c", 1, None, course_row(1), lsn=400, txid=8, ts_ms=1)
    batch = decode([(key, first), (None, value)])
    assert batch.meta["op"] == ["c", "t"]
    assert batch.meta["key"][1] is None


def test_event_identity_ignores_offsets():
    key, value = envelope("u", 7, course_row(7), course_row(7, 1), lsn=1234, txid=3, ts_ms=1)
    a, b = Decoder("courses"), Decoder("courses")
    a.add("t", 0, 5, key, value)
    b.add("t", 0, 0, key, value)  # same event at another offset (restarted broker)
    assert a.batch.meta["event_id"] == b.batch.meta["event_id"]
    assert event_id(1234, "u", '{"course_id":7}') != event_id(1235, "u", '{"course_id":7}')


def test_split_converter_json():
    schema, payload = split_converter_json(b'{"schema":{"a":1},"payload":{"op":"c"}}')
    assert schema == b'{"a":1}' and payload == b'{"op":"c"}'
    assert split_converter_json(b'{"op":"c"}') == (None, b'{"op":"c"}')


def test_bad_column_identifier_is_a_dead_letter():
    fields = [{"type": "int64", "optional": False, "field": "id; drop table x"}]
    schema = {"type": "struct", "fields": [{"type": "struct", "fields": fields, "field": "after"}]}
    value = orjson.dumps({"schema": schema, "payload": {"op": "c", "after": {"x": 1}, "source": {"lsn": 1}}})
    batch = decode([(course_key(1), value)])
    assert "not a valid SQL identifier" in batch.dead_letters[0].error


def test_the_fast_path_decodes_as_the_full_path():
    """After the first message, messages with the same schemas take the fast path; each decoded alone takes
    the full path. Both give the same rows, NaN counts and dead letters, for odd but valid payloads too."""
    nan = course_row(2)
    nan["price"] = "NAN"  # Debezium's text of a numeric NaN
    banana = course_row(3)
    banana["title"] = "BANANA \\u0041"  # the letters NAN and a backslash-u in a text, not a NaN price
    odd = [
        envelope("c", 1, None, course_row(1), lsn=10, txid=1, ts_ms=1),
        envelope("c", 2, None, nan, lsn=20, txid=2, ts_ms=2),
        envelope("c", 3, None, banana, lsn=30, txid=3, ts_ms=3),
        envelope("d", 1, course_row(1), None, lsn=40, txid=4, ts_ms=4),
        envelope("r", 4, None, course_row(4), lsn=50, txid=5, ts_ms=5, snapshot="last"),
    ]
    # a snapshot flag as a boolean and an LSN as a string (older producers): the full path's reading
    value = orjson.loads(envelope("u", 2, None, course_row(2, 1), lsn=60, txid=6, ts_ms=6)[1])
    value["payload"]["source"].update(snapshot=True, lsn="60")
    odd.append((course_key(2), orjson.dumps(value)))
    # an incremental snapshot read: no LSN, its position in source.sequence
    value = orjson.loads(envelope("r", 5, None, course_row(5), lsn=0, txid=7, ts_ms=7)[1])
    value["payload"]["source"].update(lsn=None, sequence='["100", "70"]')
    odd.append((course_key(5), orjson.dumps(value)))
    odd.append((course_key(6), envelope("c", 6, None, None, lsn=80, txid=8, ts_ms=8)[1]))  # no row: dead letter

    together = decode(odd)
    alone = [decode([m]) for m in odd]
    without_offset = lambda row: row[:8] + row[9:]  # noqa: E731  (alone, every message is at offset 0)
    assert [without_offset(r) for r in together.rows] == [without_offset(r) for b in alone for r in b.rows]
    assert [r[2] for r in together.rows] == [10, 20, 30, 40, 50, 60, 70]  # LSNs
    assert [r[5] for r in together.rows][4:6] == ["last", "True"]  # snapshot flags as the full path reads them
    assert together.nan_decimals == sum((b.nan_decimals for b in alone), Counter()) == Counter(price=1)
    assert [d.error for d in together.dead_letters] == [d.error for b in alone for d in b.dead_letters]
    assert len(together.dead_letters) == 1
