"""Paths beside a DuckDB file: its writer slot, the file lock that every process writing the file takes
first (``DuckDBWarehouse.exclusive``; dbt through the plugin ``duckdb_writer_slot``), and the copy dbt
builds in (``DuckDBWarehouse.dbt_build``). No imports beyond the standard library: the dbt process loads
this too."""

from __future__ import annotations

import os


def writer_slot_path(database_path: str) -> str:
    return os.path.abspath(database_path) + ".writer.lock"


def build_copy_path(database_path: str) -> str:
    """Where dbt builds: a copy of the file under ``dbt_build/`` beside it, with the same name, because
    DuckDB names a file's catalog after its stem and dbt's SQL names that catalog."""
    path = os.path.abspath(database_path)
    return os.path.join(os.path.dirname(path), "dbt_build", os.path.basename(path))
