"""Tables added to the connector config, on the real stack: onboarding a table that already holds rows,
re-reading one on request, and one source transaction of 100,000 changes on a narrow added table.

Postgres -> the real Debezium runner (incremental snapshots through the signalling table) -> tansu -> raw CDC
assets run through Dagster -> DuckDB. Expected values come from Postgres itself (``assert_equal_to_postgres``)
and from the topic as read here. The tables are added to a copy of the connector config and the runner is
restarted with it (the session's config is restored afterwards).
"""

from __future__ import annotations

import json
import time

import pytest

from corisync_assets import environment
from corisync_assets.cdc.landing import land_changes
from corisync_assets.cdc.reconcile import lsn_int, wait_for_slot
from corisync_assets.local import cli
from corisync_assets.local import stack as local_stack
from tests.local.cdc_helpers import read
from tests.support.pipeline import Pipeline, assert_equal_to_postgres, pg_connect

pytestmark = pytest.mark.stack

ROWS = 300  # more than one chunk: the test config sets incremental.snapshot.chunk.size to 128


def _rows(pipe: Pipeline, table: str) -> list[tuple] | None:
    """Current state without the CDC columns; None while the table has not landed yet."""
    with pipe.warehouse.connect(read_only=True) as con:
        if not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'raw_cdc' "
                           "AND table_name = ?", [table]).fetchone()[0]:
            return None
        return con.execute(f"SELECT * EXCLUDE (_cdc_op, _cdc_lsn, _cdc_ts_ms, _cdc_landed_at) FROM raw_cdc.{table} "
                           "ORDER BY 1, 2").fetchall()


def _pg(pg, table: str) -> list[tuple]:
    return pg.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()


@pytest.fixture(scope="module")
def onboarded(stack, tmp_path_factory):
    """Tables created and filled while the runner streams without them (it confirms the WAL past them), then
    added to the connector config: one with ROWS rows, one empty, one narrow (big_tx, for a big transaction)."""
    tmp_path = tmp_path_factory.mktemp("added")
    monkeypatch = pytest.MonkeyPatch()
    with pg_connect(stack) as pg:
        pg.execute("DROP TABLE IF EXISTS onboard_t, onboard_empty, big_tx")
        pg.execute("CREATE TABLE big_tx (id int PRIMARY KEY, v int)")
        # a composite key with quotes, commas and non-ASCII text: the snapshot's chunks are key ranges over it
        pg.execute("CREATE TABLE onboard_t (region text, id int, name text NOT NULL, amount numeric(10,2), "
                   "PRIMARY KEY (region, id))")
        pg.execute("CREATE TABLE onboard_empty (id int PRIMARY KEY, note text)")
        pg.execute(f"INSERT INTO onboard_t SELECT (ARRAY['O''Brien \"q\"', 'ñandú', 'a,b'])[g % 3 + 1], g, "
                   f"'row ' || g, g * 1.25 FROM generate_series(1, {ROWS}) g")
        config = json.loads(stack.connector_config.read_text())
        # the runner has 'moved past' what was written so far: Debezium confirmed the WAL up to now
        wait_for_slot(pg, config["config"]["slot.name"],
                      lsn_int(pg.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]), timeout_s=60)
    config["config"]["table.include.list"] += ",public.onboard_t,public.onboard_empty,public.big_tx"
    config["config"]["incremental.snapshot.chunk.size"] = "128"
    path = tmp_path / "connector.json"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("CORISYNC_CONNECTOR_CONFIG", str(path))
    environment.settings.cache_clear()  # the command reads the config through settings()
    s = stack.model_copy(update={"connector_config": path})
    local_stack.stop_debezium(stack)
    local_stack.start_debezium(s)
    try:
        yield s, Pipeline(s, tmp_path / "warehouse.duckdb")
    finally:
        monkeypatch.undo()
        environment.settings.cache_clear()
        local_stack.stop_debezium(s)
        local_stack.start_debezium(stack)
        with pg_connect(stack) as pg:
            pg.execute("DROP TABLE IF EXISTS onboard_t, onboard_empty, big_tx")


def test_a_table_added_with_rows_lands_whole_and_a_resnapshot_drops_lost_deletes(onboarded):
    s, pipe = onboarded
    with pg_connect(s) as pg:
        # onboarding: every existing row arrives as an incremental snapshot read, then changes follow
        pg.execute("UPDATE onboard_t SET name = 'changed' WHERE id IN (5, 250)")
        pg.execute("INSERT INTO onboard_t VALUES ('ñandú', 1000, 'new', 1)")
        pipe.materialize_until(lambda: _rows(pipe, "onboard_t") == _pg(pg, "onboard_t"))
        events = read(s, pipe.topic("onboard_t"))
        reads = {e.after["id"] for e in events if e.op == "r"}
        assert reads >= set(range(1, ROWS + 1)) - {5, 250}, "existing rows must come from the snapshot"
        assert {e.value["payload"]["source"]["snapshot"] for e in events if e.op == "r"} == {"incremental"}
        assert_equal_to_postgres(pg, pipe.warehouse, "onboard_t")

        # rows whose delete events were lost (e.g. the local broker restarted before they landed): a re-read
        # on request removes them, in the empty table too, while changes keep streaming
        pg.execute("INSERT INTO onboard_empty VALUES (1, 'x')")
        pipe.materialize_until(lambda: _rows(pipe, "onboard_empty") == [(1, "x")])
        pg.execute("DELETE FROM onboard_empty")
        with pipe.warehouse.connect() as con:  # a lost delete: the warehouse still holds rows Postgres has not
            con.execute("INSERT INTO raw_cdc.onboard_t (region, id, name, amount, _cdc_op, _cdc_lsn) "
                        "VALUES ('ñandú', -1, 'ghost', 0, 'c', 1), ('a,b', -2, 'ghost', 0, 'r', 2)")
        pipe.materialize_until(lambda: _rows(pipe, "onboard_empty") == [])
        with pipe.warehouse.connect() as con:
            con.execute("INSERT INTO raw_cdc.onboard_empty (id, note, _cdc_op, _cdc_lsn) VALUES (7, 'ghost', 'c', 3)")
        assert cli.run(["resnapshot", "public.onboard_t"]) == 0
        assert cli.run(["resnapshot", "public.onboard_empty"]) == 0
        pg.execute("UPDATE onboard_t SET amount = amount + 1 WHERE id % 50 = 0")
        pg.execute("DELETE FROM onboard_t WHERE id = 7")
        pipe.materialize_until(lambda: _rows(pipe, "onboard_t") == _pg(pg, "onboard_t")
                    and _rows(pipe, "onboard_empty") == [])
        assert_equal_to_postgres(pg, pipe.warehouse, "onboard_t")
        with pipe.warehouse.connect(read_only=True) as con:
            dupes = con.execute("SELECT count(*) - count(DISTINCT (region, id)) FROM raw_cdc.onboard_t").fetchone()[0]
        assert dupes == 0
    assert [(r.ref.table, r.passed) for r in pipe.reconcile("onboard_t", "onboard_empty")] == [
        ("onboard_t", True), ("onboard_empty", True)]


def test_a_backlog_of_several_cycles_and_one_transaction_of_100k_changes(onboarded):
    """Ten transactions of 1,000 changes, then ONE of 100,000, landed by a run whose cycles take 5,000 events:
    the backlog lands over more than one cycle, the big transaction whole (reading it takes longer than the
    cut's 30 s hold, which must not split it), nothing forced, and the table equals Postgres. (How many cycles
    the small ones take depends on when their transactions' ENDs are read: a cycle releases only whole
    transactions, so one CI run saw all ten in one.)"""
    s, pipe = onboarded
    with pg_connect(s) as pg:
        for i in range(10):
            pg.execute("INSERT INTO big_tx SELECT g, 0 FROM generate_series(%s::int, %s::int) g",
                       (i * 1000 + 1, i * 1000 + 1000))
        with pg.transaction():
            pg.execute("INSERT INTO big_tx SELECT g, g % 7 FROM generate_series(100001, 200000) g")
        topic = pipe.topic("big_tx")
        deadline = time.monotonic() + 300
        while sum(i.high_watermark for i in pipe.kafka.lag([topic]).values()) < 110_000:
            assert time.monotonic() < deadline, "Debezium did not deliver the 110,000 changes in time"
            time.sleep(1)
        connector = pipe.connector
        report = land_changes(pipe.kafka, pipe.warehouse, {topic: "big_tx"}, tx_topic=connector.transaction_topic,
                              collections=connector.collections, batch_size=5_000)
        t = report.tables["big_tx"]
        assert (t.new_events, report.forced, report.held) == (110_000, 0, 0)
        assert t.batches >= 2
        assert _rows(pipe, "big_tx") == _pg(pg, "big_tx")
    assert [r.passed for r in pipe.reconcile("big_tx")] == [True]


def test_resnapshot_refuses_a_table_that_is_not_captured(stack):
    with pytest.raises(Exception, match="not captured"):
        cli.run(["resnapshot", "public.no_such_table"])
