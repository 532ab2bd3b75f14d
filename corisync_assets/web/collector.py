"""The web event collector: ``POST /v1/batch`` from the tc4a web platform -> Kafka ``web.events``.

Segment-like API: body ``{"batch": [event, ...]}``, write key as HTTP Basic username or ``Bearer`` token
(``hmac.compare_digest``; a key never reaches a log line or an error message). Each event is checked against
the contract (``corisync_assets.web.contract``) and gets ``received_at``; valid ones are produced to
``web.events`` keyed by ``anonymous_id``, each invalid one to ``web.events.dlq`` (``error``, ``raw``,
``raw_truncated``, ``source``, ``received_at``) and reported by index in the response
``{"accepted": n, "rejected": [{"index": i, "error": "..."}]}``. A body that is not JSON or has no
``batch`` list is a 400 (its first 64 KiB go to the DLQ); over ``max_body_bytes`` (counted while reading,
not trusted from Content-Length) a 413; no or a wrong key a 401; over the key's token bucket (events/s,
burst 2 s worth) a 429 with Retry-After. CORS admits only the configured origins. ``GET /health`` -> 200.

Nothing accepted is lost: the response is 200 only once every message of the batch (DLQ ones included) has
a successful delivery report (``acks=all``, idempotent producer). A broker that stays down longer than
``message_timeout_ms`` (librdkafka retries until then) gives a 503 with Retry-After and no ``accepted``
count; the client re-sends the batch. The double: messages of a 503'd batch that did reach Kafka are
written again by the retry, so ``event_id`` (not the offset) is the identity downstream, which deduplicates.

Producer and the local broker (tansu 0.6.0, memory only): one record per batch there (``batch.num.messages=1``,
``linger.ms=0``, see corisync_assets/local/broker.py), so local throughput is the broker's per-request rate:
measured ~2,300 events/s on this 2-core machine (tansu at ~70% of a core; p99 of a 100-event batch ~0.7 s
with 8 clients). Against real Kafka (``CORISYNC_ENV=prod``), or locally with ``--batched`` for measuring the
collector itself, records are batched (``linger.ms=5``): measured 16,000-26,000 events/s, p99 50-85 ms
(8 clients, batches of 100, collector ~27 us of CPU per event). Idempotence is on in both: tested, tansu
0.6.0 answers InitProducerId and the idempotent producer delivers in order. But a restarted tansu has
forgotten every producer id, and librdkafka's idempotent producer then fails (UNKNOWN_PRODUCER_ID, fatal
or looping) without recovering; so after a failed delivery (or a fatal error) the collector replaces its
producer (a new producer id) and re-ensures its topics, and ``corisync stack up`` restarts the collector
whenever it restarts the broker. Topics are created at startup if missing (``web.events`` 3 partitions,
the DLQ 1) and never auto-created by a produce (``allow.auto.create.topics=false``); a broker that was down
at startup gets them before the first produce.

confluent-kafka is not asyncio: one poll thread serves delivery reports and resolves one asyncio future per
batch with ``loop.call_soon_threadsafe``. Run: ``python -m corisync_assets.web.collector`` (uvicorn on
``settings().collector_host:collector_port``); ``start_in_thread`` and ``spawn_collector`` start one for
tests and benchmarks.
"""

import argparse
import asyncio
import base64
import binascii
import contextlib
import gc
import hmac
import logging
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from corisync_assets.environment import ConfigError, Settings
from corisync_assets.served import ServedApp, serve_in_thread
from corisync_assets.web.contract import ContractError, encode_event, format_timestamp

log = logging.getLogger("corisync_assets.web.collector")  # not __main__ under python -m

WRITE_KEYS_VAR = "CORISYNC_COLLECTOR_WRITE_KEYS"
ORIGINS_VAR = "CORISYNC_COLLECTOR_ALLOWED_ORIGINS"
RATE_VAR = "CORISYNC_COLLECTOR_RATE_LIMIT"
BODY_VAR = "CORISYNC_COLLECTOR_MAX_BODY_BYTES"
MIN_KEY_LENGTH = 16
DLQ_MAX_RAW_BYTES = 64 * 1024
BURST_SECONDS = 2.0
_SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ORIGIN = re.compile(r"https?://[^/\s,]+")


# --- configuration -----------------------------------------------------------------------------------------


def parse_write_keys(text: str | None) -> dict[str, str]:
    """``"source=key,source2=key2"`` -> {source: key}; ConfigError naming the variable (never a key)."""
    if not text or not text.strip():
        raise ConfigError(f"{WRITE_KEYS_VAR} is not set: the collector needs at least one source=key")
    keys: dict[str, str] = {}
    for n, entry in enumerate(text.split(","), start=1):
        source, sep, key = entry.strip().partition("=")
        source, key = source.strip(), key.strip()
        if not sep or not source or not key:
            raise ConfigError(f"{WRITE_KEYS_VAR}: entry {n} is not source=key")
        if not _SOURCE.fullmatch(source):
            raise ConfigError(f"{WRITE_KEYS_VAR}: entry {n}: a source name is 1-64 of A-Z a-z 0-9 . _ -")
        if source in keys:
            raise ConfigError(f"{WRITE_KEYS_VAR}: source {source!r} appears twice")
        if len(key) < MIN_KEY_LENGTH or any(c.isspace() for c in key):
            raise ConfigError(f"{WRITE_KEYS_VAR}: the key of source {source!r} must be at least "
                              f"{MIN_KEY_LENGTH} characters without spaces")
        if key in keys.values():
            raise ConfigError(f"{WRITE_KEYS_VAR}: the key of source {source!r} is also another source's key")
        keys[source] = key
    return keys


def parse_origins(text: str | None) -> tuple[str, ...]:
    """Comma-separated origins (``scheme://host[:port]``, or ``*``)."""
    origins = tuple(o.strip().rstrip("/") for o in (text or "").split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise ConfigError(f"{ORIGINS_VAR}: {origin[:100]!r} is not an origin like https://tc4a.example")
    return origins


@dataclass(frozen=True)
class CollectorConfig:
    """Everything the collector needs; ``from_settings`` builds it from the environment."""

    write_keys: Mapping[str, str] = field(repr=False)  # source -> key (secret)
    kafka_conf: Mapping[str, Any] = field(repr=False)  # librdkafka client settings (may hold a SASL password)
    topic: str = "web.events"
    dlq_topic: str = "web.events.dlq"
    allowed_origins: tuple[str, ...] = ()
    rate_limit: float = 5000.0  # events/s per write key
    max_body_bytes: int = 512 * 1024
    host: str = "127.0.0.1"
    port: int = 28080
    message_timeout_ms: int = 10_000  # librdkafka retries a message this long, then the batch is a 503
    idempotence: bool = True
    one_record_per_batch: bool = True  # the local tansu broker needs it (module docstring)
    create_topics: bool = True
    topic_partitions: int = 3
    dlq_partitions: int = 1
    retry_after_s: int = 5  # Retry-After of a 503

    def __post_init__(self) -> None:
        if not self.write_keys:
            raise ConfigError(f"{WRITE_KEYS_VAR} is not set: the collector needs at least one source=key")
        parse_write_keys(",".join(f"{s}={k}" for s, k in self.write_keys.items()))
        for origin in self.allowed_origins:
            parse_origins(origin)
        if not (self.rate_limit > 0 and math.isfinite(self.rate_limit)):
            raise ConfigError(f"{RATE_VAR} must be a positive number of events per second")
        if not 1024 <= self.max_body_bytes <= 64 * 1024 * 1024:
            raise ConfigError(f"{BODY_VAR} must be between 1024 and 67108864 bytes")
        if self.message_timeout_ms < 1000:
            raise ConfigError("collector message_timeout_ms must be at least 1000")
        if not self.topic or not self.dlq_topic or self.topic == self.dlq_topic:
            raise ConfigError("CORISYNC_WEB_TOPIC: the collector needs a topic and a different DLQ topic")

    @property
    def burst(self) -> float:
        return self.rate_limit * BURST_SECONDS

    @classmethod
    def from_settings(cls, s: Settings, **overrides: Any) -> "CollectorConfig":
        """From ``Settings``; ConfigError naming the variable on bad or missing values."""
        values: dict[str, Any] = {
            "write_keys": parse_write_keys(s.collector_write_keys),
            "kafka_conf": s.kafka_client_config(),
            "topic": s.web_topic,
            "dlq_topic": s.web_dlq_topic,
            "allowed_origins": parse_origins(s.collector_allowed_origins),
            "rate_limit": s.collector_rate_limit,
            "max_body_bytes": s.collector_max_body_bytes,
            "host": s.collector_host,
            "port": s.collector_port,
            "one_record_per_batch": s.mode == "local",
        }
        values.update(overrides)
        return cls(**values)

    def producer_conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            **self.kafka_conf,
            "acks": "all",
            "enable.idempotence": self.idempotence,
            "message.timeout.ms": self.message_timeout_ms,
            "socket.nagle.disable": True,
            "client.id": "corisync-web-collector",
        }
        if self.create_topics:  # ours, with their partition counts: never auto-created by a produce
            conf["allow.auto.create.topics"] = False
        if self.one_record_per_batch:
            conf.update({"batch.num.messages": 1, "linger.ms": 0})
        else:
            conf.update({"linger.ms": 5})
        if not self.idempotence:
            conf["max.in.flight.requests.per.connection"] = 1  # keep per-key order without idempotence
        return conf


# --- Kafka --------------------------------------------------------------------------------------------------


def ensure_topics(kafka_conf: Mapping[str, Any], topics: Mapping[str, int], timeout: float = 10.0) -> list[str]:
    """Create the missing topics of {name: partitions}; returns the ones created. Raises KafkaException if
    no broker answers; a topic that exists with another partition count is only logged."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({**kafka_conf, "socket.timeout.ms": 5000})
    meta = admin.list_topics(timeout=timeout)
    for name, partitions in topics.items():
        existing = meta.topics.get(name)
        if existing is not None and existing.error is None and len(existing.partitions) != partitions:
            log.warning("topic %r exists with %d partitions, not %d", name, len(existing.partitions), partitions)
    missing = [NewTopic(name, num_partitions=p, replication_factor=-1)
               for name, p in topics.items() if name not in meta.topics or meta.topics[name].error is not None]
    created = []
    if missing:
        for name, fut in admin.create_topics(missing, operation_timeout=timeout, request_timeout=timeout).items():
            try:
                fut.result(timeout=timeout + 5)
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    return created


class _Delivery:
    """Delivery reports of one batch; resolves its future (None, or the first error) once all are in."""

    __slots__ = ("error", "future", "lock", "loop", "pending")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int):
        self.loop = loop
        self.future: asyncio.Future = loop.create_future()
        self.pending = count + 1  # +1 until every message was handed to the producer (``seal``)
        self.error: str | None = None
        self.lock = threading.Lock()

    def report(self, err, _msg) -> None:  # producer callback, in the poll thread
        self._done(1, None if err is None else err.str())

    def abandon(self, count: int, reason: str) -> None:  # messages that never reached the producer
        self._done(count, reason)

    def seal(self) -> None:
        self._done(1, None)

    def _done(self, count: int, error: str | None) -> None:
        with self.lock:
            if error is not None and self.error is None:
                self.error = error
            self.pending -= count
            finished = self.pending == 0
        if finished:
            with contextlib.suppress(RuntimeError):  # the loop closed at shutdown: nobody waits any more
                self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(self.error)


class KafkaSender:
    """A confluent-kafka producer with a poll thread; ``send`` awaits the delivery reports of one batch.

    A producer that failed a delivery (or hit a fatal error) is replaced by a fresh one at the next batch,
    at most once per message timeout: see the module docstring (a restarted tansu forgets producer ids)."""

    def __init__(self, conf: Mapping[str, Any], producer: Any = None, message_timeout_s: float = 10.0):
        self._conf = dict(conf)
        self._producer = producer
        self._replaceable = producer is None
        self._timeout_s = message_timeout_s
        self._pollers: list[_Poller] = []
        self._suspect = False
        self._replaced_at = 0.0

    def _new_producer(self):
        from confluent_kafka import Producer

        return Producer({**self._conf, "error_cb": self._on_error})

    def _on_error(self, err) -> None:  # poll thread
        if err.fatal():
            log.error("producer fatal error: %r; it will be replaced", err.str())
            self._suspect = True

    def start(self) -> None:
        if self._producer is None:
            self._producer = self._new_producer()
        self._replaced_at = time.monotonic()
        self._start_poller(self._producer)

    def _start_poller(self, producer) -> None:
        self._pollers.append(_Poller(producer))

    def _maybe_replace(self) -> None:
        if not (self._suspect and self._replaceable):
            return
        if time.monotonic() - self._replaced_at < self._timeout_s:
            return
        old = self._producer
        self._producer = self._new_producer()
        self._suspect = False
        self._replaced_at = time.monotonic()
        self._start_poller(self._producer)
        log.warning("replaced the Kafka producer after failed deliveries")
        with contextlib.suppress(Exception):
            old.purge(True, True, False)  # their batches fail now (503) instead of at the timeout
        for poller in self._pollers:
            if poller.producer is old:
                poller.stop(grace=5.0)
        self._pollers = [p for p in self._pollers if p.producer is not old or p.thread.is_alive()]

    async def send(self, records: list[tuple[str, bytes | None, bytes]]) -> str | None:
        """Produce ``(topic, key, value)`` records; None once all are acknowledged, else the first error."""
        loop = asyncio.get_running_loop()
        self._maybe_replace()
        producer = self._producer
        delivery = _Delivery(loop, len(records))
        produce, report = producer.produce, delivery.report
        deadline = time.monotonic() + self._timeout_s
        i, n = 0, len(records)
        while i < n:
            topic, key, value = records[i]
            try:
                produce(topic, value, key, on_delivery=report)
                i += 1
            except BufferError:  # local queue full: wait for the broker to catch up, within the timeout
                if time.monotonic() > deadline:
                    delivery.abandon(n - i, "local producer queue full")
                    break
                await asyncio.sleep(0.005)
            except Exception as exc:  # KafkaException: e.g. a fatal producer state
                delivery.abandon(n - i, f"produce failed: {exc}")
                self._suspect = True
                break
        delivery.seal()
        try:
            error = await asyncio.wait_for(delivery.future, timeout=self._timeout_s + 10)
        except TimeoutError:
            error = "no delivery report within the message timeout"
        if error is not None:
            self._suspect = True
        return error

    def close(self, timeout: float = 10.0) -> int:
        """Flush (up to ``timeout``) and stop the poll threads; returns the messages left undelivered."""
        for poller in self._pollers:
            poller.stop(grace=timeout)
        left = 0
        for poller in self._pollers:
            poller.thread.join(timeout + 1)
            left += len(poller.producer)
        self._pollers.clear()
        return left


class _Poller:
    """Serves one producer's delivery reports in a thread; after ``stop`` it drains for up to ``grace`` s."""

    def __init__(self, producer):
        self.producer = producer
        self.stop_at: float | None = None
        self.thread = threading.Thread(target=self._run, name="collector-kafka-poll", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.stop_at is None:
            self.producer.poll(0.05)
        while len(self.producer) > 0 and time.monotonic() < self.stop_at:
            self.producer.poll(0.05)

    def stop(self, grace: float) -> None:
        self.stop_at = time.monotonic() + grace


# --- the app ------------------------------------------------------------------------------------------------


class TokenBucket:
    """Events/s with a burst of ``capacity`` events. A batch bigger than the burst passes on a full bucket."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float):
        self.rate, self.capacity, self.tokens, self.stamp = rate, capacity, capacity, now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self, n: int, now: float) -> float:
        """0 if ``n`` events may pass now, else seconds until they may."""
        self._refill(now)
        need = min(n, self.capacity)
        return 0.0 if self.tokens >= need else (need - self.tokens) / self.rate

    def take(self, n: int, now: float) -> float:
        """Like ``wait_time``, and takes the tokens when it returns 0."""
        wait = self.wait_time(n, now)
        if wait == 0.0:
            self.tokens -= n
        return wait


class _Reject(Exception):
    def __init__(self, status: int, error: str, headers: dict[str, str] | None = None):
        super().__init__(error)
        self.status, self.error, self.headers = status, error, headers or {}


def _json(status: int, body: dict, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


def key_from_authorization(value: str | None) -> str | None:
    """The write key of an ``Authorization`` header: Basic (key as username, Segment style) or Bearer."""
    if not value or len(value) > 1024:
        return None
    scheme, _, credentials = value.strip().partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme == "bearer":
        return credentials or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


def _dlq_value(error: str, raw: Any, source: str, received_at: str) -> bytes:
    """The DLQ record; ``raw`` is kept as JSON when it fits DLQ_MAX_RAW_BYTES, else as truncated text."""
    if isinstance(raw, bytes | bytearray):
        text = bytes(raw[:DLQ_MAX_RAW_BYTES]).decode("utf-8", errors="replace")
        truncated = len(raw) > DLQ_MAX_RAW_BYTES
        return orjson.dumps({"error": error, "raw": text, "raw_truncated": truncated, "source": source,
                             "received_at": received_at})
    value = orjson.dumps({"error": error, "raw": raw, "raw_truncated": False, "source": source,
                          "received_at": received_at})
    if len(value) <= DLQ_MAX_RAW_BYTES + 4096:
        return value
    return _dlq_value(error, orjson.dumps(raw), source, received_at)


class Collector:
    """The request handlers and their state (rate buckets, the Kafka sender)."""

    def __init__(self, config: CollectorConfig, producer: Any = None):
        self.config = config
        self._keys = [(source, key.encode()) for source, key in config.write_keys.items()]
        self._buckets: dict[str, TokenBucket] = {}
        self.sender = KafkaSender(config.producer_conf(), producer, config.message_timeout_ms / 1000)
        self._topics_ready = not config.create_topics
        self._topics_lock = asyncio.Lock()
        self._topics_failed_at = -math.inf

    # -- lifecycle

    @contextlib.asynccontextmanager
    async def lifespan(self, _app):
        self.sender.start()
        await self._ensure_topics(timeout=5.0)
        # everything imported so far (Settings pull in dagster) is permanent: full collections stay short
        gc.collect()
        gc.freeze()
        log.info("collector ready: topic %s, DLQ %s, %d source(s)", self.config.topic, self.config.dlq_topic,
                 len(self._keys))
        try:
            yield
        finally:
            left = await asyncio.to_thread(self.sender.close, self.config.message_timeout_ms / 1000)
            if left:
                log.error("%d messages undelivered at shutdown", left)

    async def _ensure_topics(self, timeout: float = 3.0) -> bool:
        if self._topics_ready:
            return True
        async with self._topics_lock:
            if self._topics_ready:
                return True
            if time.monotonic() - self._topics_failed_at < 2.0:
                return False
            topics = {self.config.topic: self.config.topic_partitions,
                      self.config.dlq_topic: self.config.dlq_partitions}
            try:
                created = await asyncio.to_thread(ensure_topics, self.config.kafka_conf, topics, timeout)
            except Exception as exc:
                self._topics_failed_at = time.monotonic()
                log.warning("could not ensure topics %s: %r", sorted(topics), str(exc).splitlines()[0][:300])
                return False
            if created:
                log.info("created topics %s", created)
            self._topics_ready = True
            return True

    # -- helpers

    def _source(self, request: Request) -> str | None:
        key = key_from_authorization(request.headers.get("authorization"))
        if key is None:
            return None
        candidate = key.encode()
        found = None
        for source, secret in self._keys:  # no early exit: the time does not tell which key matched
            if hmac.compare_digest(candidate, secret):
                found = source
        return found

    def _bucket(self, source: str) -> TokenBucket:
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = TokenBucket(self.config.rate_limit, self.config.burst,
                                                         time.monotonic())
        return bucket

    async def _body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise _Reject(400, "invalid Content-Length")
            if int(declared) > limit:
                raise _Reject(413, f"body over {limit} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _Reject(413, f"body over {limit} bytes")
        return bytes(body)

    @staticmethod
    def _too_many(wait: float) -> _Reject:
        seconds = max(1, math.ceil(wait))
        return _Reject(429, "rate limit exceeded", {"Retry-After": str(seconds)})

    def _unavailable(self) -> Response:
        return _json(503, {"error": "event store unavailable, retry later"},
                     {"Retry-After": str(self.config.retry_after_s)})

    # -- endpoints

    async def health(self, _request: Request) -> Response:
        return _json(200, {"status": "ok"})

    async def batch(self, request: Request) -> Response:
        source = self._source(request)
        if source is None:
            client = request.client.host if request.client else "?"
            log.info("401: no valid write key (client %r)", client)
            return _json(401, {"error": "missing or invalid write key"}, {"WWW-Authenticate": 'Basic realm="corisync"'})
        try:
            bucket = self._bucket(source)
            if (wait := bucket.wait_time(1, time.monotonic())) > 0:  # an exhausted key: do not even read the body
                raise self._too_many(wait)
            body = await self._body(request)
        except _Reject as rej:
            if rej.status == 413:
                log.info("source %s: 413 body over %d bytes", source, self.config.max_body_bytes)
            return _json(rej.status, {"error": rej.error}, rej.headers)
        received = datetime.now(UTC)
        received_at = format_timestamp(received)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return await self._bad_body(source, body, received_at, f"body is not valid JSON: {exc}")
        if not isinstance(doc, dict) or not isinstance(doc.get("batch"), list):
            return await self._bad_body(source, body, received_at,
                                        'body must be a JSON object with a "batch" array of events')
        events = doc["batch"]
        if (wait := bucket.take(len(events), time.monotonic())) > 0:
            log.info("source %s: 429 batch of %d events over the rate limit", source, len(events))
            rej = self._too_many(wait)
            return _json(rej.status, {"error": rej.error}, rej.headers)
        return await self._process(source, events, received_at)

    async def _bad_body(self, source: str, body: bytes, received_at: str, error: str) -> Response:
        log.info("source %s: 400 %r (%d bytes)", source, error, len(body))
        if await self._ensure_topics():
            failed = await self.sender.send([(self.config.dlq_topic, source.encode(),
                                              _dlq_value(error, body, source, received_at))])
            if failed:
                log.warning("source %s: a bad body did not reach the DLQ: %r", source, failed)
        return _json(400, {"error": error})

    async def _process(self, source: str, events: list, received_at: str) -> Response:
        topic, dlq = self.config.topic, self.config.dlq_topic
        source_key = source.encode()
        records: list[tuple[str, bytes | None, bytes]] = []
        rejected: list[dict[str, Any]] = []
        append = records.append
        for i, raw in enumerate(events):
            try:
                key, value = encode_event(raw, source, received_at)
            except ContractError as exc:
                rejected.append({"index": i, "error": exc.reason})
                append((dlq, source_key, _dlq_value(exc.reason, raw, source, received_at)))
                continue
            append((topic, key, value))
        accepted = len(events) - len(rejected)
        if rejected:
            log.info("source %s: %d of %d events rejected; first: index %d: %r", source, len(rejected),
                     len(events), rejected[0]["index"], rejected[0]["error"])
        if records:
            if not await self._ensure_topics():
                return self._unavailable()
            error = await self.sender.send(records)
            if error is not None:
                log.warning("source %s: 503, batch of %d events not acknowledged: %r", source, len(events), error)
                self._topics_ready = not self.config.create_topics  # a restarted broker may have lost them
                return self._unavailable()
        return _json(200, {"accepted": accepted, "rejected": rejected})


def create_app(config: CollectorConfig, producer: Any = None) -> Starlette:
    """The ASGI app. ``producer``: a confluent-kafka-like Producer to use instead of one from ``config``."""
    collector = Collector(config, producer)
    app = Starlette(
        routes=[Route("/v1/batch", collector.batch, methods=["POST"]),
                Route("/health", collector.health, methods=["GET", "HEAD"])],
        middleware=[Middleware(CORSMiddleware, allow_origins=list(config.allowed_origins),
                               allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"],
                               max_age=600)],
        lifespan=collector.lifespan,
    )
    app.state.collector = collector
    return app


# --- running it ---------------------------------------------------------------------------------------------


def serve(config: CollectorConfig, log_level: str = "info") -> None:
    """Serve until SIGTERM/SIGINT (uvicorn; in-flight batches finish, the producer is flushed)."""
    from corisync_assets.served import serve as serve_app

    serve_app(create_app(config), config.host, config.port, log_level, timeout_keep_alive=15)


#: a collector served by uvicorn in a thread of this process (``start_in_thread``)
RunningCollector = ServedApp


def start_in_thread(config: CollectorConfig, *, producer: Any = None, port: int | None = None,
                    timeout: float = 30.0) -> RunningCollector:
    """Serve ``config`` in a daemon thread (port 0: any free port); returns once it answers."""
    return serve_in_thread(create_app(config, producer), config.host, config.port if port is None else port,
                           name="collector", timeout=timeout, timeout_keep_alive=15)


def health_ok(url: str, timeout: float = 2.0) -> bool:
    import httpx

    try:
        return httpx.get(url.rstrip("/") + "/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def spawn_collector(*, port: int, host: str = "127.0.0.1", env: Mapping[str, str] | None = None,
                    log_path: Path | None = None, batched: bool = False, timeout: float = 60.0) -> subprocess.Popen:
    """``python -m corisync_assets.web.collector`` in a child process (config from ``env``, default this
    process's environment), returned once ``/health`` answers. Stop it with ``terminate()`` + ``wait()``.
    ``batched``: ``--batched`` (multi-record producer batches even locally; see ``main``)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    argv = [sys.executable, "-m", "corisync_assets.web.collector", "--host", host, "--port", str(port)]
    try:
        proc = subprocess.Popen([*argv, *(["--batched"] if batched else [])],
                                env=dict(env if env is not None else os.environ), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        if log_path:
            out.close()
    deadline = time.monotonic() + timeout
    while not health_ok(f"http://{host}:{port}", 1.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"collector on {host}:{port} did not come up (exit {proc.returncode})")
        time.sleep(0.1)
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corisync_assets.web.collector",
                                     description="the web event collector (POST /v1/batch -> Kafka)")
    parser.add_argument("--host", help="listen address (default CORISYNC_COLLECTOR_HOST)")
    parser.add_argument("--port", type=int, help="port (default CORISYNC_COLLECTOR_PORT)")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--batched", action="store_true",
                        help="produce multi-record batches (linger.ms=5) even to the local broker, as against "
                             "real Kafka: for measuring the collector itself; tansu then under-reports high "
                             "watermarks (corisync_assets/local/broker.py), so readers may lag one batch")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from corisync_assets.environment import settings

    try:
        overrides: dict[str, Any] = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        if args.batched:
            overrides["one_record_per_batch"] = False
        config = CollectorConfig.from_settings(settings(), **overrides)
    except ConfigError as exc:
        print(f"corisync collector: {exc}", file=sys.stderr)
        return 1
    serve(config, args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
