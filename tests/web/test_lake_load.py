"""``Warehouse.replace_partitions`` on DuckDB: a run's affected date partitions become exactly the lake's,
other dates are untouched, a date the lake emptied is emptied, and loading twice is loading once."""

from __future__ import annotations

from pathlib import Path

import duckdb

from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
from corisync_assets.web.tables import WEB_EVENTS, WEB_PAGE_DAILY, WEB_SESSIONS
from tests.web.lake_scenario import (
    D1,
    D2,
    D3,
    EXPECTED_FIRST,
    EXPECTED_SECOND,
    event,
    files,
    first_lake,
    second_lake,
)


def _rows(path: Path) -> set:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return set(con.execute("SELECT event_id, event_date FROM raw_web.web_events").fetchall())
    finally:
        con.close()


def test_partitions_are_swapped_in_idempotently(tmp_path: Path) -> None:
    lake, wh = tmp_path / "lake", DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    first_lake(lake)
    counts = wh.replace_partitions({WEB_EVENTS: files(lake, WEB_EVENTS, [D1, D2])})
    assert counts == {"web_events": 5}
    assert _rows(wh.path) == EXPECTED_FIRST
    assert wh.replace_partitions({WEB_EVENTS: files(lake, WEB_EVENTS, [D1, D2])}) == {"web_events": 5}
    assert _rows(wh.path) == EXPECTED_FIRST  # twice is once

    second_lake(lake)
    counts = wh.replace_partitions({WEB_EVENTS: files(lake, WEB_EVENTS, [D1, D2, D3])})
    assert counts == {"web_events": 5}
    assert _rows(wh.path) == EXPECTED_SECOND


def test_values_and_types_survive_the_load(tmp_path: Path) -> None:
    lake, wh = tmp_path / "lake", DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    first_lake(lake)
    wh.replace_partitions({WEB_EVENTS: files(lake, WEB_EVENTS, [D1])})
    con = duckdb.connect(wh.path, read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        got = con.execute("SELECT * FROM raw_web.web_events WHERE event_id = 'e1'").fetchall()[0]
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'web_events'").fetchall())
    finally:
        con.close()
    want = event(1, D1)
    names = [name for name, _ in WEB_EVENTS.columns]
    row = dict(zip(names, got, strict=True))
    assert row["occurred_at"] == want["occurred_at"] and row["user_id"] == 1 and row["referrer"] is None
    assert row["event_date"] == D1
    assert types["occurred_at"] == "TIMESTAMP WITH TIME ZONE" and types["event_date"] == "DATE"


def test_tables_exist_before_any_event(tmp_path: Path) -> None:
    """A first run with nothing to read still creates the (empty) tables dbt's sources point at."""
    wh = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    assert wh.replace_partitions({t: {} for t in (WEB_EVENTS, WEB_SESSIONS, WEB_PAGE_DAILY)}) == {
        "web_events": 0, "web_sessions": 0, "web_page_daily": 0}
    con = duckdb.connect(wh.path, read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_schema = 'raw_web'").fetchall()}
    finally:
        con.close()
    assert tables == {"web_events", "web_sessions", "web_page_daily"}
