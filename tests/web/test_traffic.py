"""The demo web traffic: its properties checked with plain Python, then posted through the stack's collector
(``corisync stack up`` starts it) and found in ``web.events`` and its DLQ; and ``corisync demo`` posting it."""

import json
import math
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from corisync_assets.web import traffic
from corisync_assets.web.contract import ContractError, validate_event

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
USERS = list(range(1001, 1121))
COURSES = list(range(1, 25))
REQUIRED = ("event_id", "event_type", "schema_version", "anonymous_id", "occurred_at", "page_url", "page_path")
TYPES = {"page_view", "course_page_view", "video_progress", "quiz_submission", "search", "login"}


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return traffic.generate(42, USERS, COURSES, 400, NOW)


def malformed_kind(ev: dict) -> str | None:
    """Why an event breaks the contract, judged field by field here (None: it does not)."""
    if any(f not in ev for f in REQUIRED):
        return "missing_field"
    if (not isinstance(ev["anonymous_id"], str) or not isinstance(ev.get("properties", {}), dict)
            or isinstance(ev["schema_version"], str)
            or any(ev.get(f) is not None and type(ev[f]) is not int for f in ("user_id", "course_id"))):
        return "wrong_type"
    if ev["schema_version"] != 1:
        return "unknown_schema_version"
    if ev["event_type"] not in TYPES:
        return "unknown_event_type"
    return None


def when(ev: dict) -> datetime:
    return datetime.fromisoformat(ev["occurred_at"].replace("Z", "+00:00"))


def valid_unique(events: list[dict]) -> list[dict]:
    seen, out = set(), []
    for ev in events:
        if malformed_kind(ev) is None and ev["event_id"] not in seen:
            seen.add(ev["event_id"])
            out.append(ev)
    return out


def test_deterministic_for_a_seed(events):
    assert traffic.generate(42, USERS, COURSES, 400, NOW) == events
    assert traffic.generate(43, USERS, COURSES, 400, NOW) != events
    assert 5 * 400 <= len(events) <= 15 * 400
    with pytest.raises(ValueError):
        traffic.generate(1, USERS, COURSES, 10, NOW.replace(tzinfo=None))


def test_a_small_share_is_malformed_of_every_kind_and_only_those_break_the_contract(events):
    kinds = defaultdict(int)
    for ev in events:
        kind = malformed_kind(ev)
        kinds[kind] += 1
        try:
            validate_event(ev)
            assert kind is None, ev
        except ContractError:
            assert kind is not None, ev
    bad = len(events) - kinds[None]
    assert 0.01 <= bad / len(events) <= 0.04
    assert set(kinds) == {None, "missing_field", "wrong_type", "unknown_schema_version", "unknown_event_type"}


def test_exact_duplicates_come_later_with_the_same_event_id(events):
    first_at: dict[str, int] = {}
    duplicates = 0
    for pos, ev in enumerate(events):
        if ev["event_id"] in first_at:
            duplicates += 1
            assert ev == events[first_at[ev["event_id"]]]  # the very same event, re-sent
            assert pos > first_at[ev["event_id"]]
        else:
            first_at[ev["event_id"]] = pos
    assert 0.005 <= duplicates / len(events) <= 0.05


def test_late_events_arrive_among_recent_ones(events):
    valid = [ev for ev in events if malformed_kind(ev) is None]
    late = [i for i, ev in enumerate(valid) if when(ev) <= NOW - timedelta(hours=5)]
    recent = [i for i, ev in enumerate(valid) if when(ev) >= NOW - timedelta(hours=3)]
    assert late and recent
    assert len(late) + len(recent) == len(valid)  # nothing between 3 h and 5 h old
    assert max(late) > min(recent) and min(late) > len(valid) * 0.3  # posted after recent events
    assert all(NOW - timedelta(hours=31) <= when(ev) <= NOW for ev in valid)


def test_out_of_order_within_batches(events):
    inversions = 0
    for start in range(0, len(events), 100):
        batch = [when(ev) for ev in events[start:start + 100] if malformed_kind(ev) is None]
        inversions += sum(1 for a, b in pairwise(batch) if b < a)
    assert inversions >= len(events) / 100  # on average at least one per batch


def test_sessions_and_returning_visitors(events):
    by_visitor: dict[str, list[dict]] = defaultdict(list)
    for ev in valid_unique(events):
        by_visitor[ev["anonymous_id"]].append(ev)
    returning = 0
    sessions = 0
    for evs in by_visitor.values():
        evs.sort(key=when)
        sessions += 1
        for a, b in pairwise(evs):
            gap = (when(b) - when(a)).total_seconds()
            assert gap <= 300 or gap > 30 * 60, gap  # seconds to minutes within a visit, > 30 min between
            if gap > 30 * 60:
                returning += 1
                sessions += 1
                assert a["session_id"] != b["session_id"]
            else:
                assert a["session_id"] == b["session_id"]
    assert returning >= 0.1 * len(by_visitor)
    assert len(valid_unique(events)) / sessions >= 3  # several page views per session


def test_anonymous_visitors_log_in(events):
    by_visitor: dict[str, list[dict]] = defaultdict(list)
    for ev in valid_unique(events):
        by_visitor[ev["anonymous_id"]].append(ev)
    converted = 0
    for evs in by_visitor.values():
        evs.sort(key=when)
        users = [ev["user_id"] for ev in evs]
        if None in users and any(u is not None for u in users):
            converted += 1
            first = next(i for i, u in enumerate(users) if u is not None)
            assert all(u is None for u in users[:first]) and evs[first]["event_type"] == "login"
            assert len(set(users[first:])) == 1 and users[first] in USERS
    assert converted >= 10
    assert {ev["course_id"] for ev in valid_unique(events)} - {None} <= set(COURSES)
    assert sum(ev["user_id"] is None for ev in valid_unique(events)) > 0  # some never log in


def test_timestamps_come_with_several_offsets(events):
    suffixes = {ev["occurred_at"][-6:] if not ev["occurred_at"].endswith("Z") else "Z"
                for ev in events if isinstance(ev.get("occurred_at"), str)}
    assert {"Z", "+01:00", "+02:00", "-05:00"} <= suffixes


def test_no_users_or_courses():
    events = traffic.generate(1, [], [], 30, NOW)
    assert events and all(ev.get("user_id") is None and ev.get("course_id") is None for ev in events
                          if malformed_kind(ev) is None)


# --- through the stack's collector ---------------------------------------------------------------------------


def _messages(s, topic: str) -> list[dict]:
    from tests.web.test_collector import read_topic

    return [json.loads(v) for _, _, v in read_topic(s.kafka_client_config(), topic)]


def _write_key(s) -> str:
    from corisync_assets.web.collector import parse_write_keys

    return parse_write_keys(s.collector_write_keys)["tc4a-web"]


@pytest.mark.stack
def test_stack_runs_the_collector_with_a_generated_key(stack):
    import os
    import re

    from corisync_assets.environment import local_secrets_file
    from corisync_assets.local import stack as local_stack

    assert local_stack.collector_healthy(stack)
    assert local_stack.component_states(stack)["collector"] is True
    path = local_secrets_file(stack.home)
    assert path.stat().st_mode & 0o777 == 0o600
    values = [line.split("=", 1)[1] for line in path.read_text().splitlines()
              if line.startswith("CORISYNC_COLLECTOR_WRITE_KEYS=")]
    assert len(values) == 1 and re.fullmatch(r"tc4a-web=[A-Za-z0-9_-]{32}", values[0])
    assert stack.collector_write_keys == os.environ["CORISYNC_COLLECTOR_WRITE_KEYS"]  # the file's, unless set
    assert _write_key(stack) not in local_stack.collector_logfile(stack).read_text()
    assert local_stack.start_collector(stack) == "running"


@pytest.mark.stack
def test_posted_traffic_lands_in_web_events_and_the_dlq(stack):
    from corisync_assets.local.stack import collector_url

    events = traffic.generate(uuid.uuid4().int % 10**6, USERS, COURSES, 60, datetime.now(UTC))
    summary = traffic.post(events, collector_url(stack), _write_key(stack))
    bad = [ev for ev in events if malformed_kind(ev) is not None]
    assert summary.failed_batches == 0, summary.errors
    assert summary.batches == math.ceil(len(events) / 100)
    assert summary.sent == len(events)
    assert summary.rejected == len(bad) and summary.accepted == len(events) - len(bad)

    ours = {ev["event_id"] for ev in events if malformed_kind(ev) is None}
    landed = [m for m in _messages(stack, stack.web_topic) if m["event_id"] in ours]
    assert len(landed) == summary.accepted  # duplicates posted twice are there twice; nothing else
    assert {m["event_id"] for m in landed} == ours
    assert all(m["source"] == "tc4a-web" for m in landed)
    bad_ids = {ev["event_id"] for ev in bad}
    dead = [m for m in _messages(stack, stack.web_dlq_topic)
            if isinstance(m["raw"], dict) and m["raw"].get("event_id") in bad_ids]
    assert len(dead) == len(bad)


@pytest.mark.stack
def test_corisync_demo_posts_web_traffic(stack):
    from corisync_assets.local.demo import run_demo
    from corisync_assets.local.stack import collector_url
    from corisync_assets.web import traffic as traffic_module

    before = {m["event_id"] for m in _messages(stack, stack.web_topic)}
    count_before = len(_messages(stack, stack.web_topic))
    lines: list[str] = []
    stats = run_demo(rate=0, duration=0, random_seed=3, s=stack, out=lines.append, web_visitors=25)
    assert stats.web is not None and stats.web.failed_batches == 0
    assert 100 <= stats.web.sent <= 25 * 15 and stats.web.accepted > 0.9 * stats.web.sent
    after = _messages(stack, stack.web_topic)
    assert len(after) - count_before == stats.web.accepted
    web_lines = [line for line in lines if line.startswith("web: posted")]
    assert len(web_lines) == 1 and collector_url(stack) in web_lines[0]
    # the learners and published courses of the seeded database are the ones visiting
    users, courses = traffic_module.load_population(stack)
    assert users and courses
    new = [m for m in after if m["event_id"] not in before]
    assert {m["user_id"] for m in new} - {None} <= set(users)
    assert any(m["user_id"] is not None for m in new)
    assert {m["course_id"] for m in new} - {None} <= set(courses)
