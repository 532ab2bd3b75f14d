"""What an analyst browsing lineage sees of a mart: every materialization carries its row count, its column
schema (``dagster/column_schema``) and a preview of its first rows (a table in the UI), read from the warehouse
after dbt built it (DuckDB: a read-only connection; BigQuery: tables.get + tabledata.list, no query job)."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from dagster import AssetKey, MetadataValue, Output, TableColumn, TableRecord, TableSchema

from corisync_assets.resources.warehouse.base import TableRows, Warehouse

PREVIEW_ROWS = 5
PREVIEW_KEY = "preview"


def is_mart(key: AssetKey) -> bool:
    return key.path[0] == "marts"


def table_metadata(table: TableRows) -> dict[str, Any]:
    schema = TableSchema(columns=[TableColumn(name=name, type=type_) for name, type_ in table.columns])
    return {
        "dagster/row_count": MetadataValue.int(table.row_count),
        "dagster/column_schema": MetadataValue.table_schema(schema),
        PREVIEW_KEY: MetadataValue.table(
            records=[TableRecord(data={k: _cell(v) for k, v in record.items()}) for record in table.records()],
            schema=schema),
    }


def _cell(value: Any) -> str | int | float | bool | None:
    """A value as a TableRecord holds it: numbers, text, booleans and None; NaN and infinities as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float | decimal.Decimal):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    return str(value)


def with_previews(events: Iterable, key_of: Callable[[Output], AssetKey], warehouse: Warehouse,
                  relations: dict[AssetKey, tuple[str, str]]) -> Iterator:
    """The events, with each mart's Output carrying :func:`table_metadata` (keys it already has win:
    dagster-dbt's column schema comes with its lineage). Callers hold the writer slot. A list of
    events (dbt has exited) is read in one call (DuckDB: one connection); a stream mart by mart, as it comes."""

    def mart(event) -> tuple[str, str] | None:
        key = key_of(event) if isinstance(event, Output) else None
        return relations.get(key) if key is not None and is_mart(key) else None

    read = None
    if isinstance(events, list):
        read = warehouse.read_tables([r for r in map(mart, events) if r is not None], limit=PREVIEW_ROWS)
    for event in events:
        if (relation := mart(event)) is not None:
            tables = read if read is not None else warehouse.read_tables([relation], limit=PREVIEW_ROWS)
            if (table := tables.get(relation)) is not None:
                event = event.with_metadata({**table_metadata(table), **event.metadata})
        yield event
