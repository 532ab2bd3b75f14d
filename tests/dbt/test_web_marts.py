"""The web marts built by dbt (through Dagster, fixture ``built``) over the fixture's ``raw_web`` tables,
checked against figures computed in Python from the simulated web traffic (tests/dbt/expected.py), not
from the marts' SQL."""

from __future__ import annotations

import json
from datetime import timedelta

import dagster as dg
import pytest

from corisync_assets.dbt import corisync_dbt_assets, corisync_dbt_project
from tests.dbt import expected
from tests.support.dbt_build import BuiltWarehouse
from tests.support.dbt_build import rows as _rows

pytestmark = pytest.mark.timeout(600)

WEB_MARTS = ("mart_course_page_conversion", "mart_course_engagement", "mart_identity_stitching")
WEB_STAGING = ("stg_web_events", "stg_web_identities", "stg_web_sessions", "stg_web_page_daily")
WEB_KEYS = {dg.AssetKey(["marts", m]) for m in WEB_MARTS} | {dg.AssetKey(["staging", m]) for m in WEB_STAGING}
WEB_SOURCES = {dg.AssetKey(["web", t]) for t in ("events", "sessions", "page_daily")}


def _same(got: dict, want: dict, key) -> None:
    for col, value in want.items():
        if isinstance(value, float):
            assert round(got[col], 6) == round(value, 6), (key, col, got[col], value)
        else:
            assert got[col] == value, (key, col, got[col], value)


def test_the_fixture_exercises_the_web_definitions(built: BuiltWarehouse) -> None:
    """Not a check of dbt: the simulated traffic holds the cases the marts' definitions distinguish."""
    p = built.platform
    known = expected.web_identities(p)
    events = p.web_events
    visitors = {e["anonymous_id"] for e in events}
    assert 0 < len(known) < len(visitors)  # some visitors never log in
    first_seen = {}
    for e in sorted(events, key=lambda e: e["occurred_at"]):
        first_seen.setdefault(e["anonymous_id"], e)
    assert any(first_seen[a]["user_id"] is None and a in known for a in visitors)  # stitched by a later login
    assert any(e["event_type"] == "course_page_view" and e["course_id"] is None for e in events)
    assert any(e["is_late"] for e in events) and not all(e["is_late"] for e in events)
    assert len({s["anonymous_id"] for s in p.web_sessions}) < len(p.web_sessions)
    # course-page views of known viewers before (< 7 days, >= 7 days) and after their enrollments
    gaps = {"within": 0, "long_before": 0, "after": 0}
    deleted_would_convert = False
    for e in p.entities["enrollments"]:
        row = e.current
        for ev in events:
            if (ev["event_type"] == "course_page_view" and ev["course_id"] == row["course_id"]
                    and known.get(ev["anonymous_id"]) == row["user_id"]):
                gap = row["enrolled_at"] - ev["occurred_at"]
                kind = "after" if gap < timedelta(0) else "within" if gap < timedelta(days=7) else "long_before"
                gaps[kind] += 1
                deleted_would_convert |= e.deleted_at is not None and kind == "within"
    assert all(gaps.values()), gaps
    assert deleted_would_convert
    # enrolled learners with a device who never visit one of their courses' pages
    engagement = expected.course_engagement(p)
    assert any(0 < w["active_learners"] < w["enrolled_learners"] for w in engagement.values())
    # a shared device: two users log in at the same instant, the larger event_id decides
    logins = [e for e in events if e["event_type"] == "login"]
    assert any(a["anonymous_id"] == b["anonymous_id"] and a["occurred_at"] == b["occurred_at"]
               and a["user_id"] != b["user_id"] for a in logins for b in logins)


def test_course_page_conversion(built: BuiltWarehouse) -> None:
    want = expected.course_page_conversion(built.platform)
    got = {(r["course_id"], r["week_start"]): r
           for r in _rows(built, "select * from marts.mart_course_page_conversion")}
    assert set(got) == set(want)
    for key, w in want.items():
        _same(got[key], w, key)
    assert len({w for _, w in want}) > 3  # several ISO weeks
    assert all(w.weekday() == 0 for _, w in got)
    converted = sum(w["converted_viewers"] for w in want.values())
    assert 0 < converted < sum(w["known_viewers"] for w in want.values()) < sum(w["viewers"] for w in want.values())


def test_course_engagement(built: BuiltWarehouse) -> None:
    want = expected.course_engagement(built.platform)
    got = {r["course_id"]: r for r in _rows(built, "select * from marts.mart_course_engagement")}
    assert set(got) == set(want)
    for cid, w in want.items():
        _same(got[cid], w, cid)
    assert sum(w["active_learners"] for w in want.values()) > 0


def test_identity_stitching(built: BuiltWarehouse) -> None:
    want = expected.identity_stitching(built.platform)
    got = {r["day"]: r for r in _rows(built, "select * from marts.mart_identity_stitching")}
    assert set(got) == set(want)
    for day, w in want.items():
        _same(got[day], w, day)
    rates = {w["stitch_rate"] for w in want.values()}
    assert len(rates) > 2 and any(0 < r < 1 for r in rates)


def test_web_models_materialized_and_their_dbt_tests_passed(built: BuiltWarehouse) -> None:
    assert built.result.success
    materialized = {m.asset_key for m in built.result.get_asset_materialization_events()}
    assert materialized >= WEB_KEYS
    assert not materialized & WEB_SOURCES  # the web tables are Spark's assets; dbt only reads them
    web_checks = {k for k in corisync_dbt_assets.check_keys if k.asset_key in WEB_KEYS | WEB_SOURCES}
    assert {dg.AssetKey(["marts", m]) for m in WEB_MARTS} <= {k.asset_key for k in web_checks}
    evaluations = {e.asset_check_key: e for e in built.result.get_asset_check_evaluations()
                   if e.asset_check_key in web_checks}
    assert set(evaluations) == web_checks
    failed = [k.to_user_string() for k, e in evaluations.items() if not e.passed]
    assert failed == []


def test_dbt_tests_of_the_web_sources_passed(built: BuiltWarehouse) -> None:
    """Source tests are not asset checks: dagster-dbt reports each as an observation of the source's asset."""
    manifest = json.loads(corisync_dbt_project.manifest_path.read_text())
    declared = {uid for uid, n in manifest["nodes"].items() if n["resource_type"] == "test"
                and any(d.startswith("source.corisync.web.") for d in n["depends_on"]["nodes"])}
    assert len(declared) >= 5  # unique/not_null event_id, not_null anonymous_id, unique/not_null session_id
    observed = {}
    for e in built.result.all_events:
        if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION:
            o = e.event_specific_data.asset_observation
            if o.asset_key in WEB_SOURCES and "unique_id" in o.metadata:
                observed[o.metadata["unique_id"].value] = o.metadata["status"].value
    assert set(observed) == declared
    assert set(observed.values()) == {"pass"}, observed
