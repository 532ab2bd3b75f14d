"""What BigQueryWarehouse asks of BigQuery, request by request, against request-level doubles.

The emulator runs the SQL but cannot show what matters for BigQuery's quotas, nor fail on demand. These
tests use the doubles of tests/bigquery/doubles.py instead (no emulator needed):

* `RestDouble` — BigQuery's REST API faked with the `responses` library (intercepts the client's HTTP);
* `WriteApiDouble` — a local gRPC server implementing the Storage Write API's ``AppendRows``.

They show: a landing cycle sends no REST request and starts no job once a process is set up, only two
AppendRows calls (events and dead letters of every table, then the cycle's marker), each with the routing
header; a refused append leaves the cycle without its marker and is appended again; large cycles are split
into requests under the 10 MB limit; a fold is exactly one query job (one transaction, one MERGE and one
INSERT per table) and is not sent when not due; the landing tables are time-partitioned with expiration.
"""

from __future__ import annotations

import json
import time

import pytest

from corisync_assets.resources.warehouse.base import LandResult
from corisync_assets.resources.warehouse.bigquery import (
    CYCLES,
    FOLD_STATE,
    SCHEMAS,
    STREAM,
    AppendError,
    BigQueryWarehouse,
)
from tests.bigquery.doubles import HOST, RestDouble, WriteApiDouble
from tests.bigquery.test_bigquery_warehouse import ARCHIVE_TOPIC, Feed
from tests.support.debezium_events import change_stream, course_row, envelope

PROJECT, DATASET = "corisync-double", "raw"
STREAM_NAME = f"projects/{PROJECT}/datasets/{DATASET}/tables/{STREAM}/streams/_default"


def fold_answer(sql: str):
    """What the double answers a query job: for a fold script, 2 cycles, 1 dead letter, 60 and 20 events."""
    if "BEGIN TRANSACTION" not in sql:
        return [], []
    tables = sql.count("DECLARE n_")
    now = int(time.time() * 1e6)
    columns = [("cycles", "INT64"), ("lo", "TIMESTAMP"), ("hi", "TIMESTAMP"), ("new_dead", "INT64"),
               *[(f"n_{i}", "INT64") for i in range(tables)]]
    return columns, [(2, now - 2_000_000, now - 1_000_000, 1, *[(60, 20)[i % 2] for i in range(tables)])]


@pytest.fixture
def rest():
    with RestDouble(PROJECT, answer=fold_answer) as double:
        double.datasets.add(DATASET)
        yield double


@pytest.fixture
def write():
    double = WriteApiDouble()
    yield double
    double.stop()


def warehouse(write: WriteApiDouble, **kwargs) -> BigQueryWarehouse:
    return BigQueryWarehouse(project=PROJECT, dataset=DATASET, emulator_host=f"{HOST}:80",
                             emulator_grpc_host=write.host, retry_deadline_s=1, request_timeout_s=5, **kwargs)


def events(n: int) -> list:
    return [m for m in change_stream(n) if m[1] is not None]


def register_schemas(rest: RestDouble) -> None:
    """Do what the registration INSERT jobs would have done: rows in _cdc_schemas for tabledata.list."""
    rows = []
    for call in rest.requests("POST", "jobs"):
        query = call.body["configuration"]["query"]
        if f"INSERT INTO `{PROJECT}.{DATASET}.{SCHEMAS}`" in query["query"]:
            params = {p["name"]: p["parameterValue"]["value"] for p in query["queryParameters"]}
            rows.append({**params, "registered_at": len(rows)})
    rest.rows[(DATASET, SCHEMAS)] = rows


def test_a_cycle_is_two_appends_and_no_job(rest: RestDouble, write: WriteApiDouble) -> None:
    """Three cycles over two tables (one with a dead letter). After the first cycle's set-up (tables,
    schema registration) a cycle sends no REST request at all: one AppendRows call with every event and
    dead letter to _cdc_stream, then one with the marker to _cdc_cycles. No load job ever."""
    wh = warehouse(write)
    courses, archive = Feed("courses"), Feed("courses_archive", ARCHIVE_TOPIC)
    stream = events(90)
    for i, part in enumerate((stream[:30], stream[30:60], stream[60:])):
        rest_before, grpc_before = len(rest.calls), len(write.calls)
        batches = [courses.batch([*part, *([(b'{"id": 1}', b"{broken")] if i == 1 else [])]),
                   archive.batch(part[:10])]
        assert wh.land_all(batches) == [LandResult(30, 0, int(i == 1)), LandResult(10, 0, 0)]
        if i == 0:
            jobs = [c.body["configuration"]["query"]["query"] for c in rest.calls[rest_before:]
                    if c.method == "POST" and c.path == "jobs"]
            assert len(jobs) == 3 and FOLD_STATE in jobs[0]  # created once; each table's schema registered
            assert all(f"INSERT INTO `{PROJECT}.{DATASET}.{SCHEMAS}`" in j for j in jobs[1:])
        else:
            assert rest.calls[rest_before:] == []
        appended, marked = write.calls[grpc_before:]
        assert (appended.table, marked.table) == (STREAM, CYCLES)
        # the routing header (the generated client adds an empty one of its own after it, as it does for
        # google's own AppendRowsStream writer)
        assert appended.header("x-goog-request-params")[0] == f"write_stream={STREAM_NAME}"
        assert appended.writer_schemas == [True] and marked.writer_schemas == [True]
        marker = marked.rows[0]
        assert {(r["_cdc_cycle"], r["_cdc_landed_at"]) for r in appended.rows} == {
            (marker["cycle_id"], marker["landed_at"])}
        assert abs(marker["landed_at"] - time.time() * 1e6) < 60e6  # TIMESTAMP as int64 microseconds
        tables = [r["_cdc_table"] for r in appended.rows if "_cdc_error" not in r]
        assert (tables.count("courses"), tables.count("courses_archive")) == (30, 10)
        dead = [r for r in appended.rows if "_cdc_error" in r]
        assert len(dead) == int(i == 1) and marker["dead_letters"] == int(i == 1)
        assert (marker["events"], marker["tables"]) == (40, "courses,courses_archive")
    assert rest.load_jobs == [] and len(rest.query_jobs) == 3
    first = write.calls_to(STREAM)[0].rows[0]
    assert first["_cdc_payload"] == json.dumps(json.loads(stream[0][1])["payload"], ensure_ascii=False,
                                               separators=(",", ":"))  # the payload as Debezium wrote it


def test_refused_append_leaves_the_cycle_incomplete(rest: RestDouble, write: WriteApiDouble) -> None:
    """The service refuses the events' append: land_all raises, no marker is appended (the fold will never
    take the cycle), and the events are not taken for appended: landing them again appends them again. A
    refused marker likewise: the cycle's rows stay orphaned and the next landing appends them anew."""
    wh = warehouse(write)
    feed = Feed()
    batch = feed.batch(events(20))
    write.refuse = lambda table, request: "Quota exceeded" if table == STREAM else None
    with pytest.raises(AppendError, match="Quota exceeded"):
        wh.land(batch)
    assert [c.table for c in write.calls] == [STREAM]
    write.refuse = lambda table, request: None
    assert wh.land(batch) == LandResult(20, 0, 0)
    assert [c.table for c in write.calls] == [STREAM, STREAM, CYCLES]

    batch2 = feed.batch(events(40)[20:])
    write.refuse = lambda table, request: "backend error" if table == CYCLES else None
    with pytest.raises(AppendError, match="backend error"):
        wh.land(batch2)
    write.refuse = lambda table, request: None
    assert wh.land(batch2) == LandResult(20, 0, 0)
    assert [c.table for c in write.calls][3:] == [STREAM, CYCLES, STREAM, CYCLES]
    assert wh.land(batch2) == LandResult(0, 20, 0)  # now remembered: nothing to append, nothing sent
    assert len(write.calls) == 7


def test_large_cycle_is_split_below_10_mb(rest: RestDouble, write: WriteApiDouble) -> None:
    """A cycle of ~18 MB goes out as one AppendRows call of several requests, each under BigQuery's
    10 MB, the writer schema in the first only."""
    from google.cloud.bigquery_storage_v1 import types

    big = [envelope("c", i, None, {**course_row(i), "description": "x" * 1_500_000}, 5_000_000 + 16 * i, i,
                    1_764_000_000_000 + i) for i in range(1, 13)]
    warehouse(write).land(Feed().batch(big))
    (call,) = write.calls_to(STREAM)
    sizes = [len(types.AppendRowsRequest.serialize(r)) for r in call.requests]
    assert len(sizes) >= 3 and max(sizes) < 10 * 1024 * 1024 and sum(sizes) > 18_000_000
    assert call.writer_schemas == [True] + [False] * (len(sizes) - 1)
    assert sorted(r["_cdc_event_id"] for r in call.rows) == sorted(
        f"{5_000_000 + 16 * i}:c:{{\"course_id\":{i}}}" for i in range(1, 13))


def test_a_fold_is_one_query_job(rest: RestDouble, write: WriteApiDouble) -> None:
    """fold(force=True) reads the registered schemas (tabledata.list, not a job) and starts exactly one
    query job: one transaction that updates _cdc_fold_state first (concurrent folds conflict), then one
    INSERT into each changelog and one MERGE into each current-state table, whatever the number of cycles.
    An unforced fold() that is not due sends nothing; nor does one within fold_interval_s of the last."""
    wh = warehouse(write, fold_interval_s=300)
    courses, archive = Feed("courses"), Feed("courses_archive", ARCHIVE_TOPIC)
    stream = events(60)
    for part in (stream[:30], stream[30:]):
        wh.land_all([courses.batch(part), archive.batch(part[:10])])
    register_schemas(rest)
    before = len(rest.calls)
    folded = wh.fold(force=True)
    assert folded["cycles"] == 2 and folded["new_events"] == {"courses": 60, "courses_archive": 20}
    assert folded["dead_letters"] == 1
    sent = rest.calls[before:]
    assert [c.path for c in sent if c.method == "POST"] == ["jobs"]  # one job, nothing created
    assert {c.path for c in sent if c.method == "GET"} <= {
        f"datasets/{DATASET}/tables/{SCHEMAS}", f"datasets/{DATASET}/tables/{SCHEMAS}/data",
        *{c.path for c in sent if c.path.startswith(("queries/", "jobs/"))}}
    sql = rest.query_jobs[-1]
    statements = [s.strip() for s in sql.split(";")]
    begin = statements.index("BEGIN TRANSACTION")
    assert statements[begin + 1].startswith(f"UPDATE `{PROJECT}.{DATASET}.{FOLD_STATE}`")
    assert sql.count("BEGIN TRANSACTION;") == 1 == sql.count("COMMIT TRANSACTION;")
    for table in ("courses", "courses_archive"):
        assert sql.count(f"MERGE `{PROJECT}.{DATASET}.{table}` ") == 1
        assert sql.count(f"INSERT INTO `{PROJECT}.{DATASET}.{table}__changelog` ") == 1
    assert rest.load_jobs == []

    before = len(rest.calls), len(write.calls)
    assert wh.fold() is None  # nothing landed since: not due, nothing sent
    wh.land(courses.batch(events(70)[60:]))
    assert wh.fold() is None  # landed, but within fold_interval_s
    assert len(rest.calls) == before[0] and len(write.calls) == before[1] + 2


def test_a_fold_beaten_by_a_concurrent_fold_is_retried_once(rest: RestDouble, write: WriteApiDouble) -> None:
    """Two folds at once (the lander's and a raw run's): BigQuery aborts the later transaction ("concurrent
    update", they both update _cdc_fold_state). The loser folds again, once, and finds what is left; any
    other failure is raised, and the next unforced fold() waits for fold_interval_s rather than retrying at
    every cycle."""
    wh = warehouse(write, fold_interval_s=300)
    wh.land(Feed().batch(events(10)))
    register_schemas(rest)
    jobs = len(rest.query_jobs)
    rest.job_errors = ["Transaction is aborted due to concurrent update against table raw._cdc_fold_state"]
    assert wh.fold(force=True)["cycles"] == 2
    assert len(rest.query_jobs) == jobs + 2
    rest.job_errors = ["Access Denied: Table raw._cdc_fold_state"]
    wh.land(Feed().batch(events(20)[10:]))
    with pytest.raises(Exception, match="Access Denied"):
        wh.fold(force=True)
    assert len(rest.query_jobs) == jobs + 3
    assert wh.fold() is None and len(rest.query_jobs) == jobs + 3  # not retried at once


def test_landing_tables_are_partitioned_and_expire(rest: RestDouble, write: WriteApiDouble) -> None:
    """What the emulator ignores: _cdc_stream is partitioned by hour of landing (a fold reads only the
    hours of its cycles), the bookkeeping tables by day, all expiring after stream_retention_days; current
    state is clustered by primary key, the changelog by LSN (the fold's dedupe reads an LSN range)."""
    warehouse(write, stream_retention_days=3).land(Feed().batch(events(5)))
    week = str(3 * 86_400_000)
    tables = {t: body for (_ds, t), body in rest.tables.items()}
    assert tables[STREAM]["timePartitioning"] == {"type": "HOUR", "field": "_cdc_landed_at", "expirationMs": week}
    assert tables[CYCLES]["timePartitioning"] == {"type": "DAY", "field": "landed_at", "expirationMs": week}
    assert tables["_cdc_folded"]["timePartitioning"] == {"type": "DAY", "field": "folded_at", "expirationMs": week}
    assert tables["courses"]["clustering"] == {"fields": ["course_id"]}
    assert tables["courses__changelog"]["clustering"] == {"fields": ["source_lsn"]}
    assert "timePartitioning" not in tables["courses"]
