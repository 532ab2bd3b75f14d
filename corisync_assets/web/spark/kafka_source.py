"""Kafka as a Spark data source without a connector jar: Spark 4's Python DataSource API over confluent-kafka.

Registered as ``corisync_kafka`` (``spark.dataSource.register(KafkaDataSource)``). Schema::

    key string, value string, topic string, partition int, offset long, timestamp timestamp

Options (batch and streaming): ``topic``; ``bootstrap`` (= ``kafka.bootstrap.servers``); any ``kafka.<name>``
is passed to librdkafka as ``<name>`` (SASL etc.); ``read_timeout_s`` (default 60): how long a read may make
no progress before it fails.

* Batch: ``offsets`` = JSON ``{"<partition>": [start, end_exclusive], ...}`` (default: every partition from
  its low to its high watermark). Every range is checked against the watermarks when the read is planned:
  a range that cannot be read (start below the low watermark, end beyond the high one, missing topic or
  partition) fails with an error naming topic, partition and offsets.
* Streaming: ``startingOffsets`` = ``earliest`` (default), ``latest`` or JSON ``{"<partition>": offset}``;
  the end of each micro-batch is the partitions' high watermarks (capped by ``maxOffsetsPerTrigger`` if
  set); ``Trigger.AvailableNow`` is supported. ``commit_group``: commit the processed offsets to this
  consumer group (for lag monitoring only; Spark's checkpoint stays the source of truth).

One Spark input partition per Kafka partition. A read consumes in batches and yields Arrow record batches
(no per-row conversion in Spark's Python worker). It stops at the range's end, at a gap that jumps past it
(compaction), or at the partition's end (``enable.partition.eof``), and never waits without bound.
An offset never identifies an event: downstream identity is the event's ``event_id``.
"""

from __future__ import annotations

import json
import os
import time
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyspark.sql.datasource import DataSource, DataSourceReader, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows, SupportsTriggerAvailableNow

NAME = "corisync_kafka"
SCHEMA = "key string, value string, topic string, partition int, offset long, timestamp timestamp"
BATCH_SIZE = 10_000
METADATA_TIMEOUT_S = 15.0
#: consumer settings every read uses (options may override all but the safety ones)
CONSUMER_DEFAULTS = {
    "group.id": "corisync-spark-reader",  # never used to commit unless commit_group is set
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "error",  # a start below the low watermark must fail, not silently skip
    "enable.partition.eof": True,
    "allow.auto.create.topics": False,
    "queued.max.messages.kbytes": 262144,
    "fetch.max.bytes": 104857600,
    "max.partition.fetch.bytes": 16777216,
}
SAFETY = ("enable.auto.commit", "auto.offset.reset", "enable.partition.eof", "allow.auto.create.topics")
#: environment variable the password may come in (the Dagster asset passes secrets this way, not as options)
PASSWORD_ENV = "CORISYNC_KAFKA_SASL_PASSWORD"


class KafkaSourceError(RuntimeError):
    """An offset range cannot be read as asked (missing topic/partition, offsets out of the log, stuck read)."""


@dataclass(frozen=True)
class KafkaRange(InputPartition):
    """Offsets [start, end) of one partition of a topic."""

    topic: str
    partition: int
    start: int
    end: int


def client_conf(options: dict[str, Any]) -> dict[str, Any]:
    """librdkafka settings from the source options: ``bootstrap`` and every ``kafka.*`` option."""
    conf: dict[str, Any] = {}
    for key, value in options.items():
        if key.lower().startswith("kafka."):
            conf[key[len("kafka."):].lower()] = value
    if options.get("bootstrap"):
        conf["bootstrap.servers"] = options["bootstrap"]
    if "sasl.username" in conf and "sasl.password" not in conf and os.environ.get(PASSWORD_ENV):
        conf["sasl.password"] = os.environ[PASSWORD_ENV]
    if not conf.get("bootstrap.servers"):
        raise KafkaSourceError(f"{NAME}: option 'bootstrap' (or 'kafka.bootstrap.servers') is required")
    return conf


def _consumer(conf: dict[str, Any]):
    from confluent_kafka import Consumer

    merged = {**CONSUMER_DEFAULTS, **conf}
    merged.update({k: CONSUMER_DEFAULTS[k] for k in SAFETY})
    return Consumer(merged)


def _topic(options: dict[str, Any]) -> str:
    topic = options.get("topic")
    if not topic:
        raise KafkaSourceError(f"{NAME}: option 'topic' is required")
    return topic


def describe(conf: dict[str, Any], topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (low, high watermark) of `topic`; KafkaSourceError if the topic does not exist."""
    from confluent_kafka import KafkaException, TopicPartition

    consumer = _consumer(conf)
    try:
        try:
            meta = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
        except KafkaException as exc:
            raise KafkaSourceError(f"{NAME}: broker {conf.get('bootstrap.servers')} unreachable: {exc}") from None
        if meta is None or meta.error is not None or not meta.partitions:
            reason = meta.error.str() if meta is not None and meta.error is not None else "no partitions"
            raise KafkaSourceError(f"{NAME}: topic {topic!r} does not exist on {conf.get('bootstrap.servers')} "
                                   f"({reason})")
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=METADATA_TIMEOUT_S)
                for p in sorted(meta.partitions)}
    finally:
        consumer.close()


def check_ranges(topic: str, ranges: dict[int, tuple[int, int]],
                 watermarks: dict[int, tuple[int, int]]) -> list[KafkaRange]:
    """The non-empty ranges as input partitions; KafkaSourceError naming topic/partition/offsets if one
    cannot be read (partition missing, start below the low watermark, end beyond the high watermark)."""
    out = []
    for partition, (start, end) in sorted(ranges.items()):
        where = f"topic {topic!r} partition {partition} offsets [{start}, {end})"
        if partition not in watermarks:
            raise KafkaSourceError(f"{NAME}: cannot read {where}: the topic has no partition {partition} "
                                   f"(partitions: {sorted(watermarks)})")
        low, high = watermarks[partition]
        if start > end:
            raise KafkaSourceError(f"{NAME}: cannot read {where}: start is after end")
        if start == end:
            continue
        if start < low:
            raise KafkaSourceError(f"{NAME}: cannot read {where}: start is below the low watermark {low} "
                                   "(the messages were deleted or compacted away)")
        if end > high:
            raise KafkaSourceError(f"{NAME}: cannot read {where}: end is beyond the high watermark {high}")
        out.append(KafkaRange(topic, partition, start, end))
    return out


def parse_offsets(text: str | dict) -> dict[int, tuple[int, int]]:
    """``{"<partition>": [start, end_exclusive]}`` (JSON text or dict) -> {partition: (start, end)}."""
    raw = json.loads(text) if isinstance(text, str) else text
    try:
        return {int(p): (int(r[0]), int(r[1])) for p, r in raw.items()}
    except (TypeError, ValueError, IndexError, AttributeError):
        raise KafkaSourceError(f"{NAME}: option 'offsets' must be {{\"<partition>\": [start, end]}}, "
                               f"got {text!r}") from None


def _arrow_schema():
    import pyarrow as pa

    return pa.schema([("key", pa.string()), ("value", pa.string()), ("topic", pa.string()),
                      ("partition", pa.int32()), ("offset", pa.int64()),
                      ("timestamp", pa.timestamp("us", tz="UTC"))])


def _strings(values: list):
    """bytes (or None) -> Arrow strings; a value that is not UTF-8 becomes null (the parse step reports it)."""
    import pyarrow as pa

    try:
        return pa.array(values, pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:
        out = []
        for v in values:
            try:
                out.append(None if v is None else v.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(None)
        return pa.array(out, pa.string())


def _record_batch(topic: str, partition: int, msgs: list, offsets: list[int]):
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(msgs)
    ts = pa.array([m.timestamp()[1] for m in msgs], pa.int64())
    ts = pc.if_else(pc.less(ts, 0), pa.scalar(None, pa.int64()), pc.multiply(ts, 1000))
    return pa.RecordBatch.from_arrays(
        [_strings([m.key() for m in msgs]), _strings([m.value() for m in msgs]),
         pa.repeat(pa.scalar(topic, pa.string()), n), pa.repeat(pa.scalar(partition, pa.int32()), n),
         pa.array(offsets, pa.int64()), ts.cast(pa.timestamp("us", tz="UTC"))],
        schema=_arrow_schema())


def read_range(conf: dict[str, Any], part: KafkaRange, timeout_s: float = 60.0,
               batch_size: int = BATCH_SIZE) -> Iterator[Any]:
    """Arrow record batches of the messages with offsets in [start, end) of one partition."""
    from confluent_kafka import KafkaError, TopicPartition

    if part is None or getattr(part, "end", 0) <= getattr(part, "start", 0):
        return
    where = f"topic {part.topic!r} partition {part.partition} offsets [{part.start}, {part.end})"
    consumer = _consumer(conf)
    try:
        consumer.assign([TopicPartition(part.topic, part.partition, part.start)])
        position = part.start
        deadline = time.monotonic() + timeout_s
        while position < part.end:
            msgs = consumer.consume(num_messages=min(batch_size, part.end - position), timeout=1.0)
            if not msgs:
                if time.monotonic() > deadline:
                    raise KafkaSourceError(f"{NAME}: reading {where}: no progress for {timeout_s:.0f}s at offset "
                                           f"{position}")
                continue
            deadline = time.monotonic() + timeout_s
            done = False
            if any(m.error() is not None for m in msgs):
                good = []
                for m in msgs:
                    err = m.error()
                    if err is None:
                        good.append(m)
                    elif err.code() == KafkaError._PARTITION_EOF:
                        if m.offset() < part.end:
                            raise KafkaSourceError(f"{NAME}: reading {where}: the partition ends at offset "
                                                   f"{m.offset()}, before the requested end")
                        done = True
                        break
                    else:
                        raise KafkaSourceError(f"{NAME}: reading {where} at offset {position}: {err.str()}")
                msgs = good
            if msgs:
                offsets = [m.offset() for m in msgs]
                if offsets[-1] >= part.end:  # a gap (compaction) jumped past the end
                    cut = bisect_left(offsets, part.end)
                    msgs, offsets, done = msgs[:cut], offsets[:cut], True
                if msgs:
                    position = offsets[-1] + 1
                    yield _record_batch(part.topic, part.partition, msgs, offsets)
            if done:
                break
    finally:
        consumer.close()


def _lower(options) -> dict[str, Any]:
    """Spark's options are case-insensitive: the readers look them up in lower case."""
    return {str(k).lower(): v for k, v in dict(options).items()}


class KafkaDataSource(DataSource):
    """``spark.read.format("corisync_kafka")`` / ``spark.readStream.format("corisync_kafka")``."""

    @classmethod
    def name(cls) -> str:
        return NAME

    def schema(self) -> str:
        return SCHEMA

    def reader(self, schema) -> DataSourceReader:
        return KafkaBatchReader(_lower(self.options))

    def streamReader(self, schema) -> DataSourceStreamReader:
        return KafkaStreamReader(_lower(self.options))


class KafkaBatchReader(DataSourceReader):
    def __init__(self, options: dict[str, Any]) -> None:
        self.conf = client_conf(options)
        self.topic = _topic(options)
        self.timeout_s = float(options.get("read_timeout_s", 60))
        watermarks = describe(self.conf, self.topic)
        ranges = (parse_offsets(options["offsets"]) if options.get("offsets")
                  else {p: (lo, hi) for p, (lo, hi) in watermarks.items()})
        self.ranges = check_ranges(self.topic, ranges, watermarks)

    def partitions(self) -> list[InputPartition]:
        return list(self.ranges)

    def read(self, partition: InputPartition) -> Iterator[Any]:
        return read_range(self.conf, partition, self.timeout_s)


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Offsets: ``{"<partition>": next offset to read}``."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.conf = client_conf(options)
        self.topic = _topic(options)
        self.timeout_s = float(options.get("read_timeout_s", 60))
        self.starting = options.get("startingoffsets", "earliest")
        self.max_per_trigger = int(options["maxoffsetspertrigger"]) if options.get("maxoffsetspertrigger") else None
        self.commit_group = options.get("commit_group")
        self.available_now: dict[str, int] | None = None

    def _watermarks(self) -> dict[int, tuple[int, int]]:
        return describe(self.conf, self.topic)

    def initialOffset(self) -> dict:
        marks = self._watermarks()
        if self.starting == "earliest":
            return {str(p): lo for p, (lo, _hi) in marks.items()}
        if self.starting == "latest":
            return {str(p): hi for p, (_lo, hi) in marks.items()}
        given = {int(p): int(o) for p, o in json.loads(self.starting).items()}
        for part, start in given.items():  # a given start must be in the log (or at its end)
            if part not in marks or not marks[part][0] <= start <= marks[part][1]:
                bounds = f"[{marks[part][0]}, {marks[part][1]}]" if part in marks else "missing"
                raise KafkaSourceError(f"{NAME}: cannot start topic {self.topic!r} partition {part} at offset "
                                       f"{start}: the partition's offsets are {bounds}")
        return {str(p): given.get(p, lo) for p, (lo, _hi) in marks.items()}

    def prepareForTriggerAvailableNow(self) -> None:
        self.available_now = {str(p): hi for p, (_lo, hi) in self._watermarks().items()}

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_per_trigger) if self.max_per_trigger else ReadAllAvailable()

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        marks = self._watermarks()
        latest = {str(p): hi for p, (_lo, hi) in marks.items()}
        if self.available_now is not None:
            latest = {p: min(hi, self.available_now.get(p, hi)) for p, hi in latest.items()}
        begin = {p: int(start.get(p, marks[int(p)][0])) for p in latest}
        latest = {p: max(hi, begin[p]) for p, hi in latest.items()}
        if isinstance(limit, ReadMaxRows):
            budget = max(int(limit.max_rows), 1)
            capped = dict(begin)
            pending = {p: latest[p] - begin[p] for p in latest if latest[p] > begin[p]}
            while budget > 0 and pending:  # fair share over the partitions that still have messages
                share = max(budget // len(pending), 1)
                for p in sorted(pending):
                    take = min(share, pending[p], budget)
                    capped[p] += take
                    pending[p] -= take
                    budget -= take
                pending = {p: n for p, n in pending.items() if n > 0}
            latest = capped
        return latest

    def reportLatestOffset(self) -> dict | None:
        return {str(p): hi for p, (_lo, hi) in self._watermarks().items()}

    def partitions(self, start: dict, end: dict) -> list[InputPartition]:
        marks = None
        out = []
        for p, stop in sorted(end.items(), key=lambda kv: int(kv[0])):
            if p in start:
                begin = int(start[p])
            else:  # a partition added since the previous batch: from its beginning
                marks = marks or self._watermarks()
                begin = marks[int(p)][0]
            if int(stop) > begin:
                out.append(KafkaRange(self.topic, int(p), begin, int(stop)))
        return out

    def read(self, partition: InputPartition) -> Iterator[Any]:
        return read_range(self.conf, partition, self.timeout_s)

    def commit(self, end: dict) -> None:
        if not self.commit_group:
            return
        from confluent_kafka import TopicPartition

        consumer = _consumer({**self.conf, "group.id": self.commit_group})
        try:
            consumer.commit(offsets=[TopicPartition(self.topic, int(p), int(o)) for p, o in end.items()],
                            asynchronous=False)
        finally:
            consumer.close()
