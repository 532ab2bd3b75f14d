"""Decode Debezium change events (JsonConverter with schemas) into columnar batches.

Decoding is pure Python over already-fetched message bytes, so it is unit-testable without a broker and
fast enough for the landing path: orjson parses each message once, the column types come from the
envelope's schema (parsed once per distinct schema, not per message), and values stay in their wire form
(numerics as exact strings, timestamps as ISO strings with zone) until the warehouse casts them in SQL.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

if TYPE_CHECKING:
    import pyarrow as pa

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OPS = {"r", "c", "u", "d", "t"}
RESERVED_PREFIX = "_cdc_"
#: how Debezium's PostgreSQL connector (3.6.3) sends Postgres' +/-infinity: dates as epoch days that overflow
#: 32 bits, differently when streamed (Postgres' INT_MAX/INT_MIN shifted to 1970) and when read by a snapshot
#: (PgJDBC's infinity milliseconds in days); timestamps as PgJDBC's infinity constants, or under
#: ``time.precision.mode=nanoseconds`` as the ends of a long; timestamptz as the text 'infinity'/'-infinity'.
#: Warehouses map them back (DuckDB: infinity; BigQuery, which has none: the ends of its ranges). Seen through
#: the real connector: test_raw_cdc_e2e.py.
DATE_INFINITY = {"infinity": (-2147472692, -622191234), "-infinity": (-2147472691, -625821272)}
TIMESTAMP_INFINITY = {"infinity": (9223372036825200000, 2**63 - 1), "-infinity": (-9223372036832400000, -2**63)}
#: Debezium's text of a numeric NaN (``decimal.handling.mode=string``; Postgres writes ``NaN``)
NAN_WIRE = "NAN"
#: how Debezium's PostgreSQL connector (3.6.3) sends an interval with ``interval.handling.mode=string``
#: (``io.debezium.time.Interval``): PgJDBC's parts of Postgres' interval, every part present and signed on its
#: own, the time part not normalized to days (hours may exceed 24), seconds a plain decimal up to the
#: microsecond: ``P1Y2M3DT4H5M6.78S``, ``P-1Y-2M3DT-4H-5M-6.78S``, ``P0Y0M-1DT23H59M59.999999S``,
#: ``P0Y0M0DT100H0M0.000001S``, ``P0Y0M0DT0H0M-0.5S``. Warehouses rebuild Postgres' three fields (months,
#: days, microseconds) from it. Seen through the real connector, streamed and
#: snapshot reads alike: test_raw_cdc_e2e.py. (A time part of 2^31 hours or more, either sign, fails in PgJDBC's
#: parser and stops the connector, whatever the mode.)
INTERVAL_ISO = r"^P(-?\d+)Y(-?\d+)M(-?\d+)DT(-?\d+)H(-?\d+)M(-?\d+(?:\.\d{1,6})?)S$"
#: snapshot marker values that close a table's snapshot (Debezium 2.x/3.x)
SNAPSHOT_END = {"last", "last_in_data_collection"}


class DecodeError(ValueError):
    """The message is not a Debezium change event; it goes to the dead-letter table."""


def check_identifier(name: str, what: str = "identifier") -> str:
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise ValueError(f"{what} {name!r} is not a valid SQL identifier (letters, digits, _; not first digit)")
    return name


@dataclass(frozen=True)
class Column:
    """A captured column with its portable logical type (each warehouse maps it to SQL).

    Logical types: int16 int32 int64 float32 float64 bool string decimal date time timetz timestamp
    timestamptz interval json array bytes, and ``text`` for a value this code has no faithful mapping for: it
    lands as the exact text of its wire value (a JSON value's text; a string as is), and ``fallback`` says why
    (it is reported as a warning in the run's metadata). ``scale`` of time and timestamp: 3 (ms), 6 (us), 9 (ns).
    """

    name: str
    logical_type: str
    precision: int | None = None
    scale: int | None = None
    source_type: str | None = None
    fallback: str | None = None
    default: str | None = None  # the column's constant default in Postgres (JSON text of its wire value)

    @property
    def fixed_decimal(self) -> bool:
        """A numeric(p,s) both warehouses hold as a decimal of that precision (p <= 38). Such a decimal has no
        NaN, which Postgres allows in it: a NaN lands as NULL there, counted in the run's type warnings
        (:attr:`ChangeBatch.nan_decimals`); the changelog keeps the event's NaN. Any other numeric lands as
        its exact text, NaN included."""
        return self.logical_type == "decimal" and self.precision is not None and self.precision <= 38


@dataclass(frozen=True)
class TableSchema:
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @cached_property
    def fixed_decimals(self) -> tuple[str, ...]:
        """Names of the numeric(p,s) columns (:attr:`Column.fixed_decimal`)."""
        return tuple(c.name for c in self.columns if c.fixed_decimal)


#: Debezium semantic types of time of day: the Connect value counts units since midnight
TIME_SCALES = {"io.debezium.time.Time": 3, "org.apache.kafka.connect.data.Time": 3,
               "io.debezium.time.MicroTime": 6, "io.debezium.time.NanoTime": 9}
#: ... of timestamps without zone: units since the epoch
TIMESTAMP_SCALES = {"io.debezium.time.Timestamp": 3, "org.apache.kafka.connect.data.Timestamp": 3,
                    "io.debezium.time.MicroTimestamp": 6, "io.debezium.time.NanoTimestamp": 9}
#: ... of dates: days since the epoch
DATE_SEMANTICS = {"io.debezium.time.Date", "org.apache.kafka.connect.data.Date"}
_CONNECT_TYPES = {"int8": "int16", "int16": "int16", "int32": "int32", "int64": "int64", "float": "float32",
                  "float32": "float32", "double": "float64", "float64": "float64", "boolean": "bool",
                  "string": "string", "bytes": "bytes"}


def _column_from_field(f: dict[str, Any]) -> Column:
    """The column for a Connect field of the row struct, with its Postgres default when Debezium reports one
    (constant defaults only; Postgres gives existing rows that value when such a column is added)."""
    col = _typed_column(f)
    if f.get("default") is not None:
        col = replace(col, default=orjson.dumps(f["default"]).decode())
    return col


def _typed_column(f: dict[str, Any]) -> Column:
    """The column's logical type from its Connect field: the Debezium semantic type (``name``) first, then
    the Connect type. A string whose semantic type is unknown here (uuid, xml, enum, inet, ...) is that
    value's text already; any other unknown lands as ``text`` with the reason in ``fallback``."""
    name = check_identifier(f["field"], "column")
    if name.startswith(RESERVED_PREFIX):
        raise ValueError(f"column {name!r} uses the reserved prefix {RESERVED_PREFIX!r}")
    ctype, semantic, params = f.get("type"), f.get("name"), f.get("parameters") or {}
    source_type = params.get("__debezium.source.column.type")
    if semantic == "io.debezium.time.ZonedTimestamp":
        return Column(name, "timestamptz", source_type=source_type)
    if semantic in TIMESTAMP_SCALES:
        return Column(name, "timestamp", scale=TIMESTAMP_SCALES[semantic], source_type=source_type)
    if semantic in TIME_SCALES:
        return Column(name, "time", scale=TIME_SCALES[semantic], source_type=source_type)
    if semantic == "io.debezium.time.ZonedTime":
        return Column(name, "timetz", source_type=source_type)
    if semantic in DATE_SEMANTICS:
        return Column(name, "date", source_type=source_type)
    if semantic == "io.debezium.time.Interval":  # interval.handling.mode=string (INTERVAL_ISO); the default
        return Column(name, "interval", source_type=source_type)  # MicroDuration (30.4375-day months): text
    if semantic == "io.debezium.data.Json":
        return Column(name, "json", source_type=source_type)
    if source_type == "MONEY":  # Debezium's text of it has money.fraction.digits (default 2) decimals
        return Column(name, "decimal", 19, 2, source_type)
    if source_type in ("NUMERIC", "DECIMAL") or semantic in (
        "org.apache.kafka.connect.data.Decimal",
        "io.debezium.data.VariableScaleDecimal",
        "io.corisync.data.DomainDecimal",  # a domain over numeric (CoriSync's converter: its exact text)
    ):
        length = params.get("__debezium.source.column.length")
        scale = params.get("__debezium.source.column.scale")
        precision = int(length) if length and int(length) > 0 and int(length) < 1000 else None
        return Column(name, "decimal", precision, int(scale) if scale is not None else None, source_type)
    if ctype == "array":  # a JSON array of the elements (NULL elements, quotes, commas and nesting kept)
        return Column(name, "array", source_type=source_type)
    if ctype == "string" or (semantic is None and ctype in _CONNECT_TYPES):
        return Column(name, _CONNECT_TYPES[ctype], source_type=source_type)
    why = f"Debezium type {semantic!r} ({ctype})" if semantic else f"Connect type {ctype!r}"
    return Column(name, "text", source_type=source_type, fallback=f"{why} has no mapping: landed as its exact text")


def table_schema_from_envelope(value_schema: dict[str, Any], key_schema: dict[str, Any] | None) -> TableSchema:
    """Columns from the envelope's `after` struct, primary key from the key struct."""
    row = next((f for f in value_schema.get("fields", []) if f.get("field") in ("after", "before")), None)
    if row is None or "fields" not in row:
        raise DecodeError("envelope schema has no before/after struct")
    columns = tuple(_column_from_field(f) for f in row["fields"])
    pk = tuple(check_identifier(f["field"], "key column") for f in (key_schema or {}).get("fields", []))
    return TableSchema(columns, pk)


@dataclass
class DeadLetter:
    topic: str
    partition: int
    offset: int
    error: str
    key: bytes | None
    value: bytes | None


@dataclass
class ChangeBatch:
    """Decoded events of one table in consumption order, ready for one warehouse transaction.

    Row values stay inside each event's payload JSON; the warehouse extracts and casts them in SQL, in bulk.
    """

    table: str
    schema: TableSchema | None = None
    rows: list[tuple] = field(default_factory=list)  # one tuple per event, in META_COLUMNS order
    dead_letters: list[DeadLetter] = field(default_factory=list)
    tombstones: int = 0
    offsets: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)  # (first, last)
    #: WAL positions of re-snapshot requests the table's re-read finished for, the reads all in this batch or
    #: landed before: current-state rows whose last event is older are gone in Postgres
    #: (`corisync_assets.cdc.snapshots`)
    snapshot_ends: list[int] = field(default_factory=list)
    #: per numeric(p,s) column (:attr:`Column.fixed_decimal`), the events whose new row holds NaN (Debezium's
    #: ``NAN``): they land as NULL
    nan_decimals: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def messages(self) -> int:
        """Kafka messages this batch covers: events, dead letters and tombstones."""
        return len(self.rows) + len(self.dead_letters) + self.tombstones

    @property
    def meta(self) -> dict[str, list]:
        """The events column by column."""
        columns = list(zip(*self.rows, strict=True)) if self.rows else [() for _ in META_COLUMNS]
        return {name: list(col) for name, col in zip(META_COLUMNS, columns, strict=True)}

    @property
    def ops(self) -> Counter:
        return Counter(row[_OP] for row in self.rows)

    @property
    def lsn_range(self) -> tuple[int, int]:
        """(lowest, highest) source LSN of the events (the batch has events)."""
        lsns = [row[_LSN] for row in self.rows]
        return min(lsns), max(lsns)

    @property
    def max_source_ts_ms(self) -> int | None:
        return max((row[_TS_MS] for row in self.rows if row[_TS_MS] is not None), default=None)

    def to_arrow(self) -> pa.Table:
        """One row per event, columns prefixed `_cdc_` (payload and key as JSON text).

        The row tuples convert in one pass (as an Arrow struct array, split into its fields); the payload
        goes in as raw bytes -> Arrow binary -> string: UTF-8 checked in C++, not per message."""
        import pyarrow as pa  # not at import: the code location loads without it (a fifth of a second)

        columns = pa.array(self.rows, type=_row_type()).flatten()
        columns[_PAYLOAD_COLUMN] = columns[_PAYLOAD_COLUMN].cast(pa.string())
        return pa.Table.from_arrays(columns, names=_ARROW_NAMES)


#: The event columns and their Arrow types, as names of pyarrow type factories (pyarrow is imported lazily).
META_COLUMNS: dict[str, str] = {
    "event_id": "string",
    "op": "string",
    "lsn": "int64",
    "txid": "int64",
    "ts_ms": "int64",
    "snapshot": "string",
    "topic": "string",
    "partition": "int32",
    "offset": "int64",
    "key": "string",  # the key's payload: primary key columns
    "payload": "string",  # the envelope's payload: before, after, source, op
}

_OP, _LSN, _TS_MS = (list(META_COLUMNS).index(name) for name in ("op", "lsn", "ts_ms"))
_PAYLOAD_COLUMN = list(META_COLUMNS).index("payload")


@cache
def _row_type() -> pa.DataType:
    """The rows as an Arrow struct (the payload as binary: cast to string once, column-wise)."""
    import pyarrow as pa

    return pa.struct([(name, pa.binary() if name == "payload" else getattr(pa, typ)())
                      for name, typ in META_COLUMNS.items()])


_ARROW_NAMES = [f"_cdc_{name}" for name in META_COLUMNS]
_PAYLOAD = b',"payload":'
_KEYED_OPS = ("r", "c", "u", "d")


def split_converter_json(raw: bytes, known_schema: bytes | None = None) -> tuple[bytes | None, bytes]:
    """(schema part, payload part) of a JsonConverter message `{"schema":...,"payload":...}`.

    Slicing lets us parse the (small) payload per message and the (large) schema only when it changes.
    Inside JSON strings quotes are escaped, so the first top-level `,"payload":` is the separator. With the
    schema part of the previous message (`known_schema`) a prefix compare replaces the scan.
    """
    if raw.startswith(b'{"schema":'):
        if known_schema is not None and raw.startswith(known_schema, 10) and raw.startswith(
            _PAYLOAD, 10 + len(known_schema)
        ):
            return known_schema, raw[10 + len(known_schema) + len(_PAYLOAD):-1]
        cut = raw.find(_PAYLOAD)
        if cut > 0 and raw.endswith(b"}"):
            return raw[10:cut], raw[cut + len(_PAYLOAD):-1]
    return None, raw


def event_id(lsn: int, op: str, key_json: str) -> str:
    """Identity of a change independent of its Kafka offset: a restarted broker renumbers offsets, and a
    re-emitted event (runner killed before its offset flush) keeps its LSN, op and key. Within a table the
    LSN orders changes and the key tells apart the rows a snapshot reads at one LSN."""
    return f"{lsn}:{op}:{key_json}"


class _FastSource(msgspec.Struct):
    """The fields of an envelope's ``source`` the fast path reads (the others are skipped unparsed)."""

    lsn: int | None = None
    txId: int | None = None  # Debezium's name
    ts_ms: int | None = None
    snapshot: str = "false"
    sequence: str | None = None


class _FastPayload(msgspec.Struct):
    """An envelope's payload as the fast path reads it: ``after`` stays raw JSON (the warehouse parses the
    rows), ``before`` and ``transaction`` are skipped unparsed."""

    op: str
    source: _FastSource
    after: msgspec.Raw = msgspec.Raw(b"null")


_decode_fast_payload = msgspec.json.Decoder(_FastPayload).decode


class Decoder:
    """Accumulates messages of one table into a ChangeBatch; malformed messages become dead letters.

    Once a message decoded, its schema parts are known: a message with the very same schema parts (a
    prefix compare) takes a fast path that only parses the payload's envelope fields (msgspec, into typed
    structs: a few times faster than building the whole payload as dicts); anything else, and any payload
    the fast path does not accept, takes the full path, which decides and names the error.
    """

    def __init__(self, table: str) -> None:
        self.table = table
        self._schemas: dict[tuple[bytes, bytes | None], TableSchema] = {}
        self._value_schema: bytes | None = None
        self._key_schema: bytes | None = None
        # (value prefix, key prefix, table schema) of the last message decoded on the full path
        self._fast: tuple[bytes, bytes, TableSchema] | None = None
        self.batch = ChangeBatch(table)

    def reset(self) -> ChangeBatch:
        done, self.batch = self.batch, ChangeBatch(self.table, schema=self.batch.schema)
        return done

    def add(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        self.add_run(topic, partition, ((offset, key, value),))

    def add_run(self, topic: str, partition: int, entries: Sequence[tuple]) -> None:
        """Add consecutive messages of one partition: tuples starting with (offset, key, value)."""
        if not entries:
            return
        b = self.batch
        first_last = b.offsets.get((topic, partition))
        b.offsets[(topic, partition)] = (first_last[0] if first_last else entries[0][0], entries[-1][0])
        append, decode, full = b.rows.append, _decode_fast_payload, self._add_full
        vprefix, kprefix, schema = self._fast or (None, None, None)
        decimals = schema.fixed_decimals if schema is not None else ()
        for entry in entries:
            offset, key, value = entry[0], entry[1], entry[2]
            if value is None:
                b.tombstones += 1  # Kafka compaction marker after a delete; the delete event itself carries it
                continue
            if vprefix is not None and key is not None and value.startswith(vprefix) and key.startswith(kprefix):
                # same schemas as the last message on the full path: the checks of _add, on the payload only
                try:
                    payload_raw = value[len(vprefix):-1]
                    payload = decode(payload_raw)
                    op, source = payload.op, payload.source
                    lsn, key_raw = source.lsn or _sequence_lsn(source.sequence), key[len(kprefix):-1]
                    after = bytes(payload.after) if op != "d" else b""
                    if (op in _KEYED_OPS and lsn is not None and key_raw and key_raw != b"null"
                            and (op == "d" or after[:1] == b"{")):
                        if schema is not b.schema:
                            b.schema = schema if b.schema is None else _merge(b.schema, schema)
                        key_json = key_raw.decode()
                        append((  # META_COLUMNS order
                            event_id(lsn, op, key_json),
                            op, lsn, source.txId, source.ts_ms, source.snapshot,
                            topic, partition, offset, key_json, payload_raw,
                        ))
                        # NaN in a numeric(p,s): lands as NULL, counted. Only a row holding the letters (or
                        # an escape) can hold Debezium's "NAN": that one is parsed.
                        if decimals and (b"NAN" in after or b"\\u" in after):
                            row = orjson.loads(after)
                            for name in decimals:
                                if row.get(name) == NAN_WIRE:
                                    b.nan_decimals[name] += 1
                        continue
                except Exception:  # the full path below decides (and names the error)
                    pass
            full(b, topic, partition, offset, key, value)
            vprefix, kprefix, schema = self._fast or (None, None, None)
            decimals = schema.fixed_decimals if schema is not None else ()

    def _add_full(self, b: ChangeBatch, topic: str, partition: int, offset: int, key: bytes | None,
                  value: bytes) -> None:
        try:
            self._add(b, topic, partition, offset, key, value)
        except (DecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
            b.dead_letters.append(DeadLetter(topic, partition, offset, f"{type(exc).__name__}: {exc}", key, value))

    def _schema(self, value_schema: bytes, key_schema: bytes | None) -> TableSchema:
        schema = self._schemas.get((value_schema, key_schema))
        if schema is None:
            try:
                vs, ks = orjson.loads(value_schema), orjson.loads(key_schema) if key_schema else None
            except orjson.JSONDecodeError as exc:
                raise DecodeError(f"schema is not JSON: {exc}") from None
            schema = table_schema_from_envelope(vs or {}, ks)
            self._schemas[(value_schema, key_schema)] = schema
        return schema

    def _add(self, b: ChangeBatch, topic: str, partition: int, offset: int, key: bytes | None,
             value: bytes) -> None:
        value_schema, payload_raw = split_converter_json(value, self._value_schema)
        key_schema, key_raw = split_converter_json(key, self._key_schema) if key else (None, None)
        self._value_schema, self._key_schema = value_schema or self._value_schema, key_schema or self._key_schema
        self._fast = None  # set again below if this message decodes
        try:
            payload = orjson.loads(payload_raw)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"not JSON: {exc}") from None
        if value_schema is None or not isinstance(payload, dict):
            raise DecodeError("not a Debezium envelope with schema ({\"schema\":...,\"payload\":...})")
        op = payload.get("op")
        if op not in OPS:
            raise DecodeError(f"unknown op {op!r}")
        source = payload.get("source")
        lsn = (source.get("lsn") or _sequence_lsn(source.get("sequence"))) if isinstance(source, dict) else None
        if lsn is None:
            raise DecodeError("envelope has no source.lsn")
        if op in ("r", "c", "u") and not isinstance(payload.get("after"), dict):
            raise DecodeError(f"op {op!r} without an 'after' row")
        if op != "t":
            if not key_raw or key_raw == b"null":
                raise DecodeError(f"op {op!r} without a key (table without primary key?)")
            schema = self._schema(value_schema, key_schema)
            if schema is not b.schema:
                b.schema = schema if b.schema is None else _merge(b.schema, schema)
        key_json = key_raw.decode() if key_raw and op != "t" else ""
        lsn = int(lsn)
        b.rows.append((  # META_COLUMNS order
            event_id(lsn, op, key_json),
            op, lsn, source.get("txId"), source.get("ts_ms"), str(source.get("snapshot", "false")), topic,
            partition, offset, key_json or None, payload_raw,
        ))
        if op in ("r", "c", "u"):  # NaN in a numeric(p,s): lands as NULL, counted
            b.nan_decimals.update(name for name in schema.fixed_decimals if payload["after"].get(name) == NAN_WIRE)
        if op != "t" and key_schema is not None:
            self._fast = (b'{"schema":' + value_schema + _PAYLOAD, b'{"schema":' + key_schema + _PAYLOAD, schema)


def _sequence_lsn(sequence: str | None) -> int | None:
    """The LSN of an event whose ``source.lsn`` is null: an incremental snapshot read, which Debezium emits
    when its chunk's window closes and stamps with that position in ``source.sequence`` (``["<last commit>",
    "<lsn>"]``). Every change streamed after the read has a higher LSN, every change it supersedes a lower one."""
    try:
        return int(orjson.loads(sequence or "null")[-1])
    except (orjson.JSONDecodeError, TypeError, ValueError, IndexError, KeyError):
        return None


def _merge(old: TableSchema, new: TableSchema) -> TableSchema:
    """The table changed mid-batch: keep every column seen (dropped ones read NULL from now on)."""
    names = {c.name for c in new.columns}
    return TableSchema(new.columns + tuple(c for c in old.columns if c.name not in names), new.primary_key)
