"""The web analytics event contract, version 1: the typed model and the Kafka value the collector writes.

``web_event.schema.json`` (next to this module) is the published contract (JSON Schema draft 2020-12);
``WebEvent`` is the same contract as a pydantic v2 model, and tests/web/test_contract.py checks that both
accept and reject the same samples. Two limits JSON Schema cannot express are custom keywords in the file
(``x-corisync-max-serialized-bytes``: 32 KiB per event, 8 KiB for ``properties``, measured as compact
UTF-8 JSON); ``validate_event`` enforces them. The schema's ``format`` keywords (uuid, date-time) must be
asserted, not just annotated, for the file to reject what the model rejects: a calendar-impossible date
such as 2026-02-30 matches the schema's ``pattern`` and is rejected only by a date-time format check.

Limitations: a client's ``occurred_at`` is kept to the microsecond (extra digits are cut, not rounded);
``received_at`` sent by a client is accepted (string or null) and always replaced by the collector's time.
Integral floats (``7.0``) count as integers, as in JSON Schema, and are written as integers.

The Kafka value (``to_kafka_value``), read downstream by Spark, is a UTF-8 JSON object with every field of
``KAFKA_VALUE_FIELDS`` in that order: the contract's fields (absent optional ones as null, ``properties``
an object), both timestamps in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, ``event_id`` in lower case, and
``source``, the name of the write key's source. The Kafka key is ``anonymous_id`` (UTF-8).
"""

import json
import re
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

SCHEMA_PATH = Path(__file__).with_name("web_event.schema.json")
SCHEMA_VERSION = 1
EVENT_TYPES = ("page_view", "course_page_view", "video_progress", "quiz_submission", "search", "login")
MAX_EVENT_BYTES = 32 * 1024
MAX_PROPERTIES_BYTES = 8 * 1024
MAX_ID = 2**63 - 1  # user_id/course_id are Kafka/Spark longs downstream

#: Fields of the Kafka value, in the order they are written.
KAFKA_VALUE_FIELDS = ("event_id", "event_type", "schema_version", "anonymous_id", "user_id", "session_id",
                      "occurred_at", "received_at", "page_url", "page_path", "referrer", "user_agent",
                      "course_id", "properties", "source")

_RFC3339 = re.compile(
    r"(19[7-9][0-9]|20[0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:"
    r"[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
)
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class ContractError(ValueError):
    """An event breaks the contract; ``reason`` is one line (client text in it is repr-escaped)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@cache
def load_schema() -> dict[str, Any]:
    """The JSON Schema file as a dict."""
    return json.loads(SCHEMA_PATH.read_text())


def _integral(value: Any) -> Any:
    """JSON Schema's integer: 3 and 3.0 are integers, true is not."""
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string")
    if not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with offset, e.g. 2026-11-27T08:00:00.000+01:00")
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError:
        raise ValueError("is not a valid calendar date-time") from None


def _properties_size(value: dict[str, Any]) -> dict[str, Any]:
    size = len(orjson.dumps(value))
    if size > MAX_PROPERTIES_BYTES:
        raise ValueError(f"is {size} bytes serialized, over the {MAX_PROPERTIES_BYTES}-byte limit")
    return value


def _schema_version(value: Any) -> Any:
    value = _integral(value)
    if isinstance(value, int) and value != SCHEMA_VERSION:
        raise ValueError(f"unknown schema_version {value}")
    return value


JsonId = Annotated[int, BeforeValidator(_integral), Field(ge=1, le=MAX_ID)]
Timestamp = Annotated[datetime, BeforeValidator(_parse_timestamp)]


class WebEvent(BaseModel):
    """One web event (schema_version 1); field for field the JSON Schema file."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    event_id: Annotated[str, Field(pattern=_UUID), AfterValidator(str.lower)]
    event_type: Literal["page_view", "course_page_view", "video_progress", "quiz_submission", "search", "login"]
    schema_version: Annotated[Literal[1], BeforeValidator(_schema_version)]
    anonymous_id: Annotated[str, Field(min_length=1, max_length=64)]
    user_id: JsonId | None = None
    session_id: Annotated[str, Field(max_length=64)] | None = None
    occurred_at: Timestamp
    received_at: Annotated[str, Field(max_length=64)] | None = None  # ignored: the collector sets it
    page_url: Annotated[str, Field(max_length=2048)]
    page_path: Annotated[str, Field(max_length=1024, pattern=r"^/")]
    referrer: Annotated[str, Field(max_length=2048)] | None = None
    user_agent: Annotated[str, Field(max_length=512)] | None = None
    course_id: JsonId | None = None
    properties: Annotated[dict[str, Any], AfterValidator(_properties_size)] = Field(default_factory=dict)


def _short(text: str, limit: int = 64) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _reason(exc: ValidationError) -> str:
    """One line for the first few errors; client-controlled text (unknown field names) is repr-escaped."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"])
        kind, msg = err["type"], err["msg"].removeprefix("Value error, ")
        if kind == "missing":
            parts.append(f"missing required field {loc!r}")
        elif kind == "extra_forbidden":
            parts.append(f"unknown field {_short(loc)}")
        elif msg.startswith("unknown schema_version"):
            parts.append(msg)
        elif loc == "event_type" and kind == "literal_error":
            parts.append(f"event_type: unknown event type (expected one of {', '.join(EVENT_TYPES)})")
        else:
            if loc.startswith("properties."):  # a key inside properties is client text
                loc = "properties." + _short(loc.removeprefix("properties."))
            parts.append(f"{loc}: {msg}")
    more = len(exc.errors()) - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def validate_event(obj: Any) -> WebEvent:
    """A parsed JSON value -> ``WebEvent``, or ``ContractError`` with one reason.

    A known-unknown ``schema_version`` is reported alone (the other fields may follow another version)."""
    if not isinstance(obj, dict):
        raise ContractError(f"event must be a JSON object, not {_json_type(obj)}")
    try:
        size = len(orjson.dumps(obj))
    except TypeError:  # orjson.JSONEncodeError: only a Python caller can pass such a value
        raise ContractError("event is not JSON-serializable") from None
    if size > MAX_EVENT_BYTES:
        raise ContractError(f"event is {size} bytes serialized, over the {MAX_EVENT_BYTES}-byte limit")
    version = obj.get("schema_version")
    if (isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION) or (
            isinstance(version, float) and version.is_integer() and version != SCHEMA_VERSION):
        shown = int(version) if abs(version) < 1e15 else version
        raise ContractError(f"unknown schema_version {shown}")
    try:
        return WebEvent.model_validate(obj)
    except ValidationError as exc:
        raise ContractError(_reason(exc)) from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


def format_timestamp(dt: datetime) -> str:
    """UTC, microseconds, ``Z``: ``2026-11-27T08:00:00.000000Z`` (naive datetimes are taken as UTC)."""
    if dt.tzinfo is None:
        return dt.isoformat(timespec="microseconds") + "Z"
    return dt.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"  # cut "+00:00"


def kafka_value_dict(event: WebEvent, source: str, received_at: datetime | str) -> dict[str, Any]:
    """The Kafka value as a dict (see ``to_kafka_value``)."""
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "anonymous_id": event.anonymous_id,
        "user_id": event.user_id,
        "session_id": event.session_id,
        "occurred_at": format_timestamp(event.occurred_at),
        "received_at": received_at if isinstance(received_at, str) else format_timestamp(received_at),
        "page_url": event.page_url,
        "page_path": event.page_path,
        "referrer": event.referrer,
        "user_agent": event.user_agent,
        "course_id": event.course_id,
        "properties": event.properties,
        "source": source,
    }


def to_kafka_value(event: WebEvent, source: str, received_at: datetime | str) -> bytes:
    """The value the collector produces to ``web.events`` for a valid event.

    ``received_at``: the collector's receive time (a datetime, or a string already made by
    ``format_timestamp``, which the collector computes once per batch)."""
    return orjson.dumps(kafka_value_dict(event, source, received_at))


def kafka_key(event: WebEvent) -> bytes:
    return event.anonymous_id.encode()


# --- the collector's hot path -------------------------------------------------------------------------------

_FIELDS = frozenset(WebEvent.model_fields)
_TYPES = frozenset(EVENT_TYPES)
_UUID_LOWER = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch
_TS_COMMON = re.compile(
    r"(19[7-9][0-9]|20[0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:"
    r"[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
).fullmatch
_FAST_MAX_VALUE = MAX_PROPERTIES_BYTES  # a value this small proves both size limits (see _fast_record)


def _opt_str(value: Any, limit: int) -> bool:
    return value is None or (type(value) is str and len(value) <= limit)


def _opt_id(value: Any) -> bool:
    return value is None or (type(value) is int and 1 <= value <= MAX_ID)


def _fast_record(obj: Any, source: str, received_at: str) -> tuple[bytes, bytes] | None:
    """(key, value) for the common shape of a valid event, or None: then ``validate_event`` decides.

    Only ever accepts what ``WebEvent`` accepts, and writes the same value (tests/web/test_contract.py checks
    both on generated samples): exact types, lower-case event_id, ``T``/``Z`` upper case, at most 6
    fractional digits, no integral floats. A value of at most 8 KiB proves both size limits: it holds
    ``properties`` verbatim, and every other field of the event in at most its original size (+ ~100 bytes
    for a client's ``received_at``, which the value replaces)."""
    if type(obj) is not dict or not _FIELDS.issuperset(obj):
        return None
    get = obj.get
    event_id, event_type, anonymous_id, occurred_at = (get("event_id"), get("event_type"), get("anonymous_id"),
                                                      get("occurred_at"))
    page_url, page_path, properties = get("page_url"), get("page_path"), get("properties", _MISSING)
    version = get("schema_version")
    if not (type(event_id) is str and _UUID_LOWER(event_id) and type(event_type) is str and event_type in _TYPES
            and type(version) is int and version == SCHEMA_VERSION
            and type(anonymous_id) is str and 0 < len(anonymous_id) <= 64
            and type(occurred_at) is str and _TS_COMMON(occurred_at)
            and type(page_url) is str and len(page_url) <= 2048
            and type(page_path) is str and len(page_path) <= 1024 and page_path.startswith("/")):
        return None
    user_id, session_id, referrer = get("user_id"), get("session_id"), get("referrer")
    user_agent, course_id = get("user_agent"), get("course_id")
    if not (_opt_id(user_id) and _opt_id(course_id) and _opt_str(session_id, 64) and _opt_str(referrer, 2048)
            and _opt_str(user_agent, 512) and _opt_str(get("received_at"), 64)):
        return None
    if properties is _MISSING:
        properties = {}
    elif type(properties) is not dict:
        return None
    try:
        occurred = datetime.fromisoformat(occurred_at)  # also the calendar check (2026-02-30 raises)
        if occurred_at[-1] == "Z":  # already UTC (JavaScript's toISOString): pad the fraction
            occurred_at = occurred_at[:19] + "." + (occurred_at[20:-1] + "000000")[:6] + "Z"
        else:
            occurred_at = format_timestamp(occurred)
        value = orjson.dumps({
            "event_id": event_id, "event_type": event_type, "schema_version": version,
            "anonymous_id": anonymous_id, "user_id": user_id, "session_id": session_id,
            "occurred_at": occurred_at, "received_at": received_at, "page_url": page_url,
            "page_path": page_path, "referrer": referrer, "user_agent": user_agent, "course_id": course_id,
            "properties": properties, "source": source,
        })
    except (ValueError, TypeError):  # impossible calendar date, a value orjson cannot write
        return None
    if len(value) > _FAST_MAX_VALUE:
        return None
    return anonymous_id.encode(), value


_MISSING = object()


def encode_event(obj: Any, source: str, received_at: str) -> tuple[bytes, bytes]:
    """A parsed event -> its Kafka (key, value); ContractError if it breaks the contract.

    ``received_at`` as made by ``format_timestamp``. The same result as ``validate_event`` +
    ``to_kafka_value``, a few times faster for the usual event."""
    record = _fast_record(obj, source, received_at)
    if record is not None:
        return record
    event = validate_event(obj)
    return kafka_key(event), to_kafka_value(event, source, received_at)
