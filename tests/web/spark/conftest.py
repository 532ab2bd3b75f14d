"""Fixtures of the web Spark tests: one local[2] SparkSession per test session, and Kafka helpers over the
stack's broker (tests/conftest.py ``stack``)."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(scope="session")
def spark():
    from corisync_assets.web.spark.session import build_session

    session = build_session("local[2]", app_name="corisync-web-tests",
                            conf={"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false",
                                  "spark.default.parallelism": "2"})
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


# -- Kafka ----------------------------------------------------------------------------------------------------

class Broker:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def topic(self, prefix: str, partitions: int) -> str:
        from confluent_kafka.admin import AdminClient, NewTopic

        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})  # alive until the futures resolve
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        for f in futures.values():
            f.result(timeout=30)
        return name

    def produce(self, topic: str, messages: list[tuple[int, str | None, str | bytes | None]]) -> list[int]:
        """(partition, key, value) -> the offsets, in order (one record per batch: tansu's watermarks)."""
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, "batch.num.messages": 1, "linger.ms": 0,
                             "acks": "all", "enable.idempotence": False,
                             "max.in.flight.requests.per.connection": 1})
        offsets: list[int | None] = [None] * len(messages)
        errors = []

        def done(index):
            def callback(err, msg):
                if err is not None:
                    errors.append(err)
                else:
                    offsets[index] = msg.offset()
            return callback

        for i, (partition, key, value) in enumerate(messages):
            producer.produce(topic, key=key, value=value, partition=partition, on_delivery=done(i))
            producer.poll(0)
        assert producer.flush(30) == 0
        assert not errors, errors
        return [int(o) for o in offsets]  # type: ignore[arg-type]

    def high_watermarks(self, topic: str) -> dict[int, int]:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "corisync-test-watermarks"})
        try:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in sorted(meta.partitions)}
        finally:
            consumer.close()


@pytest.fixture(scope="session")
def broker(stack) -> Broker:
    return Broker(stack.kafka_bootstrap)


