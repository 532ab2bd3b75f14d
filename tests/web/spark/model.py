"""The web Spark tests' data and expectation: collector events, the two-batch scenario, and an independent
plain-Python model of the job's tables (it does not use the job's code), plus readers of the lake with pyarrow."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

GAP = timedelta(minutes=30)
LATE = timedelta(hours=1)
PAGE_TYPES = {"page_view", "course_page_view"}
PARTITION_COLUMNS = {"events": "event_date", "sessions": "session_date", "page_daily": "day"}


# -- events ---------------------------------------------------------------------------------------------------

def ts(text: str) -> datetime:
    """'2026-11-27 08:00:00' (UTC) -> aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event(event_id: str, anon: str, event_type: str, occurred: str, *, received: str | None = None,
          path: str = "/", course: int | None = None, user: int | None = None, session: str | None = None,
          properties: dict | None = None) -> dict:
    """One collector event (the JSON message's fields; timestamps as aware datetimes)."""
    occurred_at = ts(occurred)
    return {"event_id": event_id, "event_type": event_type, "schema_version": 1, "anonymous_id": anon,
            "user_id": user, "session_id": session, "occurred_at": occurred_at,
            "received_at": ts(received) if received else occurred_at + timedelta(seconds=2),
            "page_url": f"https://learn.example.com{path}", "page_path": path, "referrer": None,
            "user_agent": "Mozilla/5.0 (test)", "course_id": course, "properties": properties or {},
            "source": "web"}


def to_json(e: dict) -> str:
    return json.dumps({**e, "occurred_at": iso_z(e["occurred_at"]), "received_at": iso_z(e["received_at"])})


# -- the reference model --------------------------------------------------------------------------------------

def _micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def ref_session_id(anon: str, start: datetime) -> str:
    return hashlib.sha256(f"{anon}|{_micros(start)}".encode()).hexdigest()[:32]


def reference(stored: list[dict]) -> dict[str, list[dict]]:
    """The three tables from every event ever delivered (dicts as from `event`, plus kafka_partition and
    kafka_offset): dedupe by event_id (earliest received_at, then lowest partition/offset), sessions by a
    gap of more than 30 minutes per visitor, stitching to the visitor's latest user_id, page_daily."""
    best: dict[str, dict] = {}
    for e in stored:
        rank = (e["received_at"], e["kafka_partition"], e["kafka_offset"])
        if e["event_id"] not in best or rank < best[e["event_id"]]["_rank"]:
            best[e["event_id"]] = {**e, "_rank": rank}
    events = list(best.values())
    by_visitor: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        by_visitor[e["anonymous_id"]].append(e)
    stitched = {}
    for anon, evs in by_visitor.items():
        with_user = [e for e in evs if e["user_id"] is not None]
        latest = max(with_user, key=lambda e: (e["occurred_at"], e["event_id"])) if with_user else None
        stitched[anon] = latest["user_id"] if latest else None
    sessions, derived = [], {}
    for anon, evs in by_visitor.items():
        evs.sort(key=lambda e: (e["occurred_at"], e["event_id"]))
        groups: list[list[dict]] = []
        for e in evs:
            if groups and e["occurred_at"] - groups[-1][-1]["occurred_at"] <= GAP:
                groups[-1].append(e)
            else:
                groups.append([e])
        for g in groups:
            start, end = g[0]["occurred_at"], g[-1]["occurred_at"]
            sid = ref_session_id(anon, start)
            for e in g:
                derived[e["event_id"]] = sid
            sessions.append({
                "session_id": sid, "anonymous_id": anon, "user_id": stitched[anon], "session_start": start,
                "session_end": end, "event_count": len(g),
                "page_count": sum(e["event_type"] in PAGE_TYPES for e in g),
                "entry_page": g[0]["page_path"], "exit_page": g[-1]["page_path"],
                "duration_s": (end - start).total_seconds(), "session_date": start.date()})
    rows = []
    for e in events:
        rows.append({
            "event_id": e["event_id"], "event_type": e["event_type"], "schema_version": 1,
            "anonymous_id": e["anonymous_id"], "user_id": e["user_id"],
            "session_id": e["session_id"] or derived[e["event_id"]], "occurred_at": e["occurred_at"],
            "received_at": e["received_at"], "page_url": e["page_url"], "page_path": e["page_path"],
            "referrer": e["referrer"], "user_agent": e["user_agent"], "course_id": e["course_id"],
            "properties": e["properties"], "source": e["source"], "kafka_partition": e["kafka_partition"],
            "kafka_offset": e["kafka_offset"], "is_late": e["received_at"] - e["occurred_at"] > LATE,
            "event_date": e["occurred_at"].date()})
    daily: dict[tuple, dict] = {}
    for e in events:
        key = (e["occurred_at"].date(), e["page_path"], e["course_id"])
        d = daily.setdefault(key, {"views": 0, "visitors": set(), "sessions": set()})
        d["views"] += e["event_type"] in PAGE_TYPES
        d["visitors"].add(e["anonymous_id"])
        d["sessions"].add(derived[e["event_id"]])
    page_daily = [{"page_path": p, "course_id": c, "page_views": d["views"], "visitors": len(d["visitors"]),
                   "sessions": len(d["sessions"]), "day": day} for (day, p, c), d in daily.items()]
    return {"events": rows, "sessions": sessions, "page_daily": page_daily}


def normalized(table: str, rows: list[dict]) -> list[dict]:
    """Rows comparable across the model and the lake: properties as parsed JSON, sorted by key."""
    out = []
    for r in rows:
        r = dict(r)
        if table == "events" and isinstance(r.get("properties"), str):
            r["properties"] = json.loads(r["properties"])
        out.append(r)
    keys = {"events": ("event_id",), "sessions": ("session_id",),
            "page_daily": ("day", "page_path", "course_id")}[table]
    return sorted(out, key=lambda r: tuple(str(r[k]) for k in keys))


def read_lake(lake: Path, table: str, day: date | None = None) -> list[dict]:
    """A lake table (or one partition of it) read with pyarrow: the job's code is not involved."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    column = PARTITION_COLUMNS[table]
    path = lake / "web" / table
    if day is not None:
        path = path / f"{column}={day.isoformat()}"
        if not path.exists():
            return []
        rows = ds.dataset(path, format="parquet").to_table().to_pylist()
        return [{**r, column: day} for r in rows]
    if not path.exists():
        return []
    part = ds.partitioning(pa.schema([(column, pa.date32())]), flavor="hive")
    return ds.dataset(path, format="parquet", partitioning=part).to_table().to_pylist()


def partition_files(lake: Path, table: str, day: date) -> dict[str, float]:
    """file name -> mtime of one partition (to prove a partition was not rewritten)."""
    folder = lake / "web" / table / f"{PARTITION_COLUMNS[table]}={day.isoformat()}"
    return {p.name: p.stat().st_mtime for p in sorted(folder.iterdir())} if folder.exists() else {}


# -- the scenario: two batches on a 2-partition topic -----------------------------------------------------------

D1, D2 = date(2026, 11, 27), date(2026, 11, 28)
def _with(e: dict, **changes) -> dict:
    return {**e, **changes}


def scenario() -> dict[str, list[tuple[int, object]]]:
    """Two batches of (partition, payload): payload an event dict (valid) or a raw value (invalid)."""
    a1 = event("a1", "anon-a", "page_view", "2026-11-27 08:00:00", path="/home")
    a2 = event("a2", "anon-a", "course_page_view", "2026-11-27 08:30:00", path="/courses/7", course=7)
    a3 = event("a3", "anon-a", "video_progress", "2026-11-27 09:00:01", path="/courses/7/lesson/1", course=7,
               properties={"percent": 50})
    a4 = event("a4", "anon-a", "page_view", "2026-11-27 09:05:00", path="/home")
    b1 = event("b1", "anon-b", "page_view", "2026-11-27 10:20:00", path="/search", session="client-xyz")
    b2 = event("b2", "anon-b", "search", "2026-11-27 10:00:00", path="/search", properties={"q": "spark"})
    b3 = event("b3", "anon-b", "page_view", "2026-11-27 10:10:00", path="/home")
    b4 = event("b4", "anon-b", "login", "2026-11-27 10:25:00", received="2026-11-27 12:30:00", path="/login",
               user=42)
    c1 = event("c1", "anon-c", "page_view", "2026-11-27 23:50:00", path="/pricing")
    c2 = event("c2", "anon-c", "page_view", "2026-11-28 00:10:00", path="/pricing")
    c0 = event("c0", "anon-c", "search", "2026-11-28 12:00:00", path="/search", user=7)
    f1 = event("f1", "anon-f", "page_view", "2026-11-28 09:00:00", path="/home")
    e1 = event("e1", "anon-e", "quiz_submission", "2026-11-28 15:00:00", path="/courses/9/quiz", course=9, user=5)
    e2 = event("e2", "anon-e", "course_page_view", "2026-11-28 15:10:00", path="/courses/9", course=9, user=6)
    bad = [(0, "not json{"), (1, '{"event_id": "x1"}'), (0, None), (1, b"\xff\xfe{}"), (0, "[1, 2]"),
           (1, to_json(_with(a1, event_id="x2", event_type="bogus"))),
           (0, to_json(_with(a1, event_id="x3")).replace('"user_id": null', '"user_id": "abc"')),
           (1, to_json(_with(a1, event_id="x4")).replace(iso_z(a1["occurred_at"]), "yesterday")),
           (0, to_json(_with(a1, event_id="x5")).replace('"properties": {}', '"properties": [1, 2]'))]
    batch1 = [(0, a1), (0, a2), (0, a3), (0, _with(a2, received_at=a2["received_at"] + timedelta(seconds=5))),
              (0, a4), (1, b1), (1, b2), (1, b3), (1, b4), (0, c1), (0, c2), (0, c0), (0, f1), (1, e1), (1, e2),
              *bad]
    a5 = event("a5", "anon-a", "page_view", "2026-11-27 08:45:00", received="2026-11-28 10:00:00", path="/faq")
    f2 = event("f2", "anon-f", "login", "2026-11-27 13:00:00", received="2026-11-28 09:30:00", path="/login",
               user=99)
    batch2 = [(0, a5), (0, a1), (1, f2)]
    return {"batch1": batch1, "batch2": batch2}


def messages(entries: list[tuple[int, object]]) -> list[tuple[int, str | None, str | bytes | None]]:
    """(partition, key, value) to produce: key = anonymous_id of an event, 'bad' for the invalid ones."""
    out = []
    for partition, payload in entries:
        if isinstance(payload, dict):
            out.append((partition, payload["anonymous_id"], to_json(payload)))
        else:
            out.append((partition, "bad", payload))
    return out


def delivered(entries: list[tuple[int, object]], offsets: list[int]) -> list[dict]:
    """The valid events of `entries` with the Kafka partition/offset they were delivered at."""
    return [{**payload, "kafka_partition": partition, "kafka_offset": offset}
            for (partition, payload), offset in zip(entries, offsets, strict=True) if isinstance(payload, dict)]


def simulated_offsets(entries: list[tuple[int, object]], start: dict[int, int] | None = None) -> list[int]:
    """The offsets Kafka assigns to `entries` on a partitioned topic (per partition, in order from `start`)."""
    nxt = dict(start or {})
    out = []
    for partition, _payload in entries:
        out.append(nxt.get(partition, 0))
        nxt[partition] = out[-1] + 1
    return out


def raw_frame(spark, entries: list[tuple[int, object]], offsets: list[int], topic: str = "web.events"):
    """A DataFrame shaped like the Kafka source's output, without Kafka."""
    from corisync_assets.web.spark.kafka_source import SCHEMA

    rows = []
    for (partition, payload), offset in zip(entries, offsets, strict=True):
        _p, key, value = messages([(partition, payload)])[0]
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                value = None  # the source delivers non-UTF-8 values as null
        rows.append((key, value, topic, partition, offset, datetime(2026, 11, 28, 12, tzinfo=UTC)))
    return spark.createDataFrame(rows, SCHEMA)
