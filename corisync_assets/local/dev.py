"""``corisync dev``: the whole local platform in one command (what ``make dev`` runs).

Stack up -> seed demo data if the tables are empty -> the lander (raw CDC within seconds), the warm dbt
worker (``corisync_assets/dbt_worker.py``: dbt runs start without dbt's seconds of imports and parsing), a background
demo stream of changes, a first sync of the Airbyte connections (recorded in the instance like any run) and
the D3 dashboard page (dashboard/, drawing <home>/exports/dashboard.json) ->
``dagster dev`` with instance storage in the project's Postgres. The lander, the dbt worker, the demo stream and the
page server stop when the UI does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from corisync_assets.environment import PROJECT_ROOT, settings
from corisync_assets.local import dashboard, postgres, stack
from corisync_assets.local.demo import DEMO_SEED, run_demo


def run_dev(*, port: int = 3000, host: str = "127.0.0.1", rate: float = 2.0,
            dashboard_port: int = dashboard.DEFAULT_PORT) -> int:
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))  # run the cleanup
    s = settings()
    stack.up(s)
    settings.cache_clear()
    s = settings()
    # seeds only when the tables are empty, with the population the local trainers' workbook refers to
    run_demo(rate=0, duration=0, random_seed=DEMO_SEED)
    postgres.write_dagster_yaml(s)
    env = {**os.environ, **postgres.dagster_env(s)}
    postgres.ensure_pool_limits(s)
    children, logs = [], []
    for name, args in (("lander", ["lander"]),
                       ("dbt-worker", ["dbt-worker"]),
                       ("demo", ["demo", "--rate", str(rate), "--duration", "86400"])):
        logs.append(open(s.home / "logs" / f"{name}.log", "ab"))  # noqa: SIM115 - lives as long as the child
        children.append(subprocess.Popen([sys.executable, "-m", "corisync_assets.local.cli", *args],
                                         stdout=logs[-1], stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT))
    # the Airbyte syncs once now (their schedules are hourly and daily): the sheet and GA4 reach the marts at once
    logs.append(open(s.home / "logs" / "airbyte-first-sync.log", "ab"))  # noqa: SIM115 - lives as long as the child
    children.append(subprocess.Popen([sys.executable, "-m", "dagster", "asset", "materialize", "-m",
                                      "corisync_assets.definitions", "--select", "group:airbyte"],
                                     stdout=logs[-1], stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT))
    print(f"lander    ... landing CDC events continuously (log {s.home / 'logs' / 'lander.log'})")
    print(f"dbt       ... a warm dbt worker for the dbt runs (log {s.home / 'logs' / 'dbt-worker.log'})")
    print(f"airbyte   ... first sync of the training sheet and GA4 (log {s.home / 'logs' / 'airbyte-first-sync.log'})")
    print(f"demo      ... streaming {rate:g} changes/s (log {s.home / 'logs' / 'demo.log'})")
    exports = dashboard.export_dir()
    exports.mkdir(parents=True, exist_ok=True)
    log = open(s.home / "logs" / "dashboard.log", "ab")  # noqa: SIM115 - lives as long as the child
    try:
        dist = dashboard.build(out=lambda _line: None)  # `make dev` built it already: a quick check
        children.append(dashboard.start_server(dist, exports, host, dashboard_port, log=log, env=env))
    except dashboard.DashboardError as exc:
        log.close()
        print(f"dashboard ... not started: {exc}")
    else:
        logs.append(log)
        print(f"dashboard ... http://{host}:{dashboard_port} (draws {exports / 'dashboard.json'})")
    print(f"dagster   ... http://{host}:{port} (instance storage: Postgres {s.pg_host}:{s.pg_port}/dagster)")
    try:
        return subprocess.call(
            [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", host,
             "-p", str(port)],
            env=env, cwd=PROJECT_ROOT,
        )
    except KeyboardInterrupt:
        return 0
    finally:
        for child in children:
            child.terminate()
        for child, log in zip(children, logs, strict=True):
            child.wait(timeout=30)
            log.close()
