"""The real Airbyte connectors as the local stack runs them: command line, config and configured catalog.

The connectors are the PyPI packages ``airbyte-source-google-sheets`` and
``airbyte-source-google-analytics-data-api``, installed in their own venv (``.venv-airbyte``, by ``make
airbyte-connectors``: their dependency ranges clash with the project's) and started through ``launch.py``,
which points their Google base URLs at the Google API double (``corisync_assets/local/google_apis.py``) when
``CORISYNC_GOOGLE_API_URL`` is in their environment. This module runs in the project venv and never imports
the connectors.

``source_config`` is the local config of a connection, for the double: a Google service account whose RSA key
is generated in this process (once; it signs the connector's JWT-bearer token request, which the double
accepts without knowing the public key), so no key material is ever stored. A config therefore differs from
one process to the next in ``credentials`` only.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from corisync_assets.airbyte.connections import Connection
from corisync_assets.environment import PROJECT_ROOT
from corisync_assets.local.google_apis import GA4_PROPERTY_ID, SPREADSHEET_ID

CONNECTOR_VENV = PROJECT_ROOT / ".venv-airbyte"
LAUNCH_SCRIPT = Path(__file__).resolve().parent / "launch.py"
VERBS = ("spec", "check", "discover", "read")
SOURCE_TYPES = ("google-sheets", "google-analytics-data-api")
#: rows per values:batchGet request (the connector's default, 1,000,000, is one request for any sheet; Google
#: advises responses well under its 180 s limit)
SHEETS_BATCH_SIZE = 10_000
#: GA4 revises the last two days of data: each incremental read starts that far before the cursor (the
#: connector's default, spelled out); append_dedup on (property_id, date, pagePath) absorbs the overlap
GA4_LOOKBACK_DAYS = 2
GA4_START_DATE = "2026-01-01"
GA4_REPORTS: dict[str, dict[str, list[str]]] = {
    "course_pages": {"dimensions": ["date", "pagePath"], "metrics": ["sessions", "screenPageViews", "totalUsers"]},
}
SERVICE_ACCOUNT_EMAIL = "corisync-airbyte@tc4a-local.iam.gserviceaccount.com"


class ConnectorVenvMissing(RuntimeError):
    pass


def connector_python() -> Path:
    python = CONNECTOR_VENV / "bin" / "python"
    if not python.exists():
        raise ConnectorVenvMissing(f"the Airbyte connectors' venv is missing ({python}): run "
                                   "`make airbyte-connectors` (part of `make install`)")
    return python


def connector_command(source_type: str, verb: str, *, config: Path | None = None, catalog: Path | None = None,
                      state: Path | None = None) -> list[str]:
    """The argv that runs ``verb`` of the connector of ``source_type`` (Airbyte protocol on stdout)."""
    if source_type not in SOURCE_TYPES:
        raise ValueError(f"unknown source type {source_type!r}; known: {', '.join(SOURCE_TYPES)}")
    if verb not in VERBS:
        raise ValueError(f"unknown verb {verb!r}; known: {', '.join(VERBS)}")
    if verb != "spec" and config is None:
        raise ValueError(f"{verb} needs a config")
    if verb == "read" and catalog is None:
        raise ValueError("read needs a configured catalog")
    argv = [str(connector_python()), str(LAUNCH_SCRIPT), source_type, verb]
    for flag, path in (("--config", config), ("--catalog", catalog), ("--state", state)):
        if path is not None:
            argv += [flag, str(path)]
    return argv


@functools.cache
def _private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def service_account_json(google_api_url: str) -> str:
    """A Google service account key file for the double (``token_uri`` is the double's token endpoint)."""
    base = google_api_url.rstrip("/")
    return json.dumps({
        "type": "service_account",
        "project_id": "tc4a-local",
        "private_key_id": "local0000000000000000000000000000000000",
        "private_key": _private_key_pem(),
        "client_email": SERVICE_ACCOUNT_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": f"{base}/oauth2/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"{base}/robot/v1/metadata/x509/{SERVICE_ACCOUNT_EMAIL}",
        "universe_domain": "googleapis.com",
    })


def source_config(conn: Connection, google_api_url: str) -> dict[str, Any]:
    """The connector config of ``conn`` against the Google double at ``google_api_url``."""
    if conn.source_type == "google-sheets":
        return {
            "spreadsheet_id": SPREADSHEET_ID,
            "credentials": {"auth_type": "Service", "service_account_info": service_account_json(google_api_url)},
            "names_conversion": True,
            "batch_size": SHEETS_BATCH_SIZE,
        }
    if conn.source_type == "google-analytics-data-api":
        reports = [{"name": s.name, **GA4_REPORTS[s.name]} for s in conn.streams]
        return {
            "property_ids": [GA4_PROPERTY_ID],
            "date_ranges_start_date": GA4_START_DATE,
            "custom_reports_array": reports,
            "lookback_window": GA4_LOOKBACK_DAYS,
            "keep_empty_rows": False,
            "credentials": {"auth_type": "Service", "credentials_json": service_account_json(google_api_url)},
        }
    raise ValueError(f"connection {conn.name}: unknown source type {conn.source_type!r}")


_MODES = {
    "full_refresh_overwrite": ("full_refresh", "overwrite"),
    "incremental_append_dedup": ("incremental", "append_dedup"),
}


def configured_catalog(conn: Connection, discovered: dict[str, Any]) -> dict[str, Any]:
    """The ConfiguredAirbyteCatalog of ``conn``'s streams, from a DISCOVER catalog (``{"streams": [...]}``, or
    the whole CATALOG message); streams the connection does not select are left out."""
    catalog = discovered.get("catalog", discovered) if discovered.get("type") == "CATALOG" else discovered
    by_name = {s["name"]: s for s in catalog.get("streams", [])}
    configured = []
    for stream in conn.streams:
        found = by_name.get(stream.name)
        if found is None:
            raise KeyError(f"connection {conn.name}: stream {stream.name!r} is not in the source's catalog "
                           f"(it has: {', '.join(sorted(by_name)) or 'no streams'})")
        sync_mode, destination_sync_mode = _MODES[stream.sync_mode]
        if sync_mode not in found.get("supported_sync_modes", ["full_refresh"]):
            raise ValueError(f"connection {conn.name}: stream {stream.name!r} does not support {sync_mode} "
                             f"(supported: {found.get('supported_sync_modes')})")
        entry: dict[str, Any] = {"stream": found, "sync_mode": sync_mode,
                                 "destination_sync_mode": destination_sync_mode}
        if sync_mode == "incremental":
            entry["cursor_field"] = list(stream.cursor_field or found.get("default_cursor_field") or [])
            if not entry["cursor_field"]:
                raise ValueError(f"connection {conn.name}: incremental stream {stream.name!r} has no cursor")
        if destination_sync_mode == "append_dedup":
            entry["primary_key"] = [list(p) for p in stream.primary_key] or found.get("source_defined_primary_key")
            if not entry["primary_key"]:
                raise ValueError(f"connection {conn.name}: stream {stream.name!r} has no primary key to dedup on")
        configured.append(entry)
    return {"streams": configured}
