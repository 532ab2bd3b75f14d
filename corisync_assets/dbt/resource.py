"""The dbt CLI resource, configured from :mod:`corisync_assets.environment` settings.

dbt reads its profile (dbt_project/profiles.yml) through ``env_var()``. So that dbt sees exactly what the
Settings object says (also when a caller builds Settings by hand, as the tests do), the resource carries
the relevant values and exports them to the dbt process for the duration of each ``cli()`` call. Nothing
secret is carried: BigQuery credentials stay in the process environment (ADC).
"""

from __future__ import annotations

import contextvars
import os
import sys
from functools import cached_property
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliResource
from pydantic import Field

from corisync_assets.dbt.warehouse_adapter import WarehouseAdapter
from corisync_assets.dbt_manifest import DBT_PROJECT_DIR as DBT_PROJECT_DIR  # re-exported
from corisync_assets.dbt_manifest import dbt_executable as dbt_executable  # re-exported
from corisync_assets.dbt_manifest import profile_env, target_path, warm_dbt_executable
from corisync_assets.dbt_worker import SOCKET_ENV, socket_path
from corisync_assets.environment import Settings, exported
from corisync_assets.resources.warehouse.base import Warehouse

#: dbt's indirect selection, set explicitly (not left to dbt's default or a developer's environment).
#: Dagster selects every check of a selected asset; the dbt mode that always runs all of them is "eager":
#: each test touching a selected model runs, including relationships tests to models not selected
#: (e.g. stg_enrollments.user_id -> stg_users when only stg_enrollments is built). "buildable" and
#: "cautious" would silently skip those. The price: a test attached to an unselected model that merely
#: references a selected one also runs; dagster-dbt records it as an AssetObservation, not a check result.
#: When Dagster needs exact check selection (checks subsetted in the UI) it overrides this with "empty".
INDIRECT_SELECTION = "eager"

#: the adapter dagster-dbt gets for the invocation a ``cli()`` call is starting (None: no metadata)
_adapter: contextvars.ContextVar[WarehouseAdapter | None] = contextvars.ContextVar("corisync_dbt_adapter",
                                                                                   default=None)


def dbt_env(s: Settings) -> dict[str, str]:
    """The environment dbt's profile reads, derived from the settings (names as in ENV_VARS), the indirect
    selection, and the target path of the code location's manifest. dagster-dbt gives each invocation its
    own target directory under ``DBT_TARGET_PATH`` and copies that path's ``partial_parse.msgpack`` into
    it; left at dbt's default ("target") it found none, and every build began with a full parse (7 s
    of each automation run here). ``CORISYNC_DBT_WORKER_SOCKET`` tells ``corisync-dbt`` where a warm dbt
    worker listens (corisync_assets/dbt_worker.py)."""
    return {**profile_env(s), "DBT_INDIRECT_SELECTION": INDIRECT_SELECTION,
            "DBT_TARGET_PATH": os.fspath(target_path(s)), SOCKET_ENV: os.fspath(socket_path(s.home))}


class CorisyncDbtCliResource(DbtCliResource):
    """DbtCliResource that exports ``dbt_env`` to dbt, and whose row counts and column metadata come from the
    warehouse (``warehouse_adapter.py``), not from a dbt adapter in this process."""

    dbt_env: dict[str, str] = Field(
        default_factory=dict, description="Environment variables exported to dbt for each invocation."
    )

    @cached_property
    def _cli_version(self):
        """dagster-dbt asks ``dbt --version`` once per process, and that asks PyPI for the latest release:
        seconds per run (here 6 s of a run's critical path). When the executable is this environment's dbt,
        its version is the installed dbt-core's."""
        if Path(self.dbt_executable).parent == Path(sys.executable).parent:
            from importlib.metadata import version as installed_version

            from packaging.version import Version

            return Version(installed_version("dbt-core"))
        return super()._cli_version

    def _initialize_dbt_core_adapter(self, args):
        """dagster-dbt's hook for the adapter it hands the invocation: the warehouse's, never dbt-core's."""
        return _adapter.get()

    def cli(self, args, *, metadata_from: Warehouse | None = None, duckdb_path: str | None = None,
            **kwargs: Any):  # type: ignore[override]
        """``DbtCliResource.cli``, with dbt's environment exported. ``metadata_from``: the warehouse that
        answers ``fetch_row_counts`` / ``fetch_column_metadata`` for this invocation (without one they add
        nothing). ``duckdb_path``: the DuckDB file this invocation opens instead of the warehouse (the build
        copy, ``Warehouse.dbt_build``); the metadata is read from it too."""
        env = {**self.dbt_env, **({"CORISYNC_DUCKDB_PATH": duckdb_path} if duckdb_path else {})}
        if env.get("CORISYNC_DUCKDB_PATH") and env.get("CORISYNC_DBT_TARGET", "local") == "local":
            Path(env["CORISYNC_DUCKDB_PATH"]).parent.mkdir(parents=True, exist_ok=True)
        token = _adapter.set(None if metadata_from is None else WarehouseAdapter(metadata_from, duckdb_path))
        try:
            with exported(env):
                return super().cli(args, **kwargs)
        finally:
            _adapter.reset(token)


def dbt_resource(s: Settings) -> CorisyncDbtCliResource:
    """The resource to bind as ``dbt`` for :data:`corisync_assets.dbt.corisync_dbt_assets`."""
    from corisync_assets.dbt.project import dbt_project_for

    return CorisyncDbtCliResource(
        project_dir=dbt_project_for(s),
        profiles_dir=os.fspath(dbt_project_for(s).profiles_dir),
        target=s.effective_dbt_target,
        dbt_executable=warm_dbt_executable(),
        dbt_env=dbt_env(s),
    )
