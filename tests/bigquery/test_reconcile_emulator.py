"""The reconciliation's BigQuery rendering against the BigQuery emulator (its SQL over DuckDB, see conftest).

The same rows in a Postgres table of the test stack and in an emulator table typed as landing types them in
BigQuery (INT64, NUMERIC(p, s), FLOAT64, BOOL, DATE, DATETIME, TIMESTAMP, BYTES, TIME); the check's SQL for
BigQuery (canonical texts, key ranges, chunk digests, per-key drill) must find them equal, then find the one
value changed behind its back. The emulator is not BigQuery: this shows the SQL runs and agrees on these
values, not BigQuery's own formatting (FORMAT_*, CAST of NUMERIC); -0.0 is left out (the emulator stores 0).
"""

from __future__ import annotations

import pytest

from corisync_assets.cdc.reconcile import TableRef, compare_table, open_snapshot
from corisync_assets.resources.warehouse.reader import open_reader
from tests.support.pipeline import pg_connect

pytestmark = pytest.mark.stack

TABLE = "reconcile_bq"
PG_DDL = f"""DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (id bigint, code text, amount numeric(10,2), score float8, ok boolean, d date, ts timestamp,
                      tstz timestamptz, b bytea, t time, PRIMARY KEY (id, code));
INSERT INTO {TABLE} VALUES
 (1, 'a', 12.5, 0.1, true, '2024-01-05', '2024-01-05 12:34:56.5', '2024-01-05 12:34:56.5+02', '\\x01ff', '12:34:56.5'),
 (2, 'ñ', -1, 1e300, false, '0001-01-01', '1970-01-01 00:00:00', '2024-01-05 00:00:00+00', '', '00:00:00'),
 (2, 'O''B', 0, 5e-324, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 'x', 3, -2.5, true, '2024-02-29', '2000-01-01 00:00:00.000001', '2000-01-01 00:00:00.000001+00', '\\x00',
  '23:59:59.999999')"""
BQ_COLUMNS = ("id INT64, code STRING, amount NUMERIC(10, 2), score FLOAT64, ok BOOL, d DATE, ts DATETIME, "
              "tstz TIMESTAMP, b BYTES, t TIME")
BQ_ROWS = """
 (1, 'a', NUMERIC '12.5', 0.1, true, DATE '2024-01-05', DATETIME '2024-01-05 12:34:56.5',
  TIMESTAMP '2024-01-05 10:34:56.5+00', FROM_BASE64('Af8='), TIME '12:34:56.5'),
 (2, 'ñ', NUMERIC '-1', 1e300, false, DATE '0001-01-01', DATETIME '1970-01-01 00:00:00',
  TIMESTAMP '2024-01-05 00:00:00+00', FROM_BASE64(''), TIME '00:00:00'),
 (2, 'O\\'B', NUMERIC '0', 5e-324, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 'x', NUMERIC '3', -2.5, true, DATE '2024-02-29', DATETIME '2000-01-01 00:00:00.000001',
  TIMESTAMP '2000-01-01 00:00:00.000001+00', FROM_BASE64('AA=='), TIME '23:59:59.999999')"""


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
                return compare_table(pg, reader, TableRef("public", TABLE, TABLE), point, chunk_rows=chunk_rows)

    try:
        result = compare(chunk_rows=2)  # three key ranges over the composite key
        assert result.passed, result.metadata()
        assert (result.keys_compared, result.chunks, result.chunks_differing, result.columns_not_compared) == (
            4, 3, 0, {})

        bq_warehouse._query(f"UPDATE {ref} SET tstz = TIMESTAMP '2024-01-05 10:34:56.6+00' WHERE id = 1")
        result = compare(chunk_rows=1000)

        assert not result.passed
        assert [d.as_json() for d in result.first_differences] == [
            {"key": {"id": "1", "code": "a"}, "difference": "values_differ", "columns": ["tstz"]}]
    finally:
        with pg_connect(stack) as pg:
            pg.execute(f"DROP TABLE IF EXISTS {TABLE}")
