"""``corisync stack up|status|down`` through the real CLI, on its own ports and home (not the session stack)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from corisync_assets.environment import PROJECT_ROOT

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]


def corisync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from corisync_assets.local.cli import main; main()", *args],
                          env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=240)


@pytest.fixture
def cli_env():
    home = Path(tempfile.mkdtemp(prefix="corisync-cli-test-", dir="/tmp"))
    home.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("CORISYNC_") or k.startswith("DAGSTER_PG_"))}
    env.update(CORISYNC_HOME=str(home), CORISYNC_PG_PORT="25434", CORISYNC_KAFKA_BOOTSTRAP="127.0.0.1:29094",
               CORISYNC_COLLECTOR_PORT="28084", CORISYNC_AIRBYTE_PORT="28904")
    yield env
    corisync(env, "stack", "down")
    shutil.rmtree(home, ignore_errors=True)


def test_up_is_idempotent_status_shows_components_down_stops_them(cli_env):
    first = corisync(cli_env, "stack", "up")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("postgres  ... up 127.0.0.1:25434")
    assert lines[1].startswith("broker    ... up 127.0.0.1:29094")
    assert lines[2].startswith("debezium  ... up")
    assert lines[3].startswith("collector ... up http://127.0.0.1:28084")
    assert lines[4].startswith("airbyte   ... up http://127.0.0.1:28904")
    assert "already running" not in first.stdout

    t0 = time.monotonic()
    second = corisync(cli_env, "stack", "up")
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("(already running)") == 5
    assert time.monotonic() - t0 < 30

    status = corisync(cli_env, "stack", "status")
    assert status.returncode == 0, status.stderr
    assert "postgres  ... up 127.0.0.1:25434" in status.stdout
    assert "broker    ... up 127.0.0.1:29094" in status.stdout
    assert "debezium  ... up pid" in status.stdout
    assert "airbyte   ... up http://127.0.0.1:28904" in status.stdout
    assert "tc4a.public.users" in status.stdout and "lag:" in status.stdout

    home = Path(cli_env["CORISYNC_HOME"])
    secrets = home / "secrets.env"
    assert secrets.stat().st_mode & 0o777 == 0o600
    assert {line.split("=")[0] for line in secrets.read_text().splitlines()} == {
        "CORISYNC_PG_PASSWORD", "CORISYNC_PG_CDC_PASSWORD", "DAGSTER_PG_PASSWORD", "CORISYNC_COLLECTOR_WRITE_KEYS",
        "CORISYNC_AIRBYTE_CLIENT_ID", "CORISYNC_AIRBYTE_CLIENT_SECRET"}
    write_key = secrets.read_text().split("CORISYNC_COLLECTOR_WRITE_KEYS=")[1].split()[0].split("=", 1)[1]
    assert write_key not in first.stdout + status.stdout
    password = secrets.read_text().split("CORISYNC_PG_PASSWORD=")[1].split()[0]
    assert password not in first.stdout + status.stdout
    client_secret = secrets.read_text().split("CORISYNC_AIRBYTE_CLIENT_SECRET=")[1].split()[0]
    assert client_secret not in first.stdout + status.stdout
    assert "postgres:" in (home / "dagster_home" / "dagster.yaml").read_text()

    down = corisync(cli_env, "stack", "down")
    assert down.returncode == 0, down.stderr
    after = corisync(cli_env, "stack", "status")
    assert after.returncode == 3
    for name in ("postgres", "broker", "debezium", "collector", "airbyte"):
        assert f"{name:<9} ... down" in after.stdout


def test_port_taken_is_one_clear_line(cli_env):
    import socket

    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", 25434))
        blocker.listen()
        res = corisync(cli_env, "stack", "up")
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0
    assert "postgres" in res.stderr and "25434" in res.stderr and "taken" in res.stderr
    assert "Traceback" not in res.stderr


def test_port_bound_but_not_listening_is_taken_too(cli_env):
    """The CI failure this guards: the broker's port was the local end of some outgoing connection (it lies
    in Linux's ephemeral range), nothing listened on it, and tansu panicked with AddrInUse."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 29094))  # bound, never listening: a connect() probe sees nothing
        res = corisync(cli_env, "stack", "up")
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0
    assert "broker" in res.stderr and "29094" in res.stderr and "taken" in res.stderr
    assert "panicked" not in res.stderr
