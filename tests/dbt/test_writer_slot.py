"""A dbt process waits for the warehouse's writer slot instead of failing on DuckDB's file lock.

Real dbt (``dbt show``, which opens a connection) against a temp DuckDB file, while this test holds what the
lander holds during a cycle: the writer slot and an open read-write DuckDB connection. Without the slot
plugin dbt fails at once with DuckDB's "Could not set lock on file"; with it, dbt waits (its process is seen
at its first connection in its log, and still running) and succeeds once the slot is free.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from corisync_assets.dbt import DBT_PROJECT_DIR
from corisync_assets.dbt_manifest import dbt_executable
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse

pytestmark = pytest.mark.timeout(300)


def _reached_connection(log: Path) -> bool:
    """dbt's debug log says it is about to open its first connection (the plugin loads right there)."""
    try:
        return "Acquiring new duckdb connection" in log.read_text(errors="replace")
    except OSError:
        return False


def test_dbt_waits_for_the_slot_then_succeeds(tmp_path):
    db = tmp_path / "warehouse.duckdb"
    warehouse = DuckDBWarehouse(path=str(db))
    log = tmp_path / "logs" / "dbt.log"
    env = {**os.environ, "CORISYNC_DBT_TARGET": "local", "CORISYNC_DUCKDB_PATH": str(db),
           "DBT_TARGET_PATH": str(tmp_path / "target"), "DBT_LOG_PATH": str(tmp_path / "logs")}
    argv = [dbt_executable(), "show", "--inline", "select 42 as answer", "--project-dir", str(DBT_PROJECT_DIR),
            "--profiles-dir", str(DBT_PROJECT_DIR), "--target", "local"]
    with warehouse.exclusive():
        con = duckdb.connect(str(db))  # the file is open for writing by this process, as during a landing
        dbt = subprocess.Popen(argv, env=env, cwd=DBT_PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
        deadline = time.monotonic() + 180
        while not _reached_connection(log) and dbt.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # had it gone on to open the database, DuckDB would have refused it by now
        reached, still_waiting = _reached_connection(log), dbt.poll() is None
        con.close()
    out, _ = dbt.communicate(timeout=240)
    assert reached, f"dbt never got to its first connection:\n{out[-3000:]}"
    assert still_waiting, f"dbt did not wait for the writer slot:\n{out[-3000:]}"
    assert dbt.returncode == 0, out[-3000:]
    assert "42" in out
