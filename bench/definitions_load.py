"""Definitions load time with the dbt project (cold and warm) and `dbt build` time on demo data.

cold: a fresh process with no parsed dbt manifest (as on a clean checkout: `dbt parse` runs at import);
warm: a fresh process with the manifest current. Then, on a private local stack (temp home, own ports):
seed the demo data, land it through the raw CDC assets, and time `dbt build` (models, snapshot, tests)
through the Dagster dbt resource.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOAD = "import time; t = time.perf_counter(); import corisync_assets.definitions as d; " \
       "n = len(list(d.defs.resolve_all_asset_keys())); print(f'{time.perf_counter() - t:.2f} {n}')"


def load_once(env: dict[str, str]) -> tuple[float, int, float]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", LOAD], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), int(out[1]), time.perf_counter() - t0


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="corisync-bench-", dir="/tmp"))
    home.chmod(0o755)
    env = {**os.environ, "CORISYNC_HOME": str(home), "CORISYNC_PG_PORT": "55441",
           "CORISYNC_KAFKA_BOOTSTRAP": "127.0.0.1:59101"}
    for var in ("CORISYNC_PG_PASSWORD", "CORISYNC_PG_CDC_PASSWORD", "DAGSTER_PG_PASSWORD"):
        env.pop(var, None)
    target = ROOT / "dbt_project" / "target" / "local"
    shutil.rmtree(target, ignore_errors=True)
    cold = load_once(env)
    warm = load_once(env)
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")
    print(f"definitions load, cold (dbt parse at import): {cold[0]:.2f}s import ({cold[2]:.2f}s process), "
          f"{cold[1]} asset keys")
    print(f"definitions load, warm (manifest current):    {warm[0]:.2f}s import ({warm[2]:.2f}s process)")

    os.environ.update({k: v for k, v in env.items() if k.startswith("CORISYNC_")})
    for var in ("CORISYNC_PG_PASSWORD", "CORISYNC_PG_CDC_PASSWORD", "DAGSTER_PG_PASSWORD"):
        os.environ.pop(var, None)
    from corisync_assets import environment
    from corisync_assets.local import stack
    from corisync_assets.local.demo import run_demo

    environment.settings.cache_clear()
    try:
        stack.up(environment.settings(), out=lambda _line: None)
        environment.settings.cache_clear()
        s = environment.settings()
        stats = run_demo(force_seed=True, rate=50, duration=20, random_seed=7, s=s, out=lambda _line: None)
        from dagster import materialize

        from corisync_assets.cdc.assets import build_raw_cdc_assets
        from corisync_assets.cdc.connector_config import load_connector_config
        from corisync_assets.dbt import dbt_resource

        time.sleep(5)  # let Debezium deliver the last changes
        resources = environment.resources(s)
        materialize(build_raw_cdc_assets(load_connector_config(s.connector_config)), resources=resources)
        dbt = dbt_resource(s)
        t0 = time.perf_counter()
        dbt.cli(["build"], raise_on_error=True).wait()
        build_s = time.perf_counter() - t0
        print(f"dbt build on demo data ({stats.total} streamed changes after the seed): {build_s:.2f}s")
    finally:
        stack.down(environment.settings(), out=lambda _line: None)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
