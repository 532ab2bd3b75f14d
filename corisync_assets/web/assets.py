"""The web analytics assets: Kafka topic ``web.events`` -> ``web/events``, ``web/sessions``, ``web/page_daily``.

One Spark job (``corisync_assets/web/spark/job.py``) computes all three, run through Dagster Pipes around
``spark-submit`` (``local[*]`` locally, the Spark cluster in prod: the same command, another ``--master``).
The job writes the affected date partitions of each table to the lake (Parquet); this asset then swaps
those partitions into the warehouse and only then commits the consumed offsets to the web consumer group.
Every step is idempotent (the job dedupes by ``event_id`` against the lake, partitions are replaced, not
appended), so a crash anywhere before the commit only means the next run consumes the same offsets again,
and lands the same content. The Kafka-lag sensor (``corisync_assets/cdc/sensors.py``) requests this asset
when the group lags; automation creates the (possibly empty) tables on a fresh deployment.
"""

import json
import os
import sys
import time
from datetime import date
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    Config,
    ConfigurableResource,
    DagsterInstance,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    PipesSubprocessClient,
    multi_asset,
)
from pydantic import Field

from corisync_assets.resources.kafka import KafkaResource
from corisync_assets.resources.warehouse.base import Warehouse
from corisync_assets.web.lake import Lake
from corisync_assets.web.spark.session import DRIVER_JAVA_OPTIONS
from corisync_assets.web.tables import WEB_TABLES

WEB_GROUP = "web"
WEB_SOURCE_GROUP = "tc4a_web"
JOB_SCRIPT = Path(__file__).resolve().parent / "spark" / "job.py"
#: the Dagster concurrency pool of the Spark assets: the instance's dagster.yaml limits its pools to one run
#: at a time, so the lag sensor, automation and the UI never run two jobs over the same offsets and lake days
SPARK_POOL = "web_spark"
#: the platform's pools and the limit each gets in an instance that has none configured for it
POOL_LIMITS = {SPARK_POOL: 1}
#: summary keys of the Spark job naming the date partitions it rewrote, per table
AFFECTED = {"events": "event_dates", "sessions": "session_dates", "page_daily": "page_days"}
#: the check on ``web/events``: every message the run read was a valid event
VALID_CHECK = "all_messages_valid"


def ensure_pool_limits(instance: DagsterInstance) -> list[str]:
    """Configure each pool of ``POOL_LIMITS`` in ``instance`` unless it is configured already (an operator's
    own limit stays); returns the pools it configured. ``corisync dev`` calls it before Dagster starts.

    Dagster's run queue (1.13) enforces a run-granularity pool only once the pool exists in the instance's
    storage. The first queue iteration that meets a new pool creates it at ``dagster.yaml``'s
    ``default_limit``, but decides with the list of pools it read before, so every queued run of that pool
    launches at once. Under ``make dev`` on a fresh instance those were the lag sensor's run and
    automation's first-deployment run of the web assets: two Spark jobs over the same offsets and lake days
    for two minutes, on two cores."""
    storage = instance.event_log_storage
    configured = storage.get_concurrency_keys()
    missing = [pool for pool in POOL_LIMITS if pool not in configured]
    for pool in missing:
        storage.set_concurrency_slots(pool, POOL_LIMITS[pool])
    return missing


def web_asset_key(name: str) -> AssetKey:
    return AssetKey([WEB_GROUP, name])


def topic_asset_key(topic: str) -> AssetKey:
    return AssetKey([WEB_SOURCE_GROUP, topic.replace(".", "_").replace("-", "_")])


class WebPipeline(ConfigurableResource):
    """Where the web events come from and go: topic, consumer group, lake, and how Spark is submitted."""

    topic: str = "web.events"
    consumer_group: str = "corisync-web"
    lake_uri: str
    spark_master: str = "local[*]"
    driver_memory: str = "2g"
    driver_java_options: str = Field(default=DRIVER_JAVA_OPTIONS, description="The driver JVM's options (default: "
                                     "C1 JIT only, for short incremental runs; \"\" for the full JIT).")
    spark_conf: dict[str, str] = Field(default_factory=dict)
    niceness: int = Field(default=10, ge=0, le=19, description="spark-submit runs under `nice -n` this (0: as "
                          "is): the driver and local[*] executors are batch work and yield the CPU to the lander, "
                          "dbt and Dagster, which everything real-time waits on.")

    def spark_submit(self) -> list[str]:
        """``spark-submit`` of the installed pyspark, with the master and the job script (under ``nice``)."""
        from pyspark.find_spark_home import _find_spark_home

        binary = Path(_find_spark_home()) / "bin" / "spark-submit"
        conf = {"spark.sql.session.timeZone": "UTC", **self.spark_conf}
        if self.lake_uri.startswith("gs://"):  # the image's GCS connector, with the runtime's Google credentials
            conf.setdefault("spark.hadoop.fs.gs.impl", "com.google.cloud.hadoop.fs.gcs.GoogleHadoopFileSystem")
            conf.setdefault("spark.hadoop.fs.AbstractFileSystem.gs.impl",
                            "com.google.cloud.hadoop.fs.gcs.GoogleHadoopFS")
        args = [str(binary), "--master", self.spark_master, "--driver-memory", self.driver_memory,
                "--name", "corisync-web-events"]
        if self.driver_java_options:
            args += ["--driver-java-options", self.driver_java_options]
        for key, value in sorted(conf.items()):
            args += ["--conf", f"{key}={value}"]
        nice = ["nice", "-n", str(self.niceness)] if self.niceness else []
        return [*nice, *args, str(JOB_SCRIPT)]

    def spark_env(self) -> dict[str, str]:
        """The job's Python is this one (driver and local executors; cluster images carry the same)."""
        return {"PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
                "PYSPARK_DRIVER_PYTHON": sys.executable, "CORISYNC_SPARK_MASTER": self.spark_master}


class WebEventsConfig(Config):
    rebuild_dates: list[str] = Field(
        default_factory=list,
        description="Backfill: also recompute sessions and page_daily of these dates (YYYY-MM-DD) from the "
        "lake, e.g. after a fix in the sessionization.")


def web_specs(topic: str) -> list[AssetSpec]:
    source = topic_asset_key(topic)
    described = {
        "events": ("Validated web events, deduplicated by event_id, partitioned by event date (UTC).", [source]),
        "sessions": ("Sessions per anonymous visitor (30-minute inactivity gap), stitched to the tc4a user "
                     "when any event of the visitor carries one; late events re-open their session's day.",
                     [web_asset_key("events")]),
        "page_daily": ("Daily page views, visitors and sessions per page and course page.",
                       [web_asset_key("events"), web_asset_key("sessions")]),
    }
    condition = (AutomationCondition.missing() & ~AutomationCondition.in_progress()
                 & ~AutomationCondition.execution_failed()).with_label("missing (first deployment)")
    return [
        AssetSpec(
            web_asset_key(name), deps=deps, group_name=WEB_GROUP, kinds={"spark", "parquet", "kafka"},
            description=f"{text} Lake: `{WEB_TABLES[name].lake_dir}/`; warehouse table `{WEB_TABLES[name].name}`.",
            metadata={"warehouse_table": WEB_TABLES[name].name, "partitioned_by": WEB_TABLES[name].partition,
                      "kafka_topic": topic},
            automation_condition=condition, tags={"corisync/layer": "raw"},
        )
        for name, (text, deps) in described.items()
    ]


def topic_spec(topic: str) -> AssetSpec:
    return AssetSpec(topic_asset_key(topic), group_name=WEB_SOURCE_GROUP, kinds={"kafka"},
                     description=f"Kafka topic `{topic}`: the tc4a web platform's analytics events, posted to the "
                     "collector (`POST /v1/batch`), validated against corisync_assets/web/web_event.schema.json.",
                     metadata={"kafka_topic": topic})


def pending_offsets(kafka: KafkaResource, web: WebPipeline) -> dict[int, tuple[int, int]]:
    """partition -> [first unconsumed offset, end) of the web group on the topic (empty: no topic yet)."""
    return {p: (info.start, info.high_watermark)
            for (_t, p), info in sorted(kafka.lag([web.topic], group=web.consumer_group).items())}


def _days(values) -> list[date]:
    return sorted({date.fromisoformat(v) for v in values})


def build_web_assets(topic: str):
    @multi_asset(name="web_events_spark", specs=web_specs(topic), can_subset=False, pool=SPARK_POOL,
                 check_specs=[AssetCheckSpec(VALID_CHECK, asset=web_asset_key("events"), blocking=False,
                                             description="Every message the run read from the topic was a "
                                             "valid event (the collector only produces valid ones).")],
                 description="Consume web.events with Spark: dedupe, sessionize, daily page metrics; Parquet to "
                 "the lake, date partitions swapped into the warehouse, then offsets committed.")
    def web_events_spark(context: AssetExecutionContext, config: WebEventsConfig, kafka: KafkaResource,
                         warehouse: Warehouse, web: WebPipeline):
        started = time.monotonic()
        offsets = pending_offsets(kafka, web)
        pending = {p: r for p, r in offsets.items() if r[1] > r[0]}
        if pending or config.rebuild_dates:
            extras = {"bootstrap": kafka.bootstrap_servers, "kafka_conf": _secret_free(kafka), "topic": web.topic,
                      "offsets": {str(p): list(r) for p, r in pending.items()}, "lake": web.lake_uri,
                      "rebuild_dates": list(config.rebuild_dates)}
            context.log.info(f"spark-submit on {web.spark_master}: offsets {extras['offsets']}")
            env = {**web.spark_env(), **_secret_env(kafka)}
            invocation = PipesSubprocessClient(env=env).run(command=web.spark_submit(), context=context,
                                                            extras=extras)
            messages = invocation.get_custom_messages()
            if not messages:
                raise RuntimeError("the Spark job ended without reporting its summary")
            summary = messages[-1]
        else:
            summary = {"messages_read": 0, "events_new": 0, "duplicates": 0, "late": 0, "out_of_order": 0,
                       "invalid": {"count": 0, "reasons": []}, "event_dates": [], "session_dates": [],
                       "page_days": []}
        lake = Lake(web.lake_uri)
        loads = {WEB_TABLES[name]: lake.files(WEB_TABLES[name], _days(summary.get(key, [])))
                 for name, key in AFFECTED.items()}
        with warehouse.exclusive():
            counts = warehouse.replace_partitions(loads)
        # only now: the output is in the warehouse (a crash before this line re-reads the same offsets)
        kafka.commit(web.consumer_group, {(web.topic, p): end for p, (_start, end) in pending.items()})
        context.log.info(f"committed {web.consumer_group} offsets {({p: e for p, (_s, e) in pending.items()})}")
        common = {"spark_master": web.spark_master, "duration_s": round(time.monotonic() - started, 3)}
        yield MaterializeResult(asset_key=web_asset_key("events"), metadata={
            **common,
            "offsets_consumed": MetadataValue.json({str(p): {"from": s, "to": e} for p, (s, e) in pending.items()}),
            "messages_read": summary.get("messages_read", 0),
            "events_new": summary.get("events_new", 0),
            "duplicates": summary.get("duplicates", 0),
            "late_events": summary.get("late", 0),
            "out_of_order_events": summary.get("out_of_order", 0),
            "invalid_messages": (summary.get("invalid") or {}).get("count", 0),
            "partitions_replaced": MetadataValue.json(summary.get("event_dates", [])),
            "rows_in_replaced_partitions": counts["web_events"],
        })
        for name in ("sessions", "page_daily"):
            yield MaterializeResult(asset_key=web_asset_key(name), metadata={
                **common,
                "partitions_replaced": MetadataValue.json(summary.get(AFFECTED[name], [])),
                "rows_in_replaced_partitions": counts[WEB_TABLES[name].name],
            })
        invalid = summary.get("invalid") or {}
        if invalid.get("count"):
            context.log.error(f"{invalid['count']} message(s) on {web.topic} are not valid events; first reasons: "
                              f"{json.dumps(invalid.get('reasons', [])[:3])}")
        # the messages stay on the topic (Kafka keeps them); the check stays red until a run reads none
        yield AssetCheckResult(
            asset_key=web_asset_key("events"), check_name=VALID_CHECK, passed=not invalid.get("count"),
            severity=AssetCheckSeverity.ERROR,
            metadata={"invalid_messages": invalid.get("count", 0),
                      "reasons": MetadataValue.json(invalid.get("reasons", [])[:10])})

    return web_events_spark


def _secret_free(kafka: KafkaResource) -> dict[str, str]:
    """librdkafka settings for the job, secrets left out (they travel as environment variables)."""
    conf = kafka.client_conf()
    conf.pop("bootstrap.servers", None)
    conf.pop("sasl.password", None)
    return conf


def _secret_env(kafka: KafkaResource) -> dict[str, str]:
    return {"CORISYNC_KAFKA_SASL_PASSWORD": kafka.sasl_password} if kafka.sasl_password else {}


web_automation_sensor = AutomationConditionSensorDefinition(
    "web_automation_sensor",
    target=[web_asset_key(name) for name in WEB_TABLES],
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
