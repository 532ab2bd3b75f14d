"""The dbt models over the Airbyte syncs, built by dbt through Dagster (fixture ``built``) over the fixture's
``raw_airbyte`` tables (tests/dbt/fixture_airbyte.py: the trainers' workbook as trainers type it, GA4's report).

Expected rows come from what the fixture's trainers *meant* (each sheet row keeps it beside the typed cells),
from the platform's simulated registrations and from GA4's raw rows, computed here in plain Python; never from
the models' SQL. A broken sheet (a renamed header) and a sync that has not run yet are built on a copy.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime

import dagster as dg
import duckdb
import pytest

from corisync_assets.dbt import corisync_dbt_assets, dbt_resource
from corisync_assets.environment import warehouse_resource
from tests.dbt.fixture_airbyte import GA4_DAYS, NAMESAKES, SHEET_COLUMNS, AirbyteFixture, SheetRow
from tests.dbt.fixture_warehouse import Platform
from tests.support.dbt_build import BuiltWarehouse, altered_copy
from tests.support.dbt_build import rows as _rows

pytestmark = pytest.mark.timeout(600)

AIRBYTE_SOURCES = {dg.AssetKey(["airbyte", "training_sheets", t])
                   for t in ("trainings", "attendance_spring", "attendance_autumn")} | {
    dg.AssetKey(["airbyte", "ga4_web", "course_pages"])}
STAGING = {dg.AssetKey(["staging", m]) for m in ("stg_sheet_trainings", "stg_sheet_attendance", "stg_ga4_course_pages")}
MARTS = {dg.AssetKey(["marts", m]) for m in ("mart_training_attendance_reconciliation", "mart_ga4_course_pages")}


# --- the rules, written out in Python --------------------------------------------------------------------------

def _text(cell: str | None) -> str | None:
    return (cell or "").strip() or None


def _title(cell: str | None) -> str | None:
    """'  anne-marie   DUPONT ' -> 'Anne-Marie Dupont' (words at spaces and hyphens)."""
    words = (cell or "").lower().split()
    return " ".join("-".join(p[:1].upper() + p[1:] for p in w.split("-")) for w in words) or None


def _email(cell: str | None) -> str | None:
    return (cell or "").strip().lower() or None


def _int(cell: str | None) -> int | None:
    return int(cell) if cell and cell.strip().isdigit() else None


def _slug(path: str) -> str | None:
    m = re.match(r"^/courses/([^/?#]+)", path)
    return m.group(1) if m else None


def _ga4_date(value: str) -> date:
    return datetime.strptime(value.replace("-", ""), "%Y%m%d").date()


def _fixture(built: BuiltWarehouse) -> AirbyteFixture:
    return built.platform.airbyte


def _filled(fx: AirbyteFixture, table: str) -> list[SheetRow]:
    return [r for r in fx.tab(table) if not r.blank]


def _attendance(fx: AirbyteFixture) -> list[SheetRow]:
    return [r for r in fx.rows if r.term and not r.blank]


def _platform_attendance(p: Platform) -> dict[tuple[int, int], bool | None]:
    """(training, user) -> attended by the platform: a check-in counts, else the recorded flag."""
    return {(a["training_id"], a["user_id"]): True if a["checked_in_at"] else a["attended"]
            for a in (e.current for e in p.entities["training_attendance"] if e.deleted_at is None)}


def expected_reconciliation(p: Platform) -> dict[str, dict]:
    fx = p.airbyte
    on_sheet = {r.training_id for r in fx.rows if r.training_id is not None}
    sheet: dict[tuple, list[SheetRow]] = defaultdict(list)
    for r in _attendance(fx):
        typed = _email(r.cells.get("email") or r.cells.get("attendee_email")) or _text(r.cells["attendee"]).lower()
        sheet[(r.training_id, r.expect_user if r.expect_user is not None else ("sheet", typed))].append(r)
    platform = {k: v for k, v in _platform_attendance(p).items() if k[0] in on_sheet}
    out = {}
    for (tid, who), rs in sheet.items():
        marks = [r.present for r in rs if r.present is not None]
        attended_sheet = any(marks) if marks else None
        user = who if isinstance(who, int) else None
        registered = user is not None and (tid, user) in platform
        attended_platform = platform.get((tid, user)) if registered else None
        key = f"{tid}|user:{user}" if user is not None else f"{tid}|sheet:{who[1]}"
        out[key] = {
            "training_id": tid, "user_id": user, "status": "both" if registered else "sheet_only",
            "attended_sheet": attended_sheet, "attended_platform": attended_platform,
            "attendance_disagrees": None not in (attended_sheet, attended_platform)
            and attended_sheet != attended_platform,
            "sheet_rows": len(rs),
            "attendee_name": min(_text(r.cells["attendee"]) for r in rs),
            "attendee_email": min((e for e in (_email(r.cells.get("email") or r.cells.get("attendee_email"))
                                               for r in rs) if e), default=None),
        }
    for (tid, user), attended in platform.items():
        key = f"{tid}|user:{user}"
        if key not in out:
            out[key] = {"training_id": tid, "user_id": user, "status": "platform_only", "attended_sheet": None,
                        "attended_platform": attended, "attendance_disagrees": False, "sheet_rows": 0,
                        "attendee_name": None, "attendee_email": None}
    return out


def latest_ga4(fx: AirbyteFixture) -> dict[tuple[str, date, str], dict]:
    latest: dict[tuple[str, date, str], dict] = {}
    for r in fx.ga4:
        key = (r["property_id"], _ga4_date(r["date"]), r["pagePath"])
        if key not in latest or r["_airbyte_extracted_at"] > latest[key]["_airbyte_extracted_at"]:
            latest[key] = r
    return latest


def expected_ga4_pages(p: Platform) -> dict[str, dict]:
    ga4_days = {d for _, d, _ in latest_ga4(p.airbyte)}
    codes = {e.current["code"].lower(): e.current["course_id"] for e in p.entities["courses"]}
    ids = {str(cid): cid for cid in codes.values()}
    pages: dict[tuple[date, str], dict] = defaultdict(lambda: {
        "ga4_sessions": 0, "ga4_page_views": 0, "ga4_users": 0, "platform_sessions": 0, "platform_page_views": 0,
        "platform_visitors": 0, "platform_course_id": None})
    for (_, day, path), r in latest_ga4(p.airbyte).items():
        if _slug(path):
            pg = pages[(day, path)]
            pg["ga4_sessions"] += r["sessions"]
            pg["ga4_page_views"] += r["screenPageViews"]
            pg["ga4_users"] += r["totalUsers"]
    for r in p.web_page_daily:
        if r["day"] in ga4_days and _slug(r["page_path"]):
            pg = pages[(r["day"], r["page_path"])]
            pg["platform_sessions"] += r["sessions"]
            pg["platform_page_views"] += r["page_views"]
            pg["platform_visitors"] += r["visitors"]
            pg["platform_course_id"] = max(c for c in (pg["platform_course_id"], r["course_id"], -1) if c is not None)
    out = {}
    for (day, path), pg in pages.items():
        slug = _slug(path)
        platform_course = pg.pop("platform_course_id")
        course = platform_course if platform_course not in (None, -1) else codes.get(slug.lower(), ids.get(slug))
        out[f"{day}|{path}"] = {
            "day": day, "page_path": path, "course_slug": slug, "course_id": course, **pg,
            "sessions_ratio": round(pg["ga4_sessions"] / pg["platform_sessions"], 4) if pg["platform_sessions"]
            else None,
            "page_views_ratio": round(pg["ga4_page_views"] / pg["platform_page_views"], 4)
            if pg["platform_page_views"] else None,
        }
    return out


def _same(got: dict, want: dict, key) -> None:
    for col, value in want.items():
        if isinstance(value, float):
            assert got[col] == pytest.approx(value, abs=1e-4), (key, col, got[col], value)
        else:
            assert got[col] == value, (key, col, got[col], value)


# --- tests -----------------------------------------------------------------------------------------------------

def test_the_fixture_exercises_the_sheet_and_ga4_cases(built: BuiltWarehouse) -> None:
    """Not a check of dbt: the simulated workbook and report hold the cases the models distinguish."""
    fx = _fixture(built)
    cells = [r.cells for r in fx.rows if not r.blank]
    ids = {c["training_id"] for c in cells}
    assert all(any(re.fullmatch(pattern, i) for i in ids)
               for pattern in (r"\d+", r" \d+", r"\d+ ", r"[Tt] ?\d+", r"#\d+"))
    dates = {c["date"] for c in cells}
    assert all(any(re.fullmatch(pattern, d) for d in dates) for pattern in (
        r"\d\d/\d\d/\d{4}", r"\d/\d{1,2}/\d{4}", r"\d{1,2}\.\d{1,2}\.\d{4}"))
    starts = {e.current["training_id"]: e.current["starts_at"] for e in built.platform.entities["trainings"]}
    # a late UTC start is the next day on the trainers' calendar
    assert any(r.training_id in starts and r.day != starts[r.training_id].astimezone(UTC).date()
               for r in _filled(fx, "sheets_trainings"))
    typed_starts = {c["start"] for c in cells if "start" in c}
    assert {"am", "pm", "h"} <= {m for t in typed_starts for m in re.findall(r"am|pm|h", t)}
    assert "12am" in typed_starts  # midnight on a 12-hour clock
    assert any(not (c.get("email") or c.get("attendee_email") or "").strip() for c in cells if "attendee" in c)
    assert all(sum(r.blank for r in fx.tab(t)) >= 1 for t in SHEET_COLUMNS)
    assert all(_filled(fx, t) for t in SHEET_COLUMNS)
    assert "email" not in fx.tab("sheets_attendance_autumn")[0].cells  # the renamed header
    matched = {(r.table == "sheets_trainings", r.expect_matched_by) for r in fx.rows if not r.blank}
    assert matched >= {(True, "email"), (True, "name"), (True, None), (False, "email"), (False, "name"),
                       (False, None)}
    unknown_guests = [r for r in _attendance(fx) if r.person is None]
    assert unknown_guests and any(r.cells["attendee"].replace(" ", "").lower() == "alexkim" for r in unknown_guests)
    users = {e.current["user_id"]: e.current["full_name"] for e in built.platform.entities["users"]}
    assert len({users[u].replace(" ", "").lower() for u in NAMESAKES}) == 1  # two users, one name
    rec = expected_reconciliation(built.platform)
    assert {w["status"] for w in rec.values()} == {"both", "sheet_only", "platform_only"}
    assert any(w["attendance_disagrees"] for w in rec.values()) and any(w["sheet_rows"] > 1 for w in rec.values())
    assert any(w["status"] == "sheet_only" and w["user_id"] is not None for w in rec.values())  # a walk-in
    formats = {len(r["date"]) for r in fx.ga4}
    assert formats == {8, 10}
    assert len(fx.ga4) > len(latest_ga4(fx))  # re-reported days
    pages = expected_ga4_pages(built.platform)
    assert any(w["ga4_sessions"] == 0 for w in pages.values()) and any(w["platform_sessions"] == 0
                                                                       for w in pages.values())
    assert any(w["course_id"] is None for w in pages.values())
    assert len({w["page_views_ratio"] for w in pages.values()}) > 2


def test_airbyte_models_materialize_with_their_checks_and_read_the_airbyte_assets(built: BuiltWarehouse) -> None:
    assert built.result.success
    materialized = {m.asset_key for m in built.result.get_asset_materialization_events()}
    assert materialized >= STAGING | MARTS
    assert not materialized & AIRBYTE_SOURCES  # the tables are Airbyte's assets; dbt only reads them
    assert set(corisync_dbt_assets.dependency_keys) >= AIRBYTE_SOURCES
    checks = {k for k in corisync_dbt_assets.check_keys if k.asset_key in STAGING | MARTS}
    names = {k.name for k in checks}
    assert {"sheet_attendance_spring_has_email", "sheet_attendance_autumn_has_attendee_email",
            "sheet_attendance_autumn_has_training_id", "sheet_trainings_has_training_id"} <= names
    evaluations = {e.asset_check_key: e for e in built.result.get_asset_check_evaluations()
                   if e.asset_check_key in checks}
    assert set(evaluations) == checks
    assert [k.to_user_string() for k, e in evaluations.items() if not e.passed] == []


def test_stg_sheet_trainings_equals_what_the_trainers_meant(built: BuiltWarehouse) -> None:
    want = {r.raw_id: {
        "training_id": r.training_id, "training_date": r.day, "start_time": r.start,
        "course": _text(r.cells["course"]), "location": _text(r.cells["location"]),
        "trainer_name": _title(r.cells["trainer"]), "trainer_email": _email(r.cells["trainer_email"]),
        "trainer_user_id": r.expect_user, "trainer_matched_by": r.expect_matched_by,
        "capacity": _int(r.cells["capacity"]),
    } for r in _filled(_fixture(built), "sheets_trainings")}
    got = {r["sheet_row_id"]: r for r in _rows(built, "select * from staging.stg_sheet_trainings")}
    assert set(got) == set(want)  # blank rows dropped, every other row kept
    for key, w in want.items():
        _same(got[key], w, key)
    assert "Persn 3" in {w["trainer_name"] for w in want.values()}  # misspelt and no usable email: unmapped


def test_stg_sheet_attendance_equals_what_the_trainers_meant(built: BuiltWarehouse) -> None:
    want = {r.raw_id: {
        "term": r.term, "training_id": r.training_id, "attendance_date": r.day,
        "attendee_name": _text(r.cells["attendee"]),
        "attendee_email": _email(r.cells.get("email") or r.cells.get("attendee_email")),
        "user_id": r.expect_user, "user_matched_by": r.expect_matched_by, "present": r.present,
        "notes": _text(r.cells["notes"]),
    } for r in _attendance(_fixture(built))}
    got = {r["sheet_row_id"]: r for r in _rows(built, "select * from staging.stg_sheet_attendance")}
    assert set(got) == set(want)
    for key, w in want.items():
        _same(got[key], w, key)
    assert {w["term"] for w in want.values()} == {"spring", "autumn"}


def test_stg_ga4_course_pages_keeps_the_latest_report_of_each_day_and_page(built: BuiltWarehouse) -> None:
    want = {(prop, day, path): {"sessions": r["sessions"], "page_views": r["screenPageViews"],
                                "users": r["totalUsers"], "course_slug": _slug(path),
                                "extracted_at": r["_airbyte_extracted_at"]}
            for (prop, day, path), r in latest_ga4(_fixture(built)).items()}
    got = {(r["property_id"], r["day"], r["page_path"]): r
           for r in _rows(built, "select * from staging.stg_ga4_course_pages")}
    assert set(got) == set(want)
    for key, w in want.items():
        _same(got[key], w, key)
    assert {d for _, d, _ in got} <= {date.fromordinal(n) for n in range(GA4_DAYS[0].toordinal(),
                                                                         GA4_DAYS[1].toordinal() + 1)}


def test_training_attendance_reconciliation(built: BuiltWarehouse) -> None:
    want = expected_reconciliation(built.platform)
    got = {r["reconciliation_id"]: r
           for r in _rows(built, "select * from marts.mart_training_attendance_reconciliation")}
    assert set(got) == set(want)
    for key, w in want.items():
        _same(got[key], w, key)


def test_ga4_course_pages_beside_the_platform(built: BuiltWarehouse) -> None:
    want = expected_ga4_pages(built.platform)
    got = {r["page_day_id"]: r for r in _rows(built, "select * from marts.mart_ga4_course_pages")}
    assert set(got) == set(want)
    for key, w in want.items():
        _same(got[key], w, key)


def test_a_renamed_header_fails_its_tab_check_and_a_sync_not_run_yet_reads_empty(
        built: BuiltWarehouse, tmp_path) -> None:
    """On a copy of the warehouse: a trainer renamed the autumn tab's 'Attendee email' header (the connector
    then lands the column under its new name), and GA4 has never synced (no table). The attendance model still
    builds, keeping every row; the check of that tab and header fails, the other tab's passes; GA4's staging
    is empty."""
    s = altered_copy(built, tmp_path,
                     'ALTER TABLE raw_airbyte.sheets_attendance_autumn RENAME COLUMN attendee_email TO "e_mail"',
                     "DROP TABLE raw_airbyte.ga4_course_pages")
    attendance, ga4 = dg.AssetKey(["staging", "stg_sheet_attendance"]), dg.AssetKey(["staging", "stg_ga4_course_pages"])
    result = dg.materialize(
        [corisync_dbt_assets], selection=[attendance, ga4],
        resources={"dbt": dbt_resource(s), "warehouse": warehouse_resource(s)},
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )
    assert {m.asset_key for m in result.get_asset_materialization_events()} == {attendance, ga4}
    verdicts = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert verdicts["sheet_attendance_autumn_has_attendee_email"] is False
    assert verdicts["sheet_attendance_spring_has_email"] is True
    assert verdicts["sheet_attendance_autumn_has_training_id"] is True
    con = duckdb.connect(str(s.warehouse_path), read_only=True)
    try:
        kept = con.execute("select count(*) from staging.stg_sheet_attendance").fetchone()[0]
        missing = con.execute("select count(*) from staging.stg_sheet_attendance "
                              "where term = 'autumn' and attendee_email is null").fetchone()[0]
        ga4_rows = con.execute("select count(*) from staging.stg_ga4_course_pages").fetchone()[0]
    finally:
        con.close()
    assert kept == len(_attendance(_fixture(built)))
    assert missing == sum(r.term == "autumn" for r in _attendance(_fixture(built))) > 0
    assert ga4_rows == 0
