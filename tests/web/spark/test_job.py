"""The job end to end on the stack's broker: a topic with late, duplicate, out-of-order and invalid
messages -> the lake's three tables equal the plain-Python model; the same offsets again change nothing
(the job under ``spark-submit`` and Dagster Pipes is tests/web/test_web_pipeline.py's path); a later batch
with a late event re-opens an earlier day's session and rewrites only the affected partitions; a rebuild
restores a lost partition from the lake alone.

The stages run in order as module fixtures (each depends on the previous); the tests check them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from corisync_assets.web.spark import job
from tests.web.spark.model import (
    D1,
    D2,
    delivered,
    messages,
    normalized,
    partition_files,
    read_lake,
    reference,
    scenario,
)

pytestmark = pytest.mark.stack

TABLES = ("events", "sessions", "page_daily")


@dataclass
class World:
    topic: str
    lake: Path
    bootstrap: str
    delivered: list[dict]
    ends: dict[int, int]

    def params(self, start: dict[int, int], **extra) -> dict:
        return {"bootstrap": self.bootstrap, "kafka_conf": {"client.id": "corisync-web-test"}, "topic": self.topic,
                "offsets": {str(p): [start.get(p, 0), end] for p, end in self.ends.items()}, "lake": str(self.lake),
                **extra}


def lake_content(lake: Path) -> dict[str, list[dict]]:
    return {t: normalized(t, read_lake(lake, t)) for t in TABLES}


def expected_content(events: list[dict]) -> dict[str, list[dict]]:
    return {t: normalized(t, rows) for t, rows in reference(events).items()}


@pytest.fixture(scope="module")
def world(broker, tmp_path_factory) -> World:
    s = scenario()
    topic = broker.topic("web-events", 2)
    offsets = broker.produce(topic, messages(s["batch1"]))
    return World(topic, tmp_path_factory.mktemp("web") / "lake", broker.bootstrap, delivered(s["batch1"], offsets),
                 broker.high_watermarks(topic))


@pytest.fixture(scope="module")
def first_run(spark, world) -> dict:
    return job.main(world.params({}), spark=spark)


@pytest.fixture(scope="module")
def second_run(first_run, spark, world) -> tuple[dict, dict, dict, list[str]]:
    """The same offsets again (``spark-submit`` under Dagster Pipes is the web pipeline tests' path)."""
    before = lake_content(world.lake)
    logs: list[str] = []
    summary = job.main(world.params({}), spark=spark, log=logs.append)
    return before, lake_content(world.lake), summary, logs


@pytest.fixture(scope="module")
def late_batch(second_run, spark, broker, world) -> tuple[dict, dict]:
    s = scenario()
    start = dict(world.ends)
    untouched = {t: partition_files(world.lake, t, D2) for t in ("events", "page_daily")}
    offsets = broker.produce(world.topic, messages(s["batch2"]))
    world.delivered += delivered(s["batch2"], offsets)
    world.ends = broker.high_watermarks(world.topic)
    summary = job.main(world.params(start), spark=spark)
    return summary, untouched


def test_first_batch_lands_the_model_tables(first_run, world):
    s = first_run
    assert s["messages_read"] == 24 and s["messages_per_partition"] == {"0": 14, "1": 10}
    assert s["offsets"] == {"0": [0, 14], "1": [0, 10]}
    assert s["invalid"]["count"] == 9 and len(s["invalid"]["reasons"]) == 5
    assert s["invalid"]["reasons"][0].startswith("partition 0 offset 9: not a JSON object")
    assert (s["duplicates_in_batch"], s["duplicates_in_lake"], s["duplicates"]) == (1, 0, 1)
    assert (s["events_new"], s["late"], s["out_of_order"]) == (14, 1, 2)
    assert s["event_dates"] == s["page_days"] == [D1.isoformat(), D2.isoformat()]
    assert s["session_dates"] == ["2026-11-26", D1.isoformat(), D2.isoformat()]
    assert s["rows"]["events"] == {D1.isoformat(): 9, D2.isoformat(): 5}
    assert s["rows"]["sessions"]["2026-11-26"] == 0
    assert lake_content(world.lake) == expected_content(world.delivered)


def test_the_same_offsets_again_change_nothing(second_run):
    before, after, summary, logs = second_run
    assert after == before
    assert (summary["events_new"], summary["duplicates_in_batch"], summary["duplicates_in_lake"]) == (0, 1, 14)
    assert summary["event_dates"] == [D1.isoformat(), D2.isoformat()]
    assert any(line.startswith("read 24 messages from") for line in logs), logs  # the stage lines
    assert any(line.startswith("wrote sessions:") for line in logs)


def test_a_late_event_reopens_its_days_session_and_only_affected_partitions_change(late_batch, world):
    summary, untouched = late_batch
    assert (summary["messages_read"], summary["events_new"], summary["duplicates_in_lake"]) == (3, 2, 1)
    assert (summary["late"], summary["out_of_order"], summary["invalid"]["count"]) == (2, 0, 0)
    assert summary["event_dates"] == summary["page_days"] == [D1.isoformat()]
    # D2's sessions: anon-f's session there is stitched to the user its new (earlier-day) login carries
    assert summary["session_dates"] == ["2026-11-26", D1.isoformat(), D2.isoformat()]
    assert lake_content(world.lake) == expected_content(world.delivered)
    for table, files in untouched.items():
        assert files and partition_files(world.lake, table, D2) == files, table
    sessions = {r["anonymous_id"]: r for r in read_lake(world.lake, "sessions", D1) if r["anonymous_id"] == "anon-a"}
    assert sessions["anon-a"]["event_count"] == 5  # 08:00 .. 09:05 is one session now (08:45 closed the gap)
    assert [r["user_id"] for r in read_lake(world.lake, "sessions", D2) if r["anonymous_id"] == "anon-f"] == [99]


def test_a_rebuild_restores_a_lost_partition_from_the_lake(late_batch, spark, world):
    expected = lake_content(world.lake)
    shutil.rmtree(world.lake / "web" / "sessions" / f"session_date={D1.isoformat()}")
    summary = job.main({"lake": str(world.lake), "offsets": {}, "rebuild_dates": [D1.isoformat()]}, spark=spark)
    assert (summary["messages_read"], summary["event_dates"]) == (0, [])
    assert summary["session_dates"] == summary["page_days"] == [D1.isoformat()]
    assert lake_content(world.lake) == expected
