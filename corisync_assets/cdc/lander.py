"""The long-lived lander: seconds from a Postgres commit to the warehouse's raw tables.

A Dagster run pays for a process start and a definitions load (several seconds) before it reads a single
event; at a batch every second that cost is the whole latency budget. The lander keeps one consumer open
over every captured topic and the transaction topic and loops: poll for up to ``poll_s`` -> land what the
transaction cut releases (all tables in one warehouse transaction) -> commit the positions -> report one
``AssetMaterialization`` per table that received events to the Dagster instance. Those are the
materializations of the raw assets as far as Dagster is concerned: they show in the UI, and the eager
automation of the dbt assets reacts to them exactly as it does to a run's.

It is the same landing path as a run (`corisync_assets.cdc.landing`), so the two can overlap safely: both
land whole transactions, the warehouse drops events it already holds, and DuckDB writers take turns through
the warehouse's writer slot (held per cycle for a few milliseconds, so dbt and readers get in between).

The Kafka-lag sensor stays the trigger of raw *runs*: it watches the group's committed offsets, and if lag
stays above the threshold while they stop moving (no lander, or a stuck one), it requests the catch-up run.

Run it with ``corisync lander`` (``corisync dev`` starts it beside the UI; a compose service in prod).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dagster import AssetCheckEvaluation, AssetKey, AssetMaterialization

from corisync_assets.cdc.assets import RAW_GROUP, dead_letter_check, report_metadata, routes
from corisync_assets.cdc.connector_config import ConnectorConfig
from corisync_assets.cdc.landing import ChangeFeed, FeedReport, new_report
from corisync_assets.resources.kafka import KafkaResource
from corisync_assets.resources.warehouse.base import Warehouse

log = logging.getLogger("corisync.lander")

Reporter = Callable[[list[AssetMaterialization]], None]

#: touched after every cycle; ``corisync lander --health`` (the compose health check) reads its age
HEARTBEAT = Path(tempfile.gettempdir()) / "corisync-lander.heartbeat"
HEALTHY_WITHIN_S = 60.0


def healthy(heartbeat: Path = HEARTBEAT, within_s: float = HEALTHY_WITHIN_S) -> bool:
    """The lander completed a cycle within the last ``within_s`` seconds."""
    try:
        return time.time() - heartbeat.stat().st_mtime <= within_s
    except FileNotFoundError:
        return False


def dagster_reporter(instance=None) -> Reporter:
    """Record materializations in the Dagster instance ($DAGSTER_HOME) as runless asset events."""
    from dagster import DagsterInstance

    inst = instance or DagsterInstance.get()

    def report(events: list[AssetMaterialization]) -> None:
        for event in events:
            inst.report_runless_asset_event(event)

    return report


class Lander:
    """Continuously land the connector's topics into ``warehouse``; see the module docstring."""

    def __init__(self, kafka: KafkaResource, warehouse: Warehouse, connector: ConnectorConfig, *,
                 reporter: Reporter | None = None, poll_s: float = 0.5, reassign_s: float = 5.0,
                 max_hold_s: float = 30.0) -> None:
        self.kafka, self.warehouse, self.connector = kafka, warehouse, connector
        self.routes = routes(connector)
        self.reporter = reporter or (lambda _events: None)
        self.poll_s, self.reassign_s, self.max_hold_s = poll_s, reassign_s, max_hold_s
        self.cycles = 0
        self.events_landed = 0

    def run(self, stop: threading.Event, *, retry_s: float = 5.0) -> None:
        """Loop until ``stop`` is set. A failed cycle (broker or warehouse away) committed nothing: the feed
        is rebuilt from the committed positions after ``retry_s`` and the same events are landed again."""
        while not stop.is_set():
            try:
                self._run_feed(stop)
            except Exception:
                log.exception("landing failed; retrying from the committed positions in %.0fs", retry_s)
                stop.wait(retry_s)

    def _run_feed(self, stop: threading.Event) -> None:
        self.kafka.check_reachable()
        feed = ChangeFeed(self.kafka, self.routes, tx_topic=self.connector.transaction_topic,
                          collections=self.connector.collections, log=log.info, max_hold_s=self.max_hold_s,
                          notification_topic=self.connector.notification_topic)
        log.info("landing %d topic(s) + %s into %s", len(self.routes), feed.tx_topic, self.warehouse.kind)
        try:
            next_assign = 0.0
            while not stop.is_set():
                if time.monotonic() >= next_assign:  # topics appear when Debezium first writes to them
                    feed.assign()
                    next_assign = time.monotonic() + self.reassign_s
                feed.poll(timeout=self.poll_s)
                self.cycle(feed)
        finally:
            feed.close()

    def cycle(self, feed: ChangeFeed) -> FeedReport:
        """Land what the cut releases now, commit, report; returns what was done."""
        batches, positions, transactions, forced = feed.take()
        report = new_report(self.routes)
        report.transactions, report.forced = transactions, forced
        if batches:
            with self.warehouse.exclusive():
                results = self.warehouse.land_all(batches)
            for batch, result in zip(batches, results, strict=True):
                if batch.table in report.tables:
                    report.tables[batch.table].add(batch, result)
        feed.commit(positions)
        self.cycles += 1
        HEARTBEAT.touch()
        self.events_landed += report.new_events
        if report.new_events:
            log.info("cycle %d: %d event(s) in %d transaction(s)", self.cycles, report.new_events, transactions)
        events = []
        if not self.warehouse.defers_current_state:  # what dbt reads changed now
            events = [
                AssetMaterialization(asset_key=AssetKey([RAW_GROUP, name]), metadata=report_metadata(t, feed=report))
                for name, t in report.tables.items()
                if t.new_events or t.dead_letters
            ]
        # a cycle that dead-lettered events fails the table's check at once (runs re-evaluate it from the
        # warehouse, where the dead letters stay until replayed)
        events += [
            AssetCheckEvaluation(**dead_letter_check(AssetKey([RAW_GROUP, name]), t.dead_letter_errors, t.dead_letters))
            for name, t in report.tables.items() if t.dead_letters
        ]
        try:
            folded = self.warehouse.fold()
        except Exception:  # the changelog is safe; the next due fold takes these cycles too
            log.exception("fold failed; retried at the next due fold")
            folded = None
        if folded:
            log.info("folded: %s", folded)
            events += [
                AssetMaterialization(asset_key=AssetKey([RAW_GROUP, name]),
                                     metadata={"events_folded": n, **{k: v for k, v in folded.items()
                                                                      if isinstance(v, int | str)}})
                for name, n in folded.get("new_events", {}).items() if name in report.tables
            ]
        if events:
            self.reporter(events)
        return report


def run(stop: threading.Event | None = None) -> int:
    """``corisync lander``: land continuously until SIGTERM/SIGINT."""
    import signal

    from corisync_assets.cdc.connector_config import load_connector_config
    from corisync_assets.environment import resources, settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    s = settings()
    res = resources(s)
    stop = stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # resolve EnvVar-backed secrets as a run would (outside a run nothing else does)
    kafka, warehouse = (res[k].process_config_and_initialize() for k in ("kafka", "warehouse"))
    lander = Lander(kafka, warehouse, load_connector_config(s.connector_config), reporter=dagster_reporter())
    lander.run(stop)
    log.info("stopped after %d cycle(s), %d event(s) landed", lander.cycles, lander.events_landed)
    return 0
