"""Faults on the real stack (#9 §6): after each, the warehouse equals Postgres.

Postgres restarted under write load; the Debezium runner killed during an incremental snapshot (a backlog of
several landing cycles and one transaction of 100,000 changes: tests/cdc/test_resnapshot.py, on a narrow
added table, as the tc4a tables' events are ~9 KB each). Postgres -> the real Debezium
runner -> tansu -> raw CDC assets through Dagster -> DuckDB; expected values are Postgres' own rows
(``assert_equal_to_postgres``), and after each fault the reconciliation check's algorithm passes.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import psycopg
import pytest

from corisync_assets.cdc.resnapshot import resnapshot
from corisync_assets.local import postgres
from corisync_assets.local import stack as local_stack
from tests.support.pipeline import Pipeline, assert_equal_to_postgres, pg_connect

pytestmark = pytest.mark.stack


def _course(conn, tag: str) -> int:
    return conn.execute(
        "INSERT INTO courses (code, title, category, level, price, duration_hours, is_published, tags) "
        "VALUES (%s, 'Fault tolerance', 'data', 'beginner', 10, 1, true, '[]') RETURNING course_id", (tag,),
    ).fetchone()[0]


def _landed_codes(pipe: Pipeline, prefix: str) -> set[str]:
    with pipe.warehouse.connect(read_only=True) as con:
        return {c for (c,) in con.execute("SELECT code FROM raw_cdc.courses WHERE starts_with(code, ?)",
                                          [prefix]).fetchall()}


def test_postgres_restart_under_write_load(pipe, stack):
    """Writers keep inserting while Postgres stops and starts again: Debezium reconnects and resumes from its
    replication slot; every row committed lands, none twice."""
    committed: list[str] = []
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            try:
                with pg_connect(stack) as conn:
                    while not stop.is_set():
                        tag = f"PGR-{os.getpid()}-{n}"
                        _course(conn, tag)
                        committed.append(tag)  # after the autocommit returned: the row is in Postgres
                        n += 1
                        time.sleep(0.01)
            except psycopg.OperationalError:
                time.sleep(0.2)  # the server is down: try again

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        time.sleep(2)
        postgres.stop(stack)
        time.sleep(2)
        postgres.start(stack)
        time.sleep(3)
    finally:
        stop.set()
        writer.join(30)
    assert len(committed) > 50
    pipe.materialize_until(lambda: _landed_codes(pipe, f"PGR-{os.getpid()}-") >= set(committed),
                           what="after the restart")
    assert local_stack.dbz_pid(stack) is not None, "the runner must survive a Postgres restart"
    with pg_connect(stack) as pg:
        assert_equal_to_postgres(pg, pipe.warehouse, "courses")
    assert [r.passed for r in pipe.reconcile("courses")] == [True]


def test_runner_killed_during_a_snapshot_resumes_it(pipe, stack):
    """SIGKILL the runner while it re-reads a table: the incremental snapshot's progress lives in the offsets,
    the restarted runner finishes it, and current state holds each row exactly once."""
    with pg_connect(stack) as pg:
        for i in range(400):
            _course(pg, f"SNAP-{os.getpid()}-{i}")
        connector = pipe.connector
        resnapshot(stack, connector, "public.courses")
        # kill once the re-read has begun (reads of courses reach the topic), well before it ends
        topic = connector.topic_for("public", "courses")
        start = pipe.kafka.lag([topic])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(i.high_watermark for i in pipe.kafka.lag([topic]).values()) \
                <= sum(i.high_watermark for i in start.values()) + 5:
            time.sleep(0.05)
        os.kill(local_stack.dbz_pid(stack), signal.SIGKILL)
        assert local_stack.up(stack, out=lambda _l: None).debezium == "started"
        want = pg.execute("SELECT count(*) FROM courses").fetchone()[0]

        def done() -> bool:
            with pipe.warehouse.connect(read_only=True) as con:
                return con.execute("SELECT count(*) FROM raw_cdc.courses").fetchone()[0] == want
        pipe.materialize_until(done, what="after the kill")
        assert_equal_to_postgres(pg, pipe.warehouse, "courses")
        with pipe.warehouse.connect(read_only=True) as con:
            assert con.execute("SELECT count(*) - count(DISTINCT course_id) FROM raw_cdc.courses").fetchone()[0] == 0
        assert [r.passed for r in pipe.reconcile("courses")] == [True]

