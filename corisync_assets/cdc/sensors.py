"""Kafka-lag sensor and the hourly catch-up schedule for the raw CDC assets.

The sensor reads lag through the admin API only (committed offsets vs. high watermarks), records it as an
asset observation per table, and requests a run for each table whose lag crosses the threshold, unless a
run that includes that asset is already queued or in progress (no pile-up while a run catches up).
"""


from dagster import (
    AssetKey,
    AssetObservation,
    AssetSelection,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    SensorEvaluationContext,
    SensorResult,
    define_asset_job,
    in_process_executor,
    sensor,
)

from corisync_assets.cdc.assets import RAW_GROUP, raw_asset_key, warehouse_table
from corisync_assets.cdc.connector_config import ConnectorConfig
from corisync_assets.resources.kafka import BrokerUnreachable, KafkaResource

ACTIVE_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]
LAG_TAG = "corisync/trigger"


def assets_in_flight(instance, keys: set[AssetKey]) -> set[AssetKey]:
    """Which of `keys` a queued or running run will materialize."""
    busy: set[AssetKey] = set()
    for run in instance.get_runs(filters=RunsFilter(statuses=ACTIVE_STATUSES), limit=500):
        selection = run.asset_selection
        if selection is None:
            continue
        busy |= keys & set(selection)
    return busy


def build_lag_sensor(connector: ConnectorConfig, threshold: int = 0, interval_s: int = 30):
    tables = {
        connector.topic_for(schema, table): (raw_asset_key(schema, table), warehouse_table(schema, table))
        for schema, table in connector.tables
    }
    keys = [key for key, _ in tables.values()]

    @sensor(
        name="raw_cdc_lag_sensor",
        asset_selection=AssetSelection.assets(*keys),
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Requests a raw CDC run for each table whose consumer lag exceeds {threshold} "
        "(admin API only; never reads messages).",
    )
    def raw_cdc_lag_sensor(context: SensorEvaluationContext, kafka: KafkaResource) -> SensorResult:
        try:
            lag = kafka.lag(list(tables))
        except BrokerUnreachable as exc:
            return SensorResult(skip_reason=str(exc))
        per_topic: dict[str, dict[int, int]] = {topic: {} for topic in tables}
        for (topic, partition), info in lag.items():
            per_topic[topic][partition] = info.lag
        busy = assets_in_flight(context.instance, set(keys))
        observations, requests = [], []
        for topic, (key, name) in tables.items():
            partitions = per_topic[topic]
            total = sum(partitions.values())
            observations.append(
                AssetObservation(
                    asset_key=key,
                    metadata={
                        "consumer_lag": total,
                        "consumer_lag_per_partition": MetadataValue.json({str(p): v for p, v in partitions.items()}),
                        "kafka_topic": topic,
                        "consumer_group": kafka.consumer_group,
                    },
                )
            )
            if total > threshold and key not in busy:
                requests.append(RunRequest(asset_selection=[key], tags={LAG_TAG: "lag", "corisync/table": name}))
        if not requests:
            context.log.debug("no table over the lag threshold, or its run is still in flight")
        return SensorResult(run_requests=requests, asset_events=observations)

    return raw_cdc_lag_sensor


raw_cdc_catch_up_job = define_asset_job(
    "raw_cdc_catch_up",
    selection=AssetSelection.groups(RAW_GROUP),
    executor_def=in_process_executor,  # one writer at a time: DuckDB allows a single writer per file
    description="Land every captured table's pending CDC events.",
)

raw_cdc_hourly_schedule = ScheduleDefinition(
    name="raw_cdc_hourly",
    job=raw_cdc_catch_up_job,
    cron_schedule="0 * * * *",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Safety net behind the lag sensor: catch up all raw CDC assets every hour.",
)
