"""The lake the Spark assets write to: a local folder (local mode) or ``gs://bucket/prefix`` (prod).

Only listing lives here (which Parquet files hold a table's date partition); Spark reads and writes the lake
itself, and the warehouse loads the listed files.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from corisync_assets.resources.warehouse.base import PartitionedTable


class Lake:
    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")

    @property
    def is_gcs(self) -> bool:
        return self.uri.startswith("gs://")

    def partition_dir(self, table: PartitionedTable, day: date) -> str:
        return f"{self.uri}/{table.lake_dir}/{table.partition}={day.isoformat()}"

    def partition_files(self, table: PartitionedTable, day: date) -> list[str]:
        """The Parquet files of one date partition, sorted; empty when the partition does not exist."""
        folder = self.partition_dir(table, day)
        if not self.is_gcs:
            return sorted(str(p) for p in Path(folder).glob("*.parquet"))
        from google.cloud import storage

        bucket, _, prefix = folder.removeprefix("gs://").partition("/")
        blobs = storage.Client().list_blobs(bucket, prefix=prefix + "/")
        return sorted(f"gs://{bucket}/{b.name}" for b in blobs if b.name.endswith(".parquet"))

    def files(self, table: PartitionedTable, days) -> dict[date, list[str]]:
        return {day: self.partition_files(table, day) for day in sorted(set(days))}
