"""Register (or update) the Debezium connector with Kafka Connect, then wait until it runs.

One-shot job of docker/compose/debezium.yml. Idempotent: PUT /connectors/<name>/config creates the
connector or replaces its config. Reads CONNECT_URL (default http://debezium:8083) and CONNECTOR_CONFIG
(the JSON file with "name" and "config", as docker/debezium/tc4a-postgres.json). Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request


def _request(method: str, url: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw) if raw else {}
        except ValueError:
            return exc.code, {"message": raw.decode(errors="replace")}


def register(connect_url: str, config_path: str, wait_seconds: float = 120.0, poll: float = 2.0) -> int:
    with open(config_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    name, config = spec["name"], spec["config"]
    base = connect_url.rstrip("/")

    deadline = time.monotonic() + wait_seconds
    while True:  # Connect may answer 409 while it rebalances: retry until the deadline
        try:
            status, answer = _request("PUT", f"{base}/connectors/{name}/config", config)
        except OSError as exc:
            status, answer = 0, {"message": str(exc)}
        if status in (200, 201):
            print(f"connector {name}: config {'created' if status == 201 else 'updated'}")
            break
        if status == 400 or time.monotonic() > deadline:
            print(f"connector {name}: registration failed ({status}): {answer}", file=sys.stderr)
            return 1
        time.sleep(poll)

    while True:
        try:
            status, answer = _request("GET", f"{base}/connectors/{name}/status")
        except OSError as exc:
            status, answer = 0, {"message": str(exc)}
        if status == 200:
            states = [answer.get("connector", {}).get("state")]
            states += [task.get("state") for task in answer.get("tasks", [])]
            if "FAILED" in states:
                print(f"connector {name}: FAILED: {json.dumps(answer)}", file=sys.stderr)
                return 1
            if len(states) > 1 and all(state == "RUNNING" for state in states):
                print(f"connector {name}: RUNNING")
                return 0
        if time.monotonic() > deadline:
            print(f"connector {name}: not RUNNING after {wait_seconds:.0f}s: {answer}", file=sys.stderr)
            return 1
        time.sleep(poll)


def main() -> int:
    return register(
        os.environ.get("CONNECT_URL", "http://debezium:8083"),
        os.environ.get("CONNECTOR_CONFIG", "/corisync/tc4a-postgres.json"),
        float(os.environ.get("REGISTER_TIMEOUT_SECONDS", "180")),
    )


if __name__ == "__main__":
    sys.exit(main())
