"""A small, realistic raw CDC warehouse for the dbt tests, built per the raw layer contract.

The tc4a platform is *simulated* (users log in, enroll, progress, complete or drop; trainers hold
trainings; learners register and show up or not). From that simulation this module writes what the raw
CDC assets would have landed: the current-state tables ``raw_cdc.T`` and the changelogs
``raw_cdc.T__changelog`` (Debezium snapshot at ``SNAPSHOT_AT``: rows older than that arrive as op ``r``
with their state at that time, later changes as ``c``/``u``/``d``).

The expected mart figures in the tests are computed from the simulation objects here, in Python, not
from the marts' SQL.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb

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
            full_name=f" Person {uid} ",
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
    return p


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
    """Create ``raw_cdc`` in the DuckDB file at ``path`` and return the simulation it was built from."""
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
    finally:
        con.close()
    return p
