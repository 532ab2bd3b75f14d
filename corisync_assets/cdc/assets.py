"""One raw CDC asset per captured table, generated from the connector config's table list.

Adding a table to `table.include.list` adds its Postgres source node and its raw asset; no other code
changes. Each materialization lands the events that arrived since the consumer group's last commit.
"""


import time

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    asset,
)

from corisync_assets.cdc.connector_config import ConnectorConfig
from corisync_assets.cdc.landing import LandingReport, land_table
from corisync_assets.resources.kafka import KafkaResource
from corisync_assets.resources.warehouse.base import Warehouse

RAW_GROUP = "raw_cdc"
SOURCE_GROUP = "tc4a_postgres"


def warehouse_table(schema: str, table: str) -> str:
    """Warehouse table name of a captured Postgres table (`public` tables keep their name)."""
    return table if schema == "public" else f"{schema}__{table}"


def raw_asset_key(schema: str, table: str) -> AssetKey:
    return AssetKey([RAW_GROUP, warehouse_table(schema, table)])


def source_asset_key(schema: str, table: str) -> AssetKey:
    return AssetKey([SOURCE_GROUP, schema, table])


def postgres_source_specs(connector: ConnectorConfig) -> list[AssetSpec]:
    """The operational tables themselves, so lineage starts at Postgres (observed, never materialized here)."""
    return [
        AssetSpec(
            key=source_asset_key(schema, table),
            group_name=SOURCE_GROUP,
            kinds={"postgres"},
            description=f"Operational table {schema}.{table} of the tc4a web platform, captured by Debezium "
            f"connector `{connector.name}`.",
            metadata={"postgres_table": f"{schema}.{table}", "kafka_topic": connector.topic_for(schema, table)},
        )
        for schema, table in connector.tables
    ]


def report_metadata(report: LandingReport, row_count: int | None) -> dict:
    lag_total = sum(info.lag for info in report.lag_after.values())
    metadata = {
        "events_landed": report.new_events,
        "messages_consumed": report.messages,
        "duplicates_skipped": report.duplicates,
        "dead_letters": report.dead_letters,
        "tombstones": report.tombstones,
        "ops": MetadataValue.json({op: report.ops.get(op, 0) for op in ("r", "c", "u", "d", "t")}),
        "offset_ranges": MetadataValue.json(
            {str(p): {"first": first, "last": last} for p, (first, last) in sorted(report.offsets.items())}
        ),
        "consumer_lag_after": lag_total,
        "kafka_topic": report.topic,
    }
    for op in ("r", "c", "u", "d", "t"):
        metadata[f"events_{op}"] = report.ops.get(op, 0)
    if report.max_source_ts_ms is not None:
        metadata["freshness_seconds"] = round(time.time() - report.max_source_ts_ms / 1000, 3)
        metadata["newest_source_ts_ms"] = report.max_source_ts_ms
    if row_count is not None:
        metadata["dagster/row_count"] = row_count
    return metadata


def build_raw_cdc_asset(connector: ConnectorConfig, schema: str, table: str) -> AssetsDefinition:
    topic = connector.topic_for(schema, table)
    name = warehouse_table(schema, table)

    @asset(
        key=raw_asset_key(schema, table),
        deps=[source_asset_key(schema, table)],
        group_name=RAW_GROUP,
        kinds={"debezium", "kafka", "postgres"},
        description=f"Changes of {schema}.{table} from Debezium topic `{topic}`: `{name}__changelog` (one row "
        f"per change) and `{name}` (current state, upsert by primary key) in the warehouse's raw dataset.",
        metadata={"kafka_topic": topic, "postgres_table": f"{schema}.{table}", "warehouse_table": name},
        tags={"corisync/layer": "raw"},
    )
    def _raw_cdc(context: AssetExecutionContext, kafka: KafkaResource, warehouse: Warehouse) -> MaterializeResult:
        report = land_table(kafka, warehouse, name, topic, log=context.log.info)
        context.log.info(
            f"{topic}: {report.new_events} new events landed ({dict(report.ops)}), "
            f"{report.duplicates} already landed, {report.dead_letters} dead letters"
        )
        row_count = warehouse.row_count(name) if report.batches else None
        return MaterializeResult(metadata=report_metadata(report, row_count))

    return _raw_cdc


def build_raw_cdc_assets(connector: ConnectorConfig) -> list[AssetsDefinition]:
    return [build_raw_cdc_asset(connector, schema, table) for schema, table in connector.tables]
