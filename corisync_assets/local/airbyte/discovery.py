"""The connectors' DISCOVER, cached per connection under ``<home>/airbyte/discover/<connection>.json``.

A connector start costs seconds (airbyte-cdk imports), and dagster-airbyte asks for every connection's
catalog each time the code location loads; Airbyte itself keeps a connection's catalog too and does not
rediscover per request. The cache is keyed by a hash of the connector config without its credentials
(another spreadsheet, another property, other reports: discover again). The job runner refreshes it when a
sync's records carry fields the cached schema does not know (a sheet's header changed), and
``POST /api/v1/sources/discover_schema`` with ``disable_cache: true`` refreshes it on demand.

A fresh home starts from the catalogs kept in the repo (``catalogs/<connection>.json``, written by
``python -m corisync_assets.local.airbyte.discovery``), as a connection created in Airbyte starts with the
catalog discovered when it was set up: a cold discover takes 10-25 s per connector, longer than a definitions
load may wait. A test keeps the repo's catalogs equal to what the connectors discover.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from corisync_assets.airbyte.connections import Connection
from corisync_assets.local.airbyte.kit import ConnectorKit, connector_env, write_private_json

DISCOVER_TIMEOUT_S = 300.0
SEED_DIR = Path(__file__).with_name("catalogs")


class DiscoverError(RuntimeError):
    """The connector's discover failed; the message is the connector's own (TRACE error) when it sent one."""


def config_hash(config: Mapping[str, Any]) -> str:
    """Hash of what the catalog depends on: the config without its ``credentials`` (the local ones carry a key
    made per process and the Google double's URL)."""
    relevant = {k: v for k, v in config.items() if k != "credentials"}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


def parse_discover_output(stdout: str, stderr: str = "", returncode: int = 0) -> dict[str, Any]:
    """The CATALOG of a discover's stdout (Airbyte protocol lines); DiscoverError with the connector's error."""
    catalog = None
    errors = []
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("type") == "CATALOG":
            catalog = msg.get("catalog") or {}
        elif msg.get("type") == "TRACE" and (msg.get("trace") or {}).get("type") == "ERROR":
            errors.append((msg["trace"].get("error") or {}).get("message") or "unknown error")
    if errors:
        raise DiscoverError(f"discover failed: {errors[0]}")
    if catalog is None:
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        raise DiscoverError(f"discover sent no catalog (exit code {returncode})" + (f": {tail}" if tail else ""))
    catalog.setdefault("streams", [])
    return catalog


class DiscoverCache:
    """Discovered catalogs per connection, on disk; one discover at a time per connection."""

    def __init__(self, home: Path, kit: Callable[[], ConnectorKit]):
        self.dir = home / "airbyte" / "discover"
        self._kit = kit  # resolved on first discover: the real connectors' module is only needed then
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def path(self, conn: Connection) -> Path:
        return self.dir / f"{conn.name}.json"

    def cached(self, conn: Connection, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """This home's catalog, else the repo's, when discovered for this config."""
        for path in (self.path(conn), SEED_DIR / f"{conn.name}.json"):
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if entry.get("config_hash") == config_hash(config):
                return entry.get("catalog")
        return None

    def catalog(self, conn: Connection, config: Mapping[str, Any], google_api_url: str, *,
                refresh: bool = False) -> dict[str, Any]:
        """The connection's discovered catalog ``{"streams": [...]}``: cached, else discovered now."""
        with self._lock(conn.name):
            if not refresh and (hit := self.cached(conn, config)) is not None:
                return hit
            catalog = self.discover(conn, config, google_api_url)
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.path(conn).with_suffix(".tmp")
            tmp.write_text(json.dumps({"config_hash": config_hash(config), "catalog": catalog}))
            tmp.replace(self.path(conn))
            return catalog

    def discover(self, conn: Connection, config: Mapping[str, Any], google_api_url: str) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="airbyte-discover-") as tmp:
            config_path = write_private_json(Path(tmp) / "config.json", config)
            argv = self._kit().command(conn.source_type, "discover", config=config_path)
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=DISCOVER_TIMEOUT_S,
                                      env=connector_env(google_api_url), stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise DiscoverError(f"discover of {conn.name} timed out after {DISCOVER_TIMEOUT_S:.0f}s") from None
            except OSError as exc:
                raise DiscoverError(f"cannot run the {conn.source_type} connector: {exc}") from None
        return parse_discover_output(proc.stdout, proc.stderr, proc.returncode)


def write_seeds() -> None:
    """Discover every connection with the real connectors against the Google double; write ``catalogs/``."""
    import tempfile

    from corisync_assets.airbyte.connections import CONNECTIONS
    from corisync_assets.environment import Settings
    from corisync_assets.local.airbyte.server import StandIn, default_google_app, start_in_thread

    with tempfile.TemporaryDirectory(prefix="airbyte-seed-") as home:
        s = Settings(home=Path(home), airbyte_client_id="seed", airbyte_client_secret="seed")
        running = start_in_thread(StandIn(s), google=default_google_app())
        try:
            SEED_DIR.mkdir(exist_ok=True)
            for conn in CONNECTIONS:
                standin = running.standin
                config = standin.kit().source_config(conn, standin.google_api_url)
                catalog = standin.discover.discover(conn, config, standin.google_api_url)
                entry = {"config_hash": config_hash(config), "catalog": catalog}
                (SEED_DIR / f"{conn.name}.json").write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")
                print(f"{SEED_DIR / conn.name}.json: {len(catalog['streams'])} streams")
        finally:
            running.stop()


if __name__ == "__main__":
    write_seeds()
