"""Mart figures computed in plain Python from the simulated platform (fixture_warehouse.simulate),
independently of the dbt SQL. Business definitions are the ones documented on the marts."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from tests.dbt.fixture_warehouse import SNAPSHOT_AT, Entity, Platform

STARTED = {"in_progress", "completed"}


def _alive(p: Platform, table: str) -> list[Entity]:
    return [e for e in p.entities[table] if e.deleted_at is None]


def _utc_date(t: datetime) -> date:
    return t.astimezone(UTC).date()


def completion_time(e: Entity) -> datetime | None:
    row = e.current
    if row["status"] != "completed":
        return None
    return row["completed_at"] or row["updated_at"]


def enrollment_funnel(p: Platform) -> dict[tuple[int, date], dict]:
    out: dict[tuple[int, date], dict] = defaultdict(lambda: dict(enrolled=0, started=0, completed=0, dropped=0))
    for e in _alive(p, "enrollments"):
        row = e.current
        key = (row["course_id"], _utc_date(row["enrolled_at"]).replace(day=1))
        f = out[key]
        f["enrolled"] += 1
        f["started"] += any(v["status"] in STARTED for _, v in e.versions)
        f["completed"] += row["status"] == "completed"
        f["dropped"] += row["status"] == "dropped"
    for f in out.values():
        f["start_rate"] = round(f["started"] / f["enrolled"], 4)
        f["completion_rate"] = round(f["completed"] / f["enrolled"], 4)
    return dict(out)


def course_completion(p: Platform) -> dict[int, dict]:
    out = {}
    for c in p.entities["courses"]:
        cid = c.current["course_id"]
        es = [e for e in _alive(p, "enrollments") if e.current["course_id"] == cid]
        statuses = [e.current["status"] for e in es]
        done = [e for e in es if e.current["status"] == "completed"]
        days = [(_utc_date(completion_time(e)) - _utc_date(e.current["enrolled_at"])).days for e in done]
        n, completed, dropped = len(es), statuses.count("completed"), statuses.count("dropped")
        out[cid] = {
            "enrollments": n,
            "active": statuses.count("enrolled") + statuses.count("in_progress"),
            "completed": completed,
            "dropped": dropped,
            "completion_rate": round(completed / n, 4) if n else None,
            "finished_completion_rate": round(completed / (completed + dropped), 4) if completed + dropped else None,
            "avg_days_to_complete": round(sum(days) / len(days), 2) if days else None,
            "revenue": sum((e.current["amount_paid"] for e in es), Decimal("0")),
        }
    return out


def activity(p: Platform) -> set[tuple[int, datetime, str]]:
    """(user, time, kind) of every observable activity (CDC snapshot reads are not activity)."""
    acts: set[tuple[int, datetime, str]] = set()
    for e in _alive(p, "enrollments"):
        acts.add((e.current["user_id"], e.current["enrolled_at"], "enrolled"))
        if completion_time(e):
            acts.add((e.current["user_id"], completion_time(e), "completed_course"))
    for e in p.entities["enrollments"]:  # updates seen by CDC, also of enrollments deleted later
        for t, row in e.versions[1:]:
            if t >= SNAPSHOT_AT:
                acts.add((row["user_id"], t, "course_progress"))
    for uid, logins in p.logins.items():
        before = [t for t in logins if t < SNAPSHOT_AT]
        seen = ([max(before)] if before else []) + [t for t in logins if t >= SNAPSHOT_AT]
        acts.update((uid, t, "login") for t in seen)
    for e in _alive(p, "training_attendance"):
        if e.current["checked_in_at"] is not None:
            acts.add((e.current["user_id"], e.current["checked_in_at"], "attended_training"))
    return acts


def active_learners_weekly(p: Platform) -> dict[date, dict]:
    learners = {e.current["user_id"] for e in p.entities["users"] if e.current["role"] == "learner"}
    weeks: dict[date, list[tuple[int, datetime, str]]] = defaultdict(list)
    for a in activity(p):
        if a[0] in learners:
            d = _utc_date(a[1])
            weeks[d - timedelta(days=d.weekday())].append(a)
    return {
        week: {
            "active_learners": len({a[0] for a in acts}),
            "activity_events": len(acts),
            "learners_logged_in": len({a[0] for a in acts if a[2] == "login"}),
        }
        for week, acts in weeks.items()
    }


def _location(raw: str) -> str:
    return "Online" if raw.strip().lower() in ("online", "remote", "virtual") else raw.strip()


def training_attendance(p: Platform) -> dict[tuple[int, str], dict]:
    names = {e.current["user_id"]: e.current["full_name"].strip() for e in p.entities["users"]}
    out: dict[tuple[int, str], dict] = {}
    for t in _alive(p, "trainings"):
        tr = t.current
        if tr["status"] != "completed":
            continue
        key = (tr["trainer_id"], _location(tr["location"]))
        agg = out.setdefault(
            key,
            dict(
                trainer_name=names[tr["trainer_id"]],
                trainings_held=0,
                seats_offered=0,
                registrations=0,
                attended=0,
                scores=[],
            ),
        )
        agg["trainings_held"] += 1
        agg["seats_offered"] += tr["capacity"]
        for a in _alive(p, "training_attendance"):
            r = a.current
            if r["training_id"] != tr["training_id"]:
                continue
            agg["registrations"] += 1
            agg["attended"] += bool(r["attended"] or r["checked_in_at"] is not None)
            if r["feedback_score"] is not None:
                agg["scores"].append(r["feedback_score"])
    for agg in out.values():
        regs, att, scores = agg["registrations"], agg["attended"], agg.pop("scores")
        agg["no_shows"] = regs - att
        agg["attendance_rate"] = round(att / regs, 4) if regs else None
        agg["no_show_rate"] = round((regs - att) / regs, 4) if regs else None
        agg["seat_utilization"] = round(att / agg["seats_offered"], 4)
        agg["avg_feedback_score"] = round(sum(scores) / len(scores), 2) if scores else None
    return out


def dim_users(p: Platform) -> dict[int, dict]:
    acts = activity(p)
    out = {}
    for u in p.entities["users"]:
        uid = u.current["user_id"]
        times = [a[1] for a in acts if a[0] == uid]
        es = [e for e in _alive(p, "enrollments") if e.current["user_id"] == uid]
        regs = [a for a in _alive(p, "training_attendance") if a.current["user_id"] == uid]
        out[uid] = {
            "email": u.current["email"].lower(),
            "first_activity_at": min(times) if times else None,
            "last_activity_at": max(times) if times else None,
            "enrollments": len(es),
            "completed_courses": sum(e.current["status"] == "completed" for e in es),
            "trainings_attended": sum(
                bool(a.current["attended"] or a.current["checked_in_at"] is not None) for a in regs
            ),
        }
    return out


# ---------------------------------------------------------------------------------------------------
# Web marts (from p.web_events and the current enrollments / courses)


def web_identities(p: Platform) -> dict[str, int]:
    """anonymous_id -> the stitched user: user_id of the visitor's most recent event that carries one
    (latest occurred_at, ties broken by the larger event_id); visitors who never logged in have none."""
    latest: dict[str, dict] = {}
    for ev in p.web_events:
        if ev["user_id"] is None:
            continue
        seen = latest.get(ev["anonymous_id"])
        if seen is None or (ev["occurred_at"], ev["event_id"]) > (seen["occurred_at"], seen["event_id"]):
            latest[ev["anonymous_id"]] = ev
    return {anon: ev["user_id"] for anon, ev in latest.items()}


def _week_start(t: datetime) -> date:
    d = _utc_date(t)
    return d - timedelta(days=d.weekday())


def course_page_conversion(p: Platform) -> dict[tuple[int, date], dict]:
    """Per (course, ISO week of the view): course-page views (course pages without a course excluded),
    viewers (anonymous visitors), known viewers (distinct stitched users), and the viewers whose stitched
    user enrolled in the course (current enrollments: a deleted one no longer counts) at or after their
    first view of the week and less than 7 days after it."""
    known = web_identities(p)
    enrolled: dict[tuple[int, int], list[datetime]] = defaultdict(list)
    for e in _alive(p, "enrollments"):
        enrolled[(e.current["user_id"], e.current["course_id"])].append(e.current["enrolled_at"])
    views: dict[tuple[int, date, str], list[datetime]] = defaultdict(list)
    for ev in p.web_events:
        if ev["event_type"] == "course_page_view" and ev["course_id"] is not None:
            views[(ev["course_id"], _week_start(ev["occurred_at"]), ev["anonymous_id"])].append(ev["occurred_at"])
    out: dict[tuple[int, date], dict] = {}
    for (cid, week, anon), times in views.items():
        agg = out.setdefault((cid, week), dict(course_page_views=0, viewers=set(), known=set(), converted=set()))
        agg["course_page_views"] += len(times)
        agg["viewers"].add(anon)
        uid = known.get(anon)
        if uid is None:
            continue
        agg["known"].add(uid)
        first = min(times)
        if any(first <= t < first + timedelta(days=7) for t in enrolled.get((uid, cid), [])):
            agg["converted"].add(anon)
    return {
        key: {
            "conversion_id": f"{key[0]}|{key[1].isoformat()}",
            "course_page_views": agg["course_page_views"],
            "viewers": len(agg["viewers"]),
            "known_viewers": len(agg["known"]),
            "converted_viewers": len(agg["converted"]),
            "conversion_rate": len(agg["converted"]) / len(agg["viewers"]),
        }
        for key, agg in out.items()
    }


def course_engagement(p: Platform) -> dict[int, dict]:
    """Per course: its enrolled learners (current enrollments) and, of those, the ones active on the course's
    pages (any web event of the course by a visitor stitched to them), in how many sessions and on how many
    distinct (learner, day) pairs."""
    known = web_identities(p)
    out = {}
    for c in _alive(p, "courses"):
        cid = c.current["course_id"]
        learners = {e.current["user_id"] for e in _alive(p, "enrollments") if e.current["course_id"] == cid}
        acts = [(known[ev["anonymous_id"]], ev) for ev in p.web_events
                if ev["course_id"] == cid and known.get(ev["anonymous_id"]) in learners]
        active = {uid for uid, _ in acts}
        out[cid] = {
            "enrolled_learners": len(learners),
            "active_learners": len(active),
            "sessions": len({ev["session_id"] for _, ev in acts}),
            "learner_active_days": len({(uid, ev["event_date"]) for uid, ev in acts}),
            "active_share": len(active) / len(learners) if learners else None,
        }
    return out


def identity_stitching(p: Platform) -> dict[date, dict]:
    """Per day (UTC) of activity: visitors, and those stitched to a user (by any of their events, also a
    login on a later day)."""
    known = web_identities(p)
    days: dict[date, set[str]] = defaultdict(set)
    for ev in p.web_events:
        days[ev["event_date"]].add(ev["anonymous_id"])
    return {
        day: {
            "visitors": len(anons),
            "stitched_visitors": sum(a in known for a in anons),
            "stitch_rate": sum(a in known for a in anons) / len(anons),
        }
        for day, anons in days.items()
    }
