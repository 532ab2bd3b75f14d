"""The ``corisync_kafka`` data source: against the stack's real broker (batch ranges, streaming with
Trigger.AvailableNow, errors), and ``read_range``'s stopping rules against a scripted consumer."""

from __future__ import annotations

import json

import pytest

from corisync_assets.web.spark import kafka_source as ks


def read(spark, bootstrap: str, topic: str, offsets: dict | None = None):
    reader = spark.read.format(ks.NAME).option("bootstrap", bootstrap).option("topic", topic)
    if offsets is not None:
        reader = reader.option("offsets", json.dumps(offsets))
    return reader.load()


def produce_grid(broker, topic: str, partitions: int, per_partition: int, start: int = 0) -> None:
    broker.produce(topic, [(p, f"k{p}-{i}", f"v{p}-{i}") for i in range(start, start + per_partition)
                           for p in range(partitions)])


@pytest.mark.stack
def test_batch_read_returns_exactly_the_offset_ranges(spark, broker):
    topic = broker.topic("spark-batch", 3)
    produce_grid(broker, topic, 3, 10)
    df = read(spark, broker.bootstrap, topic, {"0": [2, 7], "1": [0, 10], "2": [5, 5]})
    assert df.schema.simpleString() == (
        "struct<key:string,value:string,topic:string,partition:int,offset:bigint,timestamp:timestamp>")
    got = sorted((r.partition, r.offset, r.key, r.value, r.topic) for r in df.collect())
    assert got == sorted([(0, i, f"k0-{i}", f"v0-{i}", topic) for i in range(2, 7)]
                         + [(1, i, f"k1-{i}", f"v1-{i}", topic) for i in range(10)])
    assert df.filter("timestamp is null").count() == 0
    assert df.rdd.getNumPartitions() == 2  # one input partition per non-empty Kafka range
    # without offsets: every partition from its low to its high watermark
    assert read(spark, broker.bootstrap, topic).count() == 30


@pytest.mark.stack
def test_stream_available_now_reads_everything_once(spark, broker, tmp_path):
    topic = broker.topic("spark-stream", 2)
    produce_grid(broker, topic, 2, 12)
    out, checkpoint = tmp_path / "out", tmp_path / "checkpoint"

    def run(**options) -> list:
        stream = spark.readStream.format(ks.NAME).option("bootstrap", broker.bootstrap).option("topic", topic)
        for key, value in options.items():
            stream = stream.option(key, value)
        query = (stream.load().writeStream.format("parquet").option("path", str(out))
                 .option("checkpointLocation", str(checkpoint)).trigger(availableNow=True).start())
        query.awaitTermination(180)
        assert query.exception() is None
        return [p for p in query.recentProgress if p["numInputRows"]]

    batches = run(maxOffsetsPerTrigger="10")
    assert sum(p["numInputRows"] for p in batches) == 24 and len(batches) == 3  # 10 + 10 + 4
    produce_grid(broker, topic, 2, 3, start=12)
    assert sum(p["numInputRows"] for p in run()) == 6  # the restarted query resumes from its checkpoint
    got = [(r.partition, r.offset, r.value) for r in spark.read.parquet(str(out)).collect()]
    assert sorted(got) == sorted((p, i, f"v{p}-{i}") for p in range(2) for i in range(15))


@pytest.mark.stack
def test_stream_starts_at_given_offsets(spark, broker):
    topic = broker.topic("spark-stream-from", 2)
    produce_grid(broker, topic, 2, 5)
    query = (spark.readStream.format(ks.NAME).option("bootstrap", broker.bootstrap).option("topic", topic)
             .option("startingOffsets", json.dumps({"0": 3, "1": 5})).load()
             .writeStream.format("memory").queryName("from_offsets").trigger(availableNow=True).start())
    query.awaitTermination(180)
    assert sorted((r.partition, r.offset) for r in spark.table("from_offsets").collect()) == [(0, 3), (0, 4)]


@pytest.mark.stack
@pytest.mark.parametrize(("offsets", "message"), [
    ({"0": [-1, 3]}, "partition 0 offsets [-1, 3): start is below the low watermark 0"),
    ({"1": [0, 99]}, "partition 1 offsets [0, 99): end is beyond the high watermark 4"),
    ({"7": [0, 1]}, "partition 7 offsets [0, 1): the topic has no partition 7"),
])
def test_unreadable_ranges_fail_clearly(spark, broker, offsets, message):
    topic = broker.topic("spark-bad-range", 2)
    produce_grid(broker, topic, 2, 4)
    with pytest.raises(Exception, match="corisync_kafka") as raised:
        read(spark, broker.bootstrap, topic, offsets).collect()
    assert f"topic '{topic}' {message}" in str(raised.value)


@pytest.mark.stack
def test_a_missing_topic_fails_clearly(spark, broker):
    with pytest.raises(Exception, match="topic 'no-such-topic-x' does not exist"):
        read(spark, broker.bootstrap, "no-such-topic-x", {"0": [0, 1]}).collect()


# -- read_range's stopping rules, against a scripted consumer ------------------------------------------------

class Msg:
    def __init__(self, offset: int, error=None) -> None:
        self._offset, self._error = offset, error

    def error(self):
        return self._error

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return f"v{self._offset}".encode()

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_795_000_000_000)


class ScriptedConsumer:
    def __init__(self, polls: list[list[Msg]]) -> None:
        self.polls, self.assigned, self.closed = list(polls), None, False

    def assign(self, partitions) -> None:
        self.assigned = [(tp.topic, tp.partition, tp.offset) for tp in partitions]

    def consume(self, num_messages: int, timeout: float) -> list[Msg]:
        return self.polls.pop(0)[:num_messages] if self.polls else []

    def close(self) -> None:
        self.closed = True


def scripted(monkeypatch, polls) -> ScriptedConsumer:
    consumer = ScriptedConsumer(polls)
    monkeypatch.setattr(ks, "_consumer", lambda conf: consumer)
    return consumer


def offsets_read(batches) -> list[int]:
    return [o for b in batches for o in b.column("offset").to_pylist()]


def eof(offset: int) -> Msg:
    from confluent_kafka import KafkaError

    return Msg(offset, KafkaError(KafkaError._PARTITION_EOF))


def test_read_stops_at_the_end_and_at_a_gap_past_it(monkeypatch):
    consumer = scripted(monkeypatch, [[Msg(3), Msg(4)], [Msg(6), Msg(9), Msg(12)]])
    batches = list(ks.read_range({}, ks.KafkaRange("t", 1, 3, 10)))
    assert offsets_read(batches) == [3, 4, 6, 9] and consumer.assigned == [("t", 1, 3)] and consumer.closed
    assert batches[0].schema == ks._arrow_schema()
    scripted(monkeypatch, [[Msg(3), Msg(4), Msg(5)], [Msg(6)]])  # stops at end without another poll
    assert offsets_read(ks.read_range({}, ks.KafkaRange("t", 1, 3, 6))) == [3, 4, 5]
    scripted(monkeypatch, [[Msg(3), eof(10)]])  # offsets 4..9 compacted away: the partition's end
    assert offsets_read(ks.read_range({}, ks.KafkaRange("t", 1, 3, 10))) == [3]


def test_read_fails_instead_of_hanging(monkeypatch):
    from confluent_kafka import KafkaError

    scripted(monkeypatch, [[Msg(3), eof(5)]])
    with pytest.raises(ks.KafkaSourceError, match=r"partition ends at offset 5, before the requested end"):
        list(ks.read_range({}, ks.KafkaRange("t", 0, 3, 10)))
    scripted(monkeypatch, [[Msg(3, KafkaError(KafkaError._AUTO_OFFSET_RESET))]])
    with pytest.raises(ks.KafkaSourceError, match=r"topic 't' partition 0 offsets \[3, 10\) at offset 3"):
        list(ks.read_range({}, ks.KafkaRange("t", 0, 3, 10)))
    scripted(monkeypatch, [[Msg(3)]])
    with pytest.raises(ks.KafkaSourceError, match=r"no progress for 0s at offset 4"):
        list(ks.read_range({}, ks.KafkaRange("t", 0, 3, 10), timeout_s=0.0))


def test_non_utf8_values_become_null(monkeypatch):
    class Bad(Msg):
        def value(self) -> bytes:
            return b"\xff" if self._offset == 1 else b"ok"

    scripted(monkeypatch, [[Bad(0), Bad(1), Bad(2)]])
    [batch] = ks.read_range({}, ks.KafkaRange("t", 0, 0, 3))
    assert batch.column("value").to_pylist() == ["ok", None, "ok"]


def test_client_conf_from_options(monkeypatch):
    monkeypatch.setenv(ks.PASSWORD_ENV, "s3cret")
    conf = ks.client_conf({"bootstrap": "b:9092", "kafka.security.protocol": "SASL_SSL",
                           "kafka.sasl.username": "u", "topic": "t"})
    assert conf == {"bootstrap.servers": "b:9092", "security.protocol": "SASL_SSL", "sasl.username": "u",
                    "sasl.password": "s3cret"}
    with pytest.raises(ks.KafkaSourceError, match="'bootstrap'"):
        ks.client_conf({"topic": "t"})
    assert ks.parse_offsets('{"0": [1, 5], "2": [0, 0]}') == {0: (1, 5), 2: (0, 0)}
    with pytest.raises(ks.KafkaSourceError, match="offsets"):
        ks.parse_offsets('{"0": 5}')
