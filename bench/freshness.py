"""Freshness under `make dev`, measured from outside the pipeline: Postgres commit -> readable in the warehouse.

Starts what `make dev` starts, privately (a temp CORISYNC_HOME, free ports, nothing shared with a developer's
stack): the local stack (Postgres, tansu, Debezium), the demo seed, ``corisync lander``, ``corisync dbt-worker``,
the demo change stream at ``--rate`` changes/s over all tables (``corisync demo``), and ``dagster dev`` (webserver
+ daemon: ``raw_cdc_lag_sensor``, ``dbt_automation_sensor`` and the schedules running) with the dev
``dagster.yaml`` (instance storage in the stack's Postgres, ``QueuedRunCoordinator``). Once automation has built
the marts for the first time it commits ``--markers`` marker rows, spread evenly over ``--duration`` seconds: each
a new user with a unique email, inserted with autocommit. The commit time of a marker is ``time.time()`` taken
right after the INSERT's COMMIT returned to the client (an upper bound of the commit by a millisecond or so, on the
clock the poller uses; Debezium's ``source.ts_ms``, Postgres' own commit timestamp, is reported beside it). A
poller opens the DuckDB file read-only every 100 ms, taking the writers' slot (``<warehouse>.writer.lock``) as
every reader should, and records the first moment each marker is readable in ``raw_cdc.users`` and in
``marts.dim_users`` (one row per user, so every marker must show up there).

Prints p50/p95/max (nearest rank) for commit -> raw and commit -> marts against the goals of issue #10
(raw p50 <= 5 s and p95 <= 10 s, marts p95 <= 60 s), the Dagster runs of the bench window (failed runs:
goal none) and what the time went to: Debezium + lander (``source.ts_ms`` -> ``landed_at`` in the
changelog), the wait for the writer slot, the automation runs' queueing and durations, and raw runs that
were in flight (eager automation waits while any upstream run is in progress). Everything it started is
stopped on exit, Ctrl-C included; the logs are copied to ``artifacts/bench/freshness/`` (git-ignored).

    .venv/bin/python bench/freshness.py [--markers 20] [--duration 60] [--rate 20]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ARTIFACTS = ROOT / "artifacts" / "bench" / "freshness"
#: ports the test stack uses when tests run beside the bench; never handed out here
RESERVED_PORTS = {25432, 29092, 25433, 29093, 25451, 29111, 3000}
GOALS = {"raw": (5.0, 10.0), "marts": (None, 60.0)}

from corisync_assets.resources.warehouse.writer_slot import writer_slot_path  # noqa: E402  (stdlib only)


def free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def stats_line(name: str, values: list[float], goal: str) -> str:
    if not values:
        return f"{name:30s} no samples                                  (goal {goal})"
    return (f"{name:30s} p50 {statistics.median(values):6.2f}s  p95 {nearest_rank(values, 95):6.2f}s  "
            f"max {max(values):6.2f}s  (n={len(values)}; goal {goal})")


class Poller(threading.Thread):
    """Every ``interval`` s: open the warehouse read-only (in the writers' slot) and look for the outstanding
    markers; records the first moment each is readable in raw_cdc.users and in marts.dim_users."""

    def __init__(self, path: str, interval: float = 0.1) -> None:
        super().__init__(daemon=True, name="poller")
        self.path, self.interval = path, interval
        self.lock = threading.Lock()
        self.raw_seen: dict[int, float] = {}
        self.mart_seen: dict[int, float] = {}
        self.outstanding: set[int] = set()
        self.stop = threading.Event()
        self.reads = 0
        self.slot_waits: list[float] = []  # time spent waiting for the writers' slot, per read
        self.errors: dict[str, int] = {}

    def add(self, user_id: int) -> None:
        with self.lock:
            self.outstanding.add(user_id)

    def pending(self) -> int:
        with self.lock:
            return len(self.outstanding)

    def run(self) -> None:
        import duckdb
        import filelock

        slot = filelock.FileLock(writer_slot_path(self.path), timeout=120)
        while not self.stop.wait(self.interval):
            with self.lock:
                ids = sorted(self.outstanding)
            if not ids:
                continue
            in_list = ", ".join(str(i) for i in ids)
            raw, mart = set(), set()
            try:
                asked = time.monotonic()
                with slot:
                    self.slot_waits.append(time.monotonic() - asked)
                    con = duckdb.connect(self.path, read_only=True)
                    try:
                        now = time.time()
                        raw = {r[0] for r in con.execute(
                            f"SELECT user_id FROM raw_cdc.users WHERE user_id IN ({in_list})").fetchall()}
                        mart = {r[0] for r in con.execute(
                            f"SELECT user_id FROM marts.dim_users WHERE user_id IN ({in_list})").fetchall()}
                    finally:
                        con.close()
                self.reads += 1
            except Exception as exc:  # lock timeout, a table not there yet: try again next interval
                kind = type(exc).__name__
                self.errors[kind] = self.errors.get(kind, 0) + 1
                continue
            with self.lock:
                for uid in raw:
                    self.raw_seen.setdefault(uid, now)
                for uid in mart:
                    self.mart_seen.setdefault(uid, now)
                self.outstanding -= {u for u in ids if u in self.raw_seen and u in self.mart_seen}


def read_warehouse(path: str, sql: str) -> list[tuple] | None:
    import duckdb
    import filelock

    if not Path(path).exists():
        return None
    try:
        with filelock.FileLock(writer_slot_path(path), timeout=120):
            con = duckdb.connect(path, read_only=True)
            try:
                return con.execute(sql).fetchall()
            finally:
                con.close()
    except Exception:
        return None


class Children:
    """Subprocesses, each in its own process group (so a group kill takes their children too)."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen:
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs[name] = proc
        return proc

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise SystemExit(f"bench: {name} exited with {proc.returncode} (see its log)")

    def stop(self) -> None:
        for sig, wait_s in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
            alive = [p for p in self.procs.values() if p.poll() is None]
            for proc in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
            deadline = time.monotonic() + wait_s
            for proc in alive:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.procs.values():  # leftovers in the groups (run workers, code servers)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def marker_breakdown(path: str, committed: dict[int, float]) -> list[tuple[int, float, float]]:
    """(user_id, source.ts_ms as epoch s, landed_at as epoch s) of each marker's insert in the changelog."""
    ids = ", ".join(str(u) for u in committed)
    rows = read_warehouse(path, "SELECT CAST(json_extract(after, '$.user_id') AS BIGINT), source_ts_ms, "
                                "epoch_ms(landed_at) FROM raw_cdc.users__changelog WHERE op = 'c' AND "
                                f"CAST(json_extract(after, '$.user_id') AS BIGINT) IN ({ids})")
    return [(u, ts / 1000, landed / 1000) for u, ts, landed in rows or []]


MART_KEY_PATH = ("marts", "dim_users")


def failure_reason(instance, run_id: str) -> str:
    """The first error of a failed run, else its last event messages."""
    events = instance.all_logs(run_id)
    for event in events:
        data = event.dagster_event.event_specific_data if event.dagster_event else None
        error = getattr(data, "error", None)
        if error is not None and getattr(error, "message", None):
            return error.message.strip().splitlines()[0][:300]
    return " | ".join((e.message or "")[:160] for e in events[-3:])


def lander_stalls(log: Path, start: float, end: float, gap_s: float = 3.0) -> list[float]:
    """Gaps longer than ``gap_s`` between the lander's logged cycles in [start, end] (it waits for the writer
    slot while a dbt build holds it); the demo stream keeps every cycle busy, so a gap is a wait."""
    import re

    stamps = []
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+) INFO corisync.lander cycle", line)
        if m:
            stamps.append(time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000)
    return [b - a for a, b in itertools.pairwise(stamps) if b - a > gap_s and b >= start and a <= end]


def dagster_report(window_start: float, window_end: float, dagster_start: float) -> tuple[list[str], int]:
    """Lines describing the Dagster runs (since dagster dev started / in the marker window); failed count."""
    from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus

    lines: list[str] = []
    mart_key = AssetKey(list(MART_KEY_PATH))
    with DagsterInstance.get() as instance:
        records = [r for r in instance.get_run_records(limit=2000) if r.create_timestamp.timestamp() >= dagster_start]
        records.sort(key=lambda r: r.create_timestamp)

        def kind(run) -> str:
            tags = run.tags
            if tags.get("dagster/from_automation_condition"):
                layers = {k.path[0] for k in run.asset_selection or ()}
                if layers & {"staging", "marts", "reporting", "snapshots"}:
                    return "dbt (automation)"
                return f"automation ({', '.join(sorted(layers))})"  # the web tables, the dashboard export
            if tags.get("dagster/sensor_name"):
                return f"sensor {tags['dagster/sensor_name']}"
            if tags.get("dagster/schedule_name"):
                return f"schedule {tags['dagster/schedule_name']}"
            return run.job_name

        def span(rec) -> tuple[float | None, float | None]:
            queued = rec.start_time - rec.create_timestamp.timestamp() if rec.start_time else None
            took = rec.end_time - rec.start_time if rec.start_time and rec.end_time else None
            return queued, took

        failed = [r for r in records if r.dagster_run.status == DagsterRunStatus.FAILURE]
        lines.append(f"dagster runs since dagster dev started: {len(records)}, failed {len(failed)} (goal: none)")
        groups: dict[str, list] = {}
        for rec in records:
            groups.setdefault(kind(rec.dagster_run), []).append(rec)
        for name, recs in sorted(groups.items()):
            spans = [span(r) for r in recs]
            queued = [q for q, _ in spans if q is not None]
            took = [t for _, t in spans if t is not None]
            statuses: dict[str, int] = {}
            for r in recs:
                statuses[r.dagster_run.status.value] = statuses.get(r.dagster_run.status.value, 0) + 1
            in_window = sum(1 for r in recs if window_start <= r.create_timestamp.timestamp() <= window_end)
            lines.append(f"  {name:34s} {len(recs):3d} runs ({in_window} in the marker window) {statuses}; "
                         f"queued p50 {statistics.median(queued) if queued else float('nan'):5.1f}s, "
                         f"run p50 {statistics.median(took) if took else float('nan'):5.1f}s "
                         f"max {max(took) if took else float('nan'):5.1f}s")
        for rec in failed[:5]:
            run = rec.dagster_run
            lines.append(f"  FAILED {run.run_id[:8]} {kind(run)} created {rec.create_timestamp:%H:%M:%S}: "
                         f"{failure_reason(instance, run.run_id)}")
        automation = [r for r in records if kind(r.dagster_run) == "dbt (automation)"
                      and window_start <= r.create_timestamp.timestamp() <= window_end]
        with_mart = [r for r in automation if mart_key in (r.dagster_run.asset_selection or ())]
        lines.append(f"  automation runs created in the marker window: {len(automation)}, of which "
                     f"{len(with_mart)} selected {mart_key.to_user_string()} (the others: requested for changes that "
                     "do not reach it, or while it missed a parent)")
        step_s, startup_s = [], []
        held = {"copy": [], "publish": []}  # what the dbt step holds the warehouse's slot for (its run log)
        for rec in automation:
            entries = instance.all_logs(rec.dagster_run.run_id)  # one read per run: step events and log lines
            starts = {e.step_key: e.timestamp for e in entries
                      if e.dagster_event_type == DagsterEventType.STEP_START}
            ends = {e.step_key: e.timestamp for e in entries
                    if e.dagster_event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE)}
            for key, t0 in starts.items():
                if key == "corisync_dbt" and key in ends:
                    step_s.append(ends[key] - t0)
                    if rec.start_time:
                        startup_s.append(t0 - rec.start_time)
            for entry in entries:
                for what, pattern in (("copy", r"\(taken in ([0-9.]+)s"), ("publish", r"of the build in ([0-9.]+)s")):
                    if found := re.search(pattern, entry.user_message or ""):
                        held[what].append(float(found.group(1)))
        if held["copy"] and held["publish"]:
            lines.append("  the dbt step holds the warehouse's writer slot only to copy it (p50 "
                         f"{statistics.median(held['copy']):.2f}s max {max(held['copy']):.2f}s, the wait included) "
                         f"and to publish the build (p50 {statistics.median(held['publish']):.2f}s "
                         f"max {max(held['publish']):.2f}s)")
        if step_s:
            lines.append(f"  dbt step (dbt builds in a copy of the warehouse): p50 "
                         f"{statistics.median(step_s):.1f}s max {max(step_s):.1f}s; run start -> step start "
                         f"(worker processes, definitions loads) p50 {statistics.median(startup_s):.1f}s "
                         f"max {max(startup_s):.1f}s")
        raw_busy = [(r.start_time, r.end_time or window_end) for r in records
                    if kind(r.dagster_run) != "dbt (automation)" and r.start_time and r.dagster_run.asset_selection
                    and any(k.path[0] == "raw_cdc" for k in r.dagster_run.asset_selection)]
        overlap = sum(max(0.0, min(e, window_end) - max(s, window_start)) for s, e in raw_busy)
        lines.append(f"  raw runs in flight during the marker window: {overlap:.0f}s of "
                     f"{window_end - window_start:.0f}s (eager automation does not start dbt while one runs)")
    return lines, len(failed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markers", type=int, default=20, help="marker rows to commit (default 20)")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds over which the markers are spread (default 60)")
    parser.add_argument("--rate", type=float, default=20.0, help="demo changes per second (default 20)")
    parser.add_argument("--settle", type=float, default=120.0,
                        help="max seconds to wait for the last marker to reach the marts (default 120)")
    parser.add_argument("--warmup-timeout", type=float, default=600.0,
                        help="max seconds until automation has built the marts once (default 600)")
    parser.add_argument("--keep", action="store_true", help="keep the temp CORISYNC_HOME")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress and results in order, also when redirected
    if args.markers < 1:
        parser.error("--markers must be at least 1")
    every = args.duration / args.markers

    home = Path(tempfile.mkdtemp(prefix="corisync-freshness-", dir="/tmp"))
    home.chmod(0o755)  # the postgres OS user must traverse it
    overrides = {"CORISYNC_ENV": "local", "CORISYNC_HOME": str(home), "CORISYNC_PG_HOST": "127.0.0.1",
                 "CORISYNC_PG_PORT": str(free_port()), "CORISYNC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
                 "CORISYNC_COLLECTOR_PORT": str(free_port())}
    for var in ("CORISYNC_PG_PASSWORD", "CORISYNC_PG_CDC_PASSWORD", "DAGSTER_PG_PASSWORD", "CORISYNC_DUCKDB_PATH",
                "CORISYNC_COLLECTOR_WRITE_KEYS",
                "CORISYNC_CONSUMER_GROUP", "DAGSTER_HOME", "DAGSTER_IS_DEV_CLI"):
        os.environ.pop(var, None)  # nothing of a developer's stack leaks in
    os.environ.update(overrides)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))  # clean up on TERM too

    from corisync_assets import environment
    from corisync_assets.local import postgres, stack
    from corisync_assets.local.demo import connect, run_demo

    say = lambda line: print(line, flush=True)  # noqa: E731
    children = Children()
    poller: Poller | None = None
    logs = home / "logs"
    code = 1
    try:
        environment.settings.cache_clear()
        stack.up(environment.settings(), out=say)
        environment.settings.cache_clear()  # now with the generated passwords
        s = environment.settings()
        run_demo(rate=0, duration=0, s=s, out=say)
        postgres.write_dagster_yaml(s)
        postgres.ensure_pool_limits(s)  # as `corisync dev` does
        os.environ.update(postgres.dagster_env(s))
        env = dict(os.environ)
        ui_port = free_port()
        dagster_start = time.time()
        cli = [sys.executable, "-m", "corisync_assets.local.cli"]
        children.start("dagster dev", [sys.executable, "-m", "dagster", "dev", "-w", str(ROOT / "workspace.yaml"),
                                       "-h", "127.0.0.1", "-p", str(ui_port)], env=env, log=logs / "dagster.log")
        children.start("lander", [*cli, "lander"], env=env, log=logs / "lander.log")
        children.start("dbt worker", [*cli, "dbt-worker"], env=env, log=logs / "dbt-worker.log")
        children.start("demo", [*cli, "demo", "--rate", str(args.rate), "--duration", "86400"], env=env,
                       log=logs / "demo.log")
        say(f"dagster dev on http://127.0.0.1:{ui_port}, lander, dbt worker, demo at {args.rate:g} changes/s; "
            f"logs in {logs}")

        path = str(s.warehouse_path)
        started = time.monotonic()
        while not read_warehouse(path, "SELECT 1 FROM information_schema.tables WHERE table_schema = 'marts' "
                                       "AND table_name = 'dim_users'"):
            children.check()
            if time.monotonic() - started > args.warmup_timeout:
                raise SystemExit(f"bench: automation did not build the marts within {args.warmup_timeout:.0f}s")
            time.sleep(1)
        say(f"marts built by automation {time.monotonic() - started:.0f}s after start; committing "
            f"{args.markers} markers over {args.duration:g}s")

        poller = Poller(path)
        poller.start()
        committed: dict[int, float] = {}
        window_start = time.time()
        with connect(s) as pg:
            for i in range(args.markers):
                due = window_start + i * every
                time.sleep(max(0.0, due - time.time()))
                # role trainer: the demo stream deletes random learners, and a deleted marker never reaches marts
                uid = pg.execute("INSERT INTO users (email, full_name, country_code, role) VALUES "
                                 "(%s, 'freshness marker', 'PT', 'trainer') RETURNING user_id",
                                 (f"{uuid.uuid4().hex[:12]}@freshness.example",)).fetchone()[0]
                committed[uid] = time.time()  # autocommit: COMMIT has returned
                poller.add(uid)
                children.check()
        deadline = time.monotonic() + args.settle
        while poller.pending() and time.monotonic() < deadline:
            children.check()
            time.sleep(0.5)
        poller.stop.set()
        poller.join(timeout=130)
        window_end = time.time()

        raw = {u: poller.raw_seen[u] - t for u, t in committed.items() if u in poller.raw_seen}
        mart = {u: poller.mart_seen[u] - t for u, t in committed.items() if u in poller.mart_seen}
        breakdown = marker_breakdown(path, committed)
        run_lines, failed = dagster_report(window_start, window_end, dagster_start)

        print()
        print(f"freshness, {len(committed)} markers over {args.duration:g}s, demo at {args.rate:g} changes/s, lander "
              f"+ dagster dev (daemon) running; commit time = wall clock after COMMIT returned")
        print(stats_line("commit -> raw_cdc.users", list(raw.values()), "p50 <= 5 s, p95 <= 10 s"))
        print(stats_line("commit -> marts.dim_users", list(mart.values()), "p95 <= 60 s"))
        unseen = {u: window_end - t for u, t in committed.items() if u not in poller.mart_seen}
        if unseen:  # censored samples: their true value is at least their age when polling stopped
            print(stats_line("  incl. unseen as >= their age", [*mart.values(), *unseen.values()], "lower bounds"))
        print(stats_line("raw -> marts", [mart[u] - raw[u] for u in mart if u in raw], "-"))
        if breakdown:
            pg_ts = [committed[u] - ts for u, ts, _ in breakdown]
            landed = [landed - ts for _, ts, landed in breakdown]
            seen = [poller.raw_seen[u] - landed for u, _, landed in breakdown if u in poller.raw_seen]
            print("where commit -> raw went (per marker):")
            print(stats_line("  source.ts_ms -> COMMIT returned", pg_ts, "-"))
            print(stats_line("  source.ts_ms -> landed (dbz+lander)", landed, "-"))
            print(stats_line("  landed -> readable (poller)", seen, "-"))
        stalls = lander_stalls(logs / "lander.log", window_start, window_end)
        print(f"lander: {len(stalls)} pause(s) over 3 s between cycles in the marker window"
              + (f", longest {max(stalls):.0f}s, {sum(stalls):.0f}s in all (waiting for the writer slot)"
                 if stalls else ""))
        if poller.slot_waits:
            print(f"poller: {poller.reads} reads; wait for the writers' slot p50 "
                  f"{statistics.median(poller.slot_waits):.3f}s max {max(poller.slot_waits):.1f}s"
                  f"{'; errors ' + str(poller.errors) if poller.errors else ''}")
        for line in run_lines:
            print(line)
        missing_raw, missing_mart = len(committed) - len(raw), len(committed) - len(mart)
        if missing_raw or missing_mart:
            print(f"not seen within the settle time: {missing_raw} in raw, {missing_mart} in marts")
        verdict = {"raw p50": bool(raw) and not missing_raw and statistics.median(raw.values()) <= GOALS["raw"][0],
                   "raw p95": bool(raw) and not missing_raw and nearest_rank([*raw.values()], 95) <= GOALS["raw"][1],
                   "marts p95": bool(mart) and not missing_mart
                   and nearest_rank([*mart.values()], 95) <= GOALS["marts"][1],
                   "no failed runs": not failed}
        ok = all(verdict.values())
        print("verdict: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in verdict.items())
              + f" -> {'PASS' if ok else 'FAIL'}")
        code = 0 if ok else 1
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", flush=True)
        code = 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        if poller is not None:  # no DuckDB connection may be open in a thread when the interpreter exits
            poller.stop.set()
            poller.join(timeout=130)
        try:
            children.stop()
        finally:
            try:
                stack.down(environment.settings(), out=lambda _line: None)
            finally:
                if logs.exists():
                    ARTIFACTS.mkdir(parents=True, exist_ok=True)
                    for log in logs.glob("*.log"):
                        shutil.copy(log, ARTIFACTS / log.name)
                    print(f"logs copied to {ARTIFACTS.relative_to(ROOT)}/", flush=True)
                if not args.keep:
                    shutil.rmtree(home, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
