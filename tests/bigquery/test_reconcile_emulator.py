"""The reconciliation's BigQuery rendering against the BigQuery emulator (its SQL over DuckDB, see conftest).

The same rows in a Postgres table of the test stack and in an emulator table typed as landing types them in
BigQuery (INT64, NUMERIC(p, s), FLOAT64, BOOL, DATE, DATETIME, TIMESTAMP, BYTES, TIME, INTERVAL); the check's
SQL for BigQuery (canonical texts, key ranges, chunk digests, per-key drill) must find them equal, then find the
values changed behind its back. The emulator is not BigQuery: this shows the SQL runs and agrees on these
values, not BigQuery's own formatting (FORMAT_*, CAST of NUMERIC, EXTRACT of an interval's MICROSECOND, which
the emulator counts with the seconds); -0.0 is left out (the emulator stores 0).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from corisync_assets.cdc.reconcile import TableRef, compare_table, open_snapshot
from corisync_assets.resources.warehouse.reader import SqlReader, open_reader
from tests.support.pipeline import pg_connect

pytestmark = pytest.mark.stack

TABLE = "reconcile_bq"
PG_DDL = f"""DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (id bigint, code text, amount numeric(10,2), score float8, ok boolean, d date, ts timestamp,
                      tstz timestamptz, b bytea, t time, iv interval, PRIMARY KEY (id, code));
INSERT INTO {TABLE} VALUES
 (1, 'a', 12.5, 0.1, true, '2024-01-05', '2024-01-05 12:34:56.5', '2024-01-05 12:34:56.5+02', '\\x01ff', '12:34:56.5',
  '1 year 2 months 3 days 04:05:06.78'),
 (2, 'ñ', -1, 1e300, false, '0001-01-01', '1970-01-01 00:00:00', '2024-01-05 00:00:00+00', '', '00:00:00', '1 day'),
 (2, 'O''B', 0, 5e-324, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 'x', 3, -2.5, true, '2024-02-29', '2000-01-01 00:00:00.000001', '2000-01-01 00:00:00.000001+00', '\\x00',
  '23:59:59.999999', '-1 years -2 months +3 days -100:05:06.000001')"""
BQ_COLUMNS = ("id INT64, code STRING, amount NUMERIC(10, 2), score FLOAT64, ok BOOL, d DATE, ts DATETIME, "
              "tstz TIMESTAMP, b BYTES, t TIME, iv INTERVAL")
BQ_ROWS = """
 (1, 'a', NUMERIC '12.5', 0.1, true, DATE '2024-01-05', DATETIME '2024-01-05 12:34:56.5',
  TIMESTAMP '2024-01-05 10:34:56.5+00', FROM_BASE64('Af8='), TIME '12:34:56.5',
  MAKE_INTERVAL(1, 2, 3, 4, 5, 6) + INTERVAL 780 MILLISECOND),
 (2, 'ñ', NUMERIC '-1', 1e300, false, DATE '0001-01-01', DATETIME '1970-01-01 00:00:00',
  TIMESTAMP '2024-01-05 00:00:00+00', FROM_BASE64(''), TIME '00:00:00', INTERVAL 1 DAY),
 (2, 'O\\'B', NUMERIC '0', 5e-324, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 'x', NUMERIC '3', -2.5, true, DATE '2024-02-29', DATETIME '2000-01-01 00:00:00.000001',
  TIMESTAMP '2000-01-01 00:00:00.000001+00', FROM_BASE64('AA=='), TIME '23:59:59.999999',
  INTERVAL -14 MONTH + INTERVAL 3 DAY + INTERVAL -100 HOUR + INTERVAL -5 MINUTE + INTERVAL -6000001 MICROSECOND)"""


def emulator_types(reader: SqlReader) -> SqlReader:
    """The emulator's INFORMATION_SCHEMA.COLUMNS lists an INTERVAL column as STRING (its table API, and
    BigQuery's INFORMATION_SCHEMA, say INTERVAL): the reader is told the column's type as BigQuery gives it."""
    def columns(table: str) -> dict[str, str] | None:
        found = reader.columns(table)
        return found if found is None else {**found, "iv": "INTERVAL"}

    return replace(reader, columns=columns)


def test_bigquery_rendering_agrees_with_postgres(stack, bq_warehouse):
    ref = bq_warehouse._sql_ref(TABLE)
    bq_warehouse._query(f"CREATE TABLE {ref} ({BQ_COLUMNS})")
    bq_warehouse._query(f"INSERT INTO {ref} VALUES {BQ_ROWS}")
    with pg_connect(stack) as setup:
        setup.execute(PG_DDL)

    def compare(chunk_rows: int):
        with pg_connect(stack) as pg:
            point = open_snapshot(pg)
            with open_reader(bq_warehouse) as reader:
                return compare_table(pg, emulator_types(reader), TableRef("public", TABLE, TABLE), point,
                                     chunk_rows=chunk_rows)

    try:
        result = compare(chunk_rows=2)  # three key ranges over the composite key
        assert result.passed, result.metadata()
        assert (result.keys_compared, result.chunks, result.chunks_differing, result.columns_not_compared) == (
            4, 3, 0, {})

        bq_warehouse._query(f"UPDATE {ref} SET tstz = TIMESTAMP '2024-01-05 10:34:56.6+00' WHERE id = 1")
        # equal as intervals (1 day = 24 hours, in BigQuery as in Postgres), but not the same fields (a new row:
        # the emulator's UPDATE leaves a row alone when the new value equals the old)
        bq_warehouse._query(f"INSERT INTO {ref} SELECT * REPLACE (INTERVAL 24 HOUR AS iv) FROM {ref} WHERE code = 'ñ'")
        bq_warehouse._query(f"DELETE FROM {ref} WHERE code = 'ñ' AND EXTRACT(DAY FROM iv) = 1")
        result = compare(chunk_rows=1000)

        assert not result.passed
        assert [d.as_json() for d in result.first_differences] == [
            {"key": {"id": "1", "code": "a"}, "difference": "values_differ", "columns": ["tstz"]},
            {"key": {"id": "2", "code": "ñ"}, "difference": "values_differ", "columns": ["iv"]}]
    finally:
        with pg_connect(stack) as pg:
            pg.execute(f"DROP TABLE IF EXISTS {TABLE}")
