"""The pure transforms on DataFrames shaped like the Kafka source's output (no Kafka, no lake), checked
against the plain-Python model in conftest (``reference``) and hand-computed values."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from corisync_assets.web.spark import transform as T
from tests.web.spark.model import (
    D1,
    D2,
    delivered,
    event,
    normalized,
    raw_frame,
    ref_session_id,
    reference,
    scenario,
    simulated_offsets,
    ts,
)


def rows(df) -> list[dict]:
    """Collected through Arrow: timestamps come back timezone-aware (UTC), whatever the local zone."""
    return df.toArrow().to_pylist()


def pipeline(spark, entries, offsets):
    """parse -> valid -> dedupe -> sessionize -> the three tables (stitching over the same events)."""
    parsed = T.parse(raw_frame(spark, entries, offsets))
    events = T.dedupe(T.valid(parsed))
    sessionized = T.sessionize(events)
    stitch = T.stitch_map(events.select("anonymous_id", "user_id", "occurred_at", "event_id"))
    return parsed, {"events": T.event_rows(sessionized), "sessions": T.build_sessions(sessionized, stitch),
                    "page_daily": T.page_daily(sessionized)}


def test_parse_validates_and_reports_the_first_reason(spark):
    entries = scenario()["batch1"]
    parsed = rows(T.parse(raw_frame(spark, entries, simulated_offsets(entries)))
                  .select("kafka_partition", "kafka_offset", "event_id", "invalid_reason", "event_date"))
    reasons = {(r["kafka_partition"], r["kafka_offset"]): r["invalid_reason"] for r in parsed
               if r["invalid_reason"] is not None}
    assert sorted(reasons.values()) == sorted([
        "not a JSON object of the event contract (malformed JSON or a field of the wrong type)",  # not json{
        "missing event_type",
        "value is null or not UTF-8",  # tombstone
        "value is null or not UTF-8",  # not UTF-8
        "not a JSON object of the event contract (malformed JSON or a field of the wrong type)",  # [1, 2]
        "unknown event_type 'bogus'",
        "not a JSON object of the event contract (malformed JSON or a field of the wrong type)",  # user_id "abc"
        "occurred_at is not a timestamp: 'yesterday'",
        "properties is not a JSON object",
    ])
    valid = [r for r in parsed if r["invalid_reason"] is None]
    assert len(valid) == 15 and all(r["event_date"] in (D1, D2) for r in valid)
    assert all(r["event_date"] is None for r in parsed if r["invalid_reason"] is not None)


def test_parse_keeps_types_and_flags_late_events(spark):
    e = event("z1", "anon-z", "login", "2026-11-27 10:00:00", received="2026-11-27 11:00:00.000001", user=3,
              course=4, properties={"a": {"b": [1, 2]}})
    on_time = event("z2", "anon-z", "login", "2026-11-27 10:00:00", received="2026-11-27 11:00:00", user=3)
    got = {r["event_id"]: r for r in rows(T.parse(raw_frame(spark, [(2, e), (2, on_time)], [41, 42])))}
    z1 = got["z1"]
    assert z1["occurred_at"] == ts("2026-11-27 10:00:00") and z1["received_at"] == ts("2026-11-27 11:00:00.000001")
    assert (z1["user_id"], z1["course_id"], z1["schema_version"]) == (3, 4, 1)
    assert z1["properties"].replace(" ", "") == '{"a":{"b":[1,2]}}'
    assert (z1["kafka_partition"], z1["kafka_offset"], z1["client_session_id"]) == (2, 41, None)
    assert z1["is_late"] is True and got["z2"]["is_late"] is False  # more than one hour, not exactly one


def test_tables_equal_the_plain_python_model(spark):
    """Late, out-of-order and duplicate events, the 30-minute boundary, stitching, entry/exit pages,
    durations and page counts: every row of the three tables as the model computes them."""
    s = scenario()
    entries = s["batch1"] + s["batch2"]
    offsets = simulated_offsets(entries)
    _parsed, tables = pipeline(spark, entries, offsets)
    expected = reference(delivered(entries, offsets))
    for name, df in tables.items():
        assert normalized(name, rows(df)) == normalized(name, expected[name]), name


def test_thirty_minutes_is_the_same_session_thirty_and_one_second_is_not(spark):
    entries = [(0, event("g1", "anon-g", "page_view", "2026-11-27 08:00:00", path="/a")),
               (0, event("g2", "anon-g", "page_view", "2026-11-27 08:30:00", path="/b")),
               (0, event("g3", "anon-g", "course_page_view", "2026-11-27 09:00:01", path="/c", course=1)),
               (0, event("g4", "anon-g", "search", "2026-11-27 09:10:00", path="/d"))]
    _parsed, tables = pipeline(spark, entries, [0, 1, 2, 3])
    sessions = sorted(rows(tables["sessions"]), key=lambda r: r["session_start"])
    assert [(r["session_start"], r["session_end"], r["event_count"], r["page_count"], r["entry_page"],
             r["exit_page"], r["duration_s"]) for r in sessions] == [
        (ts("2026-11-27 08:00:00"), ts("2026-11-27 08:30:00"), 2, 2, "/a", "/b", 1800.0),
        (ts("2026-11-27 09:00:01"), ts("2026-11-27 09:10:00"), 2, 1, "/c", "/d", 599.0)]
    assert sessions[0]["session_id"] == ref_session_id("anon-g", ts("2026-11-27 08:00:00"))
    assert {r["event_id"]: r["session_id"] for r in rows(tables["events"])} == {
        "g1": sessions[0]["session_id"], "g2": sessions[0]["session_id"],
        "g3": sessions[1]["session_id"], "g4": sessions[1]["session_id"]}


def test_a_late_event_merges_sessions_and_stitching_reaches_earlier_sessions(spark):
    base = [(0, event("h1", "anon-h", "page_view", "2026-11-27 08:00:00", path="/x")),
            (0, event("h2", "anon-h", "page_view", "2026-11-27 09:00:00", path="/y"))]
    late = (0, event("h3", "anon-h", "login", "2026-11-27 08:30:00", received="2026-11-29 08:00:00",
                     path="/login", user=11))
    _p, before = pipeline(spark, base, [0, 1])
    assert [(r["event_count"], r["user_id"]) for r in rows(before["sessions"])] == [(1, None), (1, None)]
    _p, after = pipeline(spark, [*base, late], [0, 1, 2])
    got = rows(after["sessions"])
    assert [(r["session_start"], r["event_count"], r["page_count"], r["exit_page"], r["user_id"]) for r in got] == [
        (ts("2026-11-27 08:00:00"), 3, 2, "/y", 11)]


def test_dedupe_keeps_the_earliest_received_copy_and_prefers_the_lake_on_a_tie(spark):
    e = event("d1", "anon-d", "page_view", "2026-11-27 08:00:00")
    later = {**e, "received_at": e["received_at"] + timedelta(seconds=1), "page_path": "/later"}
    parsed = T.valid(T.parse(raw_frame(spark, [(0, later), (1, e), (0, e)], [5, 3, 9])))
    assert [(r["kafka_partition"], r["kafka_offset"]) for r in rows(T.dedupe(parsed))] == [(0, 9)]
    assert sorted(tuple(r.values()) for r in rows(T.dedupe_losers(parsed))) == [(1, 0, 5), (1, 1, 3)]
    from pyspark.sql import functions as F

    lake_copy = parsed.filter(F.col("kafka_offset") == 9).withColumn("origin", F.lit(T.LAKE_ORIGIN))
    mixed = lake_copy.unionByName(parsed.filter(F.col("kafka_offset") == 9))
    assert [r["origin"] for r in rows(T.dedupe(mixed))] == [T.LAKE_ORIGIN]


def test_dedupe_counts_against_the_lake(spark):
    """Batch copies of stored events are duplicates "in the lake"; a copy stored on a date the batch does
    not rewrite (pinned) stays, even when the batch's copy was received earlier."""
    from pyspark.sql import functions as F

    stored = [event("s1", "anon-s", "page_view", "2026-11-27 08:00:00"),
              event("s2", "anon-s", "page_view", "2026-11-26 08:00:00", received="2026-11-26 09:00:00")]
    new = [stored[0], {**stored[1], "received_at": ts("2026-11-26 08:30:00")},
           event("s3", "anon-s", "page_view", "2026-11-27 07:00:00", received="2026-11-27 09:00:00"),
           event("s4", "anon-s", "page_view", "2026-11-27 07:30:00")]
    lake = T.valid(T.parse(raw_frame(spark, [(0, e) for e in stored], [0, 1]))).withColumn(
        "origin", F.lit(T.LAKE_ORIGIN))
    batch = T.valid(T.parse(raw_frame(spark, [(0, e) for e in new], [2, 3, 4, 5])))
    plan = T.dedupe_plan(lake.unionByName(batch),
                         pinned=(F.col("origin") == T.LAKE_ORIGIN) & (F.col("event_date") != D1))
    counts = rows(T.dedupe_counts(plan))[0]
    assert counts == {"batch": 4, "batch_ids": 4, "in_lake": 2, "new": 2, "late": 1, "out_of_order": 2,
                      "losers": 2}
    kept = rows(T.dedupe(lake.unionByName(batch), plan.filter("loser").select(*T.DEDUPE_KEYS)))
    assert sorted((r["event_id"], r["origin"]) for r in kept) == [
        ("s1", T.LAKE_ORIGIN), ("s2", T.LAKE_ORIGIN), ("s3", T.BATCH_ORIGIN), ("s4", T.BATCH_ORIGIN)]


def test_out_of_order_compares_with_earlier_offsets_of_the_same_visitor(spark):
    entries = scenario()["batch1"]
    batch = T.valid(T.parse(raw_frame(spark, entries, simulated_offsets(entries))))
    flagged = {r["event_id"] for r in rows(T.out_of_order(T.dedupe(batch))) if r["out_of_order"]}
    assert flagged == {"b2", "b3"}


def test_stored_session_ids_are_recognized_as_derived_or_the_clients(spark):
    """The events table keeps the client's session id or the derived one; reading it back, a derived id is
    recognized (and recomputed), a client's kept."""
    entries = [(0, event("k1", "anon-k", "page_view", "2026-11-27 08:00:00")),
               (0, event("k2", "anon-k", "page_view", "2026-11-27 08:10:00", session="client-1")),
               (0, event("k3", "anon-k", "page_view", "2026-11-27 08:20:00"))]
    _p, tables = pipeline(spark, entries, [0, 1, 2])
    stored = tables["events"]
    work = {r["event_id"]: r for r in rows(T.lake_work_rows(stored, stored))}
    derived = ref_session_id("anon-k", ts("2026-11-27 08:00:00"))
    assert {k: (r["client_session_id"], r["stored_session_id"], r["origin"]) for k, r in work.items()} == {
        "k1": (None, derived, T.LAKE_ORIGIN), "k2": ("client-1", "client-1", T.LAKE_ORIGIN),
        "k3": (None, derived, T.LAKE_ORIGIN)}


def test_batch_stats_and_late_night(spark):
    entries = [(0, event("n1", "anon-n", "page_view", "2026-11-27 23:30:00")),
               (1, event("n2", "anon-m", "page_view", "2026-11-28 23:29:59")), (1, "not json")]
    got = {(r["kafka_partition"], r["event_date"]): (r["messages"], r["invalid"], r["late_night"])
           for r in rows(T.batch_stats(T.parse(raw_frame(spark, entries, [0, 0, 1]))))}
    assert got == {(0, D1): (1, 0, True), (1, D2): (1, 0, False), (1, None): (1, 1, False)}


@pytest.mark.parametrize(("dates", "late_night", "sessions", "window"), [
    ({date(2026, 11, 27)}, set(), {date(2026, 11, 26), date(2026, 11, 27)},
     {date(2026, 11, d) for d in (25, 26, 27, 28)}),
    ({date(2026, 11, 27)}, {date(2026, 11, 27)}, {date(2026, 11, d) for d in (26, 27, 28)},
     {date(2026, 11, d) for d in (25, 26, 27, 28, 29)}),
])
def test_affected_dates(dates, late_night, sessions, window):
    assert T.session_dates(dates, late_night) == sessions
    assert T.window_dates(sessions) == window
