"""Consume -> cut -> decode -> land -> commit, for every captured table at once.

One :class:`ChangeFeed` reads all data topics and Debezium's transaction topic from the consumer group's
committed offsets. A :class:`~corisync_assets.cdc.cut.TransactionCut` lets through only whole source
transactions; the released events of all tables land in **one** warehouse transaction, and the consumer
positions of every partition (transaction topic included) are committed in one request only after that
transaction succeeded. Hence the raw tables are always Postgres as of one commit, and a crash between write
and commit re-reads a consistent state; the warehouse drops events it already holds (by event identity, not
offset), so nothing is lost or duplicated.

Two drivers share that path:

* :func:`land_changes` (a Dagster run of the raw CDC assets): reads up to the high watermarks seen at start
  (a busy topic cannot keep a run going forever), then waits for the END of a transaction it has started
  (normally milliseconds; at most ``settle_s``, just past the cut's hold time); decoding of the next batch
  overlaps the warehouse write of the previous one. The writes of a backlog share one warehouse
  transaction (up to ``transaction_size`` events; ``Warehouse.land_all(..., commit=False)``), committed
  before their consumer positions are.
* :class:`~corisync_assets.cdc.lander.Lander` (long-lived, seconds from commit to warehouse): polls, lands
  what the cut releases, commits, and reports the materializations to Dagster.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from corisync_assets.cdc.cut import TransactionCut
from corisync_assets.cdc.envelope import ChangeBatch, DeadLetter, Decoder
from corisync_assets.cdc.snapshots import parse_notification
from corisync_assets.resources.kafka import KafkaResource, LagInfo
from corisync_assets.resources.warehouse.base import LandResult, Warehouse

CONSUME_CHUNK = 10_000
#: fewest buffered messages worth a write while the writer is idle (before batch_size)
MIN_CYCLE = 5000
#: events after which a run's warehouse transaction is committed (and a new one begun) while more is coming:
#: about two DuckDB row groups (122,880 rows), which a transaction writes straight into the file, and a bound
#: on what a failure re-reads
TRANSACTION_EVENTS = 250_000
#: pseudo table under which malformed transaction-metadata messages are dead-lettered
TRANSACTIONS_TABLE = "_cdc_transactions"


@dataclass
class TableReport:
    """What one run or lander cycle did for one captured table."""

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
    #: column -> why it landed as its exact text (no faithful mapping for its type)
    type_fallbacks: dict[str, str] = field(default_factory=dict)
    #: column -> NaN values of a numeric(p,s) column landed as NULL (its decimal type has no NaN)
    nan_as_null: Counter = field(default_factory=Counter)
    #: error -> dead letters of this run or cycle (as decoded; the warehouse drops ones it already holds)
    dead_letter_errors: Counter = field(default_factory=Counter)

    def add(self, batch: ChangeBatch, result: LandResult) -> None:
        self.batches += 1
        if batch.schema is not None:
            self.type_fallbacks.update({c.name: c.fallback for c in batch.schema.columns if c.fallback})
            self.nan_as_null.update(batch.nan_decimals)
        self.dead_letter_errors.update(d.error for d in batch.dead_letters)
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

    @property
    def type_warnings(self) -> dict[str, str]:
        """Column -> what did not land as itself: values landed as their exact text, NaN landed as NULL."""
        return {**self.type_fallbacks, **{
            column: f"{n} NaN value(s) landed as NULL: a decimal of the column's precision has no NaN (the "
                    "changelog keeps the event, NaN included)"
            for column, n in self.nan_as_null.items()}}


#: kept for callers of the single-table API
LandingReport = TableReport


@dataclass
class FeedReport:
    """A run (or lander cycle) over all tables."""

    tables: dict[str, TableReport]
    transactions: int = 0
    forced: int = 0
    held: int = 0  # messages still waiting for their transaction's END when the run stopped
    lag_after: dict[tuple[str, int], LagInfo] = field(default_factory=dict)

    @property
    def new_events(self) -> int:
        return sum(t.new_events for t in self.tables.values())


def feed_topics(routes: dict[str, str], tx_topic: str | None = None,
                notification_topic: str | None = None) -> list[str]:
    """Every topic a change feed reads: the routed data topics, then the transaction and notification topics."""
    return [*routes, *(t for t in (tx_topic, notification_topic) if t)]


class ChangeFeed:
    """A consumer over the captured topics (and the transaction topic) feeding a transaction cut.

    ``routes`` maps each data topic to its warehouse table; ``collections`` maps it to Debezium's data
    collection name (``schema.table``) used in transaction END events and notifications.

    ``notification_topic``: Debezium's notifications. The end of a table's re-read requested by CoriSync
    (:mod:`corisync_assets.cdc.snapshots`) is noted with the table topic's end offsets at that moment (the
    runner publishes a notification only after everything before it); once the cut has released the table
    up to there, the marker rides on the table's next batch (``ChangeBatch.snapshot_ends``), and the
    notification's offset is committed with that batch's positions, so a crash applies it again.
    """

    def __init__(self, kafka: KafkaResource, routes: dict[str, str], *, tx_topic: str | None = None,
                 collections: dict[str, str] | None = None, log: Callable[[str], None] = lambda _m: None,
                 max_hold_s: float = 30.0, notification_topic: str | None = None) -> None:
        self.kafka, self.routes, self.tx_topic, self.log = kafka, routes, tx_topic, log
        self.notification_topic = notification_topic
        self.collection_topics = {c: t for t, c in (collections or {}).items()}
        #: notification partition -> [(offset, table or None, start LSN, {(topic, partition): end offset})]
        self.notes: dict[int, list[tuple[int, str | None, int, dict[tuple[str, int], int]]]] = {}
        self.starts: dict[tuple[str, int], int] = {}  # where each partition's reading started
        self.cut = TransactionCut(collections or {t: t for t in routes}, tx_topic, max_hold_s=max_hold_s)
        self.decoders = {table: Decoder(table) for table in {*routes.values(), TRANSACTIONS_TABLE}}
        self.consumer = kafka.consumer()
        self.assigned: set[tuple[str, int]] = set()
        self.read: dict[tuple[str, int], int] = {}  # (topic, partition) -> offset after the last one read
        self.at_end: set[tuple[str, int]] = set()  # partitions whose end of log the consumer reported
        self.touched: set[str] = set()  # tables with decoded messages since the last take()
        self.decoded = 0  # messages decoded since the last take()

    @property
    def topics(self) -> list[str]:
        return feed_topics(self.routes, self.tx_topic, self.notification_topic)

    def close(self) -> None:
        self.consumer.close()

    def assign(self) -> dict[tuple[str, int], int]:
        """Assign partitions not assigned yet at the group's committed offsets; return (topic, partition) ->
        high watermark now, for the newly assigned ones that have something to read.

        Manual assignment (no group join) keeps start-up in milliseconds; commits still go to the group.
        """
        from confluent_kafka import TopicPartition  # here, as every confluent_kafka use: not at definitions load

        meta = self.consumer.list_topics(timeout=10)
        todo = []
        for topic in self.topics:
            info = meta.topics.get(topic)
            if info is None or info.error is not None:
                continue
            todo += [TopicPartition(topic, p) for p in sorted(info.partitions) if (topic, p) not in self.assigned]
        if not todo:
            return {}
        ends, assignment = {}, []
        for tp in self.consumer.committed(todo, timeout=10):
            low, high = self.consumer.get_watermark_offsets(tp, timeout=10)
            start = tp.offset if tp.offset >= 0 else low
            if start > high or start < low:
                # committed beyond the end: the broker lost its log (memory-only broker restarted) -> start
                # over; event identity, not offsets, keeps this from duplicating anything.
                self.log(f"{tp.topic}[{tp.partition}]: committed offset {tp.offset} outside [{low}, {high}]; "
                         f"reading from {low}")
                start = low
            assignment.append(TopicPartition(tp.topic, tp.partition, start))
            self.assigned.add((tp.topic, tp.partition))
            self.starts[(tp.topic, tp.partition)] = start
            if start < high:
                ends[(tp.topic, tp.partition)] = high
        self.consumer.incremental_assign(assignment)
        return ends

    def poll(self, timeout: float, on_message: Callable[[str, int, int], None] | None = None) -> int:
        """Buffer what the broker has (up to one chunk) in the cut; returns the number of messages.

        ``read`` then holds, per partition, the offset after the last message read and ``at_end`` the
        partitions whose end the consumer reached; ``on_message(topic, partition, offset)`` (offset -1: end
        of partition) is called per message if given.
        """
        with gc_paused():
            messages = self.consumer.consume(num_messages=CONSUME_CHUNK, timeout=timeout)
            if not messages:
                return 0
            if self.notification_topic is not None:
                messages = self._take_notifications(messages)
            n = self._buffer(messages, on_message)
            del messages
            self.cut.caught_up = all(tp in self.at_end for tp in self.assigned if tp[0] in self.routes)
            self._decode(self.cut.take_ready())  # while the bytes are fresh; they leave with the next take()
            return n

    def _take_notifications(self, messages: list) -> list:
        """Note CoriSync's snapshot ends among the messages; return the others (notification EOFs included)."""
        from confluent_kafka import TopicPartition

        rest = []
        for m in messages:
            if m.topic() != self.notification_topic or m.error() is not None:
                rest.append(m)
                continue
            end = parse_notification(m.value())
            topic = self.collection_topics.get(end.collection) if end is not None else None
            table, ends = (self.routes.get(topic) if topic else None), {}
            if table is not None:
                ends = {tp: self.consumer.get_watermark_offsets(TopicPartition(*tp), timeout=10)[1]
                        for tp in self.assigned if tp[0] == topic}
                self.log(f"{table}: re-snapshot {end.status.lower()} ({end.rows} rows read); rows older than "
                         f"LSN {end.start_lsn} go once the table has landed to {ends}")
            self.notes.setdefault(m.partition(), []).append((m.offset(), table, end.start_lsn if end else 0, ends))
            self.read[(m.topic(), m.partition())] = m.offset() + 1
        return rest

    def _snapshot_ends(self) -> tuple[dict[str, list[int]], dict[tuple[str, int], int]]:
        """Snapshot ends whose table the cut has released far enough: table -> start LSNs, and the
        notification positions that may be committed with them."""
        released = self.cut.released_positions
        ready: dict[str, list[int]] = {}
        positions = {}
        for partition, notes in self.notes.items():
            done = 0
            for offset, table, start_lsn, ends in notes:
                if any(max(released.get(tp, 0), self.starts.get(tp, 0)) < end for tp, end in ends.items()):
                    break
                if table is not None:
                    ready.setdefault(table, []).append(start_lsn)
                done += 1
                positions[(self.notification_topic, partition)] = offset + 1
            del notes[:done]
        return ready, positions

    @property
    def buffered(self) -> int:
        """Messages read and not taken yet (decoded or held in the cut)."""
        return len(self.cut) + self.decoded

    def _decode(self, runs: list[tuple[str, int, list[tuple]]]) -> None:
        for topic, partition, run in runs:
            table = self.routes[topic]
            self.decoders[table].add_run(topic, partition, run)
            self.touched.add(table)
            self.decoded += len(run)

    def _buffer(self, messages: list, on_message: Callable[[str, int, int], None] | None) -> int:
        add_run, read = self.cut.add_run, self.read
        topic, partition, run = None, -1, []
        n = 0
        for m in messages:
            if m.error() is not None:
                err = m.error()
                from confluent_kafka import KafkaError, KafkaException

                if err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(err)
                if run:
                    add_run(topic, partition, run)
                    read[(topic, partition)] = run[-1][0] + 1
                    n += len(run)
                    topic, partition, run = None, -1, []
                self.at_end.add((m.topic(), m.partition()))
                if on_message is not None:
                    on_message(m.topic(), m.partition(), -1)
                continue
            p, t = m.partition(), m.topic()
            if p != partition or t != topic:
                self.at_end.discard((t, p))  # more came after its end
                if run:
                    add_run(topic, partition, run)
                    read[(topic, partition)] = run[-1][0] + 1
                    n += len(run)
                topic, partition, run = t, p, []
            run.append((m.offset(), m.key(), m.value()))
            if on_message is not None:
                on_message(t, p, m.offset())
        if run:
            add_run(topic, partition, run)
            read[(topic, partition)] = run[-1][0] + 1
            n += len(run)
        return n

    def take(self) -> tuple[list[ChangeBatch], dict[tuple[str, int], int], int, int]:
        """Decode what the cut releases: (one batch per table with messages, positions to commit,
        transactions completed, events released without their END)."""
        released = self.cut.release()
        with gc_paused():
            self._decode(released.runs)
        ends, note_positions = self._snapshot_ends() if self.notes else ({}, {})
        for table, lsns in ends.items():
            self.decoders[table].batch.snapshot_ends.extend(lsns)
            self.touched.add(table)
        touched, self.touched, self.decoded = self.touched, set(), 0
        released.positions.update(note_positions)
        if released.bad_transaction_events:
            batch = self.decoders[TRANSACTIONS_TABLE].batch
            for offset, value, error in released.bad_transaction_events:
                batch.dead_letters.append(DeadLetter(self.tx_topic or "", 0, offset, error, None, value))
            touched.add(TRANSACTIONS_TABLE)
        batches = [self.decoders[t].reset() for t in sorted(touched)]
        return batches, released.positions, released.transactions, released.forced

    def commit(self, positions: dict[tuple[str, int], int]) -> None:
        if positions:
            from confluent_kafka import TopicPartition

            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in sorted(positions.items())], asynchronous=False
            )


@contextmanager
def gc_paused():
    """No cyclic garbage collection while the block runs (unless the block is nested or GC is off anyway).

    The per-message loops allocate only acyclic objects, freed by reference counting; the collector would
    still run every few hundred allocations and keep traversing the consumed Message objects alive during a
    poll, promote them to the oldest generation and so trigger full collections of the whole heap (a third of
    the decode time at 200k messages). The work it skips is done by the next collection after the block.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def new_report(routes: dict[str, str]) -> FeedReport:
    return FeedReport({table: TableReport(table, topic) for topic, table in routes.items()})


def land_changes(
    kafka: KafkaResource,
    warehouse: Warehouse,
    routes: dict[str, str],
    *,
    tx_topic: str | None = None,
    collections: dict[str, str] | None = None,
    notification_topic: str | None = None,
    batch_size: int = 50_000,
    transaction_size: int = TRANSACTION_EVENTS,
    stall_timeout_s: float = 30.0,
    settle_s: float = 35.0,
    after_write: Callable[[list[ChangeBatch], list[LandResult]], None] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> FeedReport:
    """Land every event on the routed topics after the group's committed offsets, up to the ends seen at
    start (plus the rest of a transaction begun before them), in whole transactions.

    ``after_write(batches, results)``: called after each warehouse commit with what it committed, before
    the consumer positions are committed."""
    kafka.check_reachable()
    report = new_report(routes)
    feed = ChangeFeed(kafka, routes, tx_topic=tx_topic, collections=collections, log=log,
                      notification_topic=notification_topic)
    try:
        with warehouse.exclusive(), warehouse.session():  # DuckDB: one writer, one connection for the run
            writer = _PipelinedWriter(feed, warehouse, report, after_write, transaction_size)
            try:
                _consume_and_land(feed, warehouse, writer, batch_size, stall_timeout_s, settle_s, report, log)
                writer.finish()
            finally:
                writer.close()  # after an error: wait for a write in flight (its positions stay uncommitted)
    finally:
        feed.close()
    report.lag_after = kafka.lag(feed.topics)
    for table in report.tables.values():
        table.lag_after = {k: v for k, v in report.lag_after.items() if k[0] == table.topic}
    return report


def _consume_and_land(feed: ChangeFeed, warehouse: Warehouse, writer: _PipelinedWriter, batch_size: int,
                      stall_timeout_s: float, settle_s: float, report: FeedReport,
                      log: Callable[[str], None]) -> None:
    ends = feed.assign()
    # the warehouse's one-time costs (imports, connection) while librdkafka fetches the first messages: on
    # this thread, as a worker thread competing for the GIL with the decoding took several times as long
    warehouse.prepare()
    remaining = set(ends)
    last_progress = time.monotonic()
    settle_until = None
    while True:
        got = feed.poll(timeout=0.5 if remaining else 0.2)
        if remaining:  # reached the end seen at start, or the end of the log
            remaining -= {tp for tp in remaining if tp in feed.at_end or feed.read.get(tp, 0) >= ends[tp]}
        if got:
            last_progress = time.monotonic()
        elif remaining and time.monotonic() - last_progress > stall_timeout_s:
            log(f"no message for {stall_timeout_s:.0f}s before the end offsets; stopping")
            remaining.clear()
        buffered = feed.buffered
        # a cycle goes to the warehouse when the batch is full, at the end, or as soon as the writer
        # is free (so the write of one chunk overlaps the consumption of the next, to the last one)
        if buffered >= batch_size or not remaining or (buffered >= MIN_CYCLE and writer.idle):
            writer.submit(*feed.take(), last=not remaining)
        if not remaining:
            if not feed.buffered and not feed.cut.waiting_transactions:
                break
            if settle_until is None:  # the transaction topic may have appeared since the start
                feed.assign()
            settle_until = settle_until or time.monotonic() + settle_s
            if time.monotonic() > settle_until:
                report.held = len(feed.cut)
                log(f"{report.held} message(s) wait for the END of their transaction; left for next run")
                break


def land_table(kafka: KafkaResource, warehouse: Warehouse, table: str, topic: str, **kwargs) -> TableReport:
    """Land one topic (no transaction metadata): the building block benchmarks and unit tests use."""
    return land_changes(kafka, warehouse, {topic: table}, **kwargs).tables[table]


class _PipelinedWriter:
    """At most one write in the warehouse at a time, by a worker thread. Consecutive writes share one
    warehouse transaction (left open with ``commit=False``) until the last one or ``transaction_size``
    events; the consumer positions of a transaction's writes are committed (on the consuming thread) only
    after the warehouse committed it, in order."""

    def __init__(self, feed: ChangeFeed, warehouse: Warehouse, report: FeedReport, after_write,
                 transaction_size: int) -> None:
        self.feed, self.warehouse, self.report, self.after_write = feed, warehouse, report, after_write
        self.transaction_size = transaction_size
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="land")
        #: (batches, positions, commits: the write ends the transaction, future) of the write in flight
        self.inflight: tuple[list[ChangeBatch], dict, bool, Future | None] | None = None
        self.open_events = 0  # events submitted to the warehouse transaction still open (0: none open)
        self.written: list[tuple[ChangeBatch, LandResult]] = []  # in the open transaction, not committed
        self.positions: dict[tuple[str, int], int] = {}  # to commit with the open transaction

    @property
    def idle(self) -> bool:
        """Nothing in the warehouse right now: a new cycle would start writing at once."""
        return self.inflight is None or self.inflight[3] is None or self.inflight[3].done()

    def submit(self, batches: list[ChangeBatch], positions: dict, transactions: int, forced: int, *,
               last: bool = False) -> None:
        """Write what the cut released; ``last``: nothing more is coming, the transaction ends with it."""
        self._complete()
        self.report.transactions += transactions
        self.report.forced += forced
        events = sum(len(b) for b in batches)
        commits = last or self.open_events + events >= self.transaction_size
        # a last write with nothing new still ends the transaction the earlier writes left open
        write = bool(batches) or (commits and self.open_events > 0)
        if not write and not positions:
            return
        future = None
        if write:
            future = self.pool.submit(self.warehouse.land_all, batches, commit=commits)
            # a write of dead letters or snapshot ends only (no events) leaves a transaction open all the same
            self.open_events = 0 if commits else self.open_events + max(events, 1)
        self.inflight = (batches, positions, commits, future)

    def finish(self) -> None:
        """Wait for the last write (the run's last submit was ``last=True``: no transaction stays open)."""
        try:
            self._complete()
        finally:
            self.pool.shutdown(wait=True)

    def close(self) -> None:
        """Stop the worker (after :meth:`finish`, or after an error: a write in flight still completes, but
        nothing more is committed, and an open transaction is rolled back with the session)."""
        self.pool.shutdown(wait=True)

    def _complete(self) -> None:
        if self.inflight is None:
            return
        batches, positions, commits, future = self.inflight
        self.inflight = None
        results = future.result() if future is not None else []  # a failed write raises: nothing committed
        self.written += zip(batches, results, strict=True)
        self.positions.update(positions)
        if not commits and self.open_events:
            return  # committed with the transaction
        written, positions, self.written, self.positions = self.written, self.positions, [], {}
        if self.after_write is not None and written:
            self.after_write([b for b, _ in written], [r for _, r in written])
        self.feed.commit(positions)
        for batch, result in written:
            if batch.table in self.report.tables:
                self.report.tables[batch.table].add(batch, result)
