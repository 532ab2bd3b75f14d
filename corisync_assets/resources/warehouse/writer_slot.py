"""Where a DuckDB file's writer slot lives: the file lock that every process writing the file takes first
(``DuckDBWarehouse.exclusive``; dbt through the plugin ``duckdb_writer_slot``). No imports beyond the
standard library: the dbt process loads this too."""

from __future__ import annotations

import os


def writer_slot_path(database_path: str) -> str:
    return os.path.abspath(database_path) + ".writer.lock"
