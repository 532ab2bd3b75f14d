"""Incremental (ad hoc) snapshots: asking Debezium to re-read tables, and knowing when it has.

Debezium re-reads a table while it keeps streaming when an ``execute-snapshot`` row is written to its
signalling table (``signal.data.collection``, source channel): chunk by chunk, as ``r`` events in the table's
topic, deduplicated against the changes that stream meanwhile. This is how a table that already holds rows
is onboarded (the local runner asks when it starts and finds a captured table with no history in the broker;
``docker/debezium/register_connector.py`` asks for tables it adds in compose) and how one table is re-read on
request (``corisync resnapshot <schema.table>``, the ``resnapshot`` Dagster job).

**The marker.** A re-read must also *remove* rows that no longer exist (deleted while their delete event was
lost, e.g. with the local broker's memory). Every request reads Postgres' WAL position ``L`` in the same
transaction that writes the signal, and puts it in the signal's id (``corisync-<L>-<nonce>``). Debezium echoes
that id in its notifications (``notification.enabled.channels=sink``), and sends ``TABLE_SCAN_COMPLETED``
for every table it finished, an empty one included (status ``EMPTY``). When the lander has landed the table's
topic up to where that notification was published, every row alive in Postgres has an event at or after ``L``
(its snapshot read, or a later change), so current-state rows whose last event is older than ``L`` are gone
in Postgres and are deleted (:meth:`~corisync_assets.resources.warehouse.base.Warehouse.apply_snapshot_ends`).
The changelog keeps everything.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corisync_assets.environment import Settings

SIGNAL_ID = re.compile(r"^corisync-(\d+)-[0-9a-f]+$")
#: incremental-snapshot table statuses after which every live row of the table has been read
COMPLETE = {"SUCCEEDED", "EMPTY"}


def signal_id(start_lsn: int) -> str:
    return f"corisync-{start_lsn}-{uuid.uuid4().hex[:12]}"


def cdc_connection_args(s: Settings) -> dict:
    """psycopg connection arguments of the CDC role (the one granted the signalling table)."""
    return {"host": s.pg_host, "port": s.pg_port, "dbname": s.pg_database, "user": s.pg_cdc_user,
            "password": s.pg_cdc_password, "connect_timeout": 10}


@dataclass(frozen=True)
class SnapshotRequest:
    signal_id: str
    start_lsn: int
    collections: tuple[str, ...]


def request_snapshot(conn, signal_table: tuple[str, str], collections: Sequence[str]) -> SnapshotRequest:
    """Write one ``execute-snapshot`` signal for these data collections (``schema.table``) and commit.

    ``conn`` is a psycopg connection of a role that may insert into the signalling table (the CDC role). The
    WAL position is read in the signal's own transaction, before its insert: every change committed before
    the request has a lower LSN.
    """
    from psycopg import sql

    from corisync_assets.cdc.reconcile import lsn_int

    if not collections:
        raise ValueError("no table to snapshot")
    with conn.transaction():
        start = lsn_int(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
        sid = signal_id(start)
        conn.execute(
            sql.SQL("INSERT INTO {} (id, type, data) VALUES (%s, 'execute-snapshot', %s)").format(
                sql.Identifier(*signal_table)),
            (sid, json.dumps({"data-collections": list(collections), "type": "incremental"})),
        )
    return SnapshotRequest(sid, start, tuple(collections))


@dataclass(frozen=True)
class SnapshotEnd:
    """Debezium finished re-reading ``collection`` for the request made at WAL position ``start_lsn``."""

    collection: str
    start_lsn: int
    status: str
    rows: int


def parse_notification(value: bytes | None) -> SnapshotEnd | None:
    """A Debezium notification (JsonConverter, with or without schema) -> the end of one table's re-read
    requested by CoriSync, or None for any other notification (progress, other requesters, bad JSON)."""
    if not value:
        return None
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    payload = doc.get("payload", doc) if isinstance(doc, dict) else None
    if not isinstance(payload, dict) or payload.get("aggregate_type") != "Incremental Snapshot" \
            or payload.get("type") != "TABLE_SCAN_COMPLETED":
        return None
    match = SIGNAL_ID.match(str(payload.get("id") or ""))
    data = payload.get("additional_data") or {}
    if match is None or data.get("status") not in COMPLETE or not data.get("scanned_collection"):
        return None
    return SnapshotEnd(collection=str(data["scanned_collection"]), start_lsn=int(match.group(1)),
                       status=str(data["status"]), rows=int(data.get("total_rows_scanned") or 0))
