"""dbt-duckdb plugin: a dbt process takes the warehouse's writer slot right before it first opens the file.

DuckDB allows one writing process per file, so every writer takes a file lock beside it first
(``DuckDBWarehouse.exclusive``). Taking it around the whole dbt process would also hold it through dbt's
start (imports, manifest, adapter: seconds) in which dbt does not touch the file, and the lander would wait
that long. dbt-duckdb loads its plugins when it creates its environment, immediately before its first
connection, so the slot is taken there and held until the dbt process exits (the OS then releases it):
from the first byte dbt reads to its last write, and no longer. A ``dbt build`` typed by hand honours the
slot the same way.

The Dagster dbt asset points dbt at a copy of the warehouse (``DuckDBWarehouse.dbt_build``), so there the
slot taken is the copy's, which nothing else writes; the warehouse's own slot is held only while the copy is
taken and while the build is published. Read-only connections skip it: whoever opens one owns the file it
reads (as ``corisync_dbt_assets`` owns its copy), and a second lock on the same file from that process would
wait for itself.

Enabled for the ``local`` target in ``dbt_project/profiles.yml``::

    plugins:
      - module: corisync_assets.resources.warehouse.duckdb_writer_slot
"""

from __future__ import annotations

from typing import Any

import filelock
from dbt.adapters.duckdb.plugins import BasePlugin

from corisync_assets.resources.warehouse.writer_slot import writer_slot_path

#: how long dbt waits for the slot (the lander holds it for a landing cycle; a raw run for its landing)
TIMEOUT_S = 600.0


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.slot: filelock.BaseFileLock | None = None
        creds = self.creds
        if creds is None or creds.path == ":memory:":
            return
        if (creds.config_options or {}).get("access_mode", "").upper() == "READ_ONLY":
            return
        self.slot = filelock.FileLock(writer_slot_path(creds.path), timeout=TIMEOUT_S)
        self.slot.acquire()
