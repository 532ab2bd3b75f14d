"""Reading CDC topics back from the broker in tests (assign + watermarks, no consumer group)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from corisync_assets.environment import Settings


@dataclass
class Event:
    offset: int
    key: dict | None
    value: dict | None

    @property
    def op(self) -> str | None:
        return None if self.value is None else self.value["payload"]["op"]

    @property
    def after(self) -> dict | None:
        return None if self.value is None else self.value["payload"]["after"]

    @property
    def before(self) -> dict | None:
        return None if self.value is None else self.value["payload"]["before"]


def _consumer(s: Settings) -> Consumer:
    return Consumer({**s.kafka_client_config(), "group.id": "corisync-tests-reader", "enable.auto.commit": False})


def end_offset(s: Settings, topic: str) -> int:
    c = _consumer(s)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        c.close()


def read(s: Settings, topic: str, start: int = 0, timeout: float = 20.0) -> list[Event]:
    """All records of partition 0 from ``start`` to the current end."""
    c = _consumer(s)
    try:
        end = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
        if end <= start:
            return []
        c.assign([TopicPartition(topic, 0, start)])
        events: list[Event] = []
        deadline = time.monotonic() + timeout
        while (not events or events[-1].offset < end - 1) and time.monotonic() < deadline:
            for m in c.consume(500, 0.5):
                if m.error():
                    continue
                events.append(Event(m.offset(), json.loads(m.key()) if m.key() else None,
                                    json.loads(m.value()) if m.value() is not None else None))
        return events
    finally:
        c.close()


def wait_for(s: Settings, topic: str, predicate, start: int = 0, timeout: float = 240.0) -> list[Event]:
    """Poll until ``predicate(events)`` holds for the events from ``start``; returns them."""
    deadline = time.monotonic() + timeout
    events: list[Event] = []
    while time.monotonic() < deadline:
        events = read(s, topic, start)
        if predicate(events):
            return events
        time.sleep(0.5)
    raise AssertionError(f"{topic}: condition not met within {timeout}s; got {[(e.offset, e.op) for e in events]}")
