"""Kafka-lag sensor and the catch-up job for the raw CDC assets.

The sensor reads lag through the admin API only (committed offsets vs. high watermarks), records it as an
asset observation per table, and is the trigger of raw CDC runs. The long-lived lander
(`corisync_assets.cdc.lander`) normally keeps lag near zero and its committed offsets moving; the sensor
requests one run for all raw assets (they land together, in whole source transactions) when some table's
lag is over the threshold and the group's committed offsets have not moved for ``stall_s`` (60 s): no
lander is running, or it is stuck. No run is requested while one is queued or in progress (no pile-up).
There is no fixed-time catch-up schedule: the sensor is the safety net, and a run at a fixed minute would
only hold back automation (dbt waits while a raw run is in progress).
"""

import json
import time

from dagster import (
    AssetKey,
    AssetObservation,
    AssetSelection,
    DagsterRunStatus,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    RunsFilter,
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


def stalled_since(committed: dict[str, int | None], previous: dict, now: float) -> dict[str, list]:
    """Per partition: [committed offset, time it was first seen at that offset] (the sensor's cursor)."""
    out = {}
    for tp, offset in committed.items():
        seen = previous.get(tp)
        out[tp] = seen if isinstance(seen, list) and seen[0] == offset else [offset, now]
    return out


def build_lag_sensor(connector: ConnectorConfig, threshold: int = 0, interval_s: int = 10, stall_s: float = 60.0):
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
        f"committed offsets have not moved for {stall_s:.0f}s (no lander keeping up); admin API only, never reads "
        "messages.",
    )
    def raw_cdc_lag_sensor(context: SensorEvaluationContext, kafka: KafkaResource) -> SensorResult:
        try:
            lag = kafka.lag(lag_topics)
        except BrokerUnreachable as exc:
            return SensorResult(skip_reason=str(exc))
        now = time.time()
        previous = json.loads(context.cursor) if context.cursor else {}
        since = stalled_since({f"{t}:{p}": info.committed for (t, p), info in lag.items()}, previous, now)
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
            # lag alone is normal while the lander works; lag on offsets that have not moved for stall_s is not
            stalled = any(now - since[f"{topic}:{p}"][1] >= stall_s for p in partitions)
            if total > threshold and stalled:
                lagging.append(name)
        if lagging and not busy:
            requests.append(RunRequest(asset_selection=keys, tags={LAG_TAG: "lag",
                                                                   "corisync/tables": ",".join(lagging)}))
        elif not lagging:
            context.log.debug("no table over the lag threshold with stalled offsets")
        return SensorResult(run_requests=requests, asset_events=observations, cursor=json.dumps(since))

    return raw_cdc_lag_sensor


raw_cdc_catch_up_job = define_asset_job(
    "raw_cdc_catch_up",
    selection=AssetSelection.groups(RAW_GROUP),
    executor_def=in_process_executor,  # one writer at a time: DuckDB allows a single writer per file
    description="Land every captured table's pending CDC events.",
)
