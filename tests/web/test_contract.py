"""The event contract: the JSON Schema file and the pydantic model accept and reject the same events, and
the Kafka value is exactly what downstream reads. No stack needed.

The schema side is ``jsonschema`` on the file with format assertion (its own uuid check; an RFC 3339
date-time check written here, since rfc3339-validator is not installed) plus the file's
``x-corisync-max-serialized-bytes`` limits measured with the standard library's json.
"""

import calendar
import json
import random
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import get_args

import jsonschema
import pytest

from corisync_assets.web import contract
from corisync_assets.web.contract import (
    KAFKA_VALUE_FIELDS,
    SCHEMA_PATH,
    ContractError,
    WebEvent,
    encode_event,
    to_kafka_value,
    validate_event,
)

SCHEMA = json.loads(SCHEMA_PATH.read_text())
SIZE_KEY = "x-corisync-max-serialized-bytes"
_DATE_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))")


def _date_time(value: object) -> bool:
    """RFC 3339 section 5.6 date-time, calendar-checked; leap seconds are not accepted (see the schema)."""
    if not isinstance(value, str):
        return True
    m = _DATE_TIME.fullmatch(value)
    if not m:
        return False
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return False
    if m.group(9) is not None and not (int(m.group(9)) <= 23 and int(m.group(10)) <= 59):
        return False
    return hour <= 23 and minute <= 59 and second <= 59


FORMATS = jsonschema.FormatChecker(formats=["uuid"])
FORMATS.checks("date-time")(_date_time)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=FORMATS)


def _size(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def schema_accepts(event: object) -> bool:
    if not VALIDATOR.is_valid(event):
        return False
    if _size(event) > SCHEMA[SIZE_KEY]:
        return False
    props = event.get("properties", {})
    return _size(props) <= SCHEMA["properties"]["properties"][SIZE_KEY]


def model_accepts(event: object) -> bool:
    try:
        validate_event(event)
    except ContractError:
        return False
    return True


def valid(**changes) -> dict:
    event = {"event_id": "3f0c7c52-4a43-4e1b-9d64-0d1b2c3a4b5c", "event_type": "course_page_view",
             "schema_version": 1, "anonymous_id": "anon-1", "user_id": 42, "session_id": "s-1",
             "occurred_at": "2026-11-27T09:00:00.123+01:00", "received_at": None,
             "page_url": "https://tc4a.example/courses/7", "page_path": "/courses/7",
             "referrer": "https://www.google.com/", "user_agent": "Mozilla/5.0", "course_id": 7,
             "properties": {"title": "SQL", "nested": {"a": [1, 2.5, None, True]}}}
    event.update(changes)
    return event


def without(*fields: str) -> dict:
    event = valid()
    for f in fields:
        del event[f]
    return event


ACCEPTED = {
    "all fields": valid(),
    "required only": without("user_id", "session_id", "received_at", "referrer", "user_agent", "course_id",
                             "properties"),
    "nulls": valid(user_id=None, session_id=None, referrer=None, user_agent=None, course_id=None),
    "upper-case uuid": valid(event_id="3F0C7C52-4A43-4E1B-9D64-0D1B2C3A4B5C"),
    "Z": valid(occurred_at="2026-11-27T08:00:00Z"),
    "lower-case t and z": valid(occurred_at="2026-11-27t08:00:00.5z"),
    "negative offset, 9 digits": valid(occurred_at="2026-11-27T03:00:00.123456789-05:00"),
    "leap day": valid(occurred_at="2028-02-29T00:00:00Z"),
    "integral float id": valid(course_id=7.0, user_id=42.0),
    "integral float version": valid(schema_version=1.0),
    "client received_at": valid(received_at="2026-01-01T00:00:00Z"),
    "any received_at text": valid(received_at="yesterday"),
    "64 code points": valid(anonymous_id="é" * 64, session_id="ß" * 64),
    "root path": valid(page_path="/"),
    "long fields at limit": valid(page_url="u" * 2048, page_path="/" + "p" * 1023, referrer="r" * 2048,
                                  user_agent="a" * 512),
    "empty page_url": valid(page_url=""),
    "properties at 8 KiB": valid(properties={"k": "x" * (8192 - len('{"k":""}'))}),
    "largest id": valid(user_id=2**63 - 1),
    "every event type": valid(event_type="quiz_submission"),
}

REJECTED = {
    **{f"missing {f}": without(f) for f in SCHEMA["required"]},
    "unknown field": valid(utm_source="x"),
    "unknown event type": valid(event_type="add_to_cart"),
    "schema_version 2": valid(schema_version=2),
    "schema_version 0": valid(schema_version=0),
    "schema_version string": valid(schema_version="1"),
    "schema_version bool": valid(schema_version=True),
    "schema_version 1.5": valid(schema_version=1.5),
    "user_id string": valid(user_id="42"),
    "user_id bool": valid(user_id=True),
    "user_id fraction": valid(user_id=4.2),
    "user_id zero": valid(user_id=0),
    "user_id negative": valid(user_id=-3),
    "user_id over int64": valid(user_id=2**63),
    "course_id string": valid(course_id="7"),
    "anonymous_id number": valid(anonymous_id=17),
    "anonymous_id empty": valid(anonymous_id=""),
    "anonymous_id 65": valid(anonymous_id="a" * 65),
    "anonymous_id null": valid(anonymous_id=None),
    "session_id 65": valid(session_id="s" * 65),
    "session_id number": valid(session_id=5),
    "page_url 2049": valid(page_url="u" * 2049),
    "page_url null": valid(page_url=None),
    "page_path relative": valid(page_path="courses/7"),
    "page_path empty": valid(page_path=""),
    "page_path 1025": valid(page_path="/" + "p" * 1024),
    "referrer 2049": valid(referrer="r" * 2049),
    "user_agent 513": valid(user_agent="a" * 513),
    "received_at number": valid(received_at=5),
    "received_at 65": valid(received_at="r" * 65),
    "occurred_at no offset": valid(occurred_at="2026-11-27T09:00:00"),
    "occurred_at date only": valid(occurred_at="2026-11-27"),
    "occurred_at space": valid(occurred_at="2026-11-27 09:00:00Z"),
    "occurred_at feb 30": valid(occurred_at="2026-02-30T09:00:00Z"),
    "occurred_at 29 feb non-leap": valid(occurred_at="2027-02-29T09:00:00Z"),
    "occurred_at hour 24": valid(occurred_at="2026-11-27T24:00:00Z"),
    "occurred_at leap second": valid(occurred_at="2026-12-31T23:59:60Z"),
    "occurred_at offset 25h": valid(occurred_at="2026-11-27T09:00:00+25:00"),
    "occurred_at 1969": valid(occurred_at="1969-12-31T23:59:59Z"),
    "occurred_at 2100": valid(occurred_at="2100-01-01T00:00:00Z"),
    "occurred_at trailing newline": valid(occurred_at="2026-11-27T09:00:00Z\n"),
    "occurred_at epoch number": valid(occurred_at=1795770000),
    "event_id not a uuid": valid(event_id="event-1"),
    "event_id without hyphens": valid(event_id="3f0c7c524a434e1b9d640d1b2c3a4b5c"),
    "event_id braces": valid(event_id="{3f0c7c52-4a43-4e1b-9d64-0d1b2c3a4b5c}"),
    "event_id trailing newline": valid(event_id="3f0c7c52-4a43-4e1b-9d64-0d1b2c3a4b5c\n"),
    "properties list": valid(properties=["a"]),
    "properties null": valid(properties=None),
    "properties over 8 KiB": valid(properties={"k": "x" * 8200}),
    "event over 32 KiB": valid(properties={"k": "x" * 40000}),
    "not an object": ["event"],
    "a string": "event",
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_schema_and_model_accept(name):
    event = ACCEPTED[name]
    assert schema_accepts(event), list(VALIDATOR.iter_errors(event))
    assert model_accepts(event)


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_schema_and_model_reject(name):
    event = REJECTED[name]
    assert not schema_accepts(event)
    with pytest.raises(ContractError) as exc:
        validate_event(event)
    assert exc.value.reason and "\n" not in exc.value.reason


def test_schema_file_is_draft_2020_12_version_1():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"].endswith("/v1.json")
    assert SCHEMA["properties"]["schema_version"]["const"] == 1 == contract.SCHEMA_VERSION
    assert SCHEMA["additionalProperties"] is False


def test_fields_required_fields_and_enum_agree():
    assert set(SCHEMA["properties"]) == set(WebEvent.model_fields)
    required = {name for name, f in WebEvent.model_fields.items() if f.is_required()}
    assert set(SCHEMA["required"]) == required == {"event_id", "event_type", "schema_version", "anonymous_id",
                                                   "occurred_at", "page_url", "page_path"}
    enum = SCHEMA["properties"]["event_type"]["enum"]
    assert enum == list(get_args(WebEvent.model_fields["event_type"].annotation)) == list(contract.EVENT_TYPES)
    assert SCHEMA[SIZE_KEY] == contract.MAX_EVENT_BYTES == 32 * 1024
    assert SCHEMA["properties"]["properties"][SIZE_KEY] == contract.MAX_PROPERTIES_BYTES == 8 * 1024


PROBES = [None, 0, 1, 7, -1, 1.5, 2.0, True, False, "", "x", "/x", "7", "2026-11-27T09:00:00Z", [], {}, ["a"],
          {"a": 1}, "3f0c7c52-4a43-4e1b-9d64-0d1b2c3a4b5c"]


@pytest.mark.parametrize("field", sorted(SCHEMA["properties"]))
def test_types_agree_field_by_field(field):
    """Each field set to each probe value (or removed): the file and the model give the same answer."""
    disagree = []
    for probe in [*PROBES, "absent"]:
        event = without(field) if probe == "absent" else valid(**{field: probe})
        if schema_accepts(event) != model_accepts(event):
            disagree.append((probe, schema_accepts(event)))
    assert disagree == []


def test_unknown_schema_version_is_named():
    for version in (2, 0, 17, 3.0):
        with pytest.raises(ContractError) as exc:
            validate_event(valid(schema_version=version, page_path="no slash"))
        assert exc.value.reason == f"unknown schema_version {int(version)}"


def test_reasons_name_the_field_and_escape_client_text():
    reasons = {}
    for name, event in [("missing", without("anonymous_id")), ("type", valid(user_id="42")),
                        ("enum", valid(event_type="pageview")), ("extra", valid(**{"evil\nkey": 1})),
                        ("size", valid(properties={"k": "x" * 40000}))]:
        with pytest.raises(ContractError) as exc:
            validate_event(event)
        reasons[name] = exc.value.reason
    assert reasons["missing"] == "missing required field 'anonymous_id'"
    assert reasons["type"].startswith("user_id: ")
    assert reasons["enum"].startswith("event_type: unknown event type")
    assert reasons["extra"] == "unknown field 'evil\\nkey'"
    assert "32768-byte limit" in reasons["size"]
    assert not any("\n" in r for r in reasons.values())


def _expected_value(event: dict, source: str, received: datetime) -> dict:
    """The Kafka value, computed here from the spec (not with the module's helpers)."""

    def utc(text: str) -> str:
        dt = datetime.strptime(text.upper(), "%Y-%m-%dT%H:%M:%S.%f%z")
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    out = {f: event.get(f) for f in ("event_id", "event_type", "schema_version", "anonymous_id", "user_id",
                                     "session_id", "page_url", "page_path", "referrer", "user_agent",
                                     "course_id")}
    out["event_id"] = out["event_id"].lower()
    out["occurred_at"] = utc(event["occurred_at"])
    out["received_at"] = received.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out["properties"] = event.get("properties", {})
    out["source"] = source
    return out


def test_kafka_value_is_normalized_json():
    received = datetime(2026, 11, 27, 9, 30, 1, 250, tzinfo=timezone(timedelta(hours=2)))
    for event in (valid(), valid(occurred_at="2026-11-27T03:00:00.5-05:00", event_id=str(uuid.uuid4()).upper()),
                  without("user_id", "session_id", "referrer", "user_agent", "course_id", "properties",
                          "received_at")):
        value = to_kafka_value(validate_event(event), "tc4a-web", received)
        decoded = json.loads(value.decode("utf-8"))
        assert list(decoded) == list(KAFKA_VALUE_FIELDS)
        assert decoded == _expected_value(event, "tc4a-web", received)
    assert json.loads(to_kafka_value(validate_event(valid()), "s", received))["occurred_at"] == \
        "2026-11-27T08:00:00.123000Z"
    assert json.loads(to_kafka_value(validate_event(valid()), "s", received))["received_at"] == \
        "2026-11-27T07:30:01.000250Z"
    # a client's received_at is replaced; integral floats become integers
    sent = valid(received_at="1999-01-01T00:00:00Z", course_id=7.0)
    decoded = json.loads(to_kafka_value(validate_event(sent), "s", received))
    assert decoded["received_at"] == "2026-11-27T07:30:01.000250Z" and decoded["course_id"] == 7
    assert isinstance(decoded["course_id"], int)


def _mutations(rng: random.Random, n: int):
    """Valid-looking events with random small changes, both shapes the fast path takes and ones it leaves."""
    choices = {
        "event_id": [str(uuid.uuid4()), str(uuid.uuid4()).upper(), "nope"],
        "occurred_at": ["2026-11-27T08:00:00Z", "2026-11-27T08:00:00.1Z", "2026-11-27T08:00:00.123456Z",
                        "2026-11-27T08:00:00.1234567Z", "2026-11-27T10:00:00.5+02:00", "2026-11-27t08:00:00z",
                        "2026-02-30T08:00:00Z", "2026-11-27T08:00:00", "2026-11-27T23:30:00-05:00"],
        "user_id": [None, 1, 42, 0, 2**63 - 1, 2**63, 3.0, "42", True],
        "course_id": [None, 7, 7.0, -1],
        "schema_version": [1, 1.0, 2, "1"],
        "event_type": [*contract.EVENT_TYPES, "nope", 3],
        "anonymous_id": ["a", "a" * 64, "a" * 65, "", 5],
        "page_path": ["/", "/x", "x", "/" * 1025],
        "referrer": [None, "r", "r" * 2049],
        "properties": [{}, {"a": 1}, {"k": "x" * 8100}, {"k": "x" * 9000}, [], None],
        "received_at": [None, "2026-01-01T00:00:00Z", 3],
        "session_id": [None, "s", "s" * 65],
    }
    for _ in range(n):
        event = valid(event_id=str(uuid.uuid4()))
        for field in rng.sample(sorted(choices), rng.randint(0, 3)):
            event[field] = rng.choice(choices[field])
        if rng.random() < 0.1:
            del event[rng.choice(sorted(event))]
        yield event


def test_fast_path_matches_the_model():
    """The collector's ``encode_event`` (a fast path for the usual event) = validate_event + to_kafka_value."""
    rng = random.Random(11)
    received = "2026-11-27T09:00:00.000000Z"
    fast_hits = 0
    for event in _mutations(rng, 3000):
        try:
            parsed = validate_event(event)
            slow = (parsed.anonymous_id.encode(), to_kafka_value(parsed, "src", received))
        except ContractError as exc:
            slow = exc.reason
        fast = contract._fast_record(event, "src", received)
        if fast is not None:
            fast_hits += 1
            assert fast == slow, event
        try:
            result = encode_event(event, "src", received)
        except ContractError as exc:
            result = exc.reason
        assert result == slow
    assert fast_hits > 500  # the fast path is really taken for the common shapes
    assert contract._fast_record(valid(event_id=str(uuid.uuid4()), occurred_at="2026-11-27T08:00:00.123Z"),
                                 "src", received) is not None
