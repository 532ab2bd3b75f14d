"""The warehouse landing interface: one transaction per decoded batch, idempotent by event identity.

Both implementations (DuckDB locally, BigQuery in prod) keep the same two tables per captured table:
`<table>__changelog` (append-only, one row per change) and `<table>` (current state, upsert by primary key,
deletes remove the row), plus `_dead_letters`. Landing the same events twice changes nothing: events whose
`event_id` is already in the changelog are dropped before anything is written.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from dagster import ConfigurableResource

from corisync_assets.cdc.envelope import ChangeBatch, check_identifier

CHANGELOG_SUFFIX = "__changelog"
DEAD_LETTERS = "_dead_letters"


@dataclass(frozen=True)
class LandResult:
    new_events: int
    duplicates: int
    dead_letters: int


class Warehouse(ConfigurableResource):
    """Where raw CDC tables land. Subclasses implement `land` in one transaction."""

    def land(self, batch: ChangeBatch) -> LandResult:  # pragma: no cover - interface
        raise NotImplementedError

    @contextmanager
    def session(self):
        """The scope of one landing run; an implementation may hold a connection across its batches."""
        yield self

    def row_count(self, table: str) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def kind(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    @staticmethod
    def table_names(table: str) -> tuple[str, str]:
        check_identifier(table, "table")
        return table, table + CHANGELOG_SUFFIX
