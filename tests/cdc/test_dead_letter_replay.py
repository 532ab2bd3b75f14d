"""Dead letters replayed after a fix (``corisync dead-letters list|replay``), on a DuckDB warehouse in tmp.

The stream holds Debezium-shaped events of ``courses`` (tests/support/debezium_events.py); some of them were
dead-lettered by "an older version of the code" (landed as dead letters with that error), one is garbage
that no version decodes. Expected state: the decodable events applied in LSN order in plain Python."""

from __future__ import annotations

import duckdb
import orjson
import pytest

from corisync_assets.cdc.dead_letters import replay, summarize
from corisync_assets.cdc.envelope import ChangeBatch, DeadLetter, Decoder
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
from tests.support.debezium_events import course_row, envelope

TOPIC = "tc4a.public.courses"
OLD_ERROR = "DecodeError: column 'tags' has unsupported Connect type 'array'"


def _stream() -> list[tuple[int, bytes | None, bytes, bool]]:
    """(offset, key, value, dead-lettered by the old code) in Kafka order."""
    events = [
        (envelope("c", 1, None, course_row(1), 100, 1, 1), True),
        (envelope("c", 2, None, course_row(2), 110, 2, 2), False),
        (envelope("u", 2, course_row(2), course_row(2, 1), 120, 3, 3), True),  # older than the next one
        (envelope("u", 2, course_row(2, 1), course_row(2, 2), 130, 4, 4), False),
        (envelope("c", 3, None, course_row(3), 140, 5, 5), True),  # the row is deleted afterwards
        (envelope("d", 3, course_row(3), None, 150, 6, 6), False),
        ((b'{"payload": {"course_id": 4}}', b"{not json"), True),  # no version decodes this
    ]
    return [(offset, key, value, dead) for offset, ((key, value), dead) in enumerate(events)]


def _expected() -> dict[int, str]:
    state: dict[int, str] = {}
    decodable = [orjson.loads(v)["payload"] for _, _, v, _ in _stream() if v != b"{not json"]
    for p in sorted(decodable, key=lambda p: p["source"]["lsn"]):
        cid = (p["after"] or p["before"])["course_id"]
        if p["op"] == "d":
            state.pop(cid, None)
        else:
            state[cid] = p["after"]["title"]
    return state


def _land_as_the_old_code_did(wh: DuckDBWarehouse) -> None:
    decoder = Decoder("courses")
    decoder.add_run(TOPIC, 0, [(o, k, v) for o, k, v, dead in _stream() if not dead])
    batch = decoder.reset()
    batch.dead_letters = [DeadLetter(TOPIC, 0, o, OLD_ERROR if v != b"{not json" else "DecodeError: not JSON", k, v)
                          for o, k, v, dead in _stream() if dead]
    wh.land_all([batch])


def _state(wh: DuckDBWarehouse) -> dict[int, str]:
    con = duckdb.connect(wh.path, read_only=True)
    try:
        return dict(con.execute("SELECT course_id, title FROM raw_cdc.courses").fetchall())
    finally:
        con.close()


def _changelog_events(wh: DuckDBWarehouse) -> list[int]:
    con = duckdb.connect(wh.path, read_only=True)
    try:
        return sorted(r[0] for r in con.execute("SELECT source_lsn FROM raw_cdc.courses__changelog").fetchall())
    finally:
        con.close()


@pytest.fixture
def wh(tmp_path) -> DuckDBWarehouse:
    wh = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    _land_as_the_old_code_did(wh)
    return wh


def test_replay_lands_what_now_decodes_and_keeps_newer_changes(wh: DuckDBWarehouse) -> None:
    assert _state(wh) == {2: course_row(2, 2)["title"]}  # row 1 never landed
    assert wh.dead_letter_summary() == {"courses": {OLD_ERROR: 3, "DecodeError: not JSON": 1}}

    lines: list[str] = []
    report = replay(wh, "courses", out=lines.append)
    assert (report.pending, report.replayed, report.new_events, report.already_landed) == (4, 3, 3, 0)
    assert list(report.still_failing.values()) == [1] and "still failing (1)" in lines[-1]

    assert _state(wh) == _expected() == {1: course_row(1)["title"], 2: course_row(2, 2)["title"]}
    assert _changelog_events(wh) == [100, 110, 120, 130, 140, 150]
    # replayed ones are kept, marked; the garbage stays pending and keeps failing the check
    assert [(d.offset, d.replayed) for d in wh.dead_letters("courses")] == [
        (0, True), (2, True), (4, True), (6, False)]
    assert wh.dead_letter_summary() == {"courses": {"DecodeError: not JSON": 1}}
    assert summarize(wh.dead_letters()) == [("courses", OLD_ERROR, 0, 3), ("courses", "DecodeError: not JSON", 1, 0)]


def test_a_second_replay_changes_nothing(wh: DuckDBWarehouse) -> None:
    replay(wh, "courses", out=lambda _: None)
    state, log = _state(wh), _changelog_events(wh)
    again = replay(wh, "courses", out=lambda _: None)
    assert (again.pending, again.replayed, again.new_events) == (1, 0, 0)
    assert (_state(wh), _changelog_events(wh)) == (state, log)
    assert len(wh.dead_letters()) == 4  # nothing deleted, nothing added


def test_without_the_guard_an_old_event_would_win(wh: DuckDBWarehouse) -> None:
    """What the replay guard prevents: landing the same events as a normal batch regresses current state."""
    decoder = Decoder("courses")
    decoder.add_run(TOPIC, 0, [(o, k, v) for o, k, v, dead in _stream() if dead and v != b"{not json"])
    wh.land_all([decoder.reset()])
    assert _state(wh) != _expected()
    assert _state(wh)[2] == course_row(2, 1)["title"] and 3 in _state(wh)


def test_the_cli_lists_and_replays(wh: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from corisync_assets import environment
    from corisync_assets.local.cli import run

    monkeypatch.setenv("CORISYNC_DUCKDB_PATH", wh.path)
    environment.settings.cache_clear()
    try:
        assert run(["dead-letters", "list"]) == 0
        listed = capsys.readouterr().out.splitlines()
        assert listed[0] == "table\tpending\treplayed\terror"
        assert f"courses\t3\t0\t{OLD_ERROR}" in listed
        assert run(["dead-letters", "replay", "courses"]) == 4  # one still fails
        assert "3 replayed" in capsys.readouterr().out
        assert run(["dead-letters", "list", "courses"]) == 0
        assert f"courses\t0\t3\t{OLD_ERROR}" in capsys.readouterr().out
    finally:
        environment.settings.cache_clear()


def test_a_bad_table_name_is_one_clear_error(wh: DuckDBWarehouse) -> None:
    with pytest.raises(ValueError, match="table"):
        replay(wh, 'courses"; DROP TABLE x; --', out=lambda _: None)
    assert ChangeBatch("courses").table == "courses"
