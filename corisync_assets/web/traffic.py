"""Demo web traffic for the seeded tc4a users and courses, posted through the collector.

``generate`` (pure, deterministic for a seed) returns events in posting order; ``post`` sends them in
batches of at most 100 (write key as HTTP Basic username, Segment style) and retries 429/503 after their
Retry-After. The traffic holds what the downstream pipeline must cope with:

* sessions of several page views with gaps of seconds to minutes; some visitors come back after more than
  30 minutes (a new session, a new client ``session_id``);
* anonymous visitors who log in: events with ``user_id`` null, then a ``login`` event, then the user id,
  all under the same ``anonymous_id``; some visitors are logged in from their first event, some never;
* timestamps with offsets (``Z`` from JavaScript, ``+01:00``/``+02:00``/``-05:00`` from other clients);
* late events: whole sessions of a few visitors that happened 5 to 30 hours before ``now`` (an offline
  mobile client) posted among the recent ones;
* out-of-order events within a batch (neighbours swapped), and exact duplicates (the same event, same
  ``event_id``, posted again a few positions later, like a client retry);
* about 2% malformed events: a missing field, a wrong type, an unknown ``schema_version`` or an unknown
  ``event_type``; the collector rejects them into the DLQ.

Recent traffic lies in the 3 hours before ``now``. ``load_population`` reads user and course ids from the
operational Postgres (Settings ``pg_*``).
"""

import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

SITE = "https://tc4a.example"
WINDOW = timedelta(hours=3)
LATE_SHARE = 0.04  # of visitors: their sessions are 5-30 h old and posted among the recent traffic
DUPLICATE_SHARE = 0.02
MALFORMED_SHARE = 0.02
OUT_OF_ORDER_SHARE = 0.05  # of positions: swapped with the next event
MALFORMED_KINDS = ("missing_field", "wrong_type", "unknown_schema_version", "unknown_event_type")
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 15; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537",
]
REFERRERS = ["https://www.google.com/", "https://www.linkedin.com/", "https://news.tc4a.example/weekly", None, None]
PAGES = ["/", "/courses", "/trainings", "/about", "/pricing", "/blog/streaming-in-practice", "/blog/dbt-tips"]
QUERIES = ["sql", "kafka", "dbt", "spark streaming", "terraform", "leadership", "security", "bigquery"]
OFFSETS = [UTC, UTC, UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=2)),
           timezone(timedelta(hours=-5))]


def _ts(dt: datetime, tz: timezone) -> str:
    """Client time: JavaScript's toISOString (``Z``, milliseconds) or a local time with its offset."""
    local = dt.astimezone(tz)
    if tz is UTC:
        return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}Z"
    return local.isoformat(timespec="milliseconds")


@dataclass
class _Visitor:
    anonymous_id: str
    user_id: int | None  # the user behind the visitor, if any
    logged_in: bool  # from the first event
    tz: timezone
    user_agent: str


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _event(rng: random.Random, v: _Visitor, when: datetime, session_id: str, event_type: str, path: str,
           referrer: str | None, course_id: int | None = None, properties: dict | None = None) -> dict[str, Any]:
    return {
        "event_id": _uuid(rng),
        "event_type": event_type,
        "schema_version": 1,
        "anonymous_id": v.anonymous_id,
        "user_id": v.user_id if v.logged_in else None,
        "session_id": session_id,
        "occurred_at": _ts(when, v.tz),
        "page_url": SITE + path,
        "page_path": path,
        "referrer": referrer,
        "user_agent": v.user_agent,
        "course_id": course_id,
        "properties": properties or {},
    }


def _session(rng: random.Random, v: _Visitor, start: datetime, courses: Sequence[int],
             may_log_in: bool) -> list[tuple[datetime, dict[str, Any]]]:
    """One visit: 2-12 events, gaps of 5 s to 5 min; an anonymous visitor with a user may log in."""
    session_id = "s-" + _uuid(rng)[:18]
    when, referrer = start, rng.choice(REFERRERS)
    out: list[tuple[datetime, dict[str, Any]]] = []
    login_at = rng.randint(1, 3) if may_log_in and not v.logged_in and v.user_id is not None else None
    course = rng.choice(courses) if courses else None
    for n in range(rng.randint(2, 12)):
        if n == login_at:
            v.logged_in = True
            ev = _event(rng, v, when, session_id, "login", "/login", referrer, properties={"method": "password"})
        else:
            weights = [30, 30, 20, 8, 12] if course else [80, 0, 0, 0, 20]
            if n == 0:  # a visit lands on a page
                weights = [50, 50, 0, 0, 0] if course else [100, 0, 0, 0, 0]
            kind = rng.choices(["page_view", "course_page_view", "video_progress", "quiz_submission", "search"],
                               weights=weights)[0]
            if rng.random() < 0.3 and courses:
                course = rng.choice(courses)
            if kind == "page_view":
                ev = _event(rng, v, when, session_id, kind, rng.choice(PAGES), referrer)
            elif kind == "search":
                query = rng.choice(QUERIES)
                ev = _event(rng, v, when, session_id, kind, f"/search?q={query.replace(' ', '+')}", referrer,
                            properties={"query": query, "results": rng.randint(0, 40)})
            elif kind == "course_page_view":
                ev = _event(rng, v, when, session_id, kind, f"/courses/{course}", referrer, course)
            elif kind == "video_progress":
                duration = rng.choice([300, 600, 900, 1800])
                position = rng.randint(0, duration)
                ev = _event(rng, v, when, session_id, kind, f"/courses/{course}/learn", referrer, course,
                            {"video_id": f"v{course}-{rng.randint(1, 12)}", "position_s": position,
                             "duration_s": duration, "percent": round(100 * position / duration, 1)})
            else:
                score = rng.randint(0, 100)
                ev = _event(rng, v, when, session_id, kind, f"/courses/{course}/quiz", referrer, course,
                            {"quiz_id": f"q{course}-{rng.randint(1, 5)}", "score": score, "passed": score >= 60})
        out.append((when, ev))
        referrer = ev["page_url"]
        when += timedelta(seconds=rng.choice([rng.uniform(5, 60), rng.uniform(20, 300)]))
    return out


def _malformed(rng: random.Random, ev: dict[str, Any], kind: str) -> dict[str, Any]:
    bad = dict(ev, event_id=_uuid(rng))
    if kind == "missing_field":
        del bad[rng.choice(["page_path", "anonymous_id", "occurred_at", "event_type"])]
    elif kind == "wrong_type":
        field_, value = rng.choice([("user_id", "12345"), ("anonymous_id", 12345), ("course_id", "seven"),
                                    ("properties", ["not", "an", "object"]), ("schema_version", "1")])
        bad[field_] = value
    elif kind == "unknown_schema_version":
        bad["schema_version"] = rng.choice([2, 3, 0])
    else:
        bad["event_type"] = rng.choice(["add_to_cart", "pageview", "video_start"])
    return bad


def generate(seed: int, users: Sequence[int], courses: Sequence[int], n_visitors: int,
             now: datetime) -> list[dict[str, Any]]:
    """Events of ``n_visitors`` visitors in posting order (about 10 per visitor); see the module docstring."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    rng = random.Random(seed)
    users, courses = sorted(users), sorted(courses)
    recent: list[tuple[datetime, dict[str, Any]]] = []
    late_blocks: list[list[dict[str, Any]]] = []
    for i in range(n_visitors):
        # with 10+ visitors the first three are sure to show a late session, a return visit and a login
        forced = ("late", "returning", "login")[i] if i < 3 and n_visitors >= 10 else None
        user = rng.choice(users) if users and (rng.random() < 0.6 or forced == "login") else None
        v = _Visitor(anonymous_id=f"anon-{_uuid(rng)[:23]}", user_id=user,
                     logged_in=user is not None and rng.random() < 0.35 and forced != "login",
                     tz=rng.choice(OFFSETS), user_agent=rng.choice(USER_AGENTS))
        is_late = rng.random() < LATE_SHARE or forced == "late"
        if is_late:
            start = now - timedelta(hours=rng.uniform(5, 30))
        else:
            start = now - WINDOW + timedelta(seconds=rng.uniform(0, WINDOW.total_seconds() * 0.6))
        sessions = 2 if forced == "returning" else rng.choices([1, 2, 3], weights=[60, 30, 10])[0]
        events: list[tuple[datetime, dict[str, Any]]] = []
        for _ in range(sessions):
            if start > now:
                break
            visit = _session(rng, v, start, courses, may_log_in=rng.random() < 0.7 or forced == "login")
            events += [(t, ev) for t, ev in visit if t <= now]
            start = visit[-1][0] + timedelta(minutes=rng.uniform(31, 75))  # back after > 30 min: a new session
        if is_late:
            late_blocks.append([ev for _, ev in events])
        else:
            recent += events
    recent.sort(key=lambda item: item[0])
    stream = [ev for _, ev in recent]
    # an offline client flushes its buffer: each late visitor's events arrive as one block among the second
    # half of the recent traffic
    for block in late_blocks:
        at = rng.randint(len(stream) // 2, len(stream))
        stream[at:at] = block
    # out of order: neighbours swapped
    for pos in range(len(stream) - 1):
        if rng.random() < OUT_OF_ORDER_SHARE:
            stream[pos], stream[pos + 1] = stream[pos + 1], stream[pos]
    # exact duplicates (client retries) a few positions later; malformed events in between
    out: list[dict[str, Any]] = []
    pending: list[tuple[int, dict[str, Any]]] = []
    kinds = list(MALFORMED_KINDS)
    for pos, ev in enumerate(stream):
        out.append(ev)
        if rng.random() < DUPLICATE_SHARE:
            pending.append((pos + rng.randint(1, 150), ev))
        if rng.random() < MALFORMED_SHARE:
            kind = kinds.pop(0) if kinds else rng.choice(MALFORMED_KINDS)  # every kind at least once
            out.append(_malformed(rng, ev, kind))
        due = [item for item in pending if item[0] <= pos]
        pending = [item for item in pending if item[0] > pos]
        out += [dict(dup) for _, dup in due]
    out += [dict(dup) for _, dup in pending]
    return out


@dataclass
class PostSummary:
    """What ``post`` did: events sent, accepted and rejected (by the collector), batches, failures."""

    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    batches: int = 0
    retries: int = 0
    failed_batches: int = 0
    errors: list[str] = field(default_factory=list)  # first rejection reasons / failures, bounded


def post(events: Sequence[dict[str, Any]], url: str, write_key: str, *, batch_size: int = 100,
         timeout: float = 30.0, max_retries: int = 5) -> PostSummary:
    """POST ``events`` to ``<url>/v1/batch`` in order, in batches of at most ``batch_size`` (<= 100)."""
    import httpx

    batch_size = max(1, min(batch_size, 100))
    summary = PostSummary()
    endpoint = url.rstrip("/") + "/v1/batch"
    with httpx.Client(auth=(write_key, ""), timeout=timeout) as client:
        for start in range(0, len(events), batch_size):
            batch = list(events[start:start + batch_size])
            summary.batches += 1
            for attempt in range(max_retries + 1):
                resp = client.post(endpoint, json={"batch": batch, "sentAt": datetime.now(UTC).isoformat()})
                if resp.status_code in (429, 503) and attempt < max_retries:
                    summary.retries += 1
                    time.sleep(min(float(resp.headers.get("Retry-After", "1") or 1), 10.0))
                    continue
                break
            if resp.status_code != 200:
                summary.failed_batches += 1
                if len(summary.errors) < 20:
                    summary.errors.append(f"batch {summary.batches}: HTTP {resp.status_code} {resp.text[:200]}")
                continue
            body = resp.json()
            summary.sent += len(batch)
            summary.accepted += body["accepted"]
            summary.rejected += len(body["rejected"])
            for rej in body["rejected"]:
                if len(summary.errors) < 20:
                    summary.errors.append(f"event {start + rej['index']}: {rej['error']}")
    return summary


def load_population(s=None) -> tuple[list[int], list[int]]:
    """(learner user ids, published course ids) from the operational Postgres."""
    import psycopg

    from corisync_assets.environment import ConfigError, settings

    s = s or settings()
    if not s.pg_password:
        raise ConfigError("CORISYNC_PG_PASSWORD is not set (run `corisync stack up` first)")
    with psycopg.connect(host=s.pg_host, port=s.pg_port, dbname=s.pg_database, user=s.pg_user,
                         password=s.pg_password, connect_timeout=10) as conn:
        users = [r[0] for r in conn.execute("SELECT user_id FROM users WHERE role = 'learner' ORDER BY 1")]
        courses = [r[0] for r in conn.execute("SELECT course_id FROM courses WHERE is_published ORDER BY 1")]
    return users, courses
