"""Consume -> decode -> land -> commit, for one captured table.

The run reads from the group's committed offsets up to the high watermarks seen when it started (so a busy
topic cannot keep a run going forever), lands each batch in one warehouse transaction, and commits offsets
only after that transaction succeeded. Decoding (Python) of the next batch overlaps the warehouse write of
the previous one (a worker thread; DuckDB and BigQuery calls release the GIL); commits stay in order.
A crash between write and commit re-reads the batch next time; the warehouse drops events it already
holds (by event identity, not offset), so nothing is lost or duplicated.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from corisync_assets.cdc.envelope import ChangeBatch, Decoder
from corisync_assets.resources.kafka import KafkaResource, LagInfo
from corisync_assets.resources.warehouse.base import LandResult, Warehouse

CONSUME_CHUNK = 10_000


@dataclass
class LandingReport:
    table: str
    topic: str
    messages: int = 0
    new_events: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    tombstones: int = 0
    batches: int = 0
    ops: Counter = field(default_factory=Counter)
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition -> (first, last) landed
    max_source_ts_ms: int | None = None
    lag_after: dict[tuple[str, int], LagInfo] = field(default_factory=dict)

    def add(self, batch: ChangeBatch, result: LandResult) -> None:
        self.batches += 1
        self.messages += batch.messages
        self.new_events += result.new_events
        self.duplicates += result.duplicates
        self.dead_letters += result.dead_letters
        self.tombstones += batch.tombstones
        self.ops.update(batch.ops)
        for (_, partition), (first, last) in batch.offsets.items():
            prev = self.offsets.get(partition)
            self.offsets[partition] = (prev[0] if prev else first, last)
        newest = batch.max_source_ts_ms
        if newest is not None:
            self.max_source_ts_ms = max(self.max_source_ts_ms or 0, newest)


def land_table(
    kafka: KafkaResource,
    warehouse: Warehouse,
    table: str,
    topic: str,
    *,
    batch_size: int = 50_000,
    stall_timeout_s: float = 30.0,
    after_write: Callable[[ChangeBatch, LandResult], None] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> LandingReport:
    """Land every event on `topic` after the group's committed offset, up to the end seen at start."""
    kafka.check_reachable()
    report = LandingReport(table, topic)
    consumer = kafka.consumer()
    try:
        with warehouse.session():  # DuckDB: one connection for the whole run
            ends = _assign_from_committed(consumer, topic, log)
            decoder = Decoder(table)
            remaining = set(ends)
            last_progress = time.monotonic()
            writer = _PipelinedWriter(consumer, warehouse, report, after_write)
            while remaining:
                messages = consumer.consume(num_messages=CONSUME_CHUNK, timeout=1.0)
                if messages:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > stall_timeout_s:
                    log(f"{topic}: no message for {stall_timeout_s:.0f}s before the end offsets {ends}; stopping")
                    break
                for m in messages:
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            remaining.discard(m.partition())
                            continue
                        raise KafkaException(err)
                    partition, offset = m.partition(), m.offset()
                    if partition not in remaining or offset >= ends[partition]:
                        remaining.discard(partition)
                        continue
                    decoder.add(topic, partition, offset, m.key(), m.value())
                    if offset >= ends[partition] - 1:
                        remaining.discard(partition)
                pending = decoder.batch
                if pending.offsets and (pending.messages >= batch_size or not remaining):
                    writer.submit(decoder.reset())
            if decoder.batch.offsets:
                writer.submit(decoder.reset())
            writer.finish()
    finally:
        consumer.close()
    report.lag_after = kafka.lag([topic])
    return report


def _assign_from_committed(consumer, topic: str, log: Callable[[str], None]) -> dict[int, int]:
    """Assign the topic's partitions at the committed offsets; return partition -> end offset to stop at.

    Manual assignment (no group join) keeps a run's start-up in milliseconds; commits still go to the group.
    """
    meta = consumer.list_topics(topic, timeout=10)
    info = meta.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        log(f"{topic}: topic does not exist yet (no change captured); nothing to land")
        return {}
    partitions = [TopicPartition(topic, p) for p in sorted(info.partitions)]
    ends, assignment = {}, []
    for tp in consumer.committed(partitions, timeout=10):
        low, high = consumer.get_watermark_offsets(tp, timeout=10)
        start = tp.offset if tp.offset >= 0 else low
        if start > high or start < low:
            # committed beyond the end: the broker lost its log (memory-only broker restarted) -> start over;
            # event identity, not offsets, keeps this from duplicating anything.
            log(f"{topic}[{tp.partition}]: committed offset {tp.offset} outside [{low}, {high}]; reading from {low}")
            start = low
        if start < high:
            assignment.append(TopicPartition(topic, tp.partition, start))
            ends[tp.partition] = high
    if assignment:
        consumer.assign(assignment)
    return ends


class _PipelinedWriter:
    """At most one batch in the warehouse at a time, written by a worker thread; the offsets of a batch are
    committed (on the consuming thread) only after its write returned, and batches commit in order."""

    def __init__(self, consumer, warehouse: Warehouse, report: LandingReport, after_write) -> None:
        self.consumer, self.warehouse, self.report, self.after_write = consumer, warehouse, report, after_write
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="land")
        self.inflight: tuple[ChangeBatch, Future] | None = None

    def submit(self, batch: ChangeBatch) -> None:
        self._complete()
        self.inflight = (batch, self.pool.submit(self.warehouse.land, batch))

    def finish(self) -> None:
        try:
            self._complete()
        finally:
            self.pool.shutdown(wait=True)

    def _complete(self) -> None:
        if self.inflight is None:
            return
        batch, future = self.inflight
        self.inflight = None
        result = future.result()  # a failed write raises here: nothing of that batch is committed
        if self.after_write is not None:
            self.after_write(batch, result)
        self.consumer.commit(
            offsets=[TopicPartition(topic, partition, last + 1)
                     for (topic, partition), (_, last) in batch.offsets.items()],
            asynchronous=False,
        )
        self.report.add(batch, result)
