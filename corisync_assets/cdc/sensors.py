"""Kafka-lag sensor and the hourly catch-up schedule for the raw CDC assets.

The sensor reads lag through the admin API only (committed offsets vs. high watermarks), records it as an
asset observation per table, and is the trigger of raw CDC runs. The long-lived lander
(`corisync_assets.cdc.lander`) normally keeps lag near zero and its committed offsets moving; the sensor
requests one run for all raw assets (they land together, in whole source transactions) when some table's
lag is over the threshold and the group's committed offsets have not moved since the previous tick: no
lander is running, or it is stuck. No run is requested while one is queued or in progress (no pile-up).
"""

import json

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


def build_lag_sensor(connector: ConnectorConfig, threshold: int = 0, interval_s: int = 10):
    tables = {
        connector.topic_for(schema, table): (raw_asset_key(schema, table), warehouse_table(schema, table))
        for schema, table in connector.tables
    }
    keys = [key for key, _ in tables.values()]
    lag_topics = [*tables, *([connector.transaction_topic] if connector.transaction_topic else [])]

    @sensor(
        name="raw_cdc_lag_sensor",
        asset_selection=AssetSelection.assets(*keys),
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Requests a raw CDC run when a table's consumer lag exceeds {threshold} and the group's "
        "committed offsets stopped moving (no lander keeping up); admin API only, never reads messages.",
    )
    def raw_cdc_lag_sensor(context: SensorEvaluationContext, kafka: KafkaResource) -> SensorResult:
        try:
            lag = kafka.lag(lag_topics)
        except BrokerUnreachable as exc:
            return SensorResult(skip_reason=str(exc))
        committed = {f"{t}:{p}": info.committed for (t, p), info in lag.items()}
        previous = json.loads(context.cursor) if context.cursor else {}
        per_topic: dict[str, dict[int, int]] = {topic: {} for topic in tables}
        for (topic, partition), info in lag.items():
            if topic in per_topic:  # the transaction topic counts for progress, not as a table
                per_topic[topic][partition] = info.lag
        busy = assets_in_flight(context.instance, set(keys))
        observations, requests = [], []
        lagging = []
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
            stalled = any(committed.get(f"{topic}:{p}") == previous.get(f"{topic}:{p}", -2) or
                          f"{topic}:{p}" not in previous for p in partitions)
            if total > threshold and stalled:
                lagging.append(name)
        if lagging and not busy:
            requests.append(RunRequest(asset_selection=keys, tags={LAG_TAG: "lag",
                                                                   "corisync/tables": ",".join(lagging)}))
        elif not lagging:
            context.log.debug("no table over the lag threshold with stalled offsets")
        return SensorResult(run_requests=requests, asset_events=observations, cursor=json.dumps(committed))

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
