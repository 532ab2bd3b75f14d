"""Definitions load time with the dbt project (cold and warm) and `dbt build` time on demo data.

Loads are measured on a fresh checkout: a copy of the work tree's tracked files (uncommitted edits included, no
dbt_project/target, so the tree in use is left alone), each load in a fresh process that imports
`corisync_assets.definitions` from the copy and resolves every asset key.
Each of --rounds rounds loads in these cases (CASES; min / median / max are printed):
cold: no parsed dbt manifest (a clean checkout loaded directly: `dbt parse` runs during the load), with the dbt
  CLI, and through a warm dbt worker as under `make dev` (`corisync dbt-worker`, started once by the bench);
warm: the manifest current (the load right after a cold one);
after install: a clean checkout after the Makefile's dbt-manifest step (`python -m corisync_assets.dbt prepare`,
  timed apart): the first load of a fresh checkout through either README command;
edit: a staging model edited (a comment appended), so the load runs dbt's partial parse: dbt CLI, and worker.
"import" is the time from the first import to the resolved keys, "process" adds the interpreter start.
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


#: the load cases of a round, in order: (label, how the checkout is left before the load, whether the warm dbt
#: worker may take the parse)
CASES = (
    ("cold, dbt CLI", "no manifest: dbt parse during the load, the dbt CLI (no worker)", "clean", False),
    ("cold, worker", "no manifest: dbt parse during the load, through a warm dbt worker (make dev)", "clean", True),
    ("warm", "manifest current", "", False),
    ("after install", "first load of a fresh checkout after `make install` (manifest prepared there)", "install",
     False),
    ("edit, dbt CLI", "a model edited: dbt's partial parse during the load, the dbt CLI", "edit", False),
    ("edit, worker", "a model edited: partial parse through the warm dbt worker (make dev)", "edit", True),
)


def start_worker(checkout: Path, env: dict[str, str]) -> subprocess.Popen:
    """`corisync dbt-worker` of the checkout (as `corisync dev` starts it), ready when its socket exists."""
    from corisync_assets.dbt_worker import socket_path  # the standard library only: no dbt in the bench's process

    sock = socket_path(Path(env["CORISYNC_HOME"]))
    proc = subprocess.Popen([sys.executable, "-m", "corisync_assets.local.cli", "dbt-worker"], env=env, cwd=checkout,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the dbt worker did not start")
        time.sleep(0.1)
    return proc


def measure_loads(rounds: int, env: dict[str, str]) -> None:
    work = Path(tempfile.mkdtemp(prefix="corisync-bench-checkout-", dir="/tmp"))
    worker = None
    try:
        checkout = fresh_checkout(work / "corisync")
        env = {k: v for k, v in env.items() if k != "PYTHONPATH" and not k.startswith("DAGSTER_IS_DEV")}
        # the code location parses through the worker listening in its CORISYNC_HOME (the settings' home): loads
        # meant without one get a home with none (the home is not part of what makes a manifest current)
        (work / "home-without-worker").mkdir()
        # (the warehouse path stays the first home's: dbt's partial parse is kept only for the same profile)
        no_worker = {**env, "CORISYNC_HOME": str(work / "home-without-worker"),
                     "CORISYNC_DUCKDB_PATH": str(Path(env["CORISYNC_HOME"]) / "warehouse.duckdb")}
        model = sorted((checkout / "dbt_project" / "models" / "staging").glob("*.sql"))[0]
        env = {**env, "CORISYNC_DUCKDB_PATH": no_worker["CORISYNC_DUCKDB_PATH"]}
        worker = start_worker(checkout, env)
        loads: dict[str, list[tuple[float, int, float]]] = {case[0]: [] for case in CASES}
        floor: list[tuple[float, float]] = []
        prepare: list[float] = []
        for r in range(rounds):
            for label, _what, before, through_worker in CASES:
                if before in ("clean", "install"):
                    shutil.rmtree(checkout / "dbt_project" / "target", ignore_errors=True)
                if before == "install":  # the Makefile's dbt-manifest step
                    t0 = time.perf_counter()
                    subprocess.run([sys.executable, "-m", "corisync_assets.dbt", "prepare"], env=no_worker,
                                   cwd=checkout, check=True, capture_output=True)
                    prepare.append(time.perf_counter() - t0)
                if before == "edit":
                    with model.open("a") as f:
                        f.write(f"\n-- bench edit {label} {r}\n")
                loads[label].append(load_once(checkout, env if through_worker else no_worker))
            floor.append(floor_once(checkout, env))
        keys = {n for runs in loads.values() for _, n, _ in runs}
        assert len(keys) == 1, f"the loads disagree on the asset keys: {keys}"
        print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
              f"load average {os.getloadavg()[0]:.2f} (1 min)")
        print(f"definitions load, {rounds} rounds, min / median / max, {keys.pop()} asset keys")
        for label, what, _before, _worker in CASES:
            print(f"  {label:<14} {summary([c[0] for c in loads[label]])} import, "
                  f"{summary([c[2] for c in loads[label]])} process  ({what})")
        print(f"  {'floor':<14} {summary([f[0] for f in floor])} import, {summary([f[1] for f in floor])} process  "
              f"(only dagster, dagster_dbt w/o dbt-core)")
        print(f"  `make install`'s dbt-manifest step on a fresh checkout: {summary(prepare)}")
        warm = loads["warm"]
        ratio = [statistics.median([w[i] for w in warm]) / statistics.median([f[j] for f in floor])
                 for i, j in ((0, 0), (2, 1))]
        print(f"  warm / floor (medians): {ratio[0]:.2f}x import, {ratio[1]:.2f}x process")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the load cases (default 3)")
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
