"""One Dagster multi-asset per Airbyte connection, its schedule, and what a sync reports.

The asset body is dagster-airbyte's sync-and-poll (start a job, poll it to the end, cancel it if the run is
terminated), then two reports dagster-airbyte does not give:

* records per stream (Airbyte's ``streamStats`` of the job, config API ``POST /api/v1/jobs/get``) and the rows
  the warehouse table holds after the sync (``dagster/row_count``): green means the rows are there;
* Airbyte's own error when a job fails or is cancelled, instead of "Job failed: 42".
"""

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    AssetSelection,
    DefaultScheduleStatus,
    Failure,
    MaterializeResult,
    ScheduleDefinition,
)
from dagster_airbyte import airbyte_assets
from dagster_airbyte.resources import AirbyteClient
from dagster_airbyte.translator import AirbyteMetadataSet

from corisync_assets.airbyte.connections import CONNECTIONS, Connection
from corisync_assets.airbyte.translator import CorisyncAirbyteTranslator, airbyte_asset_key
from corisync_assets.airbyte.workspace import CorisyncAirbyteWorkspace
from corisync_assets.resources.warehouse.base import Warehouse

TRANSLATOR = CorisyncAirbyteTranslator()


def job_report(client: AirbyteClient, job_id: int) -> Mapping[str, Any]:
    """Airbyte's config API view of a job: attempts with per-stream stats and failure summaries."""
    return client._single_request(method="POST", url=f"{client.configuration_api_base_url}/jobs/get",
                                  data={"id": job_id})


def stream_records(report: Mapping[str, Any]) -> dict[str, int]:
    """Records emitted per stream by the job's last attempt."""
    attempts = report.get("attempts") or []
    if not attempts:
        return {}
    stats = (attempts[-1].get("attempt") or {}).get("streamStats") or []
    return {s["streamName"]: int((s.get("stats") or {}).get("recordsEmitted") or 0) for s in stats}


def failure_message(report: Mapping[str, Any]) -> str | None:
    """The first failure of the job's last attempt, as Airbyte words it."""
    for attempt in reversed(report.get("attempts") or []):
        for failure in ((attempt.get("attempt") or {}).get("failureSummary") or {}).get("failures") or []:
            text = failure.get("externalMessage") or failure.get("internalMessage")
            if text:
                origin = failure.get("failureOrigin")
                return f"{text} (origin: {origin})" if origin else text
    return None


def _latest_job_id(client: AirbyteClient, connection_id: str) -> int | None:
    jobs = client.get_jobs_for_connection(connection_id=connection_id,
                                          created_after=datetime.now() - timedelta(days=2))
    return max((job.id for job in jobs), default=None)


def row_counts(warehouse: Warehouse, relations: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Rows of each existing table among ``relations`` (the writer slot held: DuckDB shares its file)."""
    with warehouse.exclusive():
        counts = warehouse.table_row_counts(relations)
        if counts is None:
            counts = {rel: rows.row_count for rel, rows in warehouse.read_tables(relations, limit=0).items()}
    return counts


def sync(context: AssetExecutionContext, airbyte: CorisyncAirbyteWorkspace, warehouse: Warehouse,
         connection: Connection, schema: str) -> Iterator[MaterializeResult]:
    specs = [spec for spec in context.assets_def.specs if spec.key in context.selected_asset_keys]
    connection_id = AirbyteMetadataSet.extract(specs[0].metadata).connection_id
    client = airbyte.get_client()
    try:
        output = client.sync_and_poll(connection_id=connection_id)
    except Failure as exc:
        job_id = _latest_job_id(client, connection_id)
        reason = failure_message(job_report(client, job_id)) if job_id is not None else None
        raise Failure(description=f"Airbyte sync of {connection.name} ended without data: {exc.description}"
                                  + (f": {reason}" if reason else ""),
                      metadata={"airbyte_job_id": job_id}) from None
    job_id = output.job_details["jobId"]
    records = stream_records(job_report(client, job_id))
    relations = [(schema, connection.table(_stream_of(spec))) for spec in specs]
    counts = row_counts(warehouse, relations)
    missing = [f"{s}.{table}" for s, table in relations if (s, table) not in counts]
    if missing:
        raise Failure(description=f"Airbyte job {job_id} of {connection.name} succeeded, but the warehouse has no "
                                  f"{', '.join(missing)}: nothing to show as materialized")
    for spec, rel in zip(specs, relations, strict=True):
        stream = _stream_of(spec)
        yield MaterializeResult(asset_key=spec.key, metadata={
            "airbyte_job_id": job_id,
            "records_synced": records.get(stream, 0),
            "dagster/row_count": counts[rel],
            "table": f"{schema}.{rel[1]}",
        })


def _stream_of(spec) -> str:
    return spec.key.path[-1]


def build_airbyte_assets(workspace: CorisyncAirbyteWorkspace, schema: str,
                         connections: Sequence[Connection] = CONNECTIONS) -> list[AssetsDefinition]:
    """A multi-asset per declared connection found in the workspace (one workspace fetch for all); ``schema``
    is where Airbyte's destination writes (DuckDB schema or BigQuery dataset)."""
    specs = workspace.load_asset_specs(dagster_airbyte_translator=TRANSLATOR)
    ids = {spec.key.path[1]: AirbyteMetadataSet.extract(spec.metadata).connection_id for spec in specs}
    assets = []
    for conn in connections:
        if conn.name not in ids:
            continue
        assets.append(_connection_assets(conn, ids[conn.name], workspace, schema))
    return assets


def _connection_assets(conn: Connection, connection_id: str, workspace: CorisyncAirbyteWorkspace, schema: str):
    @airbyte_assets(connection_id=connection_id, workspace=workspace, name=f"airbyte_{conn.name}",
                    dagster_airbyte_translator=TRANSLATOR)
    def _assets(context: AssetExecutionContext, airbyte: CorisyncAirbyteWorkspace, warehouse: Warehouse):
        yield from sync(context, airbyte, warehouse, conn, schema)

    return _assets


def airbyte_schedules(connections: Sequence[Connection] = CONNECTIONS) -> list[ScheduleDefinition]:
    """Hourly for the sheet, daily for GA4 (each connection's ``cron``); dbt follows by automation."""
    return [ScheduleDefinition(
        name=f"airbyte_{conn.name}_schedule", cron_schedule=conn.cron,
        target=AssetSelection.assets(*(airbyte_asset_key(conn.name, s.name) for s in conn.streams)),
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Sync the Airbyte connection {conn.name}.") for conn in connections]
