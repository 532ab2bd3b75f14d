"""Kafka-lag sensor and the catch-up job for the raw CDC assets (and the other Kafka-fed assets).

The sensor reads lag through the admin API only (committed offsets vs. high watermarks), records it as an
asset observation per table, and is the trigger of raw CDC runs. The long-lived lander
(`corisync_assets.cdc.lander`) normally keeps lag near zero and its committed offsets moving; the sensor
requests one run for all raw assets (they land together, in whole source transactions) when some table's
lag is over the threshold and the group's committed offsets have not moved for ``stall_s`` (60 s): no
lander is running, or it is stuck. No run is requested while one is queued or in progress (no pile-up).
Other consumers of Kafka (``LagTarget``: the web events' Spark assets) are covered by the same sensor: their
group's lag over the threshold requests their assets, again never while a run of them is queued or running,
and at most once per ``min_interval_s`` (a steady stream then gets a run a minute, not one after another).
There is no fixed-time catch-up schedule: the sensor is the safety net, and a run at a fixed minute would
only hold back automation (dbt waits while a raw run is in progress).
"""

import json
import time
from dataclasses import dataclass

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


@dataclass(frozen=True)
class LagTarget:
    """Assets that consume ``topic`` as consumer group ``group`` (no long-lived consumer: lag alone requests
    them); ``observed`` is the asset the lag is recorded on."""

    name: str
    topic: str
    group: str
    keys: tuple[AssetKey, ...]
    observed: AssetKey
    #: at most one request per interval: under a steady stream, runs every minute rather than back to back
    min_interval_s: float = 60.0


def _target_requests(context, kafka: KafkaResource, targets, threshold: int, previous: dict, now: float,
                     cursor: dict) -> tuple[list, list]:
    """Observations and run requests of the other Kafka consumers; records each request's time in
    ``cursor`` (``target:<name>``)."""
    observations, requests = [], []
    for target in targets:
        last = previous.get(f"target:{target.name}")
        last = last if isinstance(last, int | float) else None
        if last is not None:
            cursor[f"target:{target.name}"] = last
        lag = kafka.lag([target.topic], group=target.group)
        total = sum(info.lag for info in lag.values())
        observations.append(AssetObservation(asset_key=target.observed, metadata={
            "consumer_lag": total, "kafka_topic": target.topic, "consumer_group": target.group,
            "consumer_lag_per_partition": MetadataValue.json({str(p): i.lag for (_t, p), i in sorted(lag.items())})}))
        recent = last is not None and now - last < target.min_interval_s
        if total > threshold and not recent and not assets_in_flight(context.instance, set(target.keys)):
            requests.append(RunRequest(asset_selection=list(target.keys),
                                       tags={LAG_TAG: "lag", "corisync/consumer_group": target.group}))
            cursor[f"target:{target.name}"] = now
    return observations, requests


def build_lag_sensor(connector: ConnectorConfig, threshold: int = 0, interval_s: int = 10, stall_s: float = 60.0,
                     targets: tuple[LagTarget, ...] = ()):
    tables = {
        connector.topic_for(schema, table): (raw_asset_key(schema, table), warehouse_table(schema, table))
        for schema, table in connector.tables
    }
    keys = [key for key, _ in tables.values()]
    lag_topics = [*tables, *([connector.transaction_topic] if connector.transaction_topic else [])]

    @sensor(
        name="raw_cdc_lag_sensor",
        asset_selection=AssetSelection.assets(*keys, *(k for t in targets for k in t.keys)),
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
        try:
            more_observations, more_requests = _target_requests(context, kafka, targets, threshold, previous, now,
                                                                since)
        except BrokerUnreachable as exc:
            return SensorResult(skip_reason=str(exc))
        observations += more_observations
        requests += more_requests
        return SensorResult(run_requests=requests, asset_events=observations, cursor=json.dumps(since))

    return raw_cdc_lag_sensor


raw_cdc_catch_up_job = define_asset_job(
    "raw_cdc_catch_up",
    selection=AssetSelection.groups(RAW_GROUP),
    executor_def=in_process_executor,  # one writer at a time: DuckDB allows a single writer per file
    description="Land every captured table's pending CDC events.",
)
