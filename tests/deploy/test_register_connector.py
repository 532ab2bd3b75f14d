"""docker/debezium/register_connector.py (the one-shot debezium-register job) against a fake Kafka Connect
REST API on loopback: it PUTs THE connector config unchanged and waits until connector and task run."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .conftest import DOCKER

CONNECTOR_CONFIG = DOCKER / "debezium" / "tc4a-postgres.json"


def _load_register():
    spec = importlib.util.spec_from_file_location("register_connector", DOCKER / "debezium" / "register_connector.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.register


class FakeConnect:
    """Answers like Kafka Connect: 409 for the first `busy` PUTs (rebalance), then 201/200; status
    RUNNING after `starting` polls, or a FAILED task if `fail`."""

    def __init__(self, busy: int = 0, starting: int = 1, fail: bool = False) -> None:
        self.busy, self.starting, self.fail = busy, starting, fail
        self.configs: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []

    def handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, code: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_PUT(self) -> None:
                fake.requests.append(("PUT", self.path))
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if fake.busy:
                    fake.busy -= 1
                    return self._send(409, {"error_code": 409, "message": "rebalance in progress"})
                name = self.path.split("/")[2]
                created = name not in fake.configs
                fake.configs[name] = body
                return self._send(201 if created else 200, {"name": name, "config": body})

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path))
                name = self.path.split("/")[2]
                if self.path.endswith("/config"):
                    if name not in fake.configs:
                        return self._send(404, {"error_code": 404, "message": f"Connector {name} not found"})
                    return self._send(200, fake.configs[name])
                if fake.starting:
                    fake.starting -= 1
                    return self._send(200, {"name": name, "connector": {"state": "UNASSIGNED"}, "tasks": []})
                task_state = "FAILED" if fake.fail else "RUNNING"
                return self._send(200, {"name": name, "connector": {"state": "RUNNING"},
                                        "tasks": [{"id": 0, "state": task_state}]})

        return Handler


@pytest.fixture
def connect() -> Iterator[tuple[FakeConnect, str]]:
    fake = FakeConnect(busy=1, starting=2)
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_registers_the_config_file_unchanged_and_waits_for_running(connect) -> None:
    fake, url = connect
    register = _load_register()
    asked = []
    assert register(url, str(CONNECTOR_CONFIG), wait_seconds=10, poll=0.01,
                    signal=lambda _config, tables: asked.append(tables) or "sig") == 0
    assert asked == []  # a new connector snapshots every table itself
    spec = json.loads(CONNECTOR_CONFIG.read_text())
    # the ${env:...} placeholders travel as they are: Connect resolves them, no password is sent
    assert fake.configs == {spec["name"]: spec["config"]}
    assert ("PUT", f"/connectors/{spec['name']}/config") in fake.requests
    # idempotent: a second run updates in place
    assert register(url, str(CONNECTOR_CONFIG), wait_seconds=10, poll=0.01) == 0
    assert len(fake.configs) == 1


def test_an_update_that_adds_tables_asks_for_their_snapshot(connect, tmp_path) -> None:
    """Tables added to table.include.list may hold rows a running connector would never read: the job asks for
    an incremental snapshot of exactly those, once the connector runs again (the request itself, through the
    signalling table, is tested on the real stack in tests/cdc/test_resnapshot.py)."""
    fake, url = connect
    spec = json.loads(CONNECTOR_CONFIG.read_text())
    fake.configs[spec["name"]] = {**spec["config"], "table.include.list": "public.users,public.courses"}
    asked = []
    assert _load_register()(url, str(CONNECTOR_CONFIG), wait_seconds=10, poll=0.01,
                            signal=lambda config, tables: asked.append((config["signal.data.collection"], tables))
                            or "sig") == 0
    before = ("public.users", "public.courses")
    expected = [t for t in spec["config"]["table.include.list"].split(",") if t not in before]
    assert asked == [("corisync.debezium_signal", expected)]


def test_failed_task_fails_the_job(connect) -> None:
    fake, url = connect
    fake.fail = True
    assert _load_register()(url, str(CONNECTOR_CONFIG), wait_seconds=10, poll=0.01) == 1


def test_unreachable_connect_times_out() -> None:
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert _load_register()(f"http://127.0.0.1:{port}", str(CONNECTOR_CONFIG), wait_seconds=0.3, poll=0.05) == 1
