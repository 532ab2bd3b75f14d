"""The reconciliation check's rate: rows compared per second on a table of N rows (default 1,000,000).

Builds the same table twice, directly (no Debezium, no Kafka: this measures the comparison, not landing):
in Postgres with generate_series, and as the raw CDC current-state table in a fresh DuckDB file with the
types landing gives each column (plus the ``_cdc_*`` columns), from the same formulas. Then runs the
comparison of :mod:`corisync_assets.cdc.reconcile` (consistent point, chunked compare of both sides) ``--rounds``
times and prints each round's rate and the median. The table has 8 columns of mixed types: bigint key, text,
numeric(12,2), double precision, boolean, timestamptz, date, jsonb. Without --pg it starts a private Postgres
cluster (the project's local cluster code) in a temp home on a free port, and removes it afterwards.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb  # before timing, as in a running code location

from corisync_assets.cdc.reconcile import CHUNK_ROWS, TableRef, reconcile
from corisync_assets.environment import Settings, settings
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
from corisync_assets.resources.warehouse.reader import open_reader

TABLE = "bench_reconcile"
PG_DDL = f"""DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (id bigint PRIMARY KEY, name text, amount numeric(12,2), score double precision,
                      active boolean, created_at timestamptz, day date, doc jsonb)"""
PG_FILL = f"""INSERT INTO {TABLE}
SELECT g, 'name ' || g, (g %% 100000) / 100.0, g::float8 / 7, g %% 3 = 0,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second 1 microsecond',
       date '2020-01-01' + (g %% 2000), jsonb_build_object('k', g %% 10, 'tag', 't' || (g %% 7))
FROM generate_series(1, %s) g"""
# the same rows as landing types them in DuckDB (see resources/warehouse/duckdb.py sql_type)
DUCKDB_FILL = f"""CREATE TABLE raw_cdc.{TABLE} AS
SELECT g AS id, 'name ' || g AS name, CAST((g % 100000) / 100 AS DECIMAL(12,2)) AS amount,
       CAST(g AS DOUBLE) / 7 AS score, g % 3 = 0 AS active,
       TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_microseconds(g * 1000001) AS created_at,
       CAST(DATE '2020-01-01' + CAST(g % 2000 AS INTEGER) AS DATE) AS day,
       CAST('{{"k": ' || (g % 10) || ', "tag": "t' || (g % 7) || '"}}' AS JSON) AS doc,
       'r' AS _cdc_op, CAST(1 AS BIGINT) AS _cdc_lsn, CAST(0 AS BIGINT) AS _cdc_ts_ms,
       now() AS _cdc_landed_at
FROM generate_series(1, ?) t(g)"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(s: Settings):
    import psycopg

    return psycopg.connect(host=s.pg_host, port=s.pg_port, dbname=s.pg_database, user=s.pg_user,
                           password=s.pg_password, autocommit=True, connect_timeout=10)


def private_postgres(home: Path) -> Settings:
    """Start the project's local cluster in ``home`` on a free port; the settings with its passwords."""
    from corisync_assets.local import postgres
    from corisync_assets.local.postgres import read_secrets

    home.mkdir()
    for d in (home.parent, home):
        d.chmod(0o755)  # the postgres OS user must traverse them
    s = Settings(home=home, pg_port=free_port())
    postgres.start(s)
    secrets = read_secrets(home)
    return s.model_copy(update={"pg_password": secrets["CORISYNC_PG_PASSWORD"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="rows in the table")
    parser.add_argument("--rounds", type=int, default=3, help="comparisons of the same table (default 3)")
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help="keys per chunk")
    parser.add_argument("--pg", action="store_true",
                        help="use the Postgres of the settings (CORISYNC_PG_*) instead of a private cluster")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-", dir="/tmp") as tmp:
        s = settings() if args.pg else private_postgres(Path(tmp) / "home")
        try:
            t0 = time.perf_counter()
            with connect(s) as pg:
                pg.execute(PG_DDL)
                pg.execute(PG_FILL, (args.n,))
                pg.execute(f"VACUUM ANALYZE {TABLE}")
            pg_s = time.perf_counter() - t0
            wh = DuckDBWarehouse(path=os.path.join(tmp, "warehouse.duckdb"))
            t0 = time.perf_counter()
            with duckdb.connect(wh.path) as con:
                con.execute("CREATE SCHEMA raw_cdc")
                con.execute(DUCKDB_FILL, [args.n])
            print(f"built {args.n:,} rows: Postgres {pg_s:.1f}s, DuckDB {time.perf_counter() - t0:.1f}s")
            print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
                  f"load average {os.getloadavg()[0]:.2f}")
            rates = []
            for i in range(1, args.rounds + 1):
                t0 = time.perf_counter()
                _point, _landed, (result,) = reconcile(lambda: connect(s), lambda: open_reader(wh),
                                                       [TableRef("public", TABLE, TABLE)], slot=None,
                                                       chunk_rows=args.chunk_rows)
                wall = time.perf_counter() - t0
                assert result.passed and result.keys_compared == args.n, result.description
                rates.append(args.n / wall)
                print(f"round {i}: {args.n:,} rows equal in {wall:.2f}s = {rates[-1]:,.0f} rows/s "
                      f"({result.chunks} chunks of {result.chunk_rows:,}; compare alone {result.seconds:.2f}s)")
            print(f"reconciliation rate = {statistics.median(rates):,.0f} rows/s (median of {len(rates)}; "
                  f"min {min(rates):,.0f}, max {max(rates):,.0f}); target >= 200,000")
        finally:
            if not args.pg:
                from corisync_assets.local import postgres

                postgres.stop(s)


if __name__ == "__main__":
    main()
