"""One canonical text per value, rendered in SQL by Postgres and by each warehouse dialect (DuckDB, BigQuery).

Reconciliation (:mod:`corisync_assets.cdc.reconcile`) hashes rows on both sides (an md5 per chunk of rows in
key order, per row where a chunk differs) and compares the hashes, so both sides must spell a value the same
way. The canonical text of a value is **Postgres' own text output**
under fixed session settings (:data:`PG_SESSION`: ISO dates, UTC, hex bytea), with these exceptions where
that text is not what Debezium carries or cannot be reproduced: ``timetz`` is turned to UTC (Debezium sends
it in UTC); ``char(n)`` and ``inet`` are their output function's text (the cast to text drops the padding,
adds a host's /32); ``money`` is its numeric value; arrays are ``array_to_json`` (they land as JSON); floats
are their IEEE 754 bits in hex (:func:`float_bits`: Postgres' and DuckDB's decimal digits of a double differ
for some values); an ``interval`` is its three fields, ``months|days|microseconds`` (:func:`interval_text`:
each side lays out the text of an interval its own way, and equality of intervals normalizes, 1 day = 24
hours, where the fields do not). Postgres renders with cheap casts (it is the slower side); the warehouse
reproduces the same text from the landed type.

The warehouse rendering is chosen by the column's *landed* type, not by what it should be: a ``time``
column landed as ``BIGINT`` microseconds renders as digits and so differs from ``12:34:56`` (as does an
interval landed as the text of Debezium's default ``MicroDuration``). A Postgres type with no agreed
canonical form (ranges, hstore, geometric types, arrays of other element types, ...) is left out of the hash
and reported, never compared silently.

Per-type SQL is written once per dialect here (:func:`postgres_text`, :func:`warehouse_text`), as are the
row hash, the chunk aggregate and the key predicates, so the algorithm stays dialect-free.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from corisync_assets.cdc.envelope import INTERVAL_ISO

#: session settings of the reconciliation connection: what the Postgres side's texts assume; one backend per
#: check (no parallel workers: the operational database serves the platform meanwhile), sorting a chunk in
#: memory
PG_SESSION = {"DateStyle": "ISO, YMD", "TimeZone": "UTC", "IntervalStyle": "postgres",
              "extra_float_digits": "1", "bytea_output": "hex", "max_parallel_workers_per_gather": "0",
              "work_mem": "64MB"}

#: Postgres base type name -> canonical kind (domains resolve to their base type, enums are ``text``)
KINDS = {
    "int2": "integer", "int4": "integer", "int8": "integer",
    "numeric": "numeric", "money": "money", "float4": "float4", "float8": "float8", "bool": "boolean",
    "text": "text", "varchar": "text", "name": "text", "citext": "text", "uuid": "text", "xml": "text",
    "inet": "text", "cidr": "text", "macaddr": "text", "macaddr8": "text", "bpchar": "bpchar",
    "date": "date", "time": "time", "timetz": "timetz", "timestamp": "timestamp", "timestamptz": "timestamptz",
    "interval": "interval", "json": "json", "jsonb": "json", "bytea": "bytea",
}
#: element types of arrays whose ``array_to_json`` text is what lands (numbers, strings, booleans as such)
ARRAY_ELEMENTS = {"int2", "int4", "int8", "bool", "text", "varchar", "uuid"}
#: kinds the warehouse cannot render as Postgres does, per dialect (BigQuery's JSON type normalizes the text,
#: and a float4 lands there as the FLOAT64 nearest Debezium's decimal digits, not as its own float8 widening)
NOT_RENDERABLE = {"bigquery": {"json", "array", "float4"}}
#: Postgres base types ordered as their landed warehouse type orders, per dialect (-> landed types; a name
#: ending in "(" is a prefix): primary keys of these page natively (index range scans in Postgres); any other
#: key pages on its canonical text (bytewise on both sides; Postgres then sorts instead of using the index)
_INTS = {"duckdb": ("SMALLINT", "INTEGER", "BIGINT", "HUGEINT"), "bigquery": ("INT64",)}
_STRINGS = {"duckdb": ("VARCHAR",), "bigquery": ("STRING",)}
NATIVE_ORDER = {
    dialect: {
        "int2": _INTS[dialect], "int4": _INTS[dialect], "int8": _INTS[dialect],
        "numeric": ("DECIMAL(",) if dialect == "duckdb" else ("NUMERIC", "BIGNUMERIC", "NUMERIC(", "BIGNUMERIC("),
        "bool": ("BOOLEAN",) if dialect == "duckdb" else ("BOOL",),
        "text": _STRINGS[dialect], "varchar": _STRINGS[dialect], "bpchar": _STRINGS[dialect],
        "name": _STRINGS[dialect], "uuid": (*_STRINGS[dialect], "UUID"), "date": ("DATE",), "time": ("TIME",),
        "timestamp": ("TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S") if dialect == "duckdb"
        else ("DATETIME",),
        "timestamptz": ("TIMESTAMP WITH TIME ZONE",) if dialect == "duckdb" else ("TIMESTAMP",),
    }
    for dialect in ("duckdb", "bigquery")
}
#: the collatable ones among them: ordered with COLLATE "C" in Postgres unless the column's collation is bytewise
COLLATABLE = {"text", "varchar", "bpchar", "name"}


@dataclass(frozen=True)
class PgColumn:
    """A Postgres column as reconciliation sees it. ``kind`` None: no canonical form (``reason`` says why)."""

    name: str
    type_name: str  # format_type(), e.g. numeric(10,2), character(5), text[]
    base: str  # the base type's name (domains resolved), e.g. numeric, bpchar, _text
    kind: str | None
    length: int | None = None  # char(n)
    reason: str | None = None
    bytewise: bool = False  # its collation already orders bytewise (C, POSIX)
    precision: int | None = None  # time(p), timestamp(p); None: the default (6)


def classify(name: str, type_name: str, base: str, typtype: str, element: str | None, element_typtype: str | None,
             length: int | None, collation: str | None, precision: int | None = None) -> PgColumn:
    """The column's canonical kind from its resolved base type (``element``: an array's resolved element)."""
    bytewise = collation in ("C", "POSIX")
    if element is not None:
        if element in ARRAY_ELEMENTS or element_typtype == "e":
            return PgColumn(name, type_name, base, "array")
        return PgColumn(name, type_name, base, None, reason=f"arrays of {type_name.removesuffix('[]')} have no "
                        "canonical form shared with the warehouse")
    if typtype == "e":
        return PgColumn(name, type_name, base, "text", bytewise=bytewise)
    kind = KINDS.get(base)
    if kind is None:
        return PgColumn(name, type_name, base, None, reason=f"Postgres type {type_name} has no canonical form shared "
                        "with the warehouse")
    return PgColumn(name, type_name, base, kind, length if kind == "bpchar" else None, bytewise=bytewise,
                    precision=precision)


def native_order(dialect: str, col: PgColumn, landed_type: str | None) -> bool:
    """Whether the key column pages by its own values: Postgres' order of the type and the warehouse's order
    of its landed type agree (else both sides page by canonical text)."""
    if landed_type is None or col.kind is None:
        return False
    landed = landed_type.upper().replace(" ", "") if dialect == "bigquery" else landed_type.upper()
    return any(landed.startswith(t) if t.endswith("(") else landed == t
               for t in NATIVE_ORDER[dialect].get(col.base, ()))


# --- Postgres -------------------------------------------------------------------------------------------------


def postgres_text(col: PgColumn, ref: str, *, no_nan: bool = False) -> str:
    """Canonical text of column reference ``ref`` (already quoted) in Postgres (NULL stays NULL). ``no_nan``: the
    numeric column landed as a decimal type, which has no NaN: a NaN landed as NULL (envelope.Column.fixed_decimal)."""
    if no_nan and col.kind == "numeric":
        return f"NULLIF({ref}::text, 'NaN')"
    if col.kind in ("float4", "float8"):
        return float_bits(POSTGRES, ref)
    if col.kind == "timetz":
        return f"({ref} AT TIME ZONE 'UTC')::text"
    if col.kind == "bpchar" or col.base == "inet":  # the output function's text: the cast to text drops
        return f"CASE WHEN {ref} IS NULL THEN NULL ELSE concat({ref}) END"  # char(n)'s padding, adds inet's /32
    if col.kind == "money":
        return f"{ref}::numeric::text"
    if col.kind == "array":
        return f"array_to_json({ref})::text"
    if col.kind == "interval":
        return interval_text(POSTGRES, ref)
    return f"{ref}::text"


# --- warehouses -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL dialects for the shared templates."""

    name: str
    text_type: str
    int_type: str
    chr31: str  # the field separator of a row's text
    chr30: str  # the NULL marker

    def json_text(self, ref: str) -> str:
        """A JSON column's text (the changelog's ``key``)."""
        return f"TO_JSON_STRING({ref})" if self.name == "bigquery" else f"CAST({ref} AS {self.text_type})"

    def md5_hex(self, ref: str) -> str:
        return f"TO_HEX(MD5({ref}))" if self.name == "bigquery" else f"md5({ref})"

    @property
    def row_separator(self) -> str:
        return "CODE_POINTS_TO_STRING([29])" if self.name == "bigquery" else "chr(29)"


POSTGRES = Dialect("postgres", "text", "bigint", "chr(31)", "chr(30)")
DUCKDB = Dialect("duckdb", "VARCHAR", "BIGINT", "chr(31)", "chr(30)")
BIGQUERY = Dialect("bigquery", "STRING", "INT64", "CODE_POINTS_TO_STRING([31])", "CODE_POINTS_TO_STRING([30])")
DIALECTS = {d.name: d for d in (POSTGRES, DUCKDB, BIGQUERY)}


def float_bits(d: Dialect, ref: str) -> str:
    """A float's canonical text: its IEEE 754 binary64 bits as 16 hex digits (``NaN`` for every NaN).

    Exact, and independent of how each side lays out decimal digits (Postgres' Ryu and DuckDB's shortest
    round-trip output disagree on some doubles above 2^53). Postgres reads the bits (``float8send``), DuckDB
    casts to BIT; BigQuery rebuilds them arithmetically: exponent from log2 (corrected by one where log2 rounds
    across a power of two), mantissa by exact division by a power of two, subnormals and -0 included. A float4
    is its exact float8 widening on both sides."""
    if d.name == "postgres":
        return f"CASE WHEN {ref} = 'NaN' THEN 'NaN' ELSE encode(float8send({ref}::float8), 'hex') END"
    if d.name == "duckdb":  # DuckDB casts a DOUBLE to its bits (BIT), most significant first
        bits = f"CAST(CAST(CAST({ref} AS DOUBLE) AS BIT) AS BLOB)"
        return f"CASE WHEN isnan({ref}) THEN 'NaN' ELSE lower(hex({bits})) END"
    # BigQuery has no such cast
    x = f"CAST({ref} AS FLOAT64)"
    a = f"ABS({x})"
    e0 = f"CAST(FLOOR(LOG({a}, 2)) AS INT64)"
    e = (f"({e0} - IF({a} < POW(2.0, {e0}), 1, 0) + IF({a} >= POW(2.0, {e0} + 1), 1, 0))")
    # biased exponent and the 52 mantissa bits (subnormals: exponent 0, mantissa a / 2^-1074)
    biased = f"IF({e} < -1022, 0, {e} + 1023)"
    mant = f"CAST(IF({e} < -1022, {a} / POW(2.0, -1074), ({a} / POW(2.0, {e}) - 1) * POW(2.0, 52)) AS INT64)"
    negative = f"IEEE_DIVIDE(1, {x}) < 0"  # -0 included
    high = f"(IF({negative}, 2147483648, 0) + ({biased}) * 1048576 + DIV({mant}, 4294967296))"
    return (f"CASE WHEN IS_NAN({x}) THEN 'NaN' WHEN IS_INF({x}) THEN IF({x} > 0, '7ff0000000000000', "
            f"'fff0000000000000') WHEN {x} = 0 THEN IF({negative}, '8000000000000000', '0000000000000000') "
            f"ELSE FORMAT('%08x%08x', {high}, MOD({mant}, 4294967296)) END")


def interval_text(d: Dialect, ref: str) -> str:
    """An interval's canonical text: Postgres' three fields, ``months|days|microseconds`` (each signed on its
    own; the time part not folded into days, so 100 hours stay 360000000000 microseconds), from the parts
    EXTRACT gives on each side: months = years * 12 + months, microseconds = hours, minutes and seconds
    (Postgres' and DuckDB's ``microsecond`` part includes the seconds; BigQuery's is the fraction of the
    second, its emulator's includes the seconds: MOD 10^6 is that fraction on both)."""
    if d.name == "postgres":
        return (f"(extract(year FROM {ref}) * 12 + extract(month FROM {ref}))::bigint::text || '|' || "
                f"extract(day FROM {ref})::bigint::text || '|' || (extract(hour FROM {ref}) * 3600000000 "
                f"+ extract(minute FROM {ref}) * 60000000 + extract(microsecond FROM {ref}))::bigint::text")
    if d.name == "duckdb":
        return (f"CAST(datepart('year', {ref}) * 12 + datepart('month', {ref}) AS VARCHAR) || '|' || "
                f"CAST(datepart('day', {ref}) AS VARCHAR) || '|' || CAST(datepart('hour', {ref}) * 3600000000 "
                f"+ datepart('minute', {ref}) * 60000000 + datepart('microsecond', {ref}) AS VARCHAR)")
    micros = (f"EXTRACT(HOUR FROM {ref}) * 3600000000 + EXTRACT(MINUTE FROM {ref}) * 60000000 "
              f"+ EXTRACT(SECOND FROM {ref}) * 1000000 + MOD(EXTRACT(MICROSECOND FROM {ref}), 1000000)")
    return (f"CONCAT(CAST(EXTRACT(YEAR FROM {ref}) * 12 + EXTRACT(MONTH FROM {ref}) AS STRING), '|', "
            f"CAST(EXTRACT(DAY FROM {ref}) AS STRING), '|', CAST({micros} AS STRING))")


def _strip_fraction(d: Dialect, text: str) -> str:
    """Drop trailing zeros of a seconds fraction, and the point when nothing is left (Postgres' layout)."""
    if d.name == "bigquery":
        return f"REGEXP_REPLACE(REGEXP_REPLACE({text}, r'(\\.\\d*?)0+$', r'\\1'), r'\\.$', '')"
    return f"regexp_replace(regexp_replace({text}, '(\\.\\d*?)0+$', '\\1'), '\\.$', '')"


def _duckdb_bc(text: str) -> str:
    """DuckDB writes BC dates as ``0044-03-15 (BC)[ time]``; Postgres as ``0044-03-15[ time] BC``."""
    return (f"CASE WHEN contains({text}, ' (BC)') THEN replace({text}, ' (BC)', '') || ' BC' ELSE {text} END")


_DECIMAL = re.compile(r"^(?:BIG)?NUMERIC\s*\(\s*\d+\s*,\s*(\d+)\s*\)$", re.IGNORECASE)


def warehouse_text(dialect: str, col: PgColumn, landed_type: str | None, ref: str) -> str:
    """Canonical text of ``ref`` (a quoted warehouse column of ``landed_type``; None: the column is missing
    and reads NULL) in ``dialect``, as Postgres spells the value of ``col``."""
    d = DIALECTS[dialect]
    if landed_type is None:
        return f"CAST(NULL AS {d.text_type})"
    t = landed_type.upper()
    as_text = f"CAST({ref} AS {d.text_type})"
    floats = col.kind in ("float4", "float8")
    if dialect == "duckdb":
        if t in ("DOUBLE", "FLOAT", "REAL", "FLOAT4", "FLOAT8") and floats:
            return float_bits(d, ref)
        if t == "BLOB":
            return f"'\\x' || lower(hex({ref}))"
        if t == "INTERVAL":
            return interval_text(d, ref)
        if t == "DATE" or t.startswith("TIMESTAMP"):
            return _duckdb_bc(as_text)
        return as_text
    if dialect == "bigquery":
        if t == "FLOAT64" and floats:
            return float_bits(d, ref)
        if t == "BYTES":
            return f"CONCAT('\\\\x', TO_HEX({ref}))"
        if t == "TIME":
            return _strip_fraction(d, f"FORMAT_TIME('%H:%M:%E6S', {ref})")
        if t == "DATETIME":
            return _strip_fraction(d, f"FORMAT_DATETIME('%Y-%m-%d %H:%M:%E6S', {ref})")
        if t == "TIMESTAMP":
            return _strip_fraction(d, f"FORMAT_TIMESTAMP('%Y-%m-%d %H:%M:%E6S', {ref}, 'UTC')") + " || '+00'"
        if t == "JSON":
            return f"TO_JSON_STRING({ref})"
        if t == "INTERVAL":
            return interval_text(d, ref)
        scale = _DECIMAL.match(t)
        if scale is not None:  # BigQuery drops trailing zeros of a NUMERIC; Postgres keeps the column's scale
            return f"FORMAT('%.{int(scale.group(1))}f', {ref})" if int(scale.group(1)) else as_text
        return as_text
    raise ValueError(f"unknown warehouse dialect {dialect!r}")


def renderable(dialect: str, col: PgColumn) -> bool:
    return col.kind is not None and col.kind not in NOT_RENDERABLE.get(dialect, set())


# --- rows, chunks and keys ------------------------------------------------------------------------------------


def row_text(d: Dialect, texts: list[str]) -> str:
    """One text per row: the columns' canonical texts joined by chr(31), NULL as chr(30)."""
    return f" || {d.chr31} || ".join(f"COALESCE({t}, {d.chr30})" for t in texts)


def row_hash(d: Dialect, texts: list[str]) -> str:
    """The row's md5 hex digest (32 characters), the same on every side for the same values."""
    return d.md5_hex(row_text(d, texts))


def chunk_aggregate_sql(d: Dialect, texts: list[str], order: list[str], relation: str, where: str) -> str:
    """``SELECT count, digest`` of a chunk: its row count and the md5 of its row texts joined in key order
    (chr(29) between rows). One md5 per chunk, not per row: Postgres' md5() costs about a microsecond a call,
    more than the rest of a row. Postgres aggregates a subquery it reads in key order (the primary key's
    index, no sort; should it ever aggregate in another order, the digests differ and the chunk is only read
    key by key, never reported wrongly); the warehouses order inside the aggregate."""
    text = row_text(d, texts)
    if d.name == "postgres":
        return (f"SELECT count(*), md5(string_agg(t, {d.row_separator})) FROM (SELECT {text} AS t FROM {relation} "
                f"WHERE {where} ORDER BY {', '.join(order)}) AS chunk")
    digest = d.md5_hex(f"string_agg({text}, {d.row_separator} ORDER BY {', '.join(order)})")
    return f"SELECT count(*), {digest} FROM {relation} WHERE {where}"


def key_after(d: Dialect, refs: list[str], params: list[str], key: tuple) -> tuple[str, list]:
    """``(k1, .., kn) > key`` and its parameters; ``params`` are the parameter expressions compared with
    ``refs`` (e.g. ``%s::bigint``, ``CAST(? AS BIGINT)``). Postgres compares rows (an index range scan);
    the warehouses get the expanded form (BigQuery has no row comparison) plus ``k1 >= v1``, which DuckDB
    prunes row groups with."""
    if d.name == "postgres":
        return f"({', '.join(refs)}) > ({', '.join(params)})", list(key)
    return (f"({refs[0]} >= {params[0]} AND {_lexicographic(refs, params, '>')})",
            [key[0], *_lexicographic_params(key)])


def key_at_most(d: Dialect, refs: list[str], params: list[str], key: tuple) -> tuple[str, list]:
    """``(k1, .., kn) <= key`` and its parameters (see :func:`key_after`)."""
    if d.name == "postgres":
        return f"({', '.join(refs)}) <= ({', '.join(params)})", list(key)
    return (f"({refs[0]} <= {params[0]} AND NOT {_lexicographic(refs, params, '>')})",
            [key[0], *_lexicographic_params(key)])


def _lexicographic_params(key: tuple) -> list:
    """Parameters of the expanded comparison: term i uses v1..vi."""
    return [v for i in range(len(key)) for v in key[: i + 1]]


def _lexicographic(refs: list[str], casts: list[str], op: str) -> str:
    terms = []
    for i, (ref, cast) in enumerate(zip(refs, casts, strict=True)):
        equal = [f"{r} = {c}" for r, c in zip(refs[:i], casts[:i], strict=True)]
        terms.append("(" + " AND ".join([*equal, f"{ref} {op} {cast}"]) + ")")
    return "(" + " OR ".join(terms) + ")"


# --- key values from Debezium's wire form ---------------------------------------------------------------------


def wire_key_text(col: PgColumn, value, *, time_unit_ns: int = 1000) -> str | None:
    """Canonical text of a primary key value as Debezium's key carries it (JsonConverter; numerics as
    strings, dates as days, times and timestamps as units since midnight/epoch, timestamptz and intervals as
    ISO text). ``time_unit_ns``: nanoseconds per wire unit of the column's time or timestamp (1000: microseconds)."""
    if value is None:
        return None
    kind = col.kind
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "integer":
        return str(int(value))
    if kind == "bpchar":
        return str(value).ljust(col.length or 0)
    if kind == "date" and isinstance(value, int):
        return _pg_day(value)
    if kind == "time" and isinstance(value, int):
        micros = value * time_unit_ns // 1000
        return "24:00:00" if micros == 86_400_000_000 else _pg_time_of_day(micros)
    if kind == "timestamp" and isinstance(value, int):
        days, micros = divmod(value * time_unit_ns // 1000, 86_400_000_000)
        return _pg_day(days, " " + _pg_time_of_day(micros))
    if kind == "interval" and isinstance(value, str) and (parts := re.match(INTERVAL_ISO, value)):
        y, mo, d, h, mi = (int(p) for p in parts.groups()[:5])
        return f"{y * 12 + mo}|{d}|{h * 3_600_000_000 + mi * 60_000_000 + int(Decimal(parts[6]) * 1_000_000)}"
    if kind == "timestamptz" and isinstance(value, str) and (utc := _ISO_UTC.match(value)):
        fraction = (utc[4] or "").rstrip("0")
        return _pg_year(int(utc[1]), f"-{utc[2]} {utc[3]}{'.' + fraction if fraction else ''}+00")
    if kind == "timestamptz" and isinstance(value, str):
        at = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        return _pg_clock(at.replace(tzinfo=None), "%Y-%m-%d %H:%M:%S") + "+00"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


#: Debezium's ZonedTimestamp text (always UTC): a year past 9999 signed, 1 BC as year 0000, 4713 BC as -4712
_ISO_UTC = re.compile(r"^([+-]?[0-9]{4,})-([0-9]{2}-[0-9]{2})T([0-9]{2}:[0-9]{2}:[0-9]{2})(?:[.]([0-9]+))?Z$")


def _pg_year(iso_year: int, rest: str) -> str:
    """Postgres' text of a date or time stamp in ISO year ``iso_year`` (``rest``: what follows the year):
    years before 1 as ``… BC`` (ISO year 0 is 1 BC), years past 9999 with all their digits."""
    return f"{iso_year:04d}{rest}" if iso_year > 0 else f"{1 - iso_year:04d}{rest} BC"


def _pg_day(days: int, clock: str = "") -> str:
    """Postgres' text of the day ``days`` after 1970-01-01 (proleptic Gregorian, any year: Python's date ends
    in 9999), then ``clock``. The civil-from-days algorithm of Howard Hinnant."""
    z = days + 719_468
    era, doe = divmod(z, 146_097)
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day, month = doy - (153 * mp + 2) // 5 + 1, mp + 3 if mp < 10 else mp - 9
    return _pg_year(yoe + era * 400 + (month <= 2), f"-{month:02d}-{day:02d}{clock}")


def _pg_time_of_day(micros: int) -> str:
    """Postgres' text of the time ``micros`` after midnight (below 24:00:00)."""
    return _pg_clock(datetime(2000, 1, 1) + timedelta(microseconds=micros), "%H:%M:%S")


def _pg_clock(at: datetime, fmt: str) -> str:
    text = at.strftime(fmt)
    if at.microsecond:
        text += f".{at.microsecond:06d}".rstrip("0")
    return text
