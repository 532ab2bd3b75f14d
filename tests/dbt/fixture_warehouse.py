"""A small, realistic raw CDC warehouse for the dbt tests, built per the raw layer contract.

The tc4a platform is *simulated* (users log in, enroll, progress, complete or drop; trainers hold
trainings; learners register and show up or not). From that simulation this module writes what the raw
CDC assets would have landed: the current-state tables ``raw_cdc.T`` and the changelogs
``raw_cdc.T__changelog`` (Debezium snapshot at ``SNAPSHOT_AT``: rows older than that arrive as op ``r``
with their state at that time, later changes as ``c``/``u``/``d``).

Web analytics are simulated too (``simulate_web``, its own random stream): anonymous visitors browse,
some log in as platform users (some only on a later visit), view course pages before and after their
enrollments; ``build_warehouse`` writes them as the Spark assets would land them in ``raw_web``
(events, 30-minute sessions and daily page figures, computed here).

The Airbyte syncs (the trainers' Google Sheets workbook, GA4) are simulated from the platform in
tests/dbt/fixture_airbyte.py and land in ``raw_airbyte``. Two learners (44, 45) share a name up to case and
spaces, so a sheet that names only one of them cannot be matched by name.

The expected mart figures in the tests are computed from the simulation objects here, in Python, not
from the marts' SQL.
"""

from __future__ import annotations

import json
import random
import uuid
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb

from corisync_assets.web.tables import WEB_EVENTS, WEB_PAGE_DAILY, WEB_SESSIONS
from tests.dbt.fixture_airbyte import AirbyteFixture, simulate_airbyte, write_airbyte

SNAPSHOT_AT = datetime(2025, 2, 1, tzinfo=UTC)
LANDED_AT = datetime(2025, 4, 30, 12, 0, tzinfo=UTC)
TABLES = ("users", "courses", "enrollments", "trainings", "training_attendance")

# Postgres column -> DuckDB type, per the contract (bigint->BIGINT, text/char->VARCHAR, jsonb->JSON,
# timestamptz->TIMESTAMPTZ, numeric(p,s)->DECIMAL(p,s), integer->INTEGER, smallint->SMALLINT).
COLUMNS: dict[str, dict[str, str]] = {
    "users": {
        "user_id": "BIGINT",
        "email": "VARCHAR",
        "full_name": "VARCHAR",
        "country_code": "VARCHAR",
        "role": "VARCHAR",
        "is_active": "BOOLEAN",
        "bio": "VARCHAR",
        "preferences": "JSON",
        "signup_at": "TIMESTAMPTZ",
        "last_login_at": "TIMESTAMPTZ",
        "updated_at": "TIMESTAMPTZ",
    },
    "courses": {
        "course_id": "BIGINT",
        "code": "VARCHAR",
        "title": "VARCHAR",
        "description": "VARCHAR",
        "category": "VARCHAR",
        "level": "VARCHAR",
        "price": "DECIMAL(10,2)",
        "duration_hours": "DECIMAL(6,1)",
        "is_published": "BOOLEAN",
        "tags": "JSON",
        "created_at": "TIMESTAMPTZ",
        "updated_at": "TIMESTAMPTZ",
    },
    "enrollments": {
        "enrollment_id": "BIGINT",
        "user_id": "BIGINT",
        "course_id": "BIGINT",
        "status": "VARCHAR",
        "progress_pct": "DECIMAL(5,2)",
        "amount_paid": "DECIMAL(10,2)",
        "enrolled_at": "TIMESTAMPTZ",
        "completed_at": "TIMESTAMPTZ",
        "updated_at": "TIMESTAMPTZ",
    },
    "trainings": {
        "training_id": "BIGINT",
        "course_id": "BIGINT",
        "trainer_id": "BIGINT",
        "location": "VARCHAR",
        "starts_at": "TIMESTAMPTZ",
        "ends_at": "TIMESTAMPTZ",
        "capacity": "INTEGER",
        "status": "VARCHAR",
        "notes": "VARCHAR",
        "updated_at": "TIMESTAMPTZ",
    },
    "training_attendance": {
        "training_id": "BIGINT",
        "user_id": "BIGINT",
        "registered_at": "TIMESTAMPTZ",
        "attended": "BOOLEAN",
        "checked_in_at": "TIMESTAMPTZ",
        "feedback_score": "SMALLINT",
        "feedback": "VARCHAR",
    },
}
KEYS = {
    "users": ("user_id",),
    "courses": ("course_id",),
    "enrollments": ("enrollment_id",),
    "trainings": ("training_id",),
    "training_attendance": ("training_id", "user_id"),
}
CDC_COLUMNS = {"_cdc_op": "VARCHAR", "_cdc_lsn": "BIGINT", "_cdc_ts_ms": "BIGINT", "_cdc_landed_at": "TIMESTAMPTZ"}
CHANGELOG_COLUMNS = {
    "event_id": "VARCHAR",
    "op": "VARCHAR",
    "key": "JSON",
    "before": "JSON",
    "after": "JSON",
    "source_lsn": "BIGINT",
    "source_txid": "BIGINT",
    "source_ts_ms": "BIGINT",
    "snapshot": "VARCHAR",
    "kafka_topic": "VARCHAR",
    "kafka_partition": "INTEGER",
    "kafka_offset": "BIGINT",
    "landed_at": "TIMESTAMPTZ",
}


@dataclass
class Entity:
    """One row's life: its successive states (time, full row) and maybe its deletion time."""

    table: str
    versions: list[tuple[datetime, dict]] = field(default_factory=list)
    deleted_at: datetime | None = None

    def change(self, at: datetime, **values) -> dict:
        row = {**self.versions[-1][1], **values} if self.versions else dict(values)
        if "updated_at" in COLUMNS[self.table]:
            row["updated_at"] = at
        self.versions.append((at, row))
        return row

    @property
    def current(self) -> dict:
        return self.versions[-1][1]


@dataclass
class Platform:
    """The simulated truth plus its changelog bookkeeping."""

    entities: dict[str, list[Entity]] = field(default_factory=lambda: {t: [] for t in TABLES})
    logins: dict[int, list[datetime]] = field(default_factory=dict)
    # raw_web rows (dicts keyed by the PartitionedTable columns), see simulate_web
    web_events: list[dict] = field(default_factory=list)
    web_sessions: list[dict] = field(default_factory=list)
    web_page_daily: list[dict] = field(default_factory=list)
    # raw_airbyte rows (the trainers' workbook, GA4), see tests/dbt/fixture_airbyte.py
    airbyte: AirbyteFixture = field(default_factory=AirbyteFixture)

    def new(self, table: str, at: datetime, **values) -> Entity:
        entity = Entity(table)
        entity.change(at, **values)
        self.entities[table].append(entity)
        return entity

    def alive(self, table: str) -> list[dict]:
        return [e.current for e in self.entities[table] if e.deleted_at is None]


def _ts(rng: random.Random, start: datetime, end: datetime) -> datetime:
    seconds = int((end - start).total_seconds())
    return (start + timedelta(seconds=rng.randrange(max(seconds, 1)))).replace(microsecond=0)


def simulate(seed: int = 7) -> Platform:
    rng = random.Random(seed)
    p = Platform()
    t0, t_end = datetime(2024, 12, 1, tzinfo=UTC), datetime(2025, 4, 20, tzinfo=UTC)
    countries = ["de", "DE", "fr", "NL ", "", None, "es"]
    # users: 4 trainers, 1 admin, 40 learners
    for uid in range(1, 46):
        role = "trainer" if uid <= 4 else "admin" if uid == 5 else "learner"
        signup = _ts(rng, t0, datetime(2025, 3, 15, tzinfo=UTC))
        email = f"User{uid}@Example.org" if uid % 7 == 0 else f"user{uid}@example.org"
        u = p.new(
            "users",
            signup,
            user_id=uid,
            email=email,
            full_name={44: " Alex  Kim ", 45: "alex kim"}.get(uid, f" Person {uid} "),  # 44, 45: namesakes
            role=role,
            country_code=rng.choice(countries),
            is_active=uid % 11 != 0,
            bio=None,
            preferences=json.dumps({"lang": "en"}),
            signup_at=signup,
            last_login_at=None,
        )
        p.logins[uid] = []
        login = signup
        for _ in range(rng.randrange(0, 7)):
            login = login + timedelta(days=rng.randrange(1, 20), seconds=rng.randrange(86400))
            if login > t_end:
                break
            u.change(login, last_login_at=login)
            p.logins[uid].append(login)
    # courses
    levels = ["beginner", "intermediate", "advanced"]
    for cid in range(1, 7):
        created = _ts(rng, t0 - timedelta(days=60), t0)
        c = p.new(
            "courses",
            created,
            course_id=cid,
            code=f"tc-{100 + cid}",
            title=f"Course {cid}",
            description=None,
            category=rng.choice(["Data", "Cloud", "Leadership"]),
            level=levels[cid % 3],
            price=Decimal(f"{49 + 10 * cid}.00"),
            duration_hours=Decimal(f"{cid * 2}.5"),
            is_published=cid != 6,
            tags=json.dumps(["x"]),
            created_at=created,
        )
        if cid == 2:  # a price change after the CDC snapshot
            c.change(datetime(2025, 3, 3, 9, 0, tzinfo=UTC), price=Decimal("79.00"))
    # enrollments with a status history
    eid = 0
    users = {e.current["user_id"]: e for e in p.entities["users"]}
    for uid in range(6, 46):
        for cid in rng.sample(range(1, 7), rng.randrange(0, 4)):
            eid += 1
            enrolled = _ts(rng, users[uid].current["signup_at"], t_end - timedelta(days=5))
            paid = Decimal(f"{49 + 10 * cid}.00") if rng.random() < 0.8 else Decimal("0.00")
            e = p.new(
                "enrollments",
                enrolled,
                enrollment_id=eid,
                user_id=uid,
                course_id=cid,
                status="enrolled",
                progress_pct=Decimal("0.00"),
                amount_paid=paid,
                enrolled_at=enrolled,
                completed_at=None,
            )
            at = enrolled
            path = rng.choice(["stay", "start", "start", "complete", "complete", "drop", "start_drop"])
            if path in ("start", "complete", "start_drop"):
                at = min(at + timedelta(days=rng.randrange(1, 10), seconds=rng.randrange(3600)), t_end)
                e.change(at, status="in_progress", progress_pct=Decimal(f"{rng.randrange(5, 60)}.00"))
            if path == "complete":
                at = min(at + timedelta(days=rng.randrange(1, 30), seconds=rng.randrange(3600)), t_end)
                e.change(at, status="completed", progress_pct=Decimal("100.00"), completed_at=at)
            if path in ("drop", "start_drop"):
                at = min(at + timedelta(days=rng.randrange(1, 20), seconds=rng.randrange(3600)), t_end)
                e.change(at, status="dropped")
    # soft rule: an old app version completed without completed_at
    legacy = next(e for e in p.entities["enrollments"] if e.current["status"] == "completed")
    legacy.versions[-1][1]["completed_at"] = None
    # a deleted enrollment (GDPR request) after the snapshot
    doomed = next(e for e in p.entities["enrollments"] if e.versions[0][0] < SNAPSHOT_AT)
    doomed.deleted_at = datetime(2025, 4, 2, 8, 0, tzinfo=UTC)
    # trainings and attendance
    locations = ["Berlin", "Paris", "online", " Online ", "Berlin"]
    learners = list(range(6, 46))
    for tid in range(1, 11):
        starts = _ts(rng, datetime(2025, 1, 5, tzinfo=UTC), datetime(2025, 4, 10, tzinfo=UTC))
        status = "cancelled" if tid == 4 else "scheduled" if tid in (9, 10) else "completed"
        capacity = rng.choice([8, 10, 12])
        p.new(
            "trainings",
            starts - timedelta(days=20),
            training_id=tid,
            course_id=(tid % 6) + 1,
            trainer_id=(tid % 4) + 1,
            location=locations[tid % 5],
            starts_at=starts,
            ends_at=starts + timedelta(hours=3),
            capacity=capacity,
            status=status,
            notes=None,
        )
        for uid in rng.sample(learners, rng.randrange(3, capacity)):
            reg = starts - timedelta(days=rng.randrange(1, 15), seconds=rng.randrange(3600))
            attended, checked_in = None, None
            if status == "completed":
                roll = rng.random()
                if roll < 0.65:
                    attended, checked_in = True, starts + timedelta(minutes=rng.randrange(-10, 20))
                elif roll < 0.75:  # trainer forgot to tick attended, but the check-in is there
                    attended, checked_in = None, starts + timedelta(minutes=rng.randrange(0, 10))
                elif roll < 0.9:
                    attended = False
            p.new(
                "training_attendance",
                reg,
                training_id=tid,
                user_id=uid,
                registered_at=reg,
                attended=attended,
                checked_in_at=checked_in,
                feedback_score=rng.randrange(1, 6) if checked_in else None,
                feedback=None,
            )
    simulate_web(p, seed)
    p.airbyte = simulate_airbyte(p, seed)
    return p


# ---------------------------------------------------------------------------------------------------
# Web analytics

WEB_START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday
WEB_END = datetime(2025, 4, 20, tzinfo=UTC)
SESSION_GAP = timedelta(minutes=30)  # a gap of more than this starts a new session
PAGE_EVENTS = ("page_view", "course_page_view")
OTHER_PAGES = ("/", "/pricing", "/about", "/blog/data-literacy", "/blog/cloud-costs", "/contact", "/trainings")
CATALOG = "/courses"  # a course page without a course (course_id NULL)


def course_path(course_id: int) -> str:
    return f"/courses/tc-{100 + course_id}"


def _visit(rng: random.Random, start: datetime, course_views: tuple[int, ...] = ()) -> list[dict]:
    """One visit's events (no identity yet): some pages, the course pages asked for, maybe the catalog."""
    steps: list[tuple[str, str, int | None]] = []
    if rng.random() < 0.6:
        steps.append(("page_view", rng.choice(OTHER_PAGES), None))
    if rng.random() < 0.3:
        steps.append(("course_page_view", CATALOG, None))
    for cid in course_views:
        steps.extend([("course_page_view", course_path(cid), cid)] * rng.randrange(1, 3))
        if rng.random() < 0.3:
            steps.append(("enroll_click", course_path(cid), cid))
    for _ in range(rng.randrange(0, 3)):
        steps.append(("page_view", rng.choice(OTHER_PAGES), None))
    if not steps:
        steps.append(("page_view", "/", None))
    events, t = [], start
    for event_type, path, cid in steps:
        events.append({"occurred_at": t, "event_type": event_type, "page_path": path, "course_id": cid})
        # mostly short gaps; now and then exactly 30 minutes (same session) or just over (a new one)
        t += timedelta(seconds=rng.choice([rng.randrange(5, 600)] * 10 + [1800, 1801]))
    return events


def _browse(rng: random.Random, start: datetime) -> list[dict]:
    courses = tuple(rng.sample(range(1, 7), rng.randrange(0, 3)))
    return _visit(rng, start, courses)


def _login(at: datetime, user_id: int) -> dict:
    return {"occurred_at": at, "event_type": "login", "page_path": "/login", "course_id": None, "user_id": user_id}


def simulate_web(p: Platform, seed: int) -> None:
    """Web traffic of the simulated platform into ``p.web_events`` / ``web_sessions`` / ``web_page_daily``.

    Its own random stream, so the CDC simulation above is unchanged. Visitors: most learners have a device
    (an anonymous_id) and log in on the first visit, only on a later one, or never; they view the pages of
    courses they enroll in within 7 days before the enrollment, long before, after, or never; everybody
    browses other pages and other courses. Some visitors never log in; one shared device sees two users log
    in at the same instant (the stitched identity then follows the larger event_id).
    """
    rng = random.Random(f"web/{seed}")
    window = (WEB_START, WEB_END)

    def inside(t: datetime) -> bool:
        return window[0] <= t < window[1] - timedelta(hours=3)

    def random_time() -> datetime:
        return _ts(rng, *window)

    enrollments: dict[int, list[Entity]] = defaultdict(list)
    for e in p.entities["enrollments"]:  # deleted ones too: the visitor did view the course then
        enrollments[e.current["user_id"]].append(e)
    learners = sorted(e.current["user_id"] for e in p.entities["users"] if e.current["role"] == "learner")
    eligible = [u for u in learners if enrollments[u] and all(
        e.deleted_at is None and e.current["enrolled_at"] >= WEB_START + timedelta(days=8) for e in enrollments[u])]
    kiosk_users = rng.sample(eligible, 2)
    doomed = [e for e in p.entities["enrollments"] if e.deleted_at is not None]

    visitors: dict[str, list[dict]] = {}

    def anonymous_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    for uid in learners:
        if uid in kiosk_users or (rng.random() < 0.15 and not any(e in doomed for e in enrollments[uid])):
            continue  # no device of their own
        visits: list[list[dict]] = []
        for e in enrollments[uid]:
            enrolled = e.current["enrolled_at"]
            pattern = "within" if e in doomed else rng.choice(["within", "within", "long_before", "after", "none"])
            if pattern == "within":
                at = enrolled - timedelta(seconds=rng.randrange(600, 6 * 86400 + 20 * 3600))
            elif pattern == "long_before":
                at = enrolled - timedelta(seconds=rng.randrange(8 * 86400, 20 * 86400))
            elif pattern == "after":
                at = enrolled + timedelta(seconds=rng.randrange(3600, 10 * 86400))
            else:
                continue  # enrolled without ever visiting the course's page
            if inside(at):
                visits.append(_visit(rng, at, (e.current["course_id"],)))
        while len(visits) < 2 or rng.random() < 0.5:
            visits.append(_browse(rng, random_time()))
        visits.sort(key=lambda v: v[0]["occurred_at"])
        mode = rng.choice(["first", "first", "later", "later", "never"])
        if mode == "never" and any(e in doomed for e in enrollments[uid]):
            mode = "later"  # the deleted enrollment's learner is known: its conversion must not count
        events = [ev for v in visits for ev in v]
        if mode != "never":
            visit = visits[0] if mode == "first" else visits[rng.randrange(1, len(visits))]
            login_at = visit[0]["occurred_at"] + timedelta(seconds=2)
            events.append(_login(login_at, uid))
            for ev in events:  # logged in from then on (the cookie stays)
                if ev["occurred_at"] >= login_at:
                    ev["user_id"] = uid
        visitors[anonymous_id()] = events
    # visitors who never log in
    for _ in range(20):
        visitors[anonymous_id()] = [ev for _ in range(rng.randrange(1, 5)) for ev in _browse(rng, random_time())]
    # a shared device: course pages of both users' courses, then both log in at the same instant (logged
    # out right after: the later events carry no user)
    kiosk: list[dict] = []
    for uid in kiosk_users:
        for e in enrollments[uid]:
            kiosk += _visit(rng, e.current["enrolled_at"] - timedelta(days=2, seconds=rng.randrange(86400)),
                            (e.current["course_id"],))
    last = max(kiosk_users[0], kiosk_users[1], key=lambda u: max(e.current["enrolled_at"] for e in enrollments[u]))
    both_at = max(e.current["enrolled_at"] for e in enrollments[last]) - timedelta(hours=5)
    kiosk += [_login(both_at, uid) for uid in kiosk_users]
    kiosk += _visit(rng, both_at + timedelta(minutes=1))
    visitors[anonymous_id()] = kiosk

    p.web_events, p.web_sessions, p.web_page_daily = _web_tables(rng, visitors)


def _web_tables(rng: random.Random, visitors: dict[str, list[dict]]) -> tuple[list[dict], list[dict], list[dict]]:
    """Full web_events rows, and the sessions and daily page figures the Spark job would compute."""
    events: list[dict] = []
    sessions: list[dict] = []
    agents = ("Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (Macintosh)", "Mozilla/5.0 (iPhone)")
    for anon, raw in visitors.items():
        agent = rng.choice(agents)
        rows = []
        for n, ev in enumerate(raw):
            occurred = ev["occurred_at"]
            late = rng.random() < 0.05
            received = occurred + (timedelta(hours=rng.randrange(2, 30)) if late
                                   else timedelta(seconds=rng.randrange(1, 5)))
            rows.append({
                "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"web/{anon}/{n}")),
                "event_type": ev["event_type"],
                "schema_version": 1,
                "anonymous_id": anon,
                "user_id": ev.get("user_id"),
                "session_id": None,
                "occurred_at": occurred,
                "received_at": received,
                "page_url": "https://tc4a.example" + ev["page_path"],
                "page_path": ev["page_path"],
                "referrer": rng.choice([None, "https://www.google.com/", "https://tc4a.example/"]),
                "user_agent": agent,
                "course_id": ev["course_id"],
                "properties": json.dumps({"course_id": ev["course_id"]} if ev["course_id"] else {}),
                "source": "web",
                "kafka_partition": zlib.crc32(anon.encode()) % 3,
                "kafka_offset": None,
                "is_late": late,
                "event_date": occurred.astimezone(UTC).date(),
            })
        rows.sort(key=lambda r: (r["occurred_at"], r["event_id"]))
        known = [r for r in rows if r["user_id"] is not None]
        identity = max(known, key=lambda r: (r["occurred_at"], r["event_id"]))["user_id"] if known else None
        groups: list[list[dict]] = []
        for r in rows:
            if groups and r["occurred_at"] - groups[-1][-1]["occurred_at"] <= SESSION_GAP:
                groups[-1].append(r)
            else:
                groups.append([r])
        for group in groups:
            start, end = group[0]["occurred_at"], group[-1]["occurred_at"]
            sid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"web-session/{anon}/{start.isoformat()}"))
            for r in group:
                r["session_id"] = sid
            sessions.append({
                "session_id": sid,
                "anonymous_id": anon,
                "user_id": identity,
                "session_start": start,
                "session_end": end,
                "event_count": len(group),
                "page_count": sum(r["event_type"] in PAGE_EVENTS for r in group),
                "entry_page": group[0]["page_path"],
                "exit_page": group[-1]["page_path"],
                "duration_s": (end - start).total_seconds(),
                "session_date": start.astimezone(UTC).date(),
            })
        events += rows
    offsets: dict[int, int] = defaultdict(int)
    for r in sorted(events, key=lambda r: (r["received_at"], r["event_id"])):
        r["kafka_offset"] = offsets[r["kafka_partition"]]
        offsets[r["kafka_partition"]] += 1
    pages: dict[tuple, list[dict]] = defaultdict(list)
    for r in events:
        if r["event_type"] in PAGE_EVENTS:
            pages[(r["event_date"], r["page_path"], r["course_id"])].append(r)
    page_daily = [
        {"page_path": path, "course_id": cid, "page_views": len(rs), "visitors": len({r["anonymous_id"] for r in rs}),
         "sessions": len({r["session_id"] for r in rs}), "day": day}
        for (day, path, cid), rs in sorted(pages.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0))
    ]
    return events, sessions, page_daily


# ---------------------------------------------------------------------------------------------------
# Landing per the contract


def _json_value(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and value and value[0] in "[{":
        return json.loads(value)
    return value


def _row_json(row: dict | None) -> str | None:
    return None if row is None else json.dumps({k: _json_value(v) for k, v in row.items()})


def changelog_events(p: Platform, table: str) -> list[dict]:
    """Debezium events for one table: snapshot reads at SNAPSHOT_AT, then c/u/d in commit order."""
    events: list[tuple[datetime, str, dict | None, dict | None]] = []
    for e in p.entities[table]:
        before_snapshot = [(t, r) for t, r in e.versions if t < SNAPSHOT_AT]
        after_snapshot = [(t, r) for t, r in e.versions if t >= SNAPSHOT_AT]
        previous = None
        if before_snapshot:
            previous = before_snapshot[-1][1]
            events.append((SNAPSHOT_AT, "r", None, previous))
        for t, row in after_snapshot:
            events.append((t, "u" if previous else "c", previous, row))
            previous = row
        if e.deleted_at:
            events.append((e.deleted_at, "d", previous, None))
    events.sort(key=lambda ev: ev[0])
    out = []
    for offset, (t, op, before, after) in enumerate(events):
        image = after or before
        out.append(
            {
                "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{table}/{offset}")),
                "op": op,
                "key": json.dumps({k: image[k] for k in KEYS[table]}),
                "before": _row_json(before),
                "after": _row_json(after),
                "source_lsn": 1_000_000 + offset * 16,
                "source_txid": 5000 + offset,
                "source_ts_ms": int(t.timestamp() * 1000),
                "snapshot": "true" if op == "r" else "false",
                "kafka_topic": f"tc4a.public.{table}",
                "kafka_partition": 0,
                "kafka_offset": offset,
                "landed_at": LANDED_AT,
            }
        )
    return out


def build_warehouse(path: Path, seed: int = 7) -> Platform:
    """Create ``raw_cdc``, ``raw_web`` and ``raw_airbyte`` in the DuckDB file at ``path`` and return the
    simulation it was built from."""
    p = simulate(seed)
    con = duckdb.connect(str(path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("CREATE SCHEMA IF NOT EXISTS raw_cdc")
        for table in TABLES:
            cols = {**COLUMNS[table], **CDC_COLUMNS}
            con.execute(
                f"CREATE OR REPLACE TABLE raw_cdc.{table} (" + ", ".join(f"{c} {t}" for c, t in cols.items()) + ")"
            )
            events = changelog_events(p, table)
            last_event = {}
            for ev in events:
                last_event[ev["key"]] = ev
            rows = []
            for e in p.entities[table]:
                if e.deleted_at:
                    continue
                key = json.dumps({k: e.current[k] for k in KEYS[table]})
                ev = last_event[key]
                rows.append(
                    [e.current[c] for c in COLUMNS[table]] + [ev["op"], ev["source_lsn"], ev["source_ts_ms"], LANDED_AT]
                )
            con.executemany(f"INSERT INTO raw_cdc.{table} VALUES ({', '.join('?' * len(cols))})", rows)
            con.execute(
                f"CREATE OR REPLACE TABLE raw_cdc.{table}__changelog ("
                + ", ".join(f'"{c}" {t}' for c, t in CHANGELOG_COLUMNS.items())
                + ")"
            )
            con.executemany(
                f"INSERT INTO raw_cdc.{table}__changelog VALUES ({', '.join('?' * len(CHANGELOG_COLUMNS))})",
                [[ev[c] for c in CHANGELOG_COLUMNS] for ev in events],
            )
        con.execute("CREATE SCHEMA IF NOT EXISTS raw_web")
        for table, rows in ((WEB_EVENTS, p.web_events), (WEB_SESSIONS, p.web_sessions),
                            (WEB_PAGE_DAILY, p.web_page_daily)):
            con.execute(f"CREATE OR REPLACE TABLE raw_web.{table.name} ({table.ddl('duckdb')})")
            con.executemany(
                f"INSERT INTO raw_web.{table.name} VALUES ({', '.join('?' * len(table.columns))})",
                [[r[c] for c in table.column_names] for r in rows],
            )
        write_airbyte(con, p.airbyte)
    finally:
        con.close()
    return p
