"""Dead letters after a fix: list them, and replay them through the normal landing path.

A message that could not be decoded (or landed) is kept in the warehouse's ``_dead_letters`` with its
Kafka position, key, value and error; the raw asset's ``no_dead_letters`` check fails while any is pending.
Once the cause is fixed (a new type supported, a config corrected), ``replay`` decodes the pending dead
letters of one table with today's decoder, lands the ones that now decode (idempotently: the changelog
drops events it already holds) and marks them replayed. Nothing is deleted; what still fails stays
pending, with its error. Current state takes a replayed event only if its row has no newer change: a
replayed insert does not bring back a row deleted since, nor an old update overwrite a newer one.

The events of one table are replayed in (topic, partition, offset) order, outside the transaction cut:
a dead letter's transaction has landed already, without it. DuckDB lands them in one transaction; BigQuery
outside its stream, with a load job and the fold's statements (``Warehouse.land_all(..., replay=True)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby

from corisync_assets.cdc.envelope import Decoder, check_identifier
from corisync_assets.resources.warehouse.base import StoredDeadLetter, Warehouse


@dataclass
class ReplayReport:
    table: str
    pending: int = 0
    replayed: int = 0
    new_events: int = 0
    already_landed: int = 0
    still_failing: dict[str, int] = field(default_factory=dict)  # error -> count

    def lines(self) -> list[str]:
        out = [f"{self.table}: {self.pending} pending dead letter(s); {self.replayed} replayed "
               f"({self.new_events} new event(s) landed, {self.already_landed} already in the changelog)"]
        out += [f"  still failing ({n}): {error}" for error, n in sorted(self.still_failing.items())]
        return out


def summarize(letters: list[StoredDeadLetter]) -> list[tuple[str, str, int, int]]:
    """(table, error, pending, replayed) per table and error."""
    counts: dict[tuple[str, str], list[int]] = {}
    for d in letters:
        counts.setdefault((d.source_table, d.error), [0, 0])[1 if d.replayed else 0] += 1
    return [(t, e, p, r) for (t, e), (p, r) in sorted(counts.items())]


def _encoded(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def replay(warehouse: Warehouse, table: str, out: Callable[[str], None] = print) -> ReplayReport:
    """Replay the pending dead letters of ``table``; the warehouse's writer slot is held throughout."""
    check_identifier(table, "table")
    report = ReplayReport(table)
    with warehouse.exclusive():
        pending = [d for d in warehouse.dead_letters(table) if not d.replayed]
        report.pending = len(pending)
        if not pending:
            return report
        decoder = Decoder(table)
        for (topic, partition), group in groupby(pending, key=lambda d: (d.topic, d.partition)):
            decoder.add_run(topic, partition, [(d.offset, _encoded(d.key), _encoded(d.value)) for d in group])
        batch = decoder.reset()
        failing = {(d.topic, d.partition, d.offset): d.error for d in batch.dead_letters}
        batch.dead_letters = []  # they are stored already (and stay pending)
        if len(batch):
            result = warehouse.land_all([batch], replay=True)[0]
            report.new_events, report.already_landed = result.new_events, result.duplicates
        done = [(d.topic, d.partition, d.offset) for d in pending if (d.topic, d.partition, d.offset) not in failing]
        report.replayed = warehouse.mark_replayed(table, done)
        for error in failing.values():
            report.still_failing[error] = report.still_failing.get(error, 0) + 1
    for line in report.lines():
        out(line)
    return report
