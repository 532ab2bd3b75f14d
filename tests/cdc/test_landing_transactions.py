"""A landing run's warehouse transactions and its consumer positions, on the real broker and DuckDB: a run
commits the positions of a transaction's events only after the warehouse committed it, so a failure in the
middle of a run loses nothing and re-reads nothing already landed."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from corisync_assets.cdc import landing
from corisync_assets.cdc.envelope import Decoder
from corisync_assets.cdc.landing import land_table
from corisync_assets.resources.kafka import KafkaResource
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
from tests.support.debezium_events import change_stream, expected_state

pytestmark = pytest.mark.stack

EVENTS, IDS = 20_000, 2_000


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    """In large batches, the last message alone: the local broker's high watermark is the last batch's base
    offset + 1, so the run's end offset is exact."""
    admin = AdminClient({"bootstrap.servers": bootstrap})  # held: the future fails if the client is collected
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    bulk = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 5000})
    for key, value in messages[:-1]:
        bulk.produce(topic, key=key, value=value)
        bulk.poll(0)
    assert bulk.flush(60) == 0
    last = Producer({"bootstrap.servers": bootstrap, "batch.num.messages": 1})
    last.produce(topic, key=messages[-1][0], value=messages[-1][1])
    assert last.flush(30) == 0


def test_a_failure_mid_run_keeps_committed_transactions_and_their_positions_together(stack, tmp_path, monkeypatch):
    topic = f"tc4a.public.courses_tx_{uuid.uuid4().hex[:8]}"
    messages = list(change_stream(EVENTS, ids=IDS))
    produce(stack.kafka_bootstrap, topic, messages)
    decoder = Decoder("courses")
    for offset, (key, value) in enumerate(messages):
        decoder.add(topic, 0, offset, key, value)
    events = len(decoder.batch)  # change events (the tombstones after deletes are not)
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap, consumer_group=f"tx-{uuid.uuid4().hex}")
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))

    commits: list[bool] = []
    land_all = DuckDBWarehouse.land_all

    def fail_inside_the_second_transaction(self, batches, replay=False, commit=True):
        if True in commits and commits[-1] is False:  # the second write of the transaction after a commit
            raise RuntimeError("the warehouse went away")
        commits.append(commit)
        return land_all(self, batches, replay, commit)

    monkeypatch.setattr(DuckDBWarehouse, "land_all", fail_inside_the_second_transaction)
    monkeypatch.setattr(landing, "CONSUME_CHUNK", 2_000)  # polls of 2,000 messages: writes of 3,000-5,000
    with pytest.raises(RuntimeError, match="went away"):
        land_table(kafka, wh, "courses", topic, batch_size=3_000, transaction_size=12_000)
    monkeypatch.undo()
    # one transaction of several writes committed, then one write of the next (its positions not committed)
    assert commits.count(True) == 1 and commits.index(True) >= 1 and commits[-1] is False
    landed = wh.row_count("courses__changelog")
    assert 12_000 <= landed < events

    again = land_table(kafka, wh, "courses", topic)  # from the group's committed positions
    assert again.duplicates == 0  # nothing committed in the warehouse is read again ...
    assert landed + again.new_events == events == wh.row_count("courses__changelog")  # ... and nothing is lost
    with wh.connect(read_only=True) as con:
        rows = dict(con.execute("SELECT course_id, title FROM raw_cdc.courses").fetchall())
    expected = expected_state(EVENTS, ids=IDS)
    assert rows == {cid: row["title"] for cid, row in expected.items()}
