"""``corisync demo``: realistic tc4a traffic in the local Postgres, so CDC has something to carry.

Seeds a population (learners, trainers, courses, enrollments, trainings, attendance) when the tables are
empty (or on ``--seed``), then, if the web collector of the stack is up, posts demo web traffic of those
learners and courses through it (``--web-visitors``, about 10 events each; corisync_assets/web/traffic.py),
then writes a stream of inserts, updates and deletes at ``rate`` changes/second.
Deterministic for a given ``random_seed`` and starting state (timestamps aside; Postgres' ``random()``
is seeded too). Connects as the application owner.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from corisync_assets.environment import ConfigError, Settings, settings

FIRST = ["Anna", "Ben", "Chloé", "Daniel", "Elif", "Farid", "Greta", "Hiro", "Inès", "Jonas", "Karin", "Luca",
         "Maja", "Nils", "Olga", "Pablo", "Quentin", "Rosa", "Sven", "Tereza", "Umar", "Vera", "Wiktor", "Yara"]
LAST = ["Müller", "García", "Rossi", "Novak", "Dubois", "Jansen", "Kowalski", "Silva", "Nielsen", "Öztürk",
        "Papadopoulos", "Horvat", "O'Brien", "Lindqvist", "Schmidt", "Moreau", "Costa", "Virtanen"]
COUNTRIES = ["DE", "FR", "NL", "ES", "IT", "PL", "SE", "AT", "CH", "BE", "PT", "IE", "DK", "CZ", None]
CATEGORIES = {
    "data": ["SQL Fundamentals", "Data Modelling", "dbt in Practice", "Streaming with Kafka", "Spark Basics"],
    "cloud": ["BigQuery for Analysts", "Terraform Essentials", "Kubernetes 101", "GCP Architecture"],
    "leadership": ["Coaching Conversations", "Agile Facilitation", "Leading Remote Teams"],
    "security": ["Secure Coding", "Threat Modelling", "Incident Response Drills"],
}
TAGS = ["hands-on", "certificate", "remote", "on-site", "beginner-friendly", "workshop", "self-paced", "lab"]
CITIES = ["Berlin", "Amsterdam", "Lisbon", "Vienna", "Stockholm", "Prague", "Remote (Zoom)", "Barcelona"]
BIO_SENTENCES = [
    "Has spent a decade building data platforms for retail and logistics.",
    "Enjoys turning messy spreadsheets into clean, tested models.",
    "Speaks at local meetups about streaming architectures and change data capture.",
    "Previously led a team of analytics engineers through a warehouse migration.",
    "Believes every dashboard should come with a definition of its metrics.",
    "Teaches with real incidents, real logs and a healthy dose of humour.",
]
FEEDBACK = ["Great pace and examples.", "Too fast in the second half.", "Loved the labs!",
            "Trainer answered every question.", "Room was too cold, content excellent.", None]


@dataclass
class DemoStats:
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    web: object | None = None  # corisync_assets.web.traffic.PostSummary of the web traffic posted, if any

    def count(self, kind: str, op: str) -> None:
        setattr(self, op, getattr(self, op) + 1)
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    @property
    def total(self) -> int:
        return self.inserts + self.updates + self.deletes


#: the seed ``make dev`` seeds an empty stack with: the trainers' workbook of the local Google double
#: (corisync_assets/local/fixtures) was made from the population it gives, so the sheet reconciles with it
DEMO_SEED = 2026


def connect(s: Settings | None = None) -> psycopg.Connection:
    s = s or settings()
    if not s.pg_password:
        raise ConfigError("CORISYNC_PG_PASSWORD is not set (run `corisync stack up` first)")
    return psycopg.connect(host=s.pg_host, port=s.pg_port, dbname=s.pg_database, user=s.pg_user,
                           password=s.pg_password, autocommit=True, connect_timeout=10)


def _now() -> datetime:
    return datetime.now(UTC)


def _name(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return first, last


def _email(rng: random.Random, first: str, last: str) -> str:
    local = f"{first}.{last}".lower().replace("'", "").replace(" ", "")
    local = local.translate(str.maketrans("éèöüçñ", "eeoucn"))
    return f"{local}.{rng.randrange(10**6):06d}@{rng.choice(['example.com', 'mail.test', 'corp.example'])}"


def insert_user(conn: psycopg.Connection, rng: random.Random, role: str = "learner") -> int:
    first, last = _name(rng)
    bio = " ".join(rng.sample(BIO_SENTENCES, k=rng.randint(2, 5))) if role == "trainer" or rng.random() < .3 \
        else None
    prefs = {"language": rng.choice(["en", "de", "fr", "es"]), "newsletter": rng.random() < .5,
             "notifications": {"email": True, "sms": rng.random() < .2}, "theme": rng.choice(["light", "dark"])}
    signup = _now() - timedelta(days=rng.uniform(0, 700), seconds=rng.randrange(86400))
    row = conn.execute(
        "INSERT INTO users (email, full_name, country_code, role, bio, preferences, signup_at, last_login_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING user_id",
        (_email(rng, first, last), f"{first} {last}", rng.choice(COUNTRIES), role, bio, json.dumps(prefs),
         signup, signup + timedelta(hours=rng.uniform(0, 48)) if rng.random() < .8 else None),
    ).fetchone()
    return row[0]


def insert_course(conn: psycopg.Connection, rng: random.Random) -> int:
    category = rng.choice(sorted(CATEGORIES))
    title = rng.choice(CATEGORIES[category])
    level = rng.choice(["beginner", "intermediate", "advanced"])
    row = conn.execute(
        "INSERT INTO courses (code, title, description, category, level, price, duration_hours, is_published, "
        "tags, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING course_id",
        (f"{category[:3].upper()}-{rng.randrange(10**5):05d}", f"{title} ({level})",
         f"{title}: a {level} course. " + " ".join(rng.sample(BIO_SENTENCES, k=2)), category, level,
         Decimal(rng.randrange(0, 150000)) / 100, Decimal(rng.randrange(4, 80)) / 2, rng.random() < .85,
         json.dumps(rng.sample(TAGS, k=rng.randint(1, 4))), _now() - timedelta(days=rng.uniform(0, 900))),
    ).fetchone()
    return row[0]


def _ids(conn: psycopg.Connection, sql: str) -> list:
    return [r[0] if len(r) == 1 else tuple(r) for r in conn.execute(sql).fetchall()]


def insert_enrollment(conn: psycopg.Connection, rng: random.Random) -> int | None:
    row = conn.execute(
        "INSERT INTO enrollments (user_id, course_id, amount_paid, enrolled_at) "
        "SELECT u.user_id, c.course_id, c.price * %s, now() - make_interval(hours => %s) "
        "FROM (SELECT user_id FROM users WHERE role = 'learner' ORDER BY random() LIMIT 1) u, "
        "     (SELECT course_id, price FROM courses WHERE is_published ORDER BY random() LIMIT 1) c "
        "ON CONFLICT (user_id, course_id) DO NOTHING RETURNING enrollment_id",
        (Decimal(rng.choice(["1.00", "1.00", "0.80", "0.50"])), rng.randrange(0, 2000)),
    ).fetchone()
    return row[0] if row else None


def insert_training(conn: psycopg.Connection, rng: random.Random) -> int | None:
    starts = _now() + timedelta(days=rng.uniform(-60, 90))
    starts = starts.replace(minute=0, second=0, microsecond=0, hour=rng.choice([9, 10, 13, 14]))
    row = conn.execute(
        "INSERT INTO trainings (course_id, trainer_id, location, starts_at, ends_at, capacity, notes) "
        "SELECT c.course_id, t.user_id, %s, %s, %s, %s, %s "
        "FROM (SELECT course_id FROM courses ORDER BY random() LIMIT 1) c, "
        "     (SELECT user_id FROM users WHERE role = 'trainer' ORDER BY random() LIMIT 1) t "
        "RETURNING training_id",
        (rng.choice(CITIES), starts, starts + timedelta(hours=rng.choice([3, 4, 7, 8])), rng.choice([8, 12, 16, 24]),
         rng.choice([None, "Bring a laptop.", "Lunch included.", "Hybrid session, link sent by email."])),
    ).fetchone()
    return row[0] if row else None


def insert_attendance(conn: psycopg.Connection, rng: random.Random) -> bool:
    row = conn.execute(
        "INSERT INTO training_attendance (training_id, user_id, registered_at) "
        "SELECT t.training_id, u.user_id, now() - make_interval(mins => %s) "
        "FROM (SELECT training_id FROM trainings WHERE status = 'scheduled' ORDER BY random() LIMIT 1) t, "
        "     (SELECT user_id FROM users WHERE role = 'learner' ORDER BY random() LIMIT 1) u "
        "ON CONFLICT DO NOTHING RETURNING training_id",
        (rng.randrange(0, 5000),),
    ).fetchone()
    return row is not None


def is_empty(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT NOT EXISTS (SELECT 1 FROM users)").fetchone()[0]


def seed(conn: psycopg.Connection, rng: random.Random, *, users: int = 120, trainers: int = 8,
         courses: int = 24, enrollments: int = 300, trainings: int = 30, attendance: int = 150) -> DemoStats:
    """An initial population; returns what was inserted."""
    stats = DemoStats()
    with conn.transaction():
        for _ in range(trainers):
            insert_user(conn, rng, "trainer")
            stats.count("user", "inserts")
        insert_user(conn, rng, "admin")
        stats.count("user", "inserts")
        for _ in range(users):
            insert_user(conn, rng)
            stats.count("user", "inserts")
        for _ in range(courses):
            insert_course(conn, rng)
            stats.count("course", "inserts")
        for _ in range(enrollments):
            if insert_enrollment(conn, rng):
                stats.count("enrollment", "inserts")
        for _ in range(trainings):
            if insert_training(conn, rng):
                stats.count("training", "inserts")
        for _ in range(attendance):
            if insert_attendance(conn, rng):
                stats.count("attendance", "inserts")
    return stats


# --- the change stream -------------------------------------------------------------------------------------

def _progress(conn, rng) -> str | None:
    row = conn.execute(
        "UPDATE enrollments SET progress_pct = LEAST(100, progress_pct + %s), status = 'in_progress', "
        "updated_at = now() WHERE enrollment_id = (SELECT enrollment_id FROM enrollments "
        "WHERE status IN ('enrolled', 'in_progress') AND progress_pct < 100 ORDER BY random() LIMIT 1) "
        "RETURNING enrollment_id", (Decimal(rng.randrange(100, 3500)) / 100,)).fetchone()
    return "updates" if row else None


def _complete(conn, rng) -> str | None:
    row = conn.execute(
        "UPDATE enrollments SET progress_pct = 100, status = 'completed', completed_at = now(), updated_at = now() "
        "WHERE enrollment_id = (SELECT enrollment_id FROM enrollments WHERE status = 'in_progress' "
        "ORDER BY progress_pct DESC, random() LIMIT 1) RETURNING enrollment_id").fetchone()
    return "updates" if row else None


def _check_in(conn, rng) -> str | None:
    row = conn.execute(
        "UPDATE training_attendance SET attended = true, checked_in_at = now(), feedback_score = %s, "
        "feedback = %s WHERE (training_id, user_id) = (SELECT training_id, user_id FROM training_attendance "
        "WHERE attended IS NULL ORDER BY random() LIMIT 1) RETURNING training_id",
        (rng.choice([3, 4, 4, 5, 5, 2]), rng.choice(FEEDBACK))).fetchone()
    return "updates" if row else None


def _price_change(conn, rng) -> str | None:
    row = conn.execute(
        "UPDATE courses SET price = round(price * %s, 2), updated_at = now() WHERE course_id = "
        "(SELECT course_id FROM courses ORDER BY random() LIMIT 1) RETURNING course_id",
        (Decimal(rng.choice(["0.90", "1.10", "0.75", "1.05"])),)).fetchone()
    return "updates" if row else None


def _login(conn, rng) -> str | None:
    row = conn.execute(
        "UPDATE users SET last_login_at = now(), updated_at = now(), "
        "preferences = jsonb_set(preferences, '{theme}', to_jsonb(%s::text)) "
        "WHERE user_id = (SELECT user_id FROM users ORDER BY random() LIMIT 1) RETURNING user_id",
        (rng.choice(["light", "dark"]),)).fetchone()
    return "updates" if row else None


def _drop(conn, rng) -> str | None:
    row = conn.execute(
        "DELETE FROM enrollments WHERE enrollment_id = (SELECT enrollment_id FROM enrollments "
        "WHERE status IN ('enrolled', 'in_progress') ORDER BY random() LIMIT 1) RETURNING enrollment_id").fetchone()
    return "deletes" if row else None


def _cancel_attendance(conn, rng) -> str | None:
    row = conn.execute(
        "DELETE FROM training_attendance WHERE (training_id, user_id) = (SELECT training_id, user_id "
        "FROM training_attendance WHERE attended IS NULL ORDER BY random() LIMIT 1) RETURNING training_id"
    ).fetchone()
    return "deletes" if row else None


def _delete_user(conn, rng) -> str | None:
    row = conn.execute(
        "DELETE FROM users WHERE user_id = (SELECT user_id FROM users u WHERE role = 'learner' AND NOT EXISTS "
        "(SELECT 1 FROM trainings t WHERE t.trainer_id = u.user_id) ORDER BY random() LIMIT 1) RETURNING user_id"
    ).fetchone()
    return "deletes" if row else None


def _new_user(conn, rng) -> str | None:
    insert_user(conn, rng)
    return "inserts"


def _new_enrollment(conn, rng) -> str | None:
    return "inserts" if insert_enrollment(conn, rng) else None


def _new_attendance(conn, rng) -> str | None:
    return "inserts" if insert_attendance(conn, rng) else None


def _new_training(conn, rng) -> str | None:
    return "inserts" if insert_training(conn, rng) else None


def _new_course(conn, rng) -> str | None:
    insert_course(conn, rng)
    return "inserts"


#: (kind, weight, action); weights shape a plausible day on the platform.
ACTIONS: list[tuple[str, int, Callable[[psycopg.Connection, random.Random], str | None]]] = [
    ("login", 20, _login), ("progress", 20, _progress), ("enroll", 12, _new_enrollment),
    ("check_in", 10, _check_in), ("register_attendance", 8, _new_attendance), ("complete", 6, _complete),
    ("signup", 6, _new_user), ("drop", 4, _drop), ("cancel_attendance", 3, _cancel_attendance),
    ("price_change", 3, _price_change), ("schedule_training", 3, _new_training), ("new_course", 1, _new_course),
    ("delete_user", 1, _delete_user),
]


def step(conn: psycopg.Connection, rng: random.Random, stats: DemoStats) -> str | None:
    """One random change (retrying other kinds if one has nothing to act on); returns its kind."""
    weights = [w for _, w, _ in ACTIONS]
    for _ in range(10):
        kind, _, action = rng.choices(ACTIONS, weights=weights)[0]
        op = action(conn, rng)
        if op:
            stats.count(kind, op)
            return kind
    return None


def stream(conn: psycopg.Connection, rng: random.Random, *, rate: float, duration: float,
           stats: DemoStats | None = None) -> DemoStats:
    """``rate`` changes/second for ``duration`` seconds."""
    stats = stats or DemoStats()
    if duration <= 0 or rate <= 0:
        return stats
    interval = 1.0 / rate
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < duration:
        step(conn, rng, stats)
        n += 1
        delay = start + n * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return stats


def post_web_traffic(conn: psycopg.Connection, s: Settings, rng: random.Random, visitors: int,
                     out: Callable[[str], None] = print):
    """Demo web traffic of the seeded learners and courses through the stack's collector, if it is up;
    returns the ``PostSummary`` or None when skipped."""
    from corisync_assets.local.stack import collector_healthy, collector_url
    from corisync_assets.web import traffic
    from corisync_assets.web.collector import parse_write_keys

    url = collector_url(s)
    if not collector_healthy(s):
        out(f"web: skipped, no collector answers at {url} (`corisync stack up` starts it)")
        return None
    keys = parse_write_keys(s.collector_write_keys)  # ConfigError naming the variable if unset
    source = "tc4a-web" if "tc4a-web" in keys else next(iter(keys))
    users = _ids(conn, "SELECT user_id FROM users WHERE role = 'learner' ORDER BY 1")
    courses = _ids(conn, "SELECT course_id FROM courses WHERE is_published ORDER BY 1")
    events = traffic.generate(rng.randrange(2**31), users, courses, visitors, _now())
    summary = traffic.post(events, url, keys[source])
    out(f"web: posted {summary.sent} events of {visitors} visitors to {url} as {source}: {summary.accepted} "
        f"accepted, {summary.rejected} rejected (malformed on purpose)"
        + (f", {summary.failed_batches} batches failed: {summary.errors[0]}" if summary.failed_batches else ""))
    return summary


def run_demo(*, force_seed: bool = False, rate: float = 5.0, duration: float = 60.0, random_seed: int | None = None,
             s: Settings | None = None, out: Callable[[str], None] = print, web_visitors: int = 0) -> DemoStats:
    """Seed if empty (or forced), post ``web_visitors`` visitors' web traffic (0: none), then stream
    changes; prints one summary line per phase."""
    s = s or settings()
    rng = random.Random(random_seed)
    stats = DemoStats()
    with connect(s) as conn:
        if random_seed is not None:  # the SQL picks rows with random(): seed Postgres' generator too
            conn.execute("SELECT setseed(%s)", (rng.uniform(-1, 1),))
        if force_seed or is_empty(conn):
            seeded = seed(conn, rng)
            out(f"seeded: {seeded.inserts} rows ({', '.join(f'{k} {v}' for k, v in seeded.kinds.items())})")
        if web_visitors > 0:
            stats.web = post_web_traffic(conn, s, random.Random(rng.random()), web_visitors, out)
        if duration > 0:
            stream(conn, rng, rate=rate, duration=duration, stats=stats)
            out(f"streamed {stats.total} changes in {duration:g}s: {stats.inserts} inserts, {stats.updates} "
                f"updates, {stats.deletes} deletes")
    return stats
