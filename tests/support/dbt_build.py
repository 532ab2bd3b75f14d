"""One full build of the dbt assets through Dagster over a raw CDC warehouse (DuckDB in tmp, per the raw
layer contract): the ``built`` fixture (tests/conftest.py) that the dbt, dashboard and UI tests read marts from."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from corisync_assets.environment import Settings, warehouse_resource
from tests.dbt.fixture_warehouse import Platform, build_warehouse


@dataclass
class BuiltWarehouse:
    settings: Settings
    path: Path
    platform: Platform
    result: dg.ExecuteInProcessResult
    build_seconds: float


def warehouse_settings(home: Path) -> Settings:
    # The file is named like the default (warehouse.duckdb), so the prepared manifest (whose DuckDB
    # relation names carry the file stem as catalog) fits.
    return Settings(home=home, duckdb_path=home / "warehouse.duckdb")


def build_dbt(tmp_path_factory: pytest.TempPathFactory) -> BuiltWarehouse:
    from corisync_assets.dbt import corisync_dbt_assets, dbt_resource

    home = tmp_path_factory.mktemp("corisync-dbt")
    s = warehouse_settings(home)
    platform = build_warehouse(s.warehouse_path)
    started = time.monotonic()
    result = dg.materialize(
        [corisync_dbt_assets], resources={"dbt": dbt_resource(s), "warehouse": warehouse_resource(s)},
        instance=dg.DagsterInstance.ephemeral(),
    )
    return BuiltWarehouse(s, s.warehouse_path, platform, result, time.monotonic() - started)


def altered_copy(built: BuiltWarehouse, home: Path, *statements: str) -> Settings:
    """Settings of a copy of the built warehouse in ``home``, changed by ``statements`` (the shared build
    itself stays as it is for the other tests)."""
    import shutil

    import duckdb

    s = warehouse_settings(home)
    shutil.copy(built.path, s.warehouse_path)
    con = duckdb.connect(str(s.warehouse_path))
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()
    return s


def rows(built: BuiltWarehouse, sql: str) -> list[dict]:
    """The rows of ``sql`` over the built warehouse, as dicts (a read-only connection)."""
    return rows_at(built.path, sql)


def rows_at(path: Path, sql: str) -> list[dict]:
    """The rows of ``sql`` over the DuckDB file at ``path``, as dicts (a read-only connection)."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()
