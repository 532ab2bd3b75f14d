"""The raw CDC assets: one asset key per captured table, generated from the connector config's table list.

Adding a table to `table.include.list` adds its Postgres source node and its raw asset; no other code
changes. All raw assets are materialized together by one multi-asset (not subsettable): its run lands the
events of every table since the consumer group's last commit, in whole source transactions (see
`corisync_assets.cdc.cut`), so dbt never reads one table ahead of another. The long-lived lander
(`corisync_assets.cdc.lander`) runs the same landing path continuously and reports the same
materializations.
"""


import time

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from corisync_assets.cdc.connector_config import ConnectorConfig
from corisync_assets.cdc.landing import FeedReport, TableReport, land_changes
from corisync_assets.resources.kafka import KafkaResource
from corisync_assets.resources.warehouse.base import Warehouse

RAW_GROUP = "raw_cdc"
SOURCE_GROUP = "tc4a_postgres"
#: the asset check on every raw asset: no event of the table is held in the dead-letter table
DEAD_LETTER_CHECK = "no_dead_letters"
#: errors listed per table in the check's metadata (the most frequent first)
DEAD_LETTER_ERRORS_SHOWN = 5


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


def routes(connector: ConnectorConfig) -> dict[str, str]:
    """Data topic -> warehouse table, for every captured table."""
    return {connector.topic_for(schema, table): warehouse_table(schema, table) for schema, table in connector.tables}


def report_metadata(report: TableReport, row_count: int | None = None, feed: FeedReport | None = None) -> dict:
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
        "kafka_topic": report.topic,
    }
    if report.lag_after:
        metadata["consumer_lag_after"] = sum(info.lag for info in report.lag_after.values())
    for op in ("r", "c", "u", "d", "t"):
        metadata[f"events_{op}"] = report.ops.get(op, 0)
    if report.max_source_ts_ms is not None:
        metadata["freshness_seconds"] = round(time.time() - report.max_source_ts_ms / 1000, 3)
        metadata["newest_source_ts_ms"] = report.max_source_ts_ms
    if feed is not None:
        metadata["source_transactions_landed"] = feed.transactions
        metadata["events_waiting_for_transaction_end"] = feed.held
        metadata["events_released_without_transaction_end"] = feed.forced
    if report.type_warnings:
        metadata["type_warnings"] = MetadataValue.json(dict(sorted(report.type_warnings.items())))
    if row_count is not None:
        metadata["dagster/row_count"] = row_count
    return metadata


def dead_letter_check(key: AssetKey, held: dict[str, int], this_run: int) -> dict:
    """The ERROR-severity result of :data:`DEAD_LETTER_CHECK` (the arguments of ``AssetCheckResult`` in a
    run, of ``AssetCheckEvaluation`` from the lander). It fails while the warehouse holds dead letters of the
    table (``held``: error -> count), so a run that lands nothing new after one that dead-lettered events
    does not turn the asset green over rows that never landed."""
    total = sum(held.values())
    errors = sorted(held.items(), key=lambda item: (-item[1], item[0]))[:DEAD_LETTER_ERRORS_SHOWN]
    return dict(
        asset_key=key, check_name=DEAD_LETTER_CHECK, passed=not held, severity=AssetCheckSeverity.ERROR,
        metadata={"dead_letters_held": total, "dead_letters_this_run": this_run,
                  "errors": MetadataValue.json(dict(errors))},
        description=f"{total} event(s) held in the dead-letter table" if held else None,
    )


def raw_asset_specs(connector: ConnectorConfig) -> list[AssetSpec]:
    specs = []
    for schema, table in connector.tables:
        topic, name = connector.topic_for(schema, table), warehouse_table(schema, table)
        specs.append(AssetSpec(
            key=raw_asset_key(schema, table),
            deps=[source_asset_key(schema, table)],
            group_name=RAW_GROUP,
            kinds={"debezium", "kafka", "postgres"},
            description=f"Changes of {schema}.{table} from Debezium topic `{topic}`: `{name}__changelog` (one "
            f"row per change) and `{name}` (current state, upsert by primary key) in the warehouse's raw "
            "dataset. Landed together with every other captured table, in whole source transactions.",
            metadata={"kafka_topic": topic, "postgres_table": f"{schema}.{table}", "warehouse_table": name},
            tags={"corisync/layer": "raw"},
        ))
    return specs


def build_raw_cdc_assets(connector: ConnectorConfig) -> list[AssetsDefinition]:
    specs = raw_asset_specs(connector)
    by_table = {spec.metadata["warehouse_table"]: spec.key for spec in specs}

    @multi_asset(
        name="raw_cdc",
        specs=specs,
        check_specs=[AssetCheckSpec(DEAD_LETTER_CHECK, asset=spec.key, blocking=False,
                                    description="No event of this table is held in the dead-letter table.")
                     for spec in specs],
        can_subset=False,
        description="Land the pending CDC events of every captured table in whole source transactions.",
    )
    def _raw_cdc(context: AssetExecutionContext, kafka: KafkaResource, warehouse: Warehouse):
        report = land_changes(kafka, warehouse, routes(connector), tx_topic=connector.transaction_topic,
                              collections=connector.collections, notification_topic=connector.notification_topic,
                              log=context.log.info)
        folded = warehouse.fold(force=True)
        if folded:
            context.log.info(f"folded changelog into current state: {folded}")
        held = warehouse.dead_letter_summary()
        for name, key in by_table.items():
            t = report.tables[name]
            for column, why in sorted(t.type_warnings.items()):
                context.log.warning(f"{t.table}.{column}: {why}")
            context.log.info(f"{t.topic}: {t.new_events} new events landed ({dict(t.ops)}), "
                             f"{t.duplicates} already landed, {t.dead_letters} dead letters")
            # a table every event of which went to dead letters may not exist yet
            row_count = warehouse.row_count(name) if t.new_events or t.duplicates else None
            yield MaterializeResult(asset_key=key, metadata=report_metadata(t, row_count, report))
            check = dead_letter_check(key, held.get(name, {}), t.dead_letters)
            if not check["passed"]:
                context.log.error(f"{name}: {check['description']}: {check['metadata']['errors'].value}")
            yield AssetCheckResult(**check)

    return [_raw_cdc]
