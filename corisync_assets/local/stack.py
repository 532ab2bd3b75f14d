"""``corisync stack up|down|status``: Postgres -> broker -> Debezium runner -> web collector -> Airbyte stand-in
on this machine, no Docker.

``up`` is idempotent: components already running are left alone and reported as such, except that a broker
(re)started by this ``up`` forces a Debezium runner restart (the new broker is empty; the runner must
reconnect and, having lost its offsets with the broker, re-snapshot) and a collector restart (it recreates
its topics with their partition counts and gets a fresh producer id). Any failure is one ``StackError``
line naming the component and the reason. ``down`` stops only processes the stack started (pidfiles).

The collector (``python -m corisync_assets.web.collector``, detached, log ``<home>/logs/collector.log``)
listens on ``collector_host:collector_port``; its write key is generated into ``<home>/secrets.env`` on the
first ``up`` (see ``postgres.ensure_secrets``). It is reported after Debezium, so the first three lines of
``up`` stay postgres, broker, debezium.

The Airbyte stand-in (``python -m corisync_assets.local.airbyte``, log ``<home>/logs/airbyte.log``) serves the
subset of Airbyte's API that dagster-airbyte calls, and the Google API double its connectors read, on
``127.0.0.1:airbyte_port``; its client id and secret are generated into ``<home>/secrets.env`` on its first
start. It starts in well under the ~2 s of its health check budget: nothing is discovered at startup.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from corisync_assets.environment import Settings, settings
from corisync_assets.local import broker, postgres
from corisync_assets.local.debezium_runner import logfile as dbz_logfile
from corisync_assets.local.debezium_runner import workdir as dbz_workdir
from corisync_assets.local.procs import (
    StackError,
    pid_alive,
    port_bindable,
    port_open,
    running_pid,
    spawn,
    stop_pid,
    tail,
    wait_until,
)

RUNNER_MODULE = "corisync_assets.local.debezium_runner"
COLLECTOR_MODULE = "corisync_assets.web.collector"
AIRBYTE_MODULE = "corisync_assets.local.airbyte"
Printer = Callable[[str], None]


def _line(name: str, text: str) -> str:
    return f"{name:<9} ... {text}"


# --- Debezium runner ---------------------------------------------------------------------------------------


def dbz_pidfile(s: Settings) -> Path:
    return s.home / "run" / "debezium.pid"


def dbz_pid(s: Settings) -> int | None:
    return running_pid(dbz_pidfile(s), RUNNER_MODULE)


def _slot_name(s: Settings) -> str:
    from corisync_assets.cdc.connector_config import load_connector_config, settings_environ

    return load_connector_config(s.connector_config, settings_environ(s)).get("slot.name") or "debezium"


def slot_active(s: Settings) -> bool:
    """The runner is streaming once its replication slot is active (after any snapshot)."""
    try:
        out = postgres.psql(
            s, f"SELECT active FROM pg_replication_slots WHERE slot_name = '{_slot_name(s)}';", db=s.pg_database
        )
    except StackError:
        return False
    return out.strip() == "t"


def check_captured_tables(s: Settings) -> None:
    """Every table the connector config captures must exist, or Debezium would silently capture nothing."""
    from corisync_assets.cdc.connector_config import load_connector_config, settings_environ

    connector = load_connector_config(s.connector_config, settings_environ(s))
    out = postgres.psql(
        s,
        "SELECT table_schema || '.' || table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE';",
        db=s.pg_database,
    )
    existing = set(out.split())
    missing = [f"{schema}.{table}" for schema, table in connector.tables if f"{schema}.{table}" not in existing]
    if missing:
        raise StackError(
            f"debezium: connector config {connector.path} captures {', '.join(missing)}, "
            f"which is not a table in database {s.pg_database}"
        )


def start_debezium(s: Settings, timeout: float = 180.0) -> str:
    if dbz_pid(s) is not None:
        return "running"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise StackError("debezium: java missing (no java on PATH and JAVA_HOME unset)")
    env = {**os.environ, "CORISYNC_HOME": str(s.home), "PYDBZ_JVM_OPTS": "-Xmx512m"}
    out = dbz_workdir(s) / "stdout.log"
    pid = spawn([sys.executable, "-m", RUNNER_MODULE], log=out, pidfile=dbz_pidfile(s), cwd=dbz_workdir(s),
                env=env)
    # judge by the pid we spawned: right after fork its cmdline may not show the module yet
    ok = wait_until(lambda: not pid_alive(pid) or slot_active(s), timeout, 0.5)
    if not pid_alive(pid):
        why = tail(out, 1) or tail(dbz_logfile(s), 1) or "exited"
        raise StackError(f"debezium: runner exited during start: {why}")
    if not ok:
        stop_debezium(s)
        raise StackError(f"debezium: not streaming after {timeout:.0f}s (see {dbz_logfile(s)})")
    return "started"


def stop_debezium(s: Settings, timeout: float = 60.0) -> bool:
    """SIGTERM the runner (it closes the engine and commits its offsets), SIGKILL after ``timeout``."""
    stopped = stop_pid(dbz_pidfile(s), RUNNER_MODULE, timeout=timeout)
    if stopped:  # let Postgres notice the walsender is gone before anyone checks the slot again
        wait_until(lambda: not slot_active(s), 15, 0.2)
    return stopped


def _health_ok(base_url: str, timeout: float) -> bool:
    """``GET <base_url>/health`` answers 200 (the collector's and the Airbyte stand-in's probe)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(base_url + "/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


# --- web collector -----------------------------------------------------------------------------------------


def collector_pidfile(s: Settings) -> Path:
    return s.home / "run" / "collector.pid"


def collector_logfile(s: Settings) -> Path:
    return s.home / "logs" / "collector.log"


def collector_url(s: Settings) -> str:
    host = s.collector_host if s.collector_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{s.collector_port}"


def collector_pid(s: Settings) -> int | None:
    return running_pid(collector_pidfile(s), COLLECTOR_MODULE)


def collector_healthy(s: Settings, timeout: float = 2.0) -> bool:
    """``GET /health`` answers 200."""
    return _health_ok(collector_url(s), timeout)


def start_collector(s: Settings, *, restart: bool = False, timeout: float = 60.0) -> str:
    """Start the collector detached; 'running' if ours already runs (unless ``restart``), 'started' once
    ``/health`` answers."""
    if collector_pid(s) is not None:
        if not restart:
            return "running"
        stop_collector(s)
    host = s.collector_host
    if port_open(host, s.collector_port) or not port_bindable(host, s.collector_port):
        raise StackError(f"collector: port {s.collector_port} on {host} is taken by another process")
    postgres.ensure_secrets(s.home, names=(postgres.WRITE_KEYS_VAR,))
    # the child reads the rest of its settings from this environment (incl. the write key, env or secrets.env)
    env = {**os.environ, "CORISYNC_HOME": str(s.home), "CORISYNC_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
           "CORISYNC_COLLECTOR_HOST": s.collector_host, "CORISYNC_COLLECTOR_PORT": str(s.collector_port),
           "CORISYNC_WEB_TOPIC": s.web_topic}
    log = collector_logfile(s)
    pid = spawn([sys.executable, "-m", COLLECTOR_MODULE], log=log, pidfile=collector_pidfile(s), cwd=s.home,
                env=env)
    ok = wait_until(lambda: not pid_alive(pid) or collector_healthy(s, 1.0), timeout, 0.3)
    if not pid_alive(pid):
        raise StackError(f"collector: exited during start: {tail(log, 1) or 'no output'}")
    if not ok:
        stop_collector(s)
        raise StackError(f"collector: no answer on {collector_url(s)}/health after {timeout:.0f}s (see {log})")
    return "started"


def stop_collector(s: Settings) -> bool:
    return stop_pid(collector_pidfile(s), COLLECTOR_MODULE, timeout=20)


# --- Airbyte stand-in --------------------------------------------------------------------------------------


def airbyte_pidfile(s: Settings) -> Path:
    return s.home / "run" / "airbyte.pid"


def airbyte_logfile(s: Settings) -> Path:
    return s.home / "logs" / "airbyte.log"


def airbyte_url(s: Settings) -> str:
    """The stand-in's own address (``s.airbyte_base_url`` may name another Airbyte)."""
    return f"http://127.0.0.1:{s.airbyte_port}"


def airbyte_pid(s: Settings) -> int | None:
    return running_pid(airbyte_pidfile(s), AIRBYTE_MODULE)


def airbyte_healthy(s: Settings, timeout: float = 2.0) -> bool:
    """``GET /health`` answers 200."""
    return _health_ok(airbyte_url(s), timeout)


def start_airbyte(s: Settings, *, timeout: float = 30.0) -> str:
    """Start the Airbyte stand-in detached; 'running' if ours already runs, 'started' once ``/health``
    answers."""
    if airbyte_pid(s) is not None:
        return "running"
    if port_open("127.0.0.1", s.airbyte_port) or not port_bindable("127.0.0.1", s.airbyte_port):
        raise StackError(f"airbyte: port {s.airbyte_port} on 127.0.0.1 is taken by another process")
    postgres.ensure_secrets(s.home, names=postgres.AIRBYTE_CLIENT_VARS)
    # the child reads its settings from this environment (client id/secret: env or secrets.env)
    env = {**os.environ, "CORISYNC_HOME": str(s.home), "CORISYNC_AIRBYTE_PORT": str(s.airbyte_port),
           "CORISYNC_AIRBYTE_WORKSPACE_ID": s.airbyte_workspace_id, "CORISYNC_DUCKDB_PATH": str(s.warehouse_path)}
    log = airbyte_logfile(s)
    pid = spawn([sys.executable, "-m", AIRBYTE_MODULE], log=log, pidfile=airbyte_pidfile(s), cwd=s.home, env=env)
    ok = wait_until(lambda: not pid_alive(pid) or airbyte_healthy(s, 1.0), timeout, 0.2)
    if not pid_alive(pid):
        raise StackError(f"airbyte: exited during start: {tail(log, 1) or 'no output'}")
    if not ok:
        stop_airbyte(s)
        raise StackError(f"airbyte: no answer on {airbyte_url(s)}/health after {timeout:.0f}s (see {log})")
    return "started"


def stop_airbyte(s: Settings) -> bool:
    """SIGTERM: running syncs are cancelled (their connectors killed, nothing written)."""
    return stop_pid(airbyte_pidfile(s), AIRBYTE_MODULE, timeout=20)


# --- the stack ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpResult:
    postgres: str
    broker: str
    debezium: str
    collector: str = "not started"
    airbyte: str = "not started"


def up(s: Settings | None = None, out: Printer = print) -> UpResult:
    """Bring up postgres -> broker -> debezium -> collector -> airbyte; one progress line per component."""
    s = s or settings()
    pg_state = postgres.start(s)
    # first start generated passwords (exported to os.environ): re-read settings so they are visible
    settings.cache_clear()
    out(_line("postgres", f"up {s.pg_host}:{s.pg_port}" + (" (already running)" if pg_state == "running" else "")))
    restarting = not broker.is_running(s) and dbz_pid(s) is not None
    if restarting:
        # The memory-only broker is gone with Debezium's offsets, so the next runner must snapshot again. Stop
        # the runner while no broker exists: stopped later, its shutdown would commit its offsets into the new
        # broker, and the next runner would resume from them and never re-read the lost events. A graceful
        # close has nothing to commit to: it only waits (~60 s) for the lost broker; a few seconds, then kill.
        stop_debezium(s, timeout=3)
    br_state = broker.start(s)
    out(_line("broker", f"up {s.kafka_bootstrap}" + (" (already running)" if br_state == "running" else "")))
    check_captured_tables(s)
    if restarting:
        out(_line("debezium", "restarting: the broker was restarted"))
    dbz_state = start_debezium(s)
    slot = _slot_name(s)
    out(_line("debezium", f"up -> {s.kafka_bootstrap} (slot {slot})"
              + (" (already running)" if dbz_state == "running" else "")))
    col_restart = br_state == "started" and collector_pid(s) is not None
    if col_restart:
        out(_line("collector", "restarting: the broker was restarted"))
    col_state = start_collector(s, restart=col_restart)
    settings.cache_clear()  # a first start generated the write key (exported to os.environ)
    out(_line("collector", f"up {collector_url(s)} -> {s.web_topic}"
              + (" (already running)" if col_state == "running" else "")))
    ab_state = start_airbyte(s)
    settings.cache_clear()  # a first start generated the client id and secret (exported to os.environ)
    out(_line("airbyte", f"up {airbyte_url(s)} (workspace {s.airbyte_workspace_id})"
              + (" (already running)" if ab_state == "running" else "")))
    return UpResult(pg_state, br_state, dbz_state, col_state, ab_state)


def down(s: Settings | None = None, out: Printer = print) -> None:
    """Stop airbyte -> collector -> debezium -> broker -> postgres, only what this stack started."""
    s = s or settings()
    out(_line("airbyte", "stopped" if stop_airbyte(s) else "not running"))
    out(_line("collector", "stopped" if stop_collector(s) else "not running"))
    out(_line("debezium", "stopped" if stop_debezium(s) else "not running"))
    out(_line("broker", "stopped" if broker.stop(s) else "not running"))
    out(_line("postgres", "stopped" if postgres.stop(s) else "not running"))


def component_states(s: Settings) -> dict[str, bool]:
    try:
        pg = postgres.is_running(s)
    except StackError:
        pg = False
    return {"postgres": pg, "broker": broker.is_running(s), "debezium": dbz_pid(s) is not None,
            "collector": collector_pid(s) is not None and collector_healthy(s),
            "airbyte": airbyte_pid(s) is not None and airbyte_healthy(s)}


def status(s: Settings | None = None, out: Printer = print) -> dict[str, bool]:
    """Each component with its address, then the consumer lag of every CDC topic."""
    s = s or settings()
    states = component_states(s)
    addr = {"postgres": f"{s.pg_host}:{s.pg_port}", "broker": s.kafka_bootstrap,
            "debezium": f"pid {dbz_pid(s)}", "collector": collector_url(s), "airbyte": airbyte_url(s)}
    for name, running in states.items():
        out(_line(name, f"up {addr[name]}" if running else "down"))
    from corisync_assets.cdc.connector_config import load_connector_config, settings_environ

    topics = load_connector_config(s.connector_config, settings_environ(s)).topics
    lags: dict | None = None
    if states["broker"]:
        try:
            from corisync_assets.resources.kafka import topic_lag

            lags = topic_lag(s.kafka_client_config(), s.consumer_group, topics)
        except ImportError:
            lags = None
        except Exception as exc:
            out(f"lag       ... n/a ({str(exc).splitlines()[0]})")
            return states
    for topic in topics:
        if lags is None:
            out(f"  {topic:<40} lag: n/a")
            continue
        parts = [info for (t, _), info in sorted(lags.items()) if t == topic]
        if not parts:
            out(f"  {topic:<40} lag: n/a (topic not created yet)")
            continue
        total = sum(p.lag for p in parts)
        committed = ",".join("-" if p.committed is None else str(p.committed) for p in parts)
        hw = ",".join(str(p.high_watermark) for p in parts)
        out(f"  {topic:<40} lag: {total} (committed {committed}, end {hw}, group {s.consumer_group})")
    return states
