"""The local stand-in's Airbyte workspace: stable ids and the Airbyte-shaped descriptions of its objects.

The connections come from ``corisync_assets/airbyte/connections.py`` (the contract); this module gives each
one the ids a real Airbyte would have given it and describes it, its source and the DuckDB destination in
the JSON shapes of Airbyte's public API (``/api/public/v1``) and configuration API (``/api/v1``) that
dagster-airbyte reads. Ids are uuid5s of the names under the workspace id: the same on every machine and
after every restart, so Dagster's cached workspace data and run history keep pointing at the same objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from corisync_assets.airbyte.connections import Connection, Stream
from corisync_assets.environment import LOCAL_AIRBYTE_WORKSPACE_ID

#: the schema of the local warehouse the stand-in's destination writes to (prod: CORISYNC_BQ_AIRBYTE_DATASET)
DESTINATION_SCHEMA = "raw_airbyte"
DESTINATION_NAME = "Local DuckDB warehouse"
_NS = uuid.UUID(LOCAL_AIRBYTE_WORKSPACE_ID)

#: Connection.Stream.sync_mode -> (Airbyte syncMode, destinationSyncMode)
SYNC_MODES: dict[str, tuple[str, str]] = {
    "full_refresh_overwrite": ("full_refresh", "overwrite"),
    "incremental_append_dedup": ("incremental", "append_dedup"),
}


def connection_id(name: str) -> str:
    """The Airbyte connection id the stand-in serves connection ``name`` under."""
    return str(uuid.uuid5(_NS, f"connection:{name}"))


def source_id(name: str) -> str:
    return str(uuid.uuid5(_NS, f"source:{name}"))


def destination_id() -> str:
    return str(uuid.uuid5(_NS, "destination:duckdb"))


def destination_database(warehouse_path: Path) -> str:
    """What the destination reports as its database: the warehouse file's stem (``warehouse``)."""
    return Path(warehouse_path).stem or "warehouse"


def _paths(keys: Sequence[Sequence[str]]) -> list[list[str]]:
    return [list(k) for k in keys]


def catalog_streams(conn: Connection, discovered: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The connection's syncCatalog streams (configuration API shape): the declared streams only, each with
    the jsonSchema the connector discovered (``{}`` when discovery has not found it), selected."""
    found = {s["name"]: s for s in (discovered or {}).get("streams", [])}
    out = []
    for stream in conn.streams:
        d = found.get(stream.name, {})
        sync_mode, destination_sync_mode = SYNC_MODES[stream.sync_mode]
        out.append({
            "stream": {
                "name": stream.name,
                "jsonSchema": d.get("json_schema", {}),
                "supportedSyncModes": d.get("supported_sync_modes", ["full_refresh"]),
                "sourceDefinedCursor": d.get("source_defined_cursor", False),
                "defaultCursorField": d.get("default_cursor_field", []),
                "sourceDefinedPrimaryKey": d.get("source_defined_primary_key", []),
                **({"namespace": d["namespace"]} if d.get("namespace") else {}),
            },
            "config": {
                "syncMode": sync_mode,
                "destinationSyncMode": destination_sync_mode,
                "cursorField": list(stream.cursor_field),
                "primaryKey": _paths(stream.primary_key or d.get("source_defined_primary_key", [])),
                "aliasName": stream.name,
                "selected": True,
                "fieldSelectionEnabled": False,
            },
        })
    return out


def primary_key(stream: Stream, discovered_stream: Mapping[str, Any] | None) -> list[list[str]]:
    """The declared primary key, else the source-defined one."""
    return _paths(stream.primary_key or (discovered_stream or {}).get("source_defined_primary_key", []))


def connection_read(conn: Connection, workspace_id: str, discovered: Mapping[str, Any] | None) -> dict[str, Any]:
    """``POST /api/v1/connections/get`` (ConnectionRead)."""
    return {
        "connectionId": connection_id(conn.name),
        "name": conn.name,
        "namespaceDefinition": "destination",
        "namespaceFormat": None,
        "prefix": conn.prefix,
        "sourceId": source_id(conn.name),
        "destinationId": destination_id(),
        "workspaceId": workspace_id,
        "operationIds": [],
        "syncCatalog": {"streams": catalog_streams(conn, discovered)},
        "scheduleType": "manual",  # Dagster schedules the syncs (conn.cron)
        "status": "active",
        "nonBreakingChangesPreference": "propagate_columns",
        "notifySchemaChanges": False,
        "breakingChange": False,
        "geography": "auto",
    }


def connection_response(conn: Connection, workspace_id: str) -> dict[str, Any]:
    """One item of ``GET /api/public/v1/connections`` (ConnectionResponse)."""
    return {
        "connectionId": connection_id(conn.name),
        "name": conn.name,
        "sourceId": source_id(conn.name),
        "destinationId": destination_id(),
        "workspaceId": workspace_id,
        "status": "active",
        "schedule": {"scheduleType": "manual"},
        "dataResidency": "auto",
        "namespaceDefinition": "destination",
        "namespaceFormat": None,
        "prefix": conn.prefix,
        "nonBreakingSchemaUpdatesBehavior": "propagate_columns",
        "configurations": {"streams": [
            {"name": s.name, "syncMode": "_".join(SYNC_MODES[s.sync_mode]),
             "cursorField": list(s.cursor_field), "primaryKey": _paths(s.primary_key)}
            for s in conn.streams]},
    }


def destination_response(workspace_id: str, warehouse_path: Path) -> dict[str, Any]:
    """``GET /api/public/v1/destinations/{id}`` (DestinationResponse)."""
    return {
        "destinationId": destination_id(),
        "name": DESTINATION_NAME,
        "destinationType": "duckdb",
        "workspaceId": workspace_id,
        "configuration": {
            "destination_path": str(warehouse_path),
            "database": destination_database(warehouse_path),
            "schema": DESTINATION_SCHEMA,
        },
    }


def workspace_response(workspace_id: str) -> dict[str, Any]:
    return {"workspaceId": workspace_id, "name": "corisync-local", "dataResidency": "auto",
            "notifications": {}}
