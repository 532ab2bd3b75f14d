"""Register (or update) the Debezium connector with Kafka Connect, wait until it runs, then onboard new tables.

One-shot job of docker/compose/debezium.yml. Idempotent: PUT /connectors/<name>/config creates the
connector or replaces its config. Reads CONNECT_URL (default http://debezium:8083) and CONNECTOR_CONFIG
(the JSON file with "name" and "config", as docker/debezium/tc4a-postgres.json).

Tables that an update adds to ``table.include.list`` may already hold rows, which a running connector would
never read (``snapshot.mode=initial`` snapshots only on its first start). Once the connector runs again, the
job asks Debezium for an incremental snapshot of exactly those tables through the signalling table, with
CoriSync's own request (``corisync_assets.cdc.snapshots``: the signal carries the WAL position the lander
needs for its end marker), as the CDC role (``CORISYNC_PG_*`` from the environment). The job therefore runs
in the CoriSync image; the registration itself needs the standard library only.
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


def _tables(config: dict) -> list[str]:
    return [t.strip() for t in str(config.get("table.include.list", "")).split(",") if t.strip()]


def signal_snapshot(config: dict, tables: list[str]) -> str:
    """Ask the connector for an incremental snapshot of ``tables`` (CoriSync's request, as the CDC role)."""
    import psycopg

    from corisync_assets.cdc.snapshots import request_snapshot

    env = os.environ
    schema, _, table = config["signal.data.collection"].rpartition(".")
    with psycopg.connect(host=env.get("CORISYNC_PG_HOST", "postgres"), port=int(env.get("CORISYNC_PG_PORT", "5432")),
                         dbname=env.get("CORISYNC_PG_DATABASE", "tc4a"),
                         user=env.get("CORISYNC_PG_CDC_USER", "corisync_cdc"),
                         password=env["CORISYNC_PG_CDC_PASSWORD"], connect_timeout=10) as conn:
        return request_snapshot(conn, (schema, table), tables).signal_id


def register(connect_url: str, config_path: str, wait_seconds: float = 120.0, poll: float = 2.0,
             signal=signal_snapshot) -> int:
    with open(config_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    name, config = spec["name"], spec["config"]
    base = connect_url.rstrip("/")
    try:
        status, previous = _request("GET", f"{base}/connectors/{name}/config")
    except OSError:
        status, previous = 0, {}
    # tables the running connector did not capture yet (a new connector snapshots everything itself)
    added = [t for t in _tables(config) if t not in _tables(previous)] if status == 200 else []

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
                if added and config.get("signal.data.collection"):
                    print(f"connector {name}: incremental snapshot of {', '.join(added)} requested "
                          f"(signal {signal(config, added)})")
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
