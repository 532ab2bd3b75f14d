"""Kafka clients and consumer lag, from settings only (the broker address is always configurable).

Lag is computed through the admin API alone (committed group offsets vs. high watermarks): it never reads
messages, so the sensor can run every few seconds at no cost to the brokers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

# confluent_kafka is imported where a client is made, not here: the code location loads without it
if TYPE_CHECKING:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient

ADMIN_TIMEOUT_S = 10.0


class BrokerUnreachable(ConnectionError):
    """No broker answered at the configured bootstrap address."""


@dataclass(frozen=True)
class LagInfo:
    """Lag of one topic partition for one consumer group."""

    topic: str
    partition: int
    committed: int | None  # None: the group never committed on this partition
    low_watermark: int
    high_watermark: int

    @property
    def start(self) -> int:
        """The first offset not yet consumed by the group."""
        start = self.committed if self.committed is not None and self.committed >= 0 else self.low_watermark
        # A committed offset beyond the end means the broker lost its log (memory-only broker restarted):
        # everything now on the partition is unconsumed.
        return self.low_watermark if start > self.high_watermark else max(start, self.low_watermark)

    @property
    def lag(self) -> int:
        return max(self.high_watermark - self.start, 0)


def client_conf(
    bootstrap_servers: str,
    security_protocol: str = "PLAINTEXT",
    sasl_mechanism: str | None = None,
    sasl_username: str | None = None,
    sasl_password: str | None = None,
) -> dict[str, str]:
    """librdkafka settings shared by every client (consumer, producer, admin)."""
    conf = {"bootstrap.servers": bootstrap_servers, "security.protocol": security_protocol}
    for key, value in (("sasl.mechanism", sasl_mechanism), ("sasl.username", sasl_username),
                       ("sasl.password", sasl_password)):
        if value:
            conf[key] = value
    return conf


def admin_client(client_conf: dict[str, str]) -> AdminClient:
    from confluent_kafka.admin import AdminClient

    return AdminClient({**client_conf, "socket.timeout.ms": "5000"})


def check_reachable(client_conf: dict[str, str], timeout: float = ADMIN_TIMEOUT_S) -> None:
    """Raise BrokerUnreachable with the address if no broker answers a metadata request."""
    from confluent_kafka import KafkaException

    try:
        admin_client(client_conf).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnreachable(
            f"Kafka broker unreachable at {client_conf.get('bootstrap.servers')}: {exc.args[0]}"
        ) from None


def existing_partitions(admin: AdminClient, topics: list[str]) -> list[TopicPartition]:
    from confluent_kafka import TopicPartition

    meta = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
    return [
        TopicPartition(topic, p)
        for topic in topics
        if topic in meta.topics and meta.topics[topic].error is None
        for p in sorted(meta.topics[topic].partitions)
    ]


def topic_lag(client_conf: dict[str, str], group: str, topics: list[str]) -> dict[tuple[str, int], LagInfo]:
    """Lag per (topic, partition) of `group` over `topics`; topics that do not exist yet are left out."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException
    from confluent_kafka.admin import OffsetSpec

    try:
        admin = admin_client(client_conf)
        partitions = existing_partitions(admin, topics)
    except KafkaException as exc:
        raise BrokerUnreachable(
            f"Kafka broker unreachable at {client_conf.get('bootstrap.servers')}: {exc.args[0]}"
        ) from None
    if not partitions:
        return {}
    committed_fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, partitions)])
    committed = {
        (tp.topic, tp.partition): tp.offset
        for tp in committed_fut[group].result(timeout=ADMIN_TIMEOUT_S).topic_partitions
    }
    latest = admin.list_offsets({tp: OffsetSpec.latest() for tp in partitions})
    earliest = admin.list_offsets({tp: OffsetSpec.earliest() for tp in partitions})
    result = {}
    for tp in partitions:
        key = (tp.topic, tp.partition)
        high = latest[tp].result(timeout=ADMIN_TIMEOUT_S).offset
        low = earliest[tp].result(timeout=ADMIN_TIMEOUT_S).offset
        offset = committed.get(key)
        result[key] = LagInfo(tp.topic, tp.partition, offset if offset is not None and offset >= 0 else None,
                              low, high)
    return result


class KafkaResource(ConfigurableResource):
    """Connection settings for the Kafka cluster (local tansu broker or a real cluster in prod)."""

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = Field(default=None, repr=False)
    consumer_group: str = "corisync-raw-cdc"
    session_timeout_ms: int = 6000

    def client_conf(self) -> dict[str, str]:
        return client_conf(self.bootstrap_servers, self.security_protocol, self.sasl_mechanism,
                           self.sasl_username, self.sasl_password)

    def consumer(self, **overrides: str) -> Consumer:
        from confluent_kafka import Consumer

        return Consumer(
            {
                **self.client_conf(),
                "group.id": self.consumer_group,
                "enable.auto.commit": "false",
                "enable.auto.offset.store": "false",
                "auto.offset.reset": "earliest",
                "session.timeout.ms": str(self.session_timeout_ms),
                "heartbeat.interval.ms": str(max(self.session_timeout_ms // 6, 500)),
                "fetch.min.bytes": "1",
                "queued.max.messages.kbytes": "262144",
                "enable.partition.eof": "true",
                **overrides,
            }
        )

    def producer(self, **overrides: str) -> Producer:
        # One record per batch: the local tansu broker reports the high watermark as the last batch's base
        # offset + 1, so bigger batches would make lag look smaller than it is. Harmless on real Kafka.
        from confluent_kafka import Producer

        return Producer({**self.client_conf(), "batch.num.messages": "1", "linger.ms": "0", **overrides})

    def check_reachable(self) -> None:
        check_reachable(self.client_conf())

    def lag(self, topics: list[str], group: str | None = None) -> dict[tuple[str, int], LagInfo]:
        """Lag of ``group`` (default: the raw CDC group) on ``topics``."""
        return topic_lag(self.client_conf(), group or self.consumer_group, topics)

    def commit(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        """Commit ``(topic, partition) -> next offset to read`` for ``group``, synchronously, without joining
        the group (the committer reads nothing)."""
        from confluent_kafka import TopicPartition

        if not offsets:
            return
        consumer = self.consumer(**{"group.id": group})
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())],
                            asynchronous=False)
        finally:
            consumer.close()
