"""A local Google Sheets sync of a 50,000-row workbook: through Dagster, against the connector's ``read`` alone.

1. Generates the trainers' workbook with N attendance rows (default 50,000; ``make_workbook --rows N``) and serves
   it from the Google API double inside a local Airbyte stand-in (temp home, own DuckDB file, a free port).
2. Per round, in alternating order:
   (a) raw: the PyPI Sheets connector's ``read`` alone (``.venv-airbyte``, through ``launch.py``), against the
       same double, with the same config and configured catalog; its stdout read to the end and discarded:
       the physical limit of any sync of this sheet here;
   (b) Dagster: ``materialize`` of the ``training_sheets`` Airbyte assets, i.e. what a scheduled run does:
       dagster-airbyte's sync-and-poll over HTTP, the stand-in running the same connector, landing every
       stream in DuckDB with Airbyte's columns, then the asset reading per-stream stats and row counts.
3. Prints each round, the medians and raw / Dagster (target >= 0.7).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def raw_read(google_api_url: str, workdir: Path) -> tuple[float, int]:
    """The connector's read alone: seconds, records."""
    from corisync_assets.airbyte.connections import TRAINING_SHEETS
    from corisync_assets.local.airbyte import connectors
    from corisync_assets.local.airbyte.discovery import SEED_DIR
    from corisync_assets.local.airbyte.kit import connector_env, write_private_json

    config = write_private_json(workdir / "config.json", connectors.source_config(TRAINING_SHEETS, google_api_url))
    discovered = json.loads((SEED_DIR / f"{TRAINING_SHEETS.name}.json").read_text())["catalog"]
    catalog = write_private_json(workdir / "catalog.json", connectors.configured_catalog(TRAINING_SHEETS, discovered))
    argv = connectors.connector_command(TRAINING_SHEETS.source_type, "read", config=config, catalog=catalog)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=connector_env(google_api_url))
    records = sum(1 for line in proc.stdout if b'"RECORD"' in line[:30])  # {"type": "RECORD", ...} per record
    if proc.wait() != 0:
        raise SystemExit("the connector's read failed")
    return time.perf_counter() - started, records


def dagster_sync(s) -> tuple[float, int]:
    """The Airbyte assets materialized through Dagster: seconds, records synced (from the run's metadata)."""
    import dagster as dg

    from corisync_assets.airbyte import airbyte_definitions

    started = time.perf_counter()
    defs = airbyte_definitions(s)
    assets = [a for a in defs.assets if a.op.name == "airbyte_training_sheets"]
    result = dg.materialize(assets, resources=defs.resources)
    elapsed = time.perf_counter() - started
    assert result.success
    records = sum(e.event_specific_data.materialization.metadata["records_synced"].value
                  for e in result.get_asset_materialization_events())
    return elapsed, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000, help="attendance rows of the workbook")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from corisync_assets.environment import Settings
    from corisync_assets.local.airbyte.server import StandIn, start_in_thread
    from corisync_assets.local.google_apis import google_app

    with tempfile.TemporaryDirectory(prefix="bench-airbyte-") as tmp:
        home = Path(tmp)
        workbook = home / "workbook"
        subprocess.run([sys.executable, "-m", "corisync_assets.local.fixtures.make_workbook", "--out", str(workbook),
                        "--rows", str(args.rows)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        s = Settings(home=home, duckdb_path=home / "warehouse.duckdb", airbyte_client_id="bench",
                     airbyte_client_secret="bench-secret")
        running = start_in_thread(StandIn(s), google=google_app(workbook_dir=workbook))
        os.environ.update({"CORISYNC_AIRBYTE_CLIENT_ID": "bench", "CORISYNC_AIRBYTE_CLIENT_SECRET": "bench-secret"})
        s = s.model_copy(update={"airbyte_url": running.url})
        print(f"airbyte_sync: {args.rows:,} attendance rows, {args.rounds} rounds; "
              f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"{time.strftime('%Y-%m-%d')}")
        raws, syncs = [], []
        try:
            for i in range(args.rounds):
                order = ("raw", "dagster") if i % 2 == 0 else ("dagster", "raw")
                for what in order:
                    if what == "raw":
                        seconds, records = raw_read(f"{running.url}/google", home)
                        raws.append(seconds)
                    else:
                        seconds, records = dagster_sync(s)
                        syncs.append(seconds)
                    print(f"  round {i + 1} {what:8s} {seconds:6.2f} s  {records:,} records  "
                          f"{records / seconds:,.0f} records/s")
        finally:
            running.stop()
        raw, sync = statistics.median(raws), statistics.median(syncs)
        print(f"median: connector read alone {raw:.2f} s, through Dagster {sync:.2f} s; "
              f"ratio {raw / sync:.2f} (target >= 0.7)")


if __name__ == "__main__":
    main()
