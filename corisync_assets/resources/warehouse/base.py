"""The warehouse landing interface: one transaction per decoded batch, idempotent by event identity.

Both implementations (DuckDB locally, BigQuery in prod) keep the same two tables per captured table:
`<table>__changelog` (append-only, one row per change) and `<table>` (current state, upsert by primary key,
deletes remove the row), plus `_dead_letters`. Landing the same events twice changes nothing: events whose
`event_id` is already in the changelog are dropped before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

from dagster import ConfigurableResource

from corisync_assets.cdc.envelope import ChangeBatch, check_identifier

CHANGELOG_SUFFIX = "__changelog"
DEAD_LETTERS = "_dead_letters"
#: the SQL of ``Warehouse.dead_letter_summary`` (both dialects), ``{table}`` the dead-letter table's reference,
#: ``{pending}`` the condition that leaves out dead letters already replayed (or ``TRUE``)
DEAD_LETTER_SUMMARY_SQL = ("SELECT source_table, error, count(*) FROM {table} WHERE {pending}"
                           " GROUP BY source_table, error")


def snapshot_end_sql(current: str, start_lsns: Sequence[int]) -> str:
    """The statement (both dialects) that ends a finished re-snapshot (`corisync_assets.cdc.snapshots`): every
    row alive in Postgres has an event at or after the request's WAL position by now, so older rows are gone."""
    return f"DELETE FROM {current} WHERE _cdc_lsn < {max(int(lsn) for lsn in start_lsns)}"


@dataclass(frozen=True)
class StoredDeadLetter:
    """A message that did not land, as the warehouse keeps it (``_dead_letters``)."""

    source_table: str
    topic: str
    partition: int
    offset: int
    error: str
    key: str | None
    value: str | None
    replayed: bool


@dataclass(frozen=True)
class TableRows:
    """Some or all rows of one table, with its columns (name, warehouse type) and its total row count."""

    columns: list[tuple[str, str]]
    rows: list[tuple]
    row_count: int

    def records(self) -> list[dict]:
        names = [name for name, _type in self.columns]
        return [dict(zip(names, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class RelationReader:
    """Read-only access to any relation of a warehouse, named as dbt names it (database, schema, name): what
    the metadata of a dbt build needs (``corisync_assets.dbt.warehouse_adapter``). Safe to call from several
    threads at once; ``close`` when done."""

    columns: Callable[[str, str, str], list[tuple[str, str]]]  # (column, type) in order; [] if missing
    fetch: Callable[[str], list[tuple]]  # a query's rows
    close: Callable[[], None]


#: warehouse type of each logical column type of a :class:`PartitionedTable`, per dialect
PARTITIONED_TYPES = {
    "duckdb": {"string": "VARCHAR", "int32": "INTEGER", "int64": "BIGINT", "float64": "DOUBLE", "bool": "BOOLEAN",
               "timestamp": "TIMESTAMPTZ", "date": "DATE"},
    "bigquery": {"string": "STRING", "int32": "INT64", "int64": "INT64", "float64": "FLOAT64", "bool": "BOOL",
                 "timestamp": "TIMESTAMP", "date": "DATE"},
}


@dataclass(frozen=True)
class PartitionedTable:
    """A table kept as hive-partitioned Parquet in the lake (``<lake>/<lake_dir>/<partition>=YYYY-MM-DD/``)
    and loaded into the warehouse's raw layer by whole date partitions."""

    name: str
    lake_dir: str
    partition: str
    columns: tuple[tuple[str, str], ...]  # (name, logical type), the partition column included
    key: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [name for name, _type in self.columns]

    def ddl(self, dialect: str) -> str:
        return ", ".join(f"{name} {PARTITIONED_TYPES[dialect][kind]}" for name, kind in self.columns)

    def in_dates(self, dates: Sequence[date]) -> str:
        """The condition ``<partition> IN (DATE '...', ...)``, the same in every dialect (FALSE for none)."""
        if not dates:
            return "FALSE"
        return f"{self.partition} IN ({', '.join(f'DATE {d.isoformat()!r}' for d in sorted(dates))})"

    def replace_sql(self, target: str, source: str | None, dates: Sequence[date]) -> list[str]:
        """The partition swap, the same in every dialect: drop the dates' rows, insert the lake's rows of
        those dates (``source``: a relation with the table's columns; None when the lake has none)."""
        if not dates:
            return []
        cols, where = ", ".join(self.column_names), self.in_dates(dates)
        statements = [f"DELETE FROM {target} WHERE {where}"]
        if source is not None:
            statements.append(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {source} WHERE {where}")
        return statements

    def count_sql(self, target: str, dates: Sequence[date]) -> str:
        """Rows of ``target`` in the given dates (after a swap: what it now holds there)."""
        return f"SELECT count(*) FROM {target} WHERE {self.in_dates(dates)}"


@dataclass(frozen=True)
class LandResult:
    new_events: int
    duplicates: int
    dead_letters: int


class Warehouse(ConfigurableResource):
    """Where raw CDC tables land. Subclasses implement `land_all`: every batch in one transaction.

    Landing several tables' batches together is what keeps the raw layer a transactionally consistent cut
    of Postgres (see `corisync_assets.cdc.cut`): dbt never sees one table ahead of another.
    """

    def land(self, batch: ChangeBatch) -> LandResult:
        """Land one table's batch in one transaction."""
        return self.land_all([batch])[0]

    def land_all(self, batches: Sequence[ChangeBatch], replay: bool = False, commit: bool = True
                 ) -> list[LandResult]:  # pragma: no cover - interface
        """Land batches of several tables in one transaction; one result per batch, in order.

        ``replay``: the events are older messages landed late (dead letters replayed): the changelog takes
        them, but current state takes an event only if no newer event of its row was landed before.
        ``commit=False`` (within a landing session): the warehouse may leave its transaction open, and the
        next calls add to it, up to one with ``commit=True``; until then nothing of them is committed (a
        failure rolls them all back). Warehouses whose landing is an append (BigQuery) commit every call."""
        raise NotImplementedError

    def dead_letters(self, table: str | None = None) -> list[StoredDeadLetter]:  # pragma: no cover - interface
        """Every dead letter held (of one source table), replayed or not, in (topic, partition, offset) order."""
        raise NotImplementedError

    def mark_replayed(self, table: str, positions: Sequence[tuple[str, int, int]]) -> int:  # pragma: no cover
        """Mark these (topic, partition, offset) dead letters of ``table`` replayed (they are kept); how many."""
        raise NotImplementedError

    def replace_partitions(self, loads: Mapping[PartitionedTable, Mapping[date, Sequence[str]]]
                           ) -> dict[str, int]:  # pragma: no cover - interface
        """Make each table's rows of the given dates exactly the rows of those Parquet files (the lake's
        partitions; a date without files ends up empty), tables created when missing; idempotent. Returns the
        rows each table now holds in those dates. DuckDB swaps every table in one transaction."""
        raise NotImplementedError

    @contextmanager
    def exclusive(self):
        """Hold the warehouse's writer slot across processes (DuckDB: one writer per file; the lander and
        dbt take turns). Warehouses without such a limit need nothing here."""
        yield self

    @contextmanager
    def dbt_build(self):
        """Where a dbt build writes, held for the build: the path of a private copy of the warehouse taken
        under the writer slot (DuckDB), or None when dbt builds in place (BigQuery: no file lock keeps
        anyone out while it builds). A copy's results reach the warehouse by :meth:`publish_dbt_build`."""
        yield None

    def publish_dbt_build(self, relations: Sequence[tuple[str, str]]) -> int:
        """Put the (schema, name) tables and views dbt built in :meth:`dbt_build`'s copy into the warehouse,
        in the order given (a view after what it reads); how many. Callers hold the writer slot. Nothing to
        do where dbt builds in place."""
        return 0

    @property
    def defers_current_state(self) -> bool:
        """True when `land_all` only appends and current state changes at `fold` (BigQuery): the raw assets
        are then reported materialized when a fold brings new events into what dbt reads."""
        return False

    def relation_sql(self, database: str, schema: str, name: str) -> str:  # pragma: no cover - interface
        """The quoted reference to a relation in this warehouse's SQL dialect."""
        raise NotImplementedError

    def relation_reader(self, build_path: str | None = None) -> RelationReader:  # pragma: no cover - interface
        """A :class:`RelationReader` on the warehouse, or on :meth:`dbt_build`'s copy at ``build_path`` (once
        dbt has let go of it)."""
        raise NotImplementedError

    def existing_relations(self, relations: Sequence[tuple[str, str]]) -> set[tuple[str, str]] | None:
        """Which of these (schema, name) tables or views exist; None when this warehouse cannot tell
        cheaply (callers then fall back to what the Dagster instance recorded)."""
        return None

    def table_row_counts(self, relations: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int] | None:
        """Row counts of the tables (not views) among (schema, name), in one cheap round trip; None when this
        warehouse has no such way (dbt runs then count per table, ``corisync_assets/dbt/warehouse_adapter.py``)."""
        return None

    def read_tables(self, relations: Sequence[tuple[str, str]], limit: int | None = None
                    ) -> dict[tuple[str, str], TableRows]:  # pragma: no cover - interface
        """The first ``limit`` rows (all when None) of each existing (schema, name) table or view, with its
        columns and row count, read without a query job where the warehouse allows it (previews, exports).
        Callers that share a writer slot (DuckDB) hold it."""
        raise NotImplementedError

    @property
    def counts_tables(self) -> bool:
        """Whether :meth:`table_row_counts` answers (the subclass implements it)."""
        return type(self).table_row_counts is not Warehouse.table_row_counts

    def fold(self, force: bool = False) -> dict | None:
        """Bring current-state tables up to the landed changelog, if this warehouse defers that (BigQuery
        folds on its own bounded cadence; ``force`` folds now, e.g. at the end of a raw run); return
        metadata about what was folded, or None when nothing was due."""
        return None

    @contextmanager
    def session(self):
        """The scope of one landing run; an implementation may hold a connection across its batches."""
        yield self

    def prepare(self) -> None:
        """Pay a session's one-time costs (imports, connection) now, inside :meth:`session`. Landing calls it
        once the consumer is assigned, so that it overlaps the first fetch."""
        return None

    def row_count(self, table: str) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def dead_letter_summary(self) -> dict[str, dict[str, int]]:
        """Dead letters held in the warehouse: source table -> error -> count (empty before the first)."""
        summary: dict[str, dict[str, int]] = {}
        for table, error, n in self._dead_letter_rows():
            summary.setdefault(table, {})[error] = int(n)
        return summary

    def _dead_letter_rows(self) -> list[tuple[str, str, int]]:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def kind(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    @staticmethod
    def table_names(table: str) -> tuple[str, str]:
        check_identifier(table, "table")
        return table, table + CHANGELOG_SUFFIX
