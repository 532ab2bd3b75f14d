"""Read-only SQL on the raw CDC tables, for checks that compare the warehouse with its source.

Reconciliation issues many small queries (one or two per primary-key chunk) with typed parameters; this is
the one place that knows how each warehouse runs them. Parameters are positional ``?`` strings in both
dialects (the SQL casts them). DuckDB reads under the file's writer slot with one connection for the whole
session, in UTC: nothing lands while it reads (the lander queues on the slot), so a comparison sees one state
of the warehouse. BigQuery runs query jobs; landing goes on meanwhile (the algorithm allows for it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from corisync_assets.resources.warehouse.base import CHANGELOG_SUFFIX, Warehouse


@dataclass(frozen=True)
class SqlReader:
    """One read session on a warehouse: its dialect, how to name a raw table, and how to run a query."""

    dialect: str  # "duckdb" | "bigquery" (see corisync_assets.resources.warehouse.canonical.DIALECTS)
    relation: Callable[[str], str]  # raw table name -> quoted SQL reference
    quote: Callable[[str], str]  # column name -> quoted identifier
    fetch: Callable[[str, Sequence[str]], list[tuple]]  # sql, positional string parameters -> rows
    columns: Callable[[str], dict[str, str] | None]  # raw table -> {column: type}, None if the table is missing

    def changelog(self, table: str) -> str:
        return self.relation(table + CHANGELOG_SUFFIX)


@contextmanager
def open_reader(warehouse: Warehouse) -> Iterator[SqlReader]:
    """A read session on ``warehouse`` (DuckDB or BigQuery)."""
    if warehouse.kind == "duckdb":
        with _duckdb_reader(warehouse) as reader:
            yield reader
    elif warehouse.kind == "bigquery":
        yield _bigquery_reader(warehouse)
    else:  # pragma: no cover - the two warehouses there are
        raise ValueError(f"no SQL reader for warehouse kind {warehouse.kind!r}")


@contextmanager
def _duckdb_reader(wh) -> Iterator[SqlReader]:
    from corisync_assets.resources.warehouse.duckdb import q

    schema = wh.schema_name

    def relation(table: str) -> str:
        return f"{q(schema)}.{q(table)}"

    with wh.exclusive():
        if not Path(wh.path).exists():  # nothing landed yet: every table is missing
            yield SqlReader("duckdb", relation, q, lambda sql, params=(): [], lambda table: None)
            return
        with wh.connect(read_only=True) as con:
            con.execute("SET TimeZone = 'UTC'")

            def fetch(sql: str, params: Sequence[str] = ()) -> list[tuple]:
                return con.execute(sql, list(params)).fetchall()

            def columns(table: str) -> dict[str, str] | None:
                rows = con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE "
                                   "table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                                   [schema, table]).fetchall()
                return dict(rows) if rows else None

            yield SqlReader("duckdb", relation, q, fetch, columns)


def _bigquery_reader(wh) -> SqlReader:
    from corisync_assets.resources.warehouse.bigquery import q

    def relation(table: str) -> str:
        return wh._sql_ref(table)

    def fetch(sql: str, params: Sequence[str] = ()) -> list[tuple]:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(query_parameters=[
            bigquery.ScalarQueryParameter(None, "STRING", p) for p in params])
        job = wh.client().query(sql, job_config=config, timeout=wh.request_timeout_s)
        return [tuple(row.values()) for row in job.result(timeout=wh.job_timeout_s)]

    def columns(table: str) -> dict[str, str] | None:
        info = q(wh.project, wh.dataset, "INFORMATION_SCHEMA", "COLUMNS")
        rows = fetch(f"SELECT column_name, data_type FROM {info} WHERE table_name = ? ORDER BY ordinal_position",
                     [table])
        return dict(rows) if rows else None

    return SqlReader("bigquery", relation, lambda name: f"`{name}`", fetch, columns)
