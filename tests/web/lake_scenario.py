"""A small lake of the three web tables written with pyarrow in hive layout, and what a warehouse must hold
after loading it: shared by the DuckDB test (tests/web/test_lake_load.py) and the BigQuery emulator's."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from corisync_assets.resources.warehouse.base import PartitionedTable
from corisync_assets.web.tables import WEB_EVENTS

ARROW = {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "float64": pa.float64(),
         "bool": pa.bool_(), "timestamp": pa.timestamp("us", tz="UTC")}

D1, D2, D3 = date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)


def event(n: int, day: date) -> dict:
    at = datetime(day.year, day.month, day.day, 10, n % 60, tzinfo=UTC)
    return {"event_id": f"e{n}", "event_type": "page_view", "schema_version": 1, "anonymous_id": f"a{n % 3}",
            "user_id": n if n % 2 else None, "session_id": f"s{n}", "occurred_at": at, "received_at": at,
            "page_url": f"https://tc4a.example/p/{n}", "page_path": f"/p/{n}", "referrer": None,
            "user_agent": "ua", "course_id": None, "properties": "{}", "source": "tc4a-web",
            "kafka_partition": 0, "kafka_offset": n, "is_late": False}


def write_partition(lake: Path, table: PartitionedTable, day: date, rows: list[dict], part: str = "0") -> None:
    """One Parquet file of one date partition, the partition column left to the path (as Spark writes)."""
    folder = lake / table.lake_dir / f"{table.partition}={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    schema = pa.schema([(name, ARROW[kind]) for name, kind in table.columns if name != table.partition])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / f"part-{part}.parquet")


def files(lake: Path, table: PartitionedTable, days) -> dict[date, list[str]]:
    from corisync_assets.web.lake import Lake

    return Lake(str(lake)).files(table, days)


def first_lake(lake: Path) -> None:
    write_partition(lake, WEB_EVENTS, D1, [event(n, D1) for n in range(1, 4)])
    write_partition(lake, WEB_EVENTS, D2, [event(n, D2) for n in range(4, 6)])


def second_lake(lake: Path) -> None:
    """D1 rewritten (a late event joined it), D2 emptied (its partition removed), D3 new."""
    write_partition(lake, WEB_EVENTS, D1, [event(n, D1) for n in (1, 2, 3, 9)])
    for f in (lake / WEB_EVENTS.lake_dir / f"event_date={D2.isoformat()}").glob("*.parquet"):
        f.unlink()
    write_partition(lake, WEB_EVENTS, D3, [event(7, D3)])


EXPECTED_FIRST = {(f"e{n}", D1) for n in range(1, 4)} | {(f"e{n}", D2) for n in range(4, 6)}
EXPECTED_SECOND = {(f"e{n}", D1) for n in (1, 2, 3, 9)} | {("e7", D3)}
