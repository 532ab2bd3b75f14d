"""The web event collector against the real local broker (tansu): what reaches ``web.events`` and the DLQ,
and every way a request is refused. Each test uses its own topics (``CollectorConfig.topic``).

The app runs in-process (Starlette's TestClient, which also runs its lifespan) or under uvicorn in a
thread (``start_in_thread``); Kafka is read back with a plain confluent-kafka consumer.
"""

import base64
import json
import logging
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from corisync_assets.environment import ConfigError, Settings
from corisync_assets.web.collector import CollectorConfig, create_app, parse_write_keys, start_in_thread

with warnings.catch_warnings():  # Starlette would like httpx2 for its TestClient; httpx works
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

KEY_A = secrets.token_urlsafe(24)
KEY_B = secrets.token_urlsafe(24)
ORIGIN = "https://app.tc4a.example"
TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def config_for(s: Settings, **overrides) -> CollectorConfig:
    tag = uuid.uuid4().hex[:10]
    values = {"write_keys": {"tc4a-web": KEY_A, "partner": KEY_B}, "kafka_conf": s.kafka_client_config(),
              "topic": f"web.test.{tag}", "dlq_topic": f"web.test.{tag}.dlq", "allowed_origins": (ORIGIN,)}
    values.update(overrides)
    return CollectorConfig(**values)


@contextmanager
def client_for(config: CollectorConfig):
    with TestClient(create_app(config), base_url="http://collector.test") as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def event(**changes) -> dict:
    ev = {"event_id": str(uuid.uuid4()), "event_type": "page_view", "schema_version": 1,
          "anonymous_id": f"anon-{uuid.uuid4().hex[:8]}", "occurred_at": "2026-11-27T09:15:30.5+01:00",
          "page_url": "https://tc4a.example/courses", "page_path": "/courses"}
    ev.update(changes)
    return ev


def read_topic(conf: dict, topic: str, timeout: float = 30.0) -> list[tuple[int, bytes | None, bytes]]:
    """Every message of ``topic`` from the beginning to the end of each partition: (partition, key, value)."""
    consumer = Consumer({**conf, "group.id": f"test-{uuid.uuid4().hex}", "enable.partition.eof": True,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        meta = consumer.list_topics(timeout=10)
        if topic not in meta.topics:
            return []
        partitions = sorted(meta.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out, at_end = [], set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, f"{topic}: no end of partitions after {timeout}s"
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                at_end.add(msg.partition())
                continue
            out.append((msg.partition(), msg.key(), msg.value()))
        return out
    finally:
        consumer.close()


def partition_count(conf: dict, topic: str) -> int:
    meta = AdminClient(conf).list_topics(timeout=10)
    return len(meta.topics[topic].partitions) if topic in meta.topics else 0


def utc_text(occurred_at: str) -> str:
    return datetime.fromisoformat(occurred_at).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextmanager
def collector_logs():
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logger = logging.getLogger("corisync_assets.web.collector")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- with the broker -----------------------------------------------------------------------------------------


@pytest.mark.stack
def test_valid_batch_reaches_the_topic_exactly_once(stack):
    config = config_for(stack)
    events = [event(anonymous_id=f"anon-{i % 4}", user_id=100 + i if i % 2 else None, course_id=7,
                    occurred_at=["2026-11-27T09:15:30.5+01:00", "2026-11-27T08:15:30Z",
                                 "2026-11-27T03:15:30.123456-05:00"][i % 3],
                    properties={"i": i}) for i in range(12)]
    before = datetime.now(UTC)
    with client_for(config) as client:
        resp = client.post("/v1/batch", json={"batch": events, "sentAt": "ignored"}, headers=bearer(KEY_A))
    after = datetime.now(UTC)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"accepted": 12, "rejected": []}
    assert partition_count(config.kafka_conf, config.topic) == 3
    assert partition_count(config.kafka_conf, config.dlq_topic) == 1

    messages = read_topic(config.kafka_conf, config.topic)
    assert len(messages) == 12
    by_id = {json.loads(v)["event_id"]: (p, k, json.loads(v)) for p, k, v in messages}
    assert set(by_id) == {e["event_id"] for e in events}  # each exactly once
    partitions_of_key: dict[bytes, set[int]] = {}
    for sent in events:
        partition, key, value = by_id[sent["event_id"]]
        assert key == sent["anonymous_id"].encode()
        partitions_of_key.setdefault(key, set()).add(partition)
        received = value.pop("received_at")
        assert TS.fullmatch(received)
        assert before.replace(tzinfo=None) <= datetime.strptime(received, "%Y-%m-%dT%H:%M:%S.%fZ") \
            <= after.replace(tzinfo=None)
        assert value == {"event_id": sent["event_id"], "event_type": "page_view", "schema_version": 1,
                         "anonymous_id": sent["anonymous_id"], "user_id": sent["user_id"], "session_id": None,
                         "occurred_at": utc_text(sent["occurred_at"]), "page_url": sent["page_url"],
                         "page_path": "/courses", "referrer": None, "user_agent": None, "course_id": 7,
                         "properties": sent["properties"], "source": "tc4a-web"}
    assert all(len(parts) == 1 for parts in partitions_of_key.values())  # a key stays on its partition
    assert read_topic(config.kafka_conf, config.dlq_topic) == []


@pytest.mark.stack
def test_each_invalid_event_gets_its_error_and_lands_in_the_dlq(stack):
    config = config_for(stack)
    good = [event(), event(), event()]
    missing = event()
    del missing["page_path"]
    batch = [good[0], missing, event(user_id="42"), event(schema_version=2), event(event_type="add_to_cart"),
             good[1], event(properties={"blob": "x" * 40000}), "not an event", good[2]]
    with client_for(config) as client:
        resp = client.post("/v1/batch", json={"batch": batch}, headers=basic(KEY_B))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["accepted"] == 3
    errors = {r["index"]: r["error"] for r in body["rejected"]}
    assert sorted(errors) == [1, 2, 3, 4, 6, 7]
    assert errors[1] == "missing required field 'page_path'"
    assert errors[2].startswith("user_id:")
    assert errors[3] == "unknown schema_version 2"
    assert errors[4].startswith("event_type: unknown event type")
    assert "32768-byte limit" in errors[6]
    assert errors[7] == "event must be a JSON object, not a string"

    produced = [json.loads(v) for _, _, v in read_topic(config.kafka_conf, config.topic)]
    assert sorted(v["event_id"] for v in produced) == sorted(e["event_id"] for e in good)
    assert all(v["source"] == "partner" for v in produced)
    dead = [json.loads(v) for _, _, v in read_topic(config.kafka_conf, config.dlq_topic)]
    assert sorted(d["error"] for d in dead) == sorted(errors.values())
    for d in dead:
        assert d["source"] == "partner" and TS.fullmatch(d["received_at"])
        index = next(i for i, e in errors.items() if e == d["error"])
        assert d["raw"] == batch[index] and d["raw_truncated"] is False


@pytest.mark.stack
def test_malformed_body_is_a_400_and_goes_to_the_dlq(stack):
    config = config_for(stack)
    garbage = b'{"batch": [ {"event_id": ' + b"x" * 100_000
    with client_for(config) as client:
        not_json = client.post("/v1/batch", content=b"{nope", headers=bearer(KEY_A))
        no_batch = client.post("/v1/batch", json={"events": [event()]}, headers=bearer(KEY_A))
        a_list = client.post("/v1/batch", json=[event()], headers=bearer(KEY_A))
        batch_not_list = client.post("/v1/batch", json={"batch": event()}, headers=bearer(KEY_A))
        big = client.post("/v1/batch", content=garbage, headers=bearer(KEY_A))
    for resp in (not_json, no_batch, a_list, batch_not_list, big):
        assert resp.status_code == 400, resp.text
    assert not_json.json()["error"].startswith("body is not valid JSON")
    assert no_batch.json()["error"] == 'body must be a JSON object with a "batch" array of events'
    assert read_topic(config.kafka_conf, config.topic) == []
    dead = [json.loads(v) for _, _, v in read_topic(config.kafka_conf, config.dlq_topic)]
    assert len(dead) == 5
    assert dead[0]["raw"] == "{nope" and dead[0]["raw_truncated"] is False
    assert dead[0]["error"] == not_json.json()["error"] and dead[0]["source"] == "tc4a-web"
    assert json.loads(dead[1]["raw"]) == {"events": [json.loads(no_batch.request.content)["events"][0]]}
    assert dead[4]["raw_truncated"] is True and len(dead[4]["raw"]) == 64 * 1024
    assert garbage.decode().startswith(dead[4]["raw"])


@pytest.mark.stack
def test_oversized_body_is_a_413_counted_while_reading(stack):
    config = config_for(stack, max_body_bytes=4096)
    body = json.dumps({"batch": [event(properties={"pad": "x" * 5000})]}).encode()

    def chunks():  # no Content-Length: the limit must hold on the stream itself
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    small = json.dumps({"batch": [event()]}).encode()
    with client_for(config) as client:
        declared = client.post("/v1/batch", content=body, headers=bearer(KEY_A))
        streamed = client.post("/v1/batch", content=chunks(), headers=bearer(KEY_A))
        fits = client.post("/v1/batch", content=small, headers=bearer(KEY_A))
    assert "content-length" not in {k.lower() for k in streamed.request.headers}
    assert declared.status_code == 413 and streamed.status_code == 413
    assert fits.status_code == 200 and fits.json()["accepted"] == 1
    assert [json.loads(v)["event_id"] for _, _, v in read_topic(config.kafka_conf, config.topic)] == \
        [json.loads(small)["batch"][0]["event_id"]]
    assert read_topic(config.kafka_conf, config.dlq_topic) == []


@pytest.mark.stack
def test_missing_or_wrong_key_is_a_401_and_nothing_is_produced(stack):
    config = config_for(stack)
    payload = {"batch": [event()]}
    with client_for(config) as client:
        responses = [
            client.post("/v1/batch", json=payload),
            client.post("/v1/batch", json=payload, headers=bearer("x" * 32)),
            client.post("/v1/batch", json=payload, headers=basic(KEY_A[:-1])),
            client.post("/v1/batch", json=payload, headers={"Authorization": KEY_A}),
            client.post("/v1/batch", json=payload, headers={"Authorization": "Basic !!notbase64"}),
            client.post("/v1/batch", json=payload, headers={"Authorization": "Bearer "}),
        ]
    assert [r.status_code for r in responses] == [401] * 6
    assert all(KEY_A not in r.text for r in responses)
    assert read_topic(config.kafka_conf, config.topic) == []
    assert read_topic(config.kafka_conf, config.dlq_topic) == []


@pytest.mark.stack
def test_a_flooding_key_gets_429_and_another_key_is_unaffected(stack):
    config = config_for(stack, rate_limit=2.0)  # burst: 4 events; a bigger batch passes on a full bucket only
    with client_for(config) as client:
        first = client.post("/v1/batch", json={"batch": [event() for _ in range(40)]}, headers=bearer(KEY_A))
        flood = [client.post("/v1/batch", json={"batch": [event() for _ in range(10)]}, headers=bearer(KEY_A))
                 for _ in range(3)]
        other = client.post("/v1/batch", json={"batch": [event() for _ in range(4)]}, headers=bearer(KEY_B))
    assert first.status_code == 200 and first.json()["accepted"] == 40
    assert [r.status_code for r in flood] == [429, 429, 429]
    # 40 events took the bucket to 4 - 40 = -36: 18.5 s at 2/s until one event fits again
    assert all(15 <= int(r.headers["Retry-After"]) <= 19 for r in flood), [r.headers["Retry-After"] for r in flood]
    assert other.status_code == 200 and other.json()["accepted"] == 4
    sources = Counter(json.loads(v)["source"] for _, _, v in read_topic(config.kafka_conf, config.topic))
    assert sources == {"tc4a-web": 40, "partner": 4}


@pytest.mark.stack
def test_cors_only_for_the_configured_origin(stack):
    config = config_for(stack)
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    with client_for(config) as client:
        allowed = client.options("/v1/batch", headers={"Origin": ORIGIN, **preflight})
        denied = client.options("/v1/batch", headers={"Origin": "https://evil.example", **preflight})
        post_allowed = client.post("/v1/batch", json={"batch": []}, headers={"Origin": ORIGIN, **bearer(KEY_A)})
        post_denied = client.post("/v1/batch", json={"batch": []},
                                  headers={"Origin": "https://evil.example", **bearer(KEY_A)})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert denied.status_code == 400 and "access-control-allow-origin" not in denied.headers
    assert post_allowed.headers["access-control-allow-origin"] == ORIGIN
    assert post_denied.status_code == 200 and "access-control-allow-origin" not in post_denied.headers


@pytest.mark.stack
def test_a_newline_in_a_field_never_reaches_a_log_line_raw(stack):
    config = config_for(stack)
    payload = {"batch": [event(**{"evil\nFORGED 3": 1}), event(anonymous_id="a\nFORGED 1"),
                         event(event_type="page_view\nFORGED 2"), event(properties={"k\nFORGED 4": "x" * 9000}),
                         event(page_path="x\r\nFORGED 5")]}
    with collector_logs() as records, client_for(config) as client:
        resp = client.post("/v1/batch", json=payload, headers=bearer(KEY_A))
        bad = client.post("/v1/batch", content=b"{\n FORGED 6", headers=bearer(KEY_A))
    assert resp.status_code == 200 and resp.json()["accepted"] == 1  # the newline in anonymous_id is fine data
    assert bad.status_code == 400
    messages = [r.getMessage() for r in records]
    assert any("rejected" in m and "evil" in m for m in messages)  # the unknown field's name is logged escaped
    for m in messages:
        assert "\nFORGED" not in m and "\r" not in m, m
        assert KEY_A not in m


@pytest.mark.stack
def test_concurrent_clients_every_accepted_event_is_in_kafka_once(stack):
    config = config_for(stack, port=0)
    running = start_in_thread(config, port=0)
    sent: list[str] = []
    codes: list[int] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(base_url=running.url, headers=bearer(KEY_A), timeout=60) as http:
            for _ in range(n):
                batch = [event() for _ in range(25)]
                resp = http.post("/v1/batch", json={"batch": batch})
                with lock:
                    codes.append(resp.status_code)
                    if resp.status_code == 200:
                        assert resp.json()["accepted"] == 25
                        sent.extend(e["event_id"] for e in batch)

    try:
        threads = [threading.Thread(target=client, args=(5,)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        running.stop()
    assert codes == [200] * 30
    ids = [json.loads(v)["event_id"] for _, _, v in read_topic(config.kafka_conf, config.topic)]
    assert len(ids) == 750 and sorted(ids) == sorted(sent)


@pytest.mark.stack
def test_health(stack):
    with client_for(config_for(stack)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/v1/batch").status_code == 405


@pytest.mark.stack
@pytest.mark.timeout(180)
def test_the_producer_recovers_after_the_broker_restarts(tmp_path):
    """A restarted tansu has forgotten producer ids: the collector must replace its idempotent producer
    (and recreate its topics with their partition counts) and accept batches again."""
    from corisync_assets.local import broker

    s = Settings(home=tmp_path, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    broker.start(s)
    try:
        config = config_for(s, message_timeout_ms=2000)
        with client_for(config) as client:
            assert client.post("/v1/batch", json={"batch": [event()]}, headers=bearer(KEY_A)).status_code == 200
            broker.stop(s)
            broker.start(s)
            codes, accepted = [], None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                batch = [event() for _ in range(5)]
                resp = client.post("/v1/batch", json={"batch": batch}, headers=bearer(KEY_A))
                codes.append(resp.status_code)
                if resp.status_code == 200:
                    accepted = batch
                    break
                assert resp.status_code == 503 and "accepted" not in resp.json()
                time.sleep(0.5)
        assert accepted is not None, codes
        ids = {json.loads(v)["event_id"] for _, _, v in read_topic(config.kafka_conf, config.topic)}
        assert {e["event_id"] for e in accepted} <= ids
        assert partition_count(config.kafka_conf, config.topic) == 3
    finally:
        broker.stop(s)


# --- without a broker ----------------------------------------------------------------------------------------


def test_broker_down_is_a_503_with_retry_after_and_nothing_accepted():
    closed = free_port()
    for create_topics in (False, True):
        config = CollectorConfig(write_keys={"tc4a-web": KEY_A},
                                 kafka_conf={"bootstrap.servers": f"127.0.0.1:{closed}"},
                                 message_timeout_ms=1500, create_topics=create_topics)
        with client_for(config) as client:
            t0 = time.monotonic()
            resp = client.post("/v1/batch", json={"batch": [event(), event()]}, headers=bearer(KEY_A))
            took = time.monotonic() - t0
        assert resp.status_code == 503, resp.text
        assert int(resp.headers["Retry-After"]) >= 1
        assert "accepted" not in resp.json()
        assert took < 15


def test_config_errors_name_the_variable_and_never_show_a_key():
    secret = "very-secret-key-" + uuid.uuid4().hex
    cases = [None, "", "  ", "tc4a-web", f"tc4a-web={secret},broken", f"tc4a-web={secret},tc4a-web={secret}x",
             "tc4a-web=short", f"bad source={secret}", f"a={secret},b={secret}"]
    for text in cases:
        with pytest.raises(ConfigError) as exc:
            parse_write_keys(text)
        assert "CORISYNC_COLLECTOR_WRITE_KEYS" in str(exc.value)
        assert secret not in str(exc.value) and "short" not in str(exc.value)
    assert parse_write_keys(f" tc4a-web = {secret} , partner={secret}x") == {"tc4a-web": secret,
                                                                            "partner": secret + "x"}
    base = Settings(collector_write_keys=f"tc4a-web={secret}")
    config = CollectorConfig.from_settings(base)
    assert config.topic == "web.events" and config.dlq_topic == "web.events.dlq"
    assert config.one_record_per_batch and config.producer_conf()["batch.num.messages"] == 1
    assert config.producer_conf()["enable.idempotence"] is True and config.producer_conf()["acks"] == "all"
    assert secret not in repr(config)
    for field, value, var in [("collector_allowed_origins", "not an origin", "CORISYNC_COLLECTOR_ALLOWED_ORIGINS"),
                              ("collector_rate_limit", 0, "CORISYNC_COLLECTOR_RATE_LIMIT"),
                              ("collector_max_body_bytes", 10, "CORISYNC_COLLECTOR_MAX_BODY_BYTES")]:
        with pytest.raises(ConfigError, match=var):
            CollectorConfig.from_settings(base.model_copy(update={field: value}))
    prod = CollectorConfig.from_settings(base.model_copy(update={"mode": "prod"}))
    assert not prod.one_record_per_batch and "batch.num.messages" not in prod.producer_conf()


def test_module_refuses_to_start_without_write_keys(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "CORISYNC_HOME": str(tmp_path), "CORISYNC_COLLECTOR_PORT": str(free_port())}
    proc = subprocess.run([sys.executable, "-m", "corisync_assets.web.collector"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "corisync collector: CORISYNC_COLLECTOR_WRITE_KEYS is not set: the collector needs at least one source=key"]


def test_stack_collector_port_taken_is_one_clear_line(tmp_path):
    from corisync_assets.local import stack as local_stack
    from corisync_assets.local.procs import StackError

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        s = Settings(home=tmp_path, collector_port=port)
        with pytest.raises(StackError) as exc:
            local_stack.start_collector(s)
    assert str(exc.value) == f"collector: port {port} on 127.0.0.1 is taken by another process"
    assert not (tmp_path / "run" / "collector.pid").exists()
