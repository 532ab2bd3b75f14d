"""The ``corisync`` command: ``stack up|down|status``, ``demo``, ``lander``, ``dead-letters``, ``resnapshot``,
``dbt-worker``, ``pools``, ``dev``.
Errors are one line on stderr, exit 1."""

from __future__ import annotations

import argparse
import sys

from corisync_assets.environment import ConfigError
from corisync_assets.local.procs import StackError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corisync", description="CoriSync local tooling")
    sub = parser.add_subparsers(dest="command", required=True)
    stack = sub.add_parser("stack", help="the local stack: Postgres, broker, Debezium, web collector")
    stack.add_argument("action", choices=["up", "down", "status"])
    demo = sub.add_parser("demo", help="seed tc4a, post demo web traffic and write a realistic stream of changes")
    demo.add_argument("--seed", action="store_true", help="seed even if the tables already hold data")
    demo.add_argument("--rate", type=float, default=5.0, help="changes per second (default 5)")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds of changes; 0 = seed only")
    demo.add_argument("--random-seed", type=int, default=None, help="make the run deterministic")
    demo.add_argument("--web-visitors", type=int, default=300,
                      help="visitors of demo web traffic posted through the collector, ~10 events each, if it is "
                           "up (default 300; 0 = none)")
    lander = sub.add_parser("lander", help="land CDC events continuously (seconds from commit to warehouse)")
    lander.add_argument("--health", action="store_true", help="exit 0 if a lander cycle completed within 60 s")
    sub.add_parser("dbt-worker", help="keep dbt warm for the dbt resource's commands (corisync-dbt); see "
                                      "corisync_assets/dbt_worker.py")
    dead = sub.add_parser("dead-letters", help="list dead letters, or replay one table's after a fix")
    dead.add_argument("action", choices=["list", "replay"])
    dead.add_argument("table", nargs="?", help="source table (replay: required)")
    again = sub.add_parser("resnapshot", help="re-read one captured table (Debezium incremental snapshot)")
    again.add_argument("table", help="schema.table, as in the connector config's table.include.list")
    sub.add_parser("pools", help="configure the platform's Dagster pools in the instance of $DAGSTER_HOME before its "
                                 "daemon starts (an operator's own limits stay); prod compose runs it")
    dev = sub.add_parser("dev", help="stack up, demo data, a demo change stream and the Dagster UI")
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--rate", type=float, default=2.0, help="demo changes per second while the UI runs")
    dev.add_argument("--dashboard-port", type=int, default=3002, help="port of the D3 dashboard page")
    return parser


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "stack":
        from corisync_assets.local import stack

        if args.action == "up":
            stack.up()
        elif args.action == "down":
            stack.down()
        else:
            states = stack.status()
            return 0 if all(states.values()) else 3
        return 0
    if args.command == "dbt-worker":
        from corisync_assets import dbt_worker
        from corisync_assets.environment import settings

        return dbt_worker.serve(dbt_worker.socket_path(settings().home))
    if args.command == "lander":
        from corisync_assets.cdc import lander

        if args.health:
            return 0 if lander.healthy() else 1
        return lander.run()
    if args.command == "dead-letters":
        return _dead_letters(args.action, args.table)
    if args.command == "resnapshot":
        from corisync_assets.cdc.connector_config import load_connector_config
        from corisync_assets.cdc.resnapshot import resnapshot
        from corisync_assets.environment import settings

        s = settings()
        req = resnapshot(s, load_connector_config(s.connector_config), args.table)
        print(f"{args.table}: incremental snapshot requested (signal {req.signal_id}); the lander or the next "
              "raw_cdc run lands it")
        return 0
    if args.command == "pools":
        from dagster import DagsterInstance

        from corisync_assets.web.assets import ensure_pool_limits

        with DagsterInstance.get() as instance:
            configured = ensure_pool_limits(instance)
        print(f"pools configured: {', '.join(configured)}" if configured else "pools: already configured")
        return 0
    if args.command == "dev":
        from corisync_assets.local.dev import run_dev

        return run_dev(port=args.port, host=args.host, rate=args.rate, dashboard_port=args.dashboard_port)
    from corisync_assets.local.demo import run_demo

    run_demo(force_seed=args.seed, rate=args.rate, duration=args.duration, random_seed=args.random_seed,
             web_visitors=args.web_visitors)
    return 0


def _dead_letters(action: str, table: str | None) -> int:
    from corisync_assets.cdc import dead_letters
    from corisync_assets.environment import settings, warehouse_resource

    warehouse = warehouse_resource(settings())
    if action == "list":
        rows = dead_letters.summarize(warehouse.dead_letters(table))
        print("table\tpending\treplayed\terror")
        for t, error, pending, replayed in rows:
            print(f"{t}\t{pending}\t{replayed}\t{error}")
        return 0
    if not table:
        raise ConfigError("corisync dead-letters replay needs a table")
    report = dead_letters.replay(warehouse, table)
    return 0 if not report.still_failing else 4


def main(argv: list[str] | None = None) -> None:
    try:
        code = run(argv)
    except (StackError, ConfigError) as exc:
        print(f"corisync: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # one line, no traceback, but say what kind of failure it was
        print(f"corisync: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
              file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
