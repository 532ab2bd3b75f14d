"""Web analytics throughput, measured in one run against the physical limit.

1. Puts N web events (default 1,000,000; the collector's Kafka value format, ~20 events per visitor spread
   over three days, 1% exact duplicates) on a fresh 3-partition topic of a private tansu broker.
2. Measures (a) raw consume: confluent-kafka reading every partition start to end, doing nothing else, and
   (b) the Spark asset end to end, as a Dagster run does it (``spark-submit`` through Pipes on local[2]:
   read, validate, dedupe, sessionize, daily pages, Parquet to the lake, partitions into DuckDB, offsets
   committed), and prints both rates and their ratio (target >= 0.35).
3. Measures the collector (served by uvicorn in its own process against the same broker): events accepted
   per second with ``--clients`` (8) concurrent clients posting batches of 100, and the p99 batch latency
   (targets >= 10,000 events/s, p99 <= 100 ms).

Produced in large batches with a final single-record batch per partition, so tansu's high watermark (last
batch's base offset + 1) is exact for this topic.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench.cdc_landing import free_port, start_tansu

PARTITIONS = 3
PATHS = ["/", "/courses", "/search", "/about", *[f"/courses/{c}" for c in range(1, 41)]]


def event_values(n: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs of n events in the collector's Kafka value format."""
    import random

    rng = random.Random(seed)
    start = datetime(2026, 11, 20, tzinfo=UTC)
    out: list[tuple[bytes, bytes]] = []
    visitors = max(1, n // 20)
    received = datetime(2026, 11, 23, 12, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    while len(out) < n:
        anon = f"anon-{rng.randrange(visitors)}"
        at = start + timedelta(seconds=rng.randrange(3 * 86400))
        for _ in range(min(rng.randint(3, 12), n - len(out))):
            at += timedelta(seconds=rng.choice([5, 30, 90, 600, 2400]))
            path = rng.choice(PATHS)
            course = int(path.rsplit("/", 1)[1]) if path.startswith("/courses/") else None
            value = {"event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                     "event_type": "course_page_view" if course else "page_view", "schema_version": 1,
                     "anonymous_id": anon, "user_id": None, "session_id": None,
                     "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "received_at": received,
                     "page_url": "https://tc4a.example" + path, "page_path": path, "referrer": None,
                     "user_agent": "Mozilla/5.0 (bench)", "course_id": course, "properties": {},
                     "source": "bench"}
            out.append((anon.encode(), orjson.dumps(value)))
            if rng.random() < 0.01 and len(out) < n:
                out.append(out[-1])  # an exact duplicate
    return out[:n]


def produce(bootstrap: str, topic: str, n: int) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the future resolves
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    messages = event_values(n)
    bulk = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10000,
                     "batch.size": 8_000_000, "queue.buffering.max.messages": 1_000_000})
    body, tail = messages[:-PARTITIONS], messages[-PARTITIONS:]
    for i, (key, value) in enumerate(body):
        while True:
            try:
                bulk.produce(topic, key=key, value=value, partition=i % PARTITIONS)
                break
            except BufferError:
                bulk.poll(0.05)
    bulk.flush(300)
    last = Producer({"bootstrap.servers": bootstrap, "batch.num.messages": 1, "linger.ms": 0})
    for p, (key, value) in enumerate(tail):  # one single-record batch per partition ends it
        last.produce(topic, key=key, value=value, partition=p)
        last.flush(30)
    return len(messages)


def raw_consume(bootstrap: str, topic: str) -> tuple[int, float]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex}", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    tps = [TopicPartition(topic, p, 0) for p in range(PARTITIONS)]
    ends = {tp.partition: c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
    c.assign(tps)
    n, done, t0 = 0, set(), time.perf_counter()
    while len(done) < PARTITIONS:
        for m in c.consume(10_000, 1.0):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    done.add(m.partition())
                continue
            n += 1
            if m.offset() >= ends[m.partition()] - 1:
                done.add(m.partition())
    elapsed = time.perf_counter() - t0
    c.close()
    return n, elapsed


def spark_asset(bootstrap: str, topic: str, tmp: str, java_options: str | None) -> tuple[float, dict]:
    import dagster as dg

    from corisync_assets.resources.kafka import KafkaResource
    from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
    from corisync_assets.web.assets import WebPipeline, build_web_assets, web_asset_key

    web = WebPipeline(topic=topic, consumer_group=f"bench-{uuid.uuid4().hex}", lake_uri=os.path.join(tmp, "lake"),
                      spark_master="local[2]", driver_memory="4g",
                      **({} if java_options is None else {"driver_java_options": java_options}))
    resources = {"kafka": KafkaResource(bootstrap_servers=bootstrap),
                 "warehouse": DuckDBWarehouse(path=os.path.join(tmp, "w.duckdb")), "web": web}
    t0 = time.perf_counter()
    result = dg.materialize([build_web_assets(topic)], resources=resources,
                            instance=dg.DagsterInstance.ephemeral())
    elapsed = time.perf_counter() - t0
    meta = {m.asset_key: m.metadata for m in result.asset_materializations_for_node("web_events_spark")}
    return elapsed, {k: v.value for k, v in meta[web_asset_key("events")].items()}


def collector(bootstrap: str, clients: int, seconds: float, batched: bool) -> tuple[int, float, list[float]]:
    import httpx

    from corisync_assets.web.collector import spawn_collector

    topic = f"bench.collector.{uuid.uuid4().hex[:8]}"
    key = uuid.uuid4().hex
    port = free_port()
    env = {**os.environ, "CORISYNC_KAFKA_BOOTSTRAP": bootstrap, "CORISYNC_WEB_TOPIC": topic,
           "CORISYNC_COLLECTOR_WRITE_KEYS": f"bench={key}", "CORISYNC_COLLECTOR_RATE_LIMIT": "1000000",
           "CORISYNC_HOME": tempfile.mkdtemp(prefix="bench-collector-")}
    proc = spawn_collector(port=port, env=env, batched=batched)
    batches = []
    now = datetime.now(UTC)
    for b in range(50):
        batches.append([{"event_id": str(uuid.uuid4()), "event_type": "page_view", "schema_version": 1,
                         "anonymous_id": f"v{b}-{i % 7}", "occurred_at": (now - timedelta(seconds=i)).isoformat(),
                         "page_url": "https://tc4a.example/courses/3", "page_path": "/courses/3",
                         "user_agent": "bench", "course_id": 3, "properties": {"i": i}} for i in range(100)])
    latencies: list[float] = []
    accepted = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(c: int) -> None:
        with httpx.Client(auth=(key, ""), timeout=30) as http:
            i = c
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                r = http.post(f"http://127.0.0.1:{port}/v1/batch", json={"batch": batches[i % len(batches)]})
                dt = time.perf_counter() - t0
                i += clients
                with lock:
                    latencies.append(dt)
                    if r.status_code == 200:
                        accepted[0] += r.json()["accepted"]

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    proc.terminate()
    proc.wait(30)
    return accepted[0], elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="events to put on the topic")
    parser.add_argument("--clients", type=int, default=8, help="concurrent collector clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="collector measurement duration")
    parser.add_argument("--java-options", default=None,
                        help="the Spark driver JVM's options (default: the asset's, C1 JIT only; \"\" = full JIT)")
    parser.add_argument("--skip-spark", action="store_true")
    parser.add_argument("--skip-collector", action="store_true")
    args = parser.parse_args()
    broker, bootstrap = start_tansu()
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
          f"{datetime.now(UTC):%Y-%m-%d}")
    try:
        if not args.skip_spark:
            topic = f"bench.web.{uuid.uuid4().hex[:8]}"
            t0 = time.perf_counter()
            total = produce(bootstrap, topic, args.n)
            print(f"produced {total} events on {PARTITIONS} partitions in {time.perf_counter() - t0:.1f}s")
            raw_n, raw_s = raw_consume(bootstrap, topic)
            with tempfile.TemporaryDirectory() as tmp:
                spark_s, meta = spark_asset(bootstrap, topic, tmp, args.java_options)
            assert raw_n == total == meta["messages_read"], (raw_n, total, meta["messages_read"])
            raw_rate, spark_rate = raw_n / raw_s, total / spark_s
            print(f"raw consume: {raw_n} messages in {raw_s:.2f}s = {raw_rate:,.0f} msg/s")
            print(f"Spark asset end to end: {spark_s:.2f}s = {spark_rate:,.0f} events/s ({meta['events_new']} new, "
                  f"{meta['duplicates']} duplicates, {meta['rows_in_replaced_partitions']} rows in the warehouse)")
            print(f"ratio Spark/raw = {spark_rate / raw_rate:.2f} (target >= 0.35)")
        # the producer as in prod (records batched), then as the local stack runs it (one record per batch,
        # which tansu needs for exact watermarks: then the broker's per-request rate is the limit)
        for batched in ([True, False] if not args.skip_collector else []):
            accepted, elapsed, lat = collector(bootstrap, args.clients, args.seconds, batched)
            lat.sort()
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
            mode = "batched records (prod producer)" if batched else "one record per batch (local tansu)"
            print(f"collector, {mode}: {accepted} events accepted in {elapsed:.1f}s = {accepted / elapsed:,.0f} "
                  f"events/s with {args.clients} clients x batches of 100; batch latency p50 "
                  f"{statistics.median(lat) * 1000:.1f} ms, p99 {p99:.1f} ms (targets >= 10,000/s, p99 <= 100 ms)")
    finally:
        broker.terminate()
        broker.wait(10)


if __name__ == "__main__":
    main()
