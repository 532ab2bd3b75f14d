"""Definitions load time with the dbt project (cold and warm) and `dbt build` time on demo data.

Loads are measured on a fresh checkout: a copy of the work tree's tracked files (uncommitted edits included, no
dbt_project/target, so the tree in use is left alone), each load in a fresh process that imports
`corisync_assets.definitions` from the copy and resolves every asset key.
cold: no parsed dbt manifest (a clean checkout: `dbt parse` runs during the load);
warm: the manifest current (the load right after a cold one).
Each of --rounds rounds is one cold then one warm load; min / median / max are printed. "import" is the time from
the first import to the resolved keys, "process" adds the interpreter start.
floor: each round also times a fresh process doing only `import dagster` and dagster-dbt as the code location
imports it (without dbt-core: corisync_assets/no_dbt_core.py), the libraries it cannot load without: the
physical limit of a warm load, printed with the ratio of the warm load to it.
Then (unless --load-only), on a private local stack (temp home, own ports): seed the demo data, land it through
the raw CDC assets, and time `dbt build` (models, snapshot, tests) through the Dagster dbt resource, without the
web models (`--exclude source:web+`: their sources are what the web Spark job lands, not run here).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOAD = "import time; t = time.perf_counter(); import corisync_assets.definitions as d; " \
       "n = len(list(d.defs.resolve_all_asset_keys())); print(f'{time.perf_counter() - t:.3f} {n} {d.__file__}')"
FLOOR = "import time; t = time.perf_counter(); import dagster, corisync_assets.no_dbt_core; " \
        "print(f'{time.perf_counter() - t:.3f}')"


def fresh_checkout(dest: Path) -> Path:
    """The tracked (and untracked, not ignored) files of the work tree, as they are now, copied to ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    return dest


def load_once(checkout: Path, env: dict[str, str]) -> tuple[float, int, float]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", LOAD], env=env, cwd=checkout, capture_output=True, text=True,
                         check=True).stdout.split()
    assert Path(out[2]).resolve().is_relative_to(checkout.resolve()), f"loaded {out[2]}, not the checkout's"
    return float(out[0]), int(out[1]), time.perf_counter() - t0


def floor_once(checkout: Path, env: dict[str, str]) -> tuple[float, float]:
    """(import, process) seconds of a fresh process that only imports dagster and dagster_dbt (no dbt-core)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", FLOOR], env=env, cwd=checkout, capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), time.perf_counter() - t0


def summary(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f} s"


def measure_loads(rounds: int, env: dict[str, str]) -> None:
    work = Path(tempfile.mkdtemp(prefix="corisync-bench-checkout-", dir="/tmp"))
    try:
        checkout = fresh_checkout(work / "corisync")
        env = {k: v for k, v in env.items() if k != "PYTHONPATH" and not k.startswith("DAGSTER_IS_DEV")}
        cold: list[tuple[float, int, float]] = []
        warm: list[tuple[float, int, float]] = []
        floor: list[tuple[float, float]] = []
        for _ in range(rounds):
            shutil.rmtree(checkout / "dbt_project" / "target", ignore_errors=True)
            cold.append(load_once(checkout, env))
            warm.append(load_once(checkout, env))
            floor.append(floor_once(checkout, env))
        keys = {n for _, n, _ in cold + warm}
        assert len(keys) == 1, f"cold and warm loads disagree on the asset keys: {keys}"
        print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
              f"load average {os.getloadavg()[0]:.2f} (1 min)")
        print(f"definitions load, {rounds} rounds, min / median / max, {keys.pop()} asset keys")
        print(f"  cold (no manifest: dbt parse during the load): {summary([c[0] for c in cold])} import, "
              f"{summary([c[2] for c in cold])} process")
        print(f"  warm (manifest current):                        {summary([w[0] for w in warm])} import, "
              f"{summary([w[2] for w in warm])} process")
        print(f"  floor (only dagster, dagster_dbt w/o dbt-core): {summary([f[0] for f in floor])} import, "
              f"{summary([f[1] for f in floor])} process")
        ratio = [statistics.median([w[i] for w in warm]) / statistics.median([f[j] for f in floor])
                 for i, j in ((0, 0), (2, 1))]
        print(f"  warm / floor (medians):                         {ratio[0]:.2f}x import, {ratio[1]:.2f}x process")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="cold + warm load pairs (default 3)")
    parser.add_argument("--load-only", action="store_true", help="only the definitions loads, no dbt build")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="corisync-bench-", dir="/tmp"))
    home.chmod(0o755)
    env = {**os.environ, "CORISYNC_HOME": str(home), "CORISYNC_PG_PORT": "25441",
           "CORISYNC_KAFKA_BOOTSTRAP": "127.0.0.1:29101", "CORISYNC_COLLECTOR_PORT": "28101"}
    for var in ("CORISYNC_PG_PASSWORD", "CORISYNC_PG_CDC_PASSWORD", "DAGSTER_PG_PASSWORD"):
        env.pop(var, None)
    measure_loads(args.rounds, env)
    if args.load_only:
        shutil.rmtree(home, ignore_errors=True)
        return

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
        # the web models read what the web Spark job lands, which this bench does not run
        dbt.cli(["build", "--exclude", "source:web+"], raise_on_error=True).wait()
        build_s = time.perf_counter() - t0
        print(f"dbt build on demo data ({stats.total} streamed changes after the seed; web models excluded: "
              f"no Spark run here): {build_s:.2f}s")
    finally:
        stack.down(environment.settings(), out=lambda _line: None)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
