"""The Airbyte tables of the dbt tests' fixture warehouse (schema ``raw_airbyte``), simulated from the platform.

What Airbyte lands (corisync_assets/airbyte/connections.py): ``sheets_trainings``, ``sheets_attendance_spring``,
``sheets_attendance_autumn`` (the trainers' Google Sheets workbook, every cell a string, headers snake_cased)
and ``ga4_course_pages`` (GA4 custom report), each with Airbyte's columns ``_airbyte_raw_id``,
``_airbyte_extracted_at``, ``_airbyte_meta``, ``_airbyte_generation_id`` first.

The workbook is written the way trainers write it, from the simulated platform (``simulate_airbyte``, its own
random stream, so the other fixtures are unchanged): the in-person trainings, then who came. Every row keeps
what the trainer meant (training, date, start, person, present) beside the cells they typed: ids as '12',
'T12', '#12'; local dates dd/mm/yyyy and d/m/yyyy (Europe/Berlin, so a late UTC start is the next day);
names in any case and spacing, misspelt; emails with capitals, spaces and typos; blank rows; the Email header
renamed Attendee email in the autumn tab; people the trainer forgot, people not registered on the platform,
a guest who is no platform user, a name two users share, one person listed twice, attendance that disagrees
with the platform. The tests expect the staging models to recover what was meant where the typing allows it
(and to say so where it does not), and compute the marts from it (tests/dbt/test_airbyte_models.py).

GA4 reports a little less than the platform counts itself (consent, blockers), for the days ``GA4_DAYS``,
its date as 'yyyymmdd' or 'yyyy-mm-dd', and re-reports recent days with revised figures in the next sync.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    import duckdb

    from tests.dbt.fixture_warehouse import Platform

LOCAL = ZoneInfo("Europe/Berlin")  # the trainers' clocks and calendars
SCHEMA = "raw_airbyte"
AIRBYTE_COLUMNS = {"_airbyte_raw_id": "VARCHAR", "_airbyte_extracted_at": "TIMESTAMPTZ", "_airbyte_meta": "JSON",
                   "_airbyte_generation_id": "BIGINT"}
SHEET_COLUMNS = {
    "sheets_trainings": ("training_id", "course", "date", "start", "location", "trainer", "trainer_email",
                         "capacity"),
    "sheets_attendance_spring": ("training_id", "date", "attendee", "email", "present", "notes"),
    "sheets_attendance_autumn": ("training_id", "date", "attendee", "attendee_email", "present", "notes"),
}
GA4_TABLE = "ga4_course_pages"
GA4_COLUMNS = {"property_id": "VARCHAR", "date": "VARCHAR", "pagePath": "VARCHAR", "sessions": "BIGINT",
               "screenPageViews": "BIGINT", "totalUsers": "BIGINT"}
GA4_PROPERTY = "345678901"
GA4_DAYS = (date(2025, 3, 3), date(2025, 3, 30))  # first and last day GA4 reports
SHEETS_SYNCED_AT = datetime(2025, 4, 30, 11, 0, tzinfo=UTC)
SHEET_ONLY_TRAINING = 11  # a session the trainers ran that the platform never had
NAMESAKES = (44, 45)  # users who share a name (up to case and spaces), see fixture_warehouse.simulate


@dataclass
class SheetRow:
    """One row of a tab: the cells as typed, and what the trainer meant (None on a blank row)."""

    table: str
    cells: dict[str, str | None]
    training_id: int | None = None
    day: date | None = None
    start: time | None = None
    person: int | None = None  #: the platform user meant (trainer or attendee), None for someone else
    email: str | None = None  #: the email meant, lower case
    present: bool | None = None
    #: the user the staging should find, and how (None when what was typed cannot identify them)
    expect_user: int | None = None
    expect_matched_by: str | None = None
    raw_id: str = ""

    @property
    def blank(self) -> bool:
        return all((v or "").strip() == "" for v in self.cells.values())

    @property
    def term(self) -> str | None:
        return {"sheets_attendance_spring": "spring", "sheets_attendance_autumn": "autumn"}.get(self.table)


@dataclass
class AirbyteFixture:
    rows: list[SheetRow] = field(default_factory=list)
    ga4: list[dict] = field(default_factory=list)  #: raw GA4 rows, Airbyte's columns included

    def tab(self, table: str) -> list[SheetRow]:
        return [r for r in self.rows if r.table == table]


ID_FORMS = ("{}", " {}", "T{}", "#{}", "{} ", "t {}")
START_FORMS = ("{h12}:{m:02d} {ampm}", "{h}:{m:02d}", "{h}h{m:02d}", "{h12}{ampm}", "{h:02d}:{m:02d}")


def _written_id(n: int, k: int) -> str:
    return ID_FORMS[k % len(ID_FORMS)].format(n)


def _written_date(d: date, k: int) -> str:
    return (f"{d:%d/%m/%Y}", f"{d.day}/{d.month}/{d.year}", f"{d.day}.{d.month}.{d.year}")[k % 3]


def _local(t: datetime) -> datetime:
    return t.astimezone(LOCAL)


def _identity(user: dict, variant: int, unique_name: bool) -> tuple[str, str, int | None, str | None]:
    """(name, email as typed, expected user, matched by) for one of the ways people write a person."""
    name, email, uid = user["full_name"].strip(), user["email"], user["user_id"]
    local, domain = email.lower().split("@")
    typo = f"{local}@{domain.replace('example', 'exmaple')}"
    by_name = (uid, "name") if unique_name else (None, None)
    return [
        (name, email, uid, "email"),
        (f" {name.lower()}  ", f"  {email.upper()} ", uid, "email"),
        (name.upper(), typo, *by_name),  # an email typo: found by the name
        (name.replace("son", "sn"), typo, None, None),  # misspelt name and email: nobody can tell who
        (f"{name.replace(' ', '  ')} ", f"{local}@{domain}", uid, "email"),
        (name, "", *by_name),  # no email written down
    ][variant % 6]


def simulate_airbyte(p: Platform, seed: int) -> AirbyteFixture:
    rng = random.Random(f"airbyte/{seed}")
    users = {e.current["user_id"]: e.current for e in p.entities["users"] if e.deleted_at is None}
    keys = defaultdict(list)
    for u in users.values():
        keys[u["full_name"].replace(" ", "").lower()].append(u["user_id"])
    unique = {uid: len(keys[u["full_name"].replace(" ", "").lower()]) == 1 for uid, u in users.items()}
    courses = {e.current["course_id"]: e.current for e in p.entities["courses"]}
    trainings = sorted((e.current for e in p.entities["trainings"]
                        if e.current["location"].strip().lower() != "online"), key=lambda t: t["starts_at"])
    last = max(t["starts_at"] for t in trainings)
    trainings.append({"training_id": SHEET_ONLY_TRAINING, "course_id": 3, "trainer_id": 2, "location": "Hamburg",
                      "starts_at": last + timedelta(days=9, hours=2), "capacity": 15, "status": "completed"})
    fx = AirbyteFixture()
    blank_tr = {c: "" for c in SHEET_COLUMNS["sheets_trainings"]}

    # tab trainings
    for k, t in enumerate(trainings):
        start = _local(t["starts_at"])
        trainer = users[t["trainer_id"]]
        name, email, expect, how = _identity(trainer, k, unique[trainer["user_id"]])
        cells = {
            "training_id": _written_id(t["training_id"], k),
            "course": [f"{courses[t['course_id']]['title']}", f" {courses[t['course_id']]['title'].lower()}"][k % 2],
            "date": _written_date(start.date(), k),
            "start": START_FORMS[k % len(START_FORMS)].format(
                h=start.hour, m=start.minute, h12=(start.hour + 11) % 12 + 1, ampm="pm" if start.hour >= 12 else "am"),
            "location": [t["location"], f" {t['location'].strip()} ", t["location"].strip().lower()][k % 3],
            "trainer": name,
            "trainer_email": email,
            "capacity": ["", f"{t['capacity']}", f" {t['capacity']} "][k % 3] if k else f"{t['capacity']}",
        }
        meant = time(start.hour, 0 if START_FORMS[k % len(START_FORMS)] == "{h12}{ampm}" else start.minute)
        fx.rows.append(SheetRow("sheets_trainings", cells, t["training_id"], start.date(), meant,
                                trainer["user_id"], trainer["email"].lower(), expect_user=expect,
                                expect_matched_by=how))
        if k == 1:
            fx.rows.append(SheetRow("sheets_trainings", dict(blank_tr)))
    fx.rows.append(SheetRow("sheets_trainings", {c: None for c in blank_tr}))
    fx.rows.append(SheetRow("sheets_trainings", {**{c: None for c in blank_tr}, "course": "   "}))

    # attendance, one tab per half of the season; the email header renamed in the second
    held = [t for t in trainings if t["status"] == "completed"]
    spring = {t["training_id"] for t in held[: (len(held) + 1) // 2]}
    registrations = defaultdict(list)
    for e in p.entities["training_attendance"]:
        registrations[e.current["training_id"]].append(e.current)
    learners = sorted(uid for uid, u in users.items() if u["role"] == "learner")
    k = 0
    for t in held:
        table = "sheets_attendance_spring" if t["training_id"] in spring else "sheets_attendance_autumn"
        email_col = "email" if t["training_id"] in spring else "attendee_email"
        day = _local(t["starts_at"]).date()

        def row(person: int | None, name: str, typed_email: str, email: str, present: bool | None,
                expect: int | None, how: str | None, notes: str = "", t=t, table=table, email_col=email_col,
                day=day) -> None:
            nonlocal k
            written = {True: ["yes", "Y", "x", "TRUE", "1", " Yes "], False: ["no", "N", "0", "false"],
                       None: [""]}[present]
            cells = {"training_id": _written_id(t["training_id"], k), "date": _written_date(day, k),
                     "attendee": name, email_col: typed_email, "present": written[k % len(written)],
                     "notes": notes}
            fx.rows.append(SheetRow(table, cells, t["training_id"], day, None, person, email, present,
                                    expect_user=expect, expect_matched_by=how))
            k += 1

        listed = set()
        for n, reg in enumerate(sorted(registrations[t["training_id"]], key=lambda r: r["user_id"])):
            if n % 7 == 3:
                continue  # the trainer forgot them: platform_only
            uid = reg["user_id"]
            attended = True if reg["checked_in_at"] else reg["attended"]
            present = attended if attended is not None else (True if n % 2 else None)  # 'x' for a walk-up
            if n % 5 == 4 and present is not None:
                present = not present  # the sheet and the platform disagree
            name, email, expect, how = _identity(users[uid], n, unique[uid])
            row(uid, name, email, users[uid]["email"].lower(), present, expect, how,
                notes=rng.choice(["", "", "late", "left early "]))
            listed.add(uid)
            if n == 1:  # listed twice: once ticked, once left blank
                row(uid, name, email, users[uid]["email"].lower(), None, expect, how, notes="dup")
        # walk-ins: a learner who never registered on the platform, a guest, and a namesake nobody can tell apart
        walk_in = next(u for u in learners[(t["training_id"] * 7) % len(learners):] + learners
                       if u not in listed and u not in NAMESAKES
                       and all(r["user_id"] != u for r in registrations[t["training_id"]]))
        row(walk_in, users[walk_in]["full_name"].strip(), users[walk_in]["email"], users[walk_in]["email"].lower(),
            True, walk_in, "email")
        guest = f"guest{t['training_id']}@mail.example"
        row(None, f"Guest {t['training_id']}", f" {guest} ", guest, True, None, None, notes="guest of the trainer")
        if t["training_id"] == held[-1]["training_id"]:
            shared = users[NAMESAKES[0]]["full_name"]
            row(None, shared.strip(), "a.kim@mail.example", "a.kim@mail.example", True, None, None)
        fx.rows.append(SheetRow(table, {"training_id": "", "date": "", "attendee": None, email_col: "",
                                        "present": "", "notes": ""}))

    for n, r in enumerate(fx.rows):
        r.raw_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"airbyte/{r.table}/{n}"))
    fx.ga4 = _ga4_rows(p, rng)
    return fx


def _ga4_rows(p: Platform, rng: random.Random) -> list[dict]:
    """GA4's rows as landed: one per (day, page) and sync that reported it. Daily syncs at 03:15 UTC read the
    last two days, so most days arrive twice, the second time revised upwards a little."""
    first, last = GA4_DAYS
    pages = [r for r in p.web_page_daily if first <= r["day"] <= last]
    reported: list[tuple[date, str, int, int, int]] = []
    for r in pages:
        if r["page_path"].startswith("/courses/") and rng.random() < 0.1:
            continue  # GA4 saw nobody there that day (everyone blocked it)
        sessions, views, users = (max(1, r[c] - rng.randrange(0, 2)) for c in ("sessions", "page_views", "visitors"))
        views += rng.random() < 0.2  # a reload GA4 counts and the platform's page figures do not
        reported.append((r["day"], r["page_path"], sessions, views, users))
    # pages only GA4 knows: a trailing-slash variant, a retired course slug; the catalog (no course)
    reported += [(date(2025, 3, 11), "/courses/tc-104/", 2, 3, 2), (date(2025, 3, 12), "/courses/sql-basics", 1, 1, 1),
                 (date(2025, 3, 12), "/courses", 5, 6, 4)]
    out = []
    for n, (day, path, sessions, views, users) in enumerate(sorted(reported)):
        syncs = [day + timedelta(days=1), day + timedelta(days=2)] if day < last else [day + timedelta(days=1)]
        for s, synced in enumerate(syncs):
            revised = s == len(syncs) - 1
            factor = 1 if revised else 0
            out.append({
                "_airbyte_raw_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ga4/{n}/{s}")),
                "_airbyte_extracted_at": datetime.combine(synced, time(3, 15, 7), UTC),
                "_airbyte_meta": json.dumps({"changes": [], "sync_id": 100 + (synced - first).days}),
                "_airbyte_generation_id": 0,
                "property_id": GA4_PROPERTY,
                "date": f"{day:%Y%m%d}" if (n + s) % 2 else f"{day:%Y-%m-%d}",
                "pagePath": path,
                "sessions": sessions - (1 - factor) * min(1, sessions - 1),
                "screenPageViews": views,
                "totalUsers": users - (1 - factor) * min(1, users - 1),
            })
    return out


def write_airbyte(con: duckdb.DuckDBPyConnection, fx: AirbyteFixture) -> None:
    """Create the raw_airbyte tables as Airbyte's destination would, and fill them from ``fx``."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    meta = json.dumps({"changes": [], "sync_id": 41})
    for table, columns in SHEET_COLUMNS.items():
        cols = {**AIRBYTE_COLUMNS, **{c: "VARCHAR" for c in columns}}
        con.execute(f"CREATE OR REPLACE TABLE {SCHEMA}.{table} ("
                    + ", ".join(f'"{c}" {t}' for c, t in cols.items()) + ")")
        con.executemany(f"INSERT INTO {SCHEMA}.{table} VALUES ({', '.join('?' * len(cols))})",
                        [[r.raw_id, SHEETS_SYNCED_AT, meta, 1, *(r.cells.get(c) for c in columns)]
                         for r in fx.tab(table)])
    cols = {**AIRBYTE_COLUMNS, **GA4_COLUMNS}
    con.execute(f"CREATE OR REPLACE TABLE {SCHEMA}.{GA4_TABLE} ("
                + ", ".join(f'"{c}" {t}' for c, t in cols.items()) + ")")
    con.executemany(f"INSERT INTO {SCHEMA}.{GA4_TABLE} VALUES ({', '.join('?' * len(cols))})",
                    [[r[c] for c in cols] for r in fx.ga4])
