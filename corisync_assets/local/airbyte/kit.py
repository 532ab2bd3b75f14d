"""How the stand-in reaches the connectors: three functions, the real ones by default, a fake in tests.

The real ones live in ``corisync_assets/local/airbyte/connectors.py``: the command line that runs a connector
verb in its own venv (``.venv-airbyte``, through ``launch.py``), the connector config of a connection, and
the configured catalog of a connection given what the connector discovered. The job runner and the discover
cache only see this bundle, so the tests can run the whole stand-in with a small fake connector script.

Connector processes get a scrubbed environment: the stand-in's own secrets (its client secret, the local
stack's passwords) never reach them; ``CORISYNC_GOOGLE_API_URL`` points the real connectors at the Google
double served by the stand-in itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corisync_assets.airbyte.connections import Connection

GOOGLE_API_URL_VAR = "CORISYNC_GOOGLE_API_URL"
#: environment variables a connector never needs (substrings of their names)
_SECRET_MARKERS = ("SECRET", "PASSWORD", "WRITE_KEYS", "TOKEN", "CREDENTIAL")


@dataclass(frozen=True)
class ConnectorKit:
    #: ``(source_type, verb, *, config=Path|None, catalog=Path|None, state=Path|None) -> argv``
    command: Callable[..., list[str]]
    #: ``(connection, google_api_url) -> connector config``
    source_config: Callable[[Connection, str], dict]
    #: ``(connection, discovered catalog {"streams": [...]}) -> configured catalog``
    configured_catalog: Callable[[Connection, dict], dict]


def default_kit() -> ConnectorKit:
    """The real connectors (imported here, not at module import: the tests never need them)."""
    from corisync_assets.local.airbyte import connectors

    return ConnectorKit(connectors.connector_command, connectors.source_config, connectors.configured_catalog)


def connector_env(google_api_url: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without secrets, plus the Google double's URL."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not any(m in k.upper() for m in _SECRET_MARKERS)}
    env[GOOGLE_API_URL_VAR] = google_api_url
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def write_private_json(path: Path, value: Any) -> Path:
    """Write ``value`` as JSON readable by this user only (connector configs hold credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(value, fh)
    return path
