"""Column types beyond the tc4a tables: times, arrays, nanosecond timestamps, intervals, NaN in a numeric(p,s),
and types with no mapping.

Pure (no broker): Debezium-shaped events (JsonConverter with schemas, field shapes as the PostgreSQL
connector emits them) decoded and landed in a real DuckDB file. Expected values are computed here from the
wire values in plain Python, not by the landing code. The same types through the real connector:
tests/cdc/test_raw_cdc_e2e.py::test_column_types_through_the_real_connector (and, for the nanosecond
precision mode, ::test_nanosecond_precision_mode_through_the_real_connector; NaN in a numeric(p,s):
tests/cdc/test_reconcile.py).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import orjson

from corisync_assets.cdc.envelope import Decoder
from corisync_assets.cdc.landing import TableReport
from corisync_assets.resources.warehouse import canonical
from corisync_assets.resources.warehouse.base import LandResult
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
from tests.support import debezium_events as ev

ID = {"type": "int64", "optional": False, "field": "id"}
FIELDS = [
    ID,
    {"type": "int64", "optional": True, "name": "io.debezium.time.MicroTime", "version": 1, "field": "t_us"},
    {"type": "int32", "optional": True, "name": "io.debezium.time.Time", "version": 1, "field": "t_ms"},
    {"type": "int64", "optional": True, "name": "io.debezium.time.NanoTime", "version": 1, "field": "t_ns"},
    {"type": "string", "optional": True, "name": "io.debezium.time.ZonedTime", "version": 1, "field": "t_tz"},
    {"type": "int64", "optional": True, "name": "io.debezium.time.NanoTimestamp", "version": 1, "field": "ts_ns"},
    {"type": "array", "optional": True, "items": {"type": "string", "optional": True}, "field": "labels"},
    {"type": "array", "optional": True, "field": "grid",
     "items": {"type": "array", "optional": True, "items": {"type": "int32", "optional": True}}},
    {"type": "string", "optional": True, "name": "io.debezium.data.Uuid", "version": 1, "field": "ref"},
    {"type": "int64", "optional": True, "name": "io.debezium.time.MicroDuration", "version": 1, "field": "span"},
    {"type": "struct", "optional": True, "name": "io.debezium.data.geometry.Point", "version": 1, "field": "spot",
     "fields": [{"type": "double", "optional": False, "field": "x"},
                {"type": "double", "optional": False, "field": "y"}]},
]
ROWS = [
    {"id": 1, "t_us": 45_296_123_456, "t_ms": 45_296_123, "t_ns": 45_296_123_456_000, "t_tz": "14:30:00.5Z",
     "ts_ns": 1_700_000_000_123_456_789, "labels": ["a", "b,c", None, 'q"t', "{x}"], "grid": [[1, None], [3, 4]],
     "ref": "0b6f6c2e-8f0e-4d7a-9a43-0d2f1e3c4b5a", "span": 3_723_000_000, "spot": {"x": 1.5, "y": -2.0}},
    {"id": 2, "t_us": 86_400_000_000, "t_ms": 0, "t_ns": 0, "t_tz": "00:00:00Z", "ts_ns": 0, "labels": [],
     "grid": None, "ref": None, "span": None, "spot": None},
]


def _batch(rows):
    value_schema, key_schema = ev.value_schema("samples", FIELDS), ev.key_schema("samples", [ID])
    decoder = Decoder("samples")
    for i, row in enumerate(rows):
        key = orjson.dumps({"schema": key_schema, "payload": {"id": row["id"]}})
        value = orjson.dumps({"schema": value_schema, "payload": {
            "before": None, "after": row, "op": "c", "source": {"lsn": 100 + i, "txId": 7, "ts_ms": 1}}})
        decoder.add("tc4a.public.samples", 0, i, key, value)
    return decoder.batch


def _time_of(micros: int) -> str:
    """A time of day as DuckDB prints it, from microseconds since midnight (24:00:00 included)."""
    if micros == 86_400_000_000:
        return "24:00:00"
    text = (datetime(2000, 1, 1) + timedelta(microseconds=micros)).strftime("%H:%M:%S.%f").rstrip("0")
    return text.rstrip(".")


def test_decoded_types_and_fallbacks():
    columns = {c.name: c for c in _batch(ROWS).schema.columns}
    assert {n: (c.logical_type, c.scale) for n, c in columns.items() if c.logical_type in ("time", "timestamp")} \
        == {"t_us": ("time", 6), "t_ms": ("time", 3), "t_ns": ("time", 9), "ts_ns": ("timestamp", 9)}
    assert (columns["t_tz"].logical_type, columns["labels"].logical_type, columns["grid"].logical_type,
            columns["ref"].logical_type) == ("timetz", "array", "array", "string")
    fallbacks = {n: c.fallback for n, c in columns.items() if c.fallback}
    assert set(fallbacks) == {"span", "spot"}
    assert "io.debezium.time.MicroDuration" in fallbacks["span"] and "exact text" in fallbacks["span"]


def test_a_domain_over_numeric_from_corisyncs_converter_is_a_decimal_of_its_precision():
    from corisync_assets.cdc.envelope import table_schema_from_envelope

    field = {"type": "string", "optional": True, "name": "io.corisync.data.DomainDecimal", "version": 1,
             "field": "pct", "parameters": {"__debezium.source.column.type": "PERCENT_D",
                                            "__debezium.source.column.length": "5",
                                            "__debezium.source.column.scale": "2"}}
    schema = table_schema_from_envelope(ev.value_schema("samples", [ID, field]), ev.key_schema("samples", [ID]))
    pct = schema.columns[1]
    assert (pct.logical_type, pct.precision, pct.scale, pct.fallback) == ("decimal", 5, 2, None)


def test_types_land_with_their_values_and_unknown_ones_as_exact_text(tmp_path):
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    result = wh.land(_batch(ROWS))
    assert result.new_events == 2 and result.dead_letters == 0
    with wh.connect(read_only=True) as con:
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_schema = 'raw_cdc' AND table_name = 'samples'").fetchall())
        cur = con.execute("SELECT id, CAST(t_us AS VARCHAR), CAST(t_ms AS VARCHAR), CAST(t_ns AS VARCHAR), "
                          "CAST(t_tz AS VARCHAR), CAST(ts_ns AS VARCHAR), CAST(labels AS VARCHAR), "
                          "CAST(grid AS VARCHAR), ref, span, spot FROM raw_cdc.samples ORDER BY id")
        got = [dict(zip([d[0] for d in cur.description], r, strict=True)) for r in cur.fetchall()]
    assert {k: types[k] for k in ("t_us", "t_tz", "ts_ns", "labels", "span", "spot")} == {
        "t_us": "TIME", "t_tz": "TIME WITH TIME ZONE", "ts_ns": "TIMESTAMP_NS", "labels": "JSON",
        "span": "VARCHAR", "spot": "VARCHAR"}
    for row, want in zip(got, ROWS, strict=True):
        assert row["CAST(t_us AS VARCHAR)"] == _time_of(want["t_us"])
        assert row["CAST(t_ms AS VARCHAR)"] == _time_of(want["t_ms"] * 1000)
        assert row["CAST(t_ns AS VARCHAR)"] == _time_of(want["t_ns"] // 1000)
        hhmmss = want["t_tz"].removesuffix("Z")
        assert row["CAST(t_tz AS VARCHAR)"] == hhmmss + "+00"
        seconds, nanos = divmod(want["ts_ns"], 1_000_000_000)
        stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
        assert row["CAST(ts_ns AS VARCHAR)"] == (f"{stamp}.{nanos:09d}".rstrip("0").rstrip(".") if nanos else stamp)
        assert json.loads(row["CAST(labels AS VARCHAR)"]) == want["labels"]
        grid = row["CAST(grid AS VARCHAR)"]
        assert (json.loads(grid) if grid is not None else None) == want["grid"]
        assert row["ref"] == want["ref"]
        assert row["span"] == (str(want["span"]) if want["span"] is not None else None)
        assert (json.loads(row["spot"]) if row["spot"] is not None else None) == want["spot"]


def test_a_runs_report_carries_the_fallbacks():
    report = TableReport(table="samples", topic="tc4a.public.samples")
    report.add(_batch(ROWS[:1]), LandResult(new_events=1, duplicates=0, dead_letters=0))
    assert set(report.type_fallbacks) == {"span", "spot"}


FIXED = {"type": "string", "optional": True, "field": "price", "parameters": {
    "__debezium.source.column.type": "NUMERIC", "__debezium.source.column.length": "6",
    "__debezium.source.column.scale": "2"}}
FREE = {"type": "string", "optional": True, "field": "ratio", "parameters": {
    "__debezium.source.column.type": "NUMERIC", "__debezium.source.column.length": "131089"}}


def test_nan_in_a_numeric_p_s_lands_as_null_and_is_counted(tmp_path):
    """Postgres allows NaN in a numeric(6,2); a DECIMAL(6,2) has none: it lands as NULL, the run's report counts
    it per column, and the changelog keeps the event's NaN. Unconstrained numeric keeps it as its text. A string
    column holding the text NAN is not counted."""
    wire = [{"id": 1, "price": "NAN", "ratio": "NAN", "note": "NAN"}, {"id": 2, "price": "12.50", "ratio": "1.5",
            "note": None}, {"id": 3, "price": None, "ratio": None, "note": "x"}, {"id": 4, "price": "NAN",
            "ratio": "2", "note": None}]
    fields = [ID, FIXED, FREE, {"type": "string", "optional": True, "field": "note"}]
    decoder = Decoder("evolving")
    for offset, (key, value) in enumerate(_events(fields, wire, 10)):
        decoder.add("tc4a.public.evolving", 0, offset, key, value)
    batch = decoder.reset()
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    report = TableReport(table="evolving", topic="tc4a.public.evolving")
    report.add(batch, wh.land(batch))
    assert set(report.type_warnings) == {"price"} and report.type_warnings["price"].startswith("2 NaN value(s)")
    with wh.connect(read_only=True) as con:
        got = con.execute("SELECT id, CAST(price AS VARCHAR), ratio, typeof(price) FROM raw_cdc.evolving "
                          "ORDER BY id").fetchall()
        kept = con.execute("SELECT after ->> 'price' FROM raw_cdc.evolving__changelog ORDER BY source_lsn"
                           ).fetchall()
    assert got == [(1, None, "NaN", "DECIMAL(6,2)"), (2, "12.50", "1.5", "DECIMAL(6,2)"),
                   (3, None, None, "DECIMAL(6,2)"), (4, None, "2", "DECIMAL(6,2)")]
    assert kept == [("NAN",), ("12.50",), (None,), ("NAN",)]


#: Debezium's text of an interval (interval.handling.mode=string), as the real connector sent these, -> Postgres'
#: three fields (months, days, microseconds), worked out by hand. The last one is at the ends of Postgres' range.
INTERVALS = {
    "P1Y2M3DT4H5M6.78S": (14, 3, 14_706_780_000),
    "P-1Y-2M3DT-4H-5M-6.78S": (-14, 3, -14_706_780_000),
    "P0Y0M0DT100H0M0.000001S": (0, 0, 360_000_000_001),
    "P0Y1M-40DT25H0M0S": (1, -40, 90_000_000_000),
    "P0Y0M-1DT23H59M59.999999S": (0, -1, 86_399_999_999),
    "P0Y0M0DT0H0M-0.5S": (0, 0, -500_000),
    "P-12Y-11M0DT0H0M0S": (-155, 0, 0),
    "P0Y0M0DT0H0M0S": (0, 0, 0),
    "P-178956970Y-8M-2147483648DT-2147483647H-59M-59.999999S": (-2**31, -2**31, -7_730_941_132_799_999_999),
}
INTERVAL_FIELD = {"type": "string", "optional": True, "name": "io.debezium.time.Interval", "version": 1,
                  "field": "iv"}


def interval_events(intervals):
    """One insert per interval (ids from 1; a last row with NULL)."""
    rows = [{"id": i, "iv": text} for i, text in enumerate(intervals, 1)] + [{"id": len(intervals) + 1, "iv": None}]
    return _events([ID, INTERVAL_FIELD], rows, 10)


def test_intervals_land_as_their_three_fields(tmp_path):
    """An ``io.debezium.time.Interval`` column lands as INTERVAL with Postgres' months, days and microseconds
    kept apart (hours beyond 24 stay hours, each part keeps its sign), no type warning; the reconciliation's
    canonical text of it is ``months|days|microseconds``."""
    decoder = Decoder("intervals")
    for offset, (key, value) in enumerate(interval_events(INTERVALS)):
        decoder.add("tc4a.public.intervals", 0, offset, key, value)
    batch = decoder.reset()
    (column,) = [c for c in batch.schema.columns if c.name == "iv"]
    assert (column.logical_type, column.fallback) == ("interval", None)
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    assert wh.land(batch).new_events == len(INTERVALS) + 1
    with wh.connect(read_only=True) as con:
        landed_type = con.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'intervals' "
                                  "AND column_name = 'iv'").fetchone()[0]
        got = con.execute(
            "SELECT datepart('year', iv) * 12 + datepart('month', iv), datepart('day', iv), "
            "datepart('hour', iv) * 3600000000 + datepart('minute', iv) * 60000000 + datepart('microsecond', iv), "
            f"{canonical.interval_text(canonical.DUCKDB, 'iv')} FROM raw_cdc.intervals ORDER BY id").fetchall()
    assert landed_type == "INTERVAL"
    assert got == [(*fields, "|".join(map(str, fields))) for fields in INTERVALS.values()] + [(None,) * 4]


def _events(fields, rows, first_lsn):
    value_schema, key_schema = ev.value_schema("evolving", fields), ev.key_schema("evolving", [ID])
    for i, row in enumerate(rows):
        key = orjson.dumps({"schema": key_schema, "payload": {"id": row["id"]}})
        yield key, orjson.dumps({"schema": value_schema, "payload": {
            "before": None, "after": row, "op": "c", "source": {"lsn": first_lsn + i, "txId": first_lsn, "ts_ms": 1}}})


def test_added_column_with_default_and_widened_type(tmp_path):
    """Postgres gives rows that exist when a column is added with a constant default that default; Debezium
    reports it in the field's schema. Rows landed before, and events older than the column landed with it,
    read the default; a row that set it to NULL keeps NULL. A widened type (int -> bigint) widens the column."""
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    small = {"type": "int32", "optional": True, "field": "n"}
    late = {"type": "string", "optional": True, "default": "it's late", "field": "late"}
    big = {"type": "int64", "optional": True, "field": "n"}
    before = [{"id": 1, "n": 1}, {"id": 2, "n": 2}]
    decoder = Decoder("evolving")
    for offset, (key, value) in enumerate(_events([ID, small], before, 10)):
        decoder.add("tc4a.public.evolving", 0, offset, key, value)
    wh.land(decoder.reset())
    messages = [*_events([ID, small], [{"id": 3, "n": 3}], 20),  # committed before the ALTER, landed after
                *_events([ID, small, late], [{"id": 4, "n": 4, "late": None}, {"id": 5, "n": 5, "late": "x"}], 30),
                *_events([ID, big, late], [{"id": 6, "n": 5_000_000_000, "late": "it's late"}], 40)]
    for offset, (key, value) in enumerate(messages, start=2):
        decoder.add("tc4a.public.evolving", 0, offset, key, value)
    assert wh.land(decoder.reset()).new_events == 4
    with wh.connect(read_only=True) as con:
        got = con.execute("SELECT id, n, late FROM raw_cdc.evolving ORDER BY id").fetchall()
        n_type = con.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'evolving' "
                             "AND column_name = 'n'").fetchone()[0]
    assert got == [(1, 1, "it's late"), (2, 2, "it's late"), (3, 3, "it's late"), (4, 4, None), (5, 5, "x"),
                   (6, 5_000_000_000, "it's late")]
    assert n_type == "BIGINT"


def test_first_landing_spanning_an_added_column_with_default(tmp_path):
    """The table's first landing holds events from before and after a column with a default was added (the
    warehouse table is created with the column): the older events' rows read the default, as in Postgres."""
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    late = {"type": "string", "optional": True, "default": "it's late", "field": "late"}
    decoder = Decoder("evolving")
    messages = [*_events([ID], [{"id": 1}, {"id": 2}], 10),
                *_events([ID, late], [{"id": 3, "late": None}, {"id": 4, "late": "x"}], 20)]
    for offset, (key, value) in enumerate(messages):
        decoder.add("tc4a.public.evolving", 0, offset, key, value)
    assert wh.land(decoder.reset()).new_events == 4
    with wh.connect(read_only=True) as con:
        got = con.execute("SELECT id, late FROM raw_cdc.evolving ORDER BY id").fetchall()
    assert got == [(1, "it's late"), (2, "it's late"), (3, None), (4, "x")]


#: dates, timestamps and timestamptz outside 0001..9999 as the real connector sends them (Debezium 3.6.3 on PG15:
#: days, microseconds, ISO text with a signed year past 9999 and ISO year 0 for 1 BC). Postgres allows
#: dates up to 5874897 AD and timestamps up to 294276 AD; DuckDB's TIMESTAMPTZ ends in 294247.
FAR_FIELDS = [
    ID,
    {"type": "int32", "optional": True, "name": "io.debezium.time.Date", "version": 1, "field": "d"},
    {"type": "int64", "optional": True, "name": "io.debezium.time.MicroTimestamp", "version": 1, "field": "ts"},
    {"type": "string", "optional": True, "name": "io.debezium.time.ZonedTimestamp", "version": 1, "field": "tz"},
]
FAR_ROWS = [
    {"id": 1, "d": 2_932_897, "ts": 253_402_344_000_000_000, "tz": "+10000-01-01T12:00:00.000000Z"},
    {"id": 2, "d": -719_528, "ts": -62_167_219_200_000_000, "tz": "0000-01-01T00:00:00.000000Z"},
    {"id": 3, "d": -2_440_550, "ts": -210_863_520_000_000_000, "tz": "-4712-01-01T00:00:00.000000Z"},
    {"id": 4, "d": 2_145_042_905, "ts": None, "tz": "+294276-12-31T23:59:59.000000Z"},
]


def _civil(days: int) -> tuple[int, int, int]:
    """(ISO year, month, day) of a day count since 1970-01-01 in the proleptic Gregorian calendar (Howard
    Hinnant's days_from_civil inverse: Python's date ends in 9999)."""
    z = days + 719_468
    era = z // 146_097  # floor division: no correction for negative days as in the C original
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d, m = doy - (153 * mp + 2) // 5 + 1, mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d


def _duckdb_day(iso_year: int, month_day: str) -> str:
    """DuckDB's text of a day of ISO year ``iso_year`` (year 0 is 1 BC, -4712 is 4713 BC)."""
    return f"{iso_year:04d}-{month_day}" if iso_year > 0 else f"{1 - iso_year:04d}-{month_day} (BC)"


def _duckdb_date(days: int) -> str:
    y, m, d = _civil(days)
    return _duckdb_day(y, f"{m:02d}-{d:02d}")


def _duckdb_timestamp(micros: int) -> str:
    days, rest = divmod(micros, 86_400_000_000)
    return f"{_duckdb_date(days)} {_time_of(rest)}"


def _duckdb_timestamptz(iso: str) -> str | None:
    """DuckDB's text (in UTC) of Debezium's ZonedTimestamp text; None beyond DuckDB's range."""
    m = re.fullmatch(r"([+-]?[0-9]{4,})-([0-9]{2}-[0-9]{2})T([0-9:]{8})(?:[.]([0-9]+))?Z", iso)
    year, fraction = int(m[1]), (m[4] or "").rstrip("0")
    if year > 294_247:
        return None
    return f"{_duckdb_day(year, m[2])} {m[3]}" + (f".{fraction}" if fraction else "")


def test_dates_and_timestamps_beyond_year_9999_and_before_year_1(tmp_path):
    """A timestamptz after 9999 comes as ``+10000-…`` and stopped every table's landing with a conversion error
    (DuckDB reads no sign); one beyond DuckDB's range (294247) lands as NULL, which reconciliation reports."""
    value_schema, key_schema = ev.value_schema("far", FAR_FIELDS), ev.key_schema("far", [ID])
    decoder = Decoder("far")
    for i, row in enumerate(FAR_ROWS):
        decoder.add("tc4a.public.far", 0, i, orjson.dumps({"schema": key_schema, "payload": {"id": row["id"]}}),
                    orjson.dumps({"schema": value_schema, "payload": {
                        "before": None, "after": row, "op": "c", "source": {"lsn": 100 + i, "txId": 7, "ts_ms": 1}}}))
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    assert wh.land(decoder.batch).new_events == len(FAR_ROWS)
    with wh.connect(read_only=True) as con:
        got = con.execute("SELECT id, CAST(d AS VARCHAR), CAST(ts AS VARCHAR), "
                          "CAST(timezone('UTC', tz) AS VARCHAR) FROM raw_cdc.far ORDER BY id").fetchall()
    want = [(r["id"], _duckdb_date(r["d"]), _duckdb_timestamp(r["ts"]) if r["ts"] is not None else None,
             _duckdb_timestamptz(r["tz"])) for r in FAR_ROWS]
    assert got == want
