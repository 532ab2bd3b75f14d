"""Re-read one captured table on request: ``corisync resnapshot <schema.table>`` and the ``resnapshot`` job.

Both write Debezium's ``execute-snapshot`` signal through :func:`corisync_assets.cdc.snapshots.request_snapshot`
as the CDC role (the only role granted the signalling table). The connector re-reads the table while it keeps
streaming; the lander (or the next raw run) lands the reads and, at the end marker, removes rows whose deletes
were lost (see :mod:`corisync_assets.cdc.snapshots`). Typical use: the local broker lost its topics, or a
reconciliation check found rows that differ.
"""

from dagster import Config, OpExecutionContext, job, op

from corisync_assets.cdc.connector_config import ConnectorConfig
from corisync_assets.cdc.snapshots import SnapshotRequest, cdc_connection_args, request_snapshot
from corisync_assets.environment import ConfigError, Settings


def resnapshot(s: Settings, connector: ConnectorConfig, table: str) -> SnapshotRequest:
    """Ask the connector to re-read ``table`` (``schema.table``, as in ``table.include.list``)."""
    import psycopg

    schema, _, name = table.partition(".")
    if (schema, name) not in connector.tables:
        listed = ", ".join(f"{a}.{b}" for a, b in connector.tables)
        raise ConfigError(f"{table!r} is not captured by connector {connector.name} (table.include.list: {listed})")
    if connector.signal_table is None:
        raise ConfigError(f"connector config {connector.path} has no source signal channel "
                          "(signal.data.collection); Debezium cannot be asked for a snapshot")
    if not s.pg_cdc_password:
        raise ConfigError("CORISYNC_PG_CDC_PASSWORD is not set (the CDC role writes the snapshot signal)")
    with psycopg.connect(**cdc_connection_args(s)) as conn:
        return request_snapshot(conn, connector.signal_table, [table])


class ResnapshotConfig(Config):
    table: str  # schema.table, as listed in the connector config's table.include.list


@op(description="Write Debezium's execute-snapshot signal for one captured table (incremental snapshot).")
def request_table_snapshot(context: OpExecutionContext, config: ResnapshotConfig) -> None:
    from corisync_assets.cdc.connector_config import load_connector_config
    from corisync_assets.environment import settings

    s = settings()
    req = resnapshot(s, load_connector_config(s.connector_config), config.table)
    context.log.info(f"incremental snapshot of {config.table} requested (signal {req.signal_id}, WAL position "
                     f"{req.start_lsn}); the raw asset lands the re-read rows and drops rows older than it")


@job(description="Re-read one captured table through Debezium's incremental snapshot (config: table).",
     tags={"corisync/layer": "raw"})
def resnapshot_job() -> None:
    request_table_snapshot()
