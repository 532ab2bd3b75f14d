"""Row counts and column metadata of a dbt build, read from the warehouse instead of dbt's in-process adapter.

dagster-dbt's ``fetch_row_counts()`` and ``fetch_column_metadata()`` (column schema, and column lineage
through sqlglot over dbt's compiled SQL) ask a dbt adapter, which dagster-dbt builds in the run's process
before it starts dbt (dbt-core imported, the profile and the project's macros loaded: ~2 s per run here).
They ask it four things: a connection scope, a relation from (database, schema, identifier), the columns of
a relation, and the result of one ``count(*)`` query. :class:`WarehouseAdapter` answers them from the
warehouse's :class:`~corisync_assets.resources.warehouse.base.RelationReader` (DuckDB: a read-only
connection to the build's copy, opened once dbt has let go of it; BigQuery: tables.get and a query job, as
dbt's BigQuery adapter does). The metadata dagster-dbt builds from the answers is the same; Dagster's
processes need no dbt-core (``corisync_assets/no_dbt_core.py``).

``CorisyncDbtCliResource.cli(..., metadata_from=warehouse)`` hands one to dagster-dbt for that invocation.
"""

from __future__ import annotations

import contextlib
import threading
from typing import NamedTuple

from corisync_assets.resources.warehouse.base import RelationReader, Warehouse


class Column(NamedTuple):
    name: str
    data_type: str


class Relation(NamedTuple):
    database: str
    schema: str
    identifier: str
    sql: str

    def __str__(self) -> str:  # dagster-dbt keys the parents' columns by it, and sqlglot parses it
        return self.sql


class _Relations:
    """``adapter.Relation``: what dagster-dbt calls ``create`` on."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse

    def create(self, database: str, schema: str, identifier: str) -> Relation:
        return Relation(database, schema, identifier, self._warehouse.relation_sql(database, schema, identifier))


class WarehouseAdapter:
    """The part of a dbt adapter dagster-dbt's metadata fetchers use, answered by ``warehouse`` (or by its
    build copy at ``build_path``). dagster-dbt calls it from a thread pool: the reader opens once, at the first
    question (DuckDB: the copy is dbt's until dbt exits), and closes at :meth:`cleanup_connections`."""

    def __init__(self, warehouse: Warehouse, build_path: str | None = None) -> None:
        self.Relation = _Relations(warehouse)
        self._warehouse = warehouse
        self._build_path = build_path
        self._reader: RelationReader | None = None
        self._lock = threading.Lock()

    def _read(self) -> RelationReader:
        with self._lock:
            if self._reader is None:
                self._reader = self._warehouse.relation_reader(self._build_path)
            return self._reader

    def connection_named(self, name: str):
        return contextlib.nullcontext()

    def get_columns_in_relation(self, relation: Relation) -> list[Column]:
        return [Column(*c) for c in self._read().columns(relation.database, relation.schema, relation.identifier)]

    def execute(self, sql: str, fetch: bool = False) -> tuple[None, list[tuple]]:
        """(response, rows), as dbt's ``adapter.execute`` returns them (dagster-dbt reads ``rows[0][0]``)."""
        rows = self._read().fetch(sql)
        return None, rows if fetch else []

    def cleanup_connections(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
