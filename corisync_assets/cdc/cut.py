"""Release change events in whole source transactions, so the raw layer is always a consistent cut.

Debezium writes each captured table to its own topic; a Postgres transaction that touches three tables
becomes events on three topics, and a reader that stops at "whatever each topic holds now" can stop in
the middle of it (one table ahead of another: a foreign key that holds in Postgres breaks in staging).
With ``provide.transaction.metadata`` Debezium also writes, per transaction, a BEGIN and an END event to
``<prefix>.transaction``; the END says how many events each table received, and every data event names
its transaction (``payload.transaction.id``).

:class:`TransactionCut` buffers messages per partition and releases the longest prefix of every
partition that contains only

* events of transactions that are *complete* (END read, and every table's announced event count
  buffered), taken as a prefix of the END order (commit order), and
* messages outside any transaction (snapshot reads, tombstones, anything undecodable, which then becomes a
  dead letter on the normal path).

So whatever is landed together is Postgres as of one commit. The commit positions it returns cover
exactly what was released on every partition (data and transaction topic alike) and are committed in one
request, so a restart re-reads a consistent state: the END events of not-yet-landed transactions and
their data events, never one without the other.

Liveness: a data event whose END never comes, or an END whose events never come (both only when something
consumed part of the stream outside the cut), would block the feed; after ``max_hold_s`` *with the reader
caught up* (``caught_up``: every data partition read to its end, so nothing missing can still arrive) they
are released anyway and counted in ``forced``, which every materialization reports. A big transaction
whose events take longer than ``max_hold_s`` to read (100,000 changes of a wide table from the local broker
take over a minute) therefore still lands whole.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

import orjson

_TX_MARK = b'"transaction":{"id":"'


def transaction_key(debezium_id: str) -> str:
    """The part of a Debezium transaction id that is the same on BEGIN, END and every event of it.

    The PostgreSQL connector writes ids as ``<xid>:<lsn>``, and the LSN differs between the BEGIN, each data
    event and the END of one transaction (seen with Debezium 3.6), so the Postgres xid is the key.
    """
    return debezium_id.split(":", 1)[0]


def transaction_id(value: bytes | None) -> str | None:
    """The transaction key of a data event (None: no transaction block, or not an envelope).

    The envelope's ``transaction`` struct is its last field, so a reverse search finds it without parsing
    the payload (quotes inside JSON strings are escaped: the unescaped marker is structural).
    """
    if not value:
        return None
    at = value.rfind(_TX_MARK)
    if at < 0:
        return None
    start = at + len(_TX_MARK)
    end = value.find(b'"', start)
    return transaction_key(value[start:end].decode("utf-8", "replace")) if end > start else None


@dataclass(frozen=True)
class TransactionEnd:
    """An END event: transaction id and the number of events per data collection (``schema.table``)."""

    id: str
    counts: dict[str, int]
    offset: int
    partition: int = 0
    seen: float = 0.0


def parse_transaction_event(value: bytes | None) -> tuple[str, TransactionEnd | None]:
    """("BEGIN"|"END", END details or None) of a transaction-topic message; ValueError if malformed."""
    if value is None:
        raise ValueError("transaction metadata message without a value")
    doc = orjson.loads(value)
    payload = doc.get("payload", doc) if isinstance(doc, dict) else None
    if not isinstance(payload, dict) or payload.get("status") not in ("BEGIN", "END") or not payload.get("id"):
        raise ValueError("not a Debezium transaction metadata event (status BEGIN/END and id)")
    if payload["status"] == "BEGIN":
        return "BEGIN", None
    counts = {str(c["data_collection"]): int(c["event_count"]) for c in payload.get("data_collections") or []}
    return "END", TransactionEnd(transaction_key(str(payload["id"])), counts, -1)


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    tx: str | None = None
    seen: float = 0.0


#: a buffered message: ``(offset, key, value)``, or ``(offset, key, value, tx, seen)`` while it is held
Entry = tuple


@dataclass
class Release:
    """What the cut lets through now, and where every partition's consumer position may be committed."""

    #: (topic, partition, entries in offset order): entries are tuples starting with (offset, key, value)
    runs: list[tuple[str, int, list[Entry]]] = field(default_factory=list)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    transactions: int = 0
    forced: int = 0
    bad_transaction_events: list[tuple[int, bytes | None, str]] = field(default_factory=list)

    @property
    def messages(self) -> list[Message]:
        return [Message(topic, partition, *entry) for topic, partition, run in self.runs for entry in run]


class TransactionCut:
    """Buffers data and transaction-topic messages; releases whole transactions in commit order.

    ``collections`` maps each data topic to its Debezium data collection (``schema.table``). With
    ``tx_topic=None`` there is no transaction metadata: every message is released at once.

    Per partition, messages that nothing holds back (no transaction, nothing held before them) wait in a
    plain list (``ready``) and leave whole at the next release; from the first message that may have to wait
    on, messages queue in ``pending`` and are released by the rules above.
    """

    def __init__(self, collections: dict[str, str], tx_topic: str | None, max_hold_s: float = 30.0) -> None:
        self.collections = collections
        self.tx_topic = tx_topic
        self.max_hold_s = max_hold_s
        #: set by the reader: every data partition read to its end (see the module's Liveness note)
        self.caught_up = True
        self.ready: dict[tuple[str, int], list[Entry]] = {}
        self.pending: dict[tuple[str, int], deque[Entry]] = {}
        self.next_offset: dict[tuple[str, int], int] = {}  # one past the last message buffered
        self.ends: deque[TransactionEnd] = deque()
        self.received: Counter[tuple[str, str]] = Counter()
        self.bad: list[tuple[int, bytes | None, str]] = []
        self._released_positions: dict[tuple[str, int], int] = {}

    def __len__(self) -> int:
        return sum(map(len, self.ready.values())) + sum(map(len, self.pending.values()))

    @property
    def released_positions(self) -> dict[tuple[str, int], int]:
        """Per partition, the position up to which everything has been released so far (read-only view)."""
        return self._released_positions

    @property
    def waiting_transactions(self) -> int:
        return len(self.ends)

    def add(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        self.add_run(topic, partition, [(offset, key, value)])

    def add_run(self, topic: str, partition: int, entries: list[Entry]) -> None:
        """Buffer consecutive messages ``(offset, key, value)`` of one partition, in offset order."""
        if not entries:
            return
        tp = (topic, partition)
        self.next_offset[tp] = entries[-1][0] + 1
        if topic == self.tx_topic:
            now = time.monotonic()
            for offset, _key, value in entries:
                try:
                    _status, end = parse_transaction_event(value)
                except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
                    self.bad.append((offset, value, f"{type(exc).__name__}: {exc}"))
                    continue
                if end is not None:
                    self.ends.append(TransactionEnd(end.id, end.counts, offset, partition, now))
            return
        queue = self.pending.get(tp)
        if self.tx_topic is None:  # no transaction metadata: nothing is ever held
            ready = self.ready.get(tp)
            if ready is None:
                self.ready[tp] = list(entries)
            else:
                ready += entries
            return
        if queue is None:
            queue = self.pending[tp] = deque()
        ready = self.ready.setdefault(tp, [])
        collection = self.collections.get(topic, topic)
        received = self.received
        now = time.monotonic()
        for entry in entries:
            tx = transaction_id(entry[2])
            if tx is None:
                if not queue:  # nothing before it is held: it leaves with the next release
                    ready.append(entry)
                    continue
            else:
                received[(tx, collection)] += 1
            queue.append((entry[0], entry[1], entry[2], tx, now))

    def take_ready(self) -> list[tuple[str, int, list[Entry]]]:
        """Hand over now what the next :meth:`release` would let through whatever else arrives (messages
        with no transaction and nothing held before them), so the caller can decode them while they are fresh;
        the positions :meth:`release` returns cover them."""
        runs = []
        for tp, run in self.ready.items():
            if run:
                runs.append((tp[0], tp[1], run))
                self.ready[tp] = []
        return runs

    def _complete_prefix(self) -> tuple[list[TransactionEnd], int]:
        """The ENDs, in commit order, whose events are all buffered; an END still short of events after
        ``max_hold_s`` counts as complete too (its missing events were consumed before this reader
        started, e.g. by a reader without the cut), so one stale END cannot stall the feed forever."""
        done, stale, now = [], 0, time.monotonic()
        wanted = set(self.collections.values())
        for end in self.ends:
            if all(self.received[(end.id, coll)] >= n for coll, n in end.counts.items() if coll in wanted):
                done.append(end)
            elif now - end.seen >= self.max_hold_s and self.caught_up:
                done.append(end)
                stale += 1
            else:
                break
        return done, stale

    def release(self) -> Release:
        out = Release(bad_transaction_events=self.bad)
        self.bad = []
        complete, out.forced = self._complete_prefix()
        landed = {end.id for end in complete}
        open_ids = {end.id for end in self.ends} - landed
        now = time.monotonic()
        for tp, nxt in self.next_offset.items():
            if tp[0] == self.tx_topic:
                continue
            run = self.ready.get(tp)
            if run:
                self.ready[tp] = []
            else:
                run = []
            queue = self.pending.get(tp)
            if queue:
                collection = self.collections.get(tp[0], tp[0])
                while queue:
                    head = queue[0]
                    tx = head[3]
                    if tx is not None and tx not in landed:
                        # no END yet: wait, unless it has waited too long while later transactions completed
                        if tx in open_ids or now - head[4] < self.max_hold_s or not complete \
                                or not self.caught_up:
                            break
                        out.forced += 1
                    queue.popleft()
                    run.append(head)
                    if tx is not None:
                        self.received[(tx, collection)] -= 1
            if run:
                out.runs.append((tp[0], tp[1], run))
            out.positions[tp] = queue[0][0] if queue else nxt
        # an END leaves once every event of its transaction has been released (they may still sit behind
        # an earlier, incomplete transaction on some partition)
        while self.ends and self.ends[0].id in landed and not any(
            self.received[(self.ends[0].id, coll)] > 0 for coll in self.ends[0].counts
        ):
            self.ends.popleft()
            out.transactions += 1
        if self.received:
            for key in [k for k, v in self.received.items() if v <= 0]:
                del self.received[key]
        if self.tx_topic is not None:
            first_open: dict[int, int] = {}
            for end in self.ends:
                first_open.setdefault(end.partition, end.offset)
            for tp, nxt in self.next_offset.items():
                if tp[0] == self.tx_topic:
                    out.positions[tp] = first_open.get(tp[1], nxt)
        # report only positions that moved
        moved = {tp: pos for tp, pos in out.positions.items() if self._released_positions.get(tp) != pos}
        self._released_positions.update(moved)
        out.positions = moved
        return out
