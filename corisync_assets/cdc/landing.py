"""Consume -> decode -> land -> commit, for one captured table.

The run reads from the group's committed offsets up to the high watermarks seen when it started (so a busy
topic cannot keep a run going forever), lands each batch in one warehouse transaction, and commits offsets
only after that transaction succeeded. A crash between the two re-reads the batch next time; the warehouse
drops events it already holds (by event identity, not offset), so nothing is lost or duplicated.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
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
        self.messages += len(batch) + len(batch.dead_letters) + batch.tombstones
        self.new_events += result.new_events
        self.duplicates += result.duplicates
        self.dead_letters += result.dead_letters
        self.tombstones += batch.tombstones
        self.ops.update(batch.ops)
        for (_, partition), (first, last) in batch.offsets.items():
            prev = self.offsets.get(partition)
            self.offsets[partition] = (prev[0] if prev else first, last)
        if batch.max_source_ts_ms is not None:
            self.max_source_ts_ms = max(self.max_source_ts_ms or 0, batch.max_source_ts_ms)


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
        ends = _assign_from_committed(consumer, topic, log)
        decoder = Decoder(table)
        remaining = set(ends)
        last_progress = time.monotonic()
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
            if pending.offsets and (len(pending) + len(pending.dead_letters) + pending.tombstones >= batch_size
                                    or not remaining):
                _flush(consumer, warehouse, decoder.reset(), report, after_write)
        if decoder.batch.offsets:
            _flush(consumer, warehouse, decoder.reset(), report, after_write)
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


def _flush(consumer, warehouse: Warehouse, batch: ChangeBatch, report: LandingReport, after_write) -> None:
    result = warehouse.land(batch)
    if after_write is not None:
        after_write(batch, result)
    consumer.commit(
        offsets=[TopicPartition(topic, partition, last + 1) for (topic, partition), (_, last) in batch.offsets.items()],
        asynchronous=False,
    )
    report.add(batch, result)
