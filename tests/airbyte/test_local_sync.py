"""Issue #8's local acceptance, through the whole path: Dagster's Airbyte assets (dagster-airbyte's
``AirbyteWorkspace``) -> the local Airbyte stand-in (real HTTP) -> the REAL PyPI connectors in .venv-airbyte ->
the Google API double (Google can't be reached from here) serving the repo's workbook and GA4 fixture -> the
stand-in's destination -> the DuckDB warehouse -> dbt staging.

Expected values are computed here from the fixture files with the csv module and plain Python: every row of the
workbook and of the GA4 fixture lands, GA4's second sync reads incrementally (from its cursor, minus the
connector's two-day lookback) without duplicating rows, and the sheet's staging models equal an independent
parse of the workbook, with people mapped to the demo population's users (the population the workbook was made
from, ``corisync_assets/local/fixtures/demo_population.json``).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import dagster as dg
import duckdb
import pytest

from corisync_assets.airbyte import airbyte_definitions
from corisync_assets.airbyte.connections import GA4_WEB, TRAINING_SHEETS
from corisync_assets.environment import Settings
from corisync_assets.local.airbyte.connectors import CONNECTOR_VENV
from corisync_assets.local.airbyte.server import StandIn, start_in_thread
from corisync_assets.local.google_apis import google_app
from tests.airbyte.test_connectors import GA4_CSV, WORKBOOK, expected_sheet_records

pytestmark = pytest.mark.timeout(600)
POPULATION = WORKBOOK.parent / "demo_population.json"
SECRET = "local-sync-test-secret"
LOOKBACK = timedelta(days=2)  # the GA4 config's lookback_window


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Settings]:
    if not CONNECTOR_VENV.joinpath("bin", "python").exists():
        pytest.fail(f"{CONNECTOR_VENV} is missing: run `make airbyte-connectors` (part of `make install`)",
                    pytrace=False)
    home = tmp_path_factory.mktemp("airbyte-sync")
    s = Settings(home=home, duckdb_path=home / "warehouse.duckdb", airbyte_client_id="dagster",
                 airbyte_client_secret=SECRET)
    running = start_in_thread(StandIn(s), google=google_app(workbook_dir=WORKBOOK))
    # the workspace resource reads the client id and secret as EnvVars
    credentials = {"CORISYNC_AIRBYTE_CLIENT_ID": "dagster", "CORISYNC_AIRBYTE_CLIENT_SECRET": SECRET}
    saved = {var: os.environ.get(var) for var in credentials}
    os.environ.update(credentials)
    try:
        yield s.model_copy(update={"airbyte_url": running.url})
    finally:
        running.stop()
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _sync(s: Settings, connection: str) -> dict[str, dict]:
    """Materialize one connection's assets through Dagster; stream -> its materialization metadata."""
    defs = airbyte_definitions(s)
    assets = [a for a in defs.assets if a.op.name == f"airbyte_{connection}"]
    result = dg.materialize(assets, resources=defs.resources)
    assert result.success
    return {m.asset_key.path[-1]: {k: v.value for k, v in m.metadata.items()}
            for m in (ev.event_specific_data.materialization for ev in result.get_asset_materialization_events())}


@pytest.fixture(scope="module")
def synced(env: Settings) -> dict[str, dict]:
    return {**_sync(env, TRAINING_SHEETS.name), **_sync(env, GA4_WEB.name)}


def _table(s: Settings, table: str) -> list[dict]:
    with duckdb.connect(str(s.warehouse_path), read_only=True) as con:
        cur = con.execute(f"SELECT * FROM raw_airbyte.{table}")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _data(row: dict) -> dict:
    """A landed row without Airbyte's columns and without NULLs (the connector leaves blank cells out)."""
    return {k: v for k, v in row.items() if not k.startswith("_airbyte_") and v is not None}


def _key(record: dict) -> str:
    return json.dumps(record, sort_keys=True, default=str)


def test_every_workbook_row_lands_with_airbytes_columns(env: Settings, synced: dict[str, dict]) -> None:
    for stream in TRAINING_SHEETS.streams:
        expected = expected_sheet_records(WORKBOOK / f"{stream.name}.csv")
        landed = _table(env, TRAINING_SHEETS.table(stream.name))
        assert sorted(map(_key, map(_data, landed))) == sorted(map(_key, expected)), stream.name
        assert synced[stream.name]["records_synced"] == len(expected)
        assert synced[stream.name]["dagster/row_count"] == len(expected)
        assert all(r["_airbyte_raw_id"] and r["_airbyte_extracted_at"] for r in landed)
        assert {json.loads(r["_airbyte_meta"])["sync_id"] == synced[stream.name]["airbyte_job_id"]
                for r in landed} == {True}


def _ga4_csv() -> list[dict]:
    with GA4_CSV.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _ga4_key(date_text: str, page: str) -> tuple[str, str]:
    return date_text.replace("-", ""), page


def test_every_ga4_row_lands_and_the_next_sync_is_incremental(env: Settings, synced: dict[str, dict]) -> None:
    rows = _ga4_csv()
    expected = {_ga4_key(r["date"], r["pagePath"]): (int(r["sessions"]), int(r["screenPageViews"]),
                                                     int(r["totalUsers"])) for r in rows}
    assert synced["course_pages"]["records_synced"] == len(rows)

    def landed() -> dict:
        out = {}
        for r in _table(env, GA4_WEB.table("course_pages")):
            key = (r["date"], r["pagePath"])
            assert key not in out, f"{key} landed twice"
            out[key] = (r["sessions"], r["screenPageViews"], r["totalUsers"])
        return out

    assert landed() == expected
    second = _sync(env, GA4_WEB.name)["course_pages"]
    last = max(date.fromisoformat(r["date"]) for r in rows)
    reread = [r for r in rows if date.fromisoformat(r["date"]) >= last - LOOKBACK]
    assert 0 < len(reread) < len(rows)
    assert second["records_synced"] == len(reread)  # from the persisted cursor, not from the start
    assert landed() == expected  # deduplicated on the primary key: no row twice
    assert second["dagster/row_count"] == len(rows)


# --- the staging models against an independent parse ---------------------------------------------------------


def _int(cell: str | None) -> int | None:
    text = (cell or "").strip().lstrip("#Tt ")
    return int(text) if text.isdigit() else None


def _date(cell: str | None) -> date | None:
    text = (cell or "").strip().replace(".", "/").replace("-", "/")
    for pattern, order in ((r"(\d{1,2})/(\d{1,2})/(\d{4})", (2, 1, 0)), (r"(\d{4})/(\d{1,2})/(\d{1,2})", (0, 1, 2))):
        if m := re.fullmatch(pattern, text):
            parts = [int(g) for g in m.groups()]
            try:
                return date(parts[order[0]], parts[order[1]], parts[order[2]])
            except ValueError:
                return None
    return None


def _email(cell: str | None) -> str | None:
    return (cell or "").strip().lower() or None


def _flag(cell: str | None) -> bool | None:
    text = (cell or "").strip().lower()
    return True if text in ("yes", "y", "x", "true", "1") else False if text in ("no", "n", "false", "0") else None


def _users() -> tuple[dict[str, int], dict[str, int]]:
    pop = json.loads(POPULATION.read_text())["users"]
    users = [dict(zip(pop["columns"], row, strict=True)) for row in pop["rows"]]
    by_email = {u["email"].strip().lower(): u["user_id"] for u in users}
    names: dict[str, list[int]] = {}
    for u in users:
        names.setdefault(u["full_name"].lower().replace(" ", ""), []).append(u["user_id"])
    return by_email, {k: v[0] for k, v in names.items() if len(v) == 1}


def _person(email: str | None, name: str | None, by_email, by_name) -> int | None:
    if email in by_email:
        return by_email[email]
    return by_name.get((name or "").lower().replace(" ", "")) if name and name.strip() else None


def _rows_of(tab: str) -> list[dict]:
    with (WORKBOOK / f"{tab}.csv").open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = ["_".join(h.strip().lower().replace("-", " ").split()) for h in next(reader)]
        return [dict(zip(header, row, strict=False)) for row in reader if any(c.strip() for c in row)]


@pytest.fixture(scope="module")
def staged(env: Settings, synced) -> dict[str, list[dict]]:
    from corisync_assets.dbt import corisync_dbt_assets, dbt_resource
    from corisync_assets.environment import warehouse_resource

    pop = json.loads(POPULATION.read_text())["users"]
    now_ms = int(datetime.now().timestamp() * 1000)
    with duckdb.connect(str(env.warehouse_path)) as con:  # the users the CDC layer would have landed
        con.execute("CREATE SCHEMA IF NOT EXISTS raw_cdc")
        con.execute("CREATE OR REPLACE TABLE raw_cdc.users (user_id BIGINT, email VARCHAR, full_name VARCHAR, "
                    "country_code VARCHAR, role VARCHAR, is_active BOOLEAN, signup_at TIMESTAMPTZ, "
                    "last_login_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, _cdc_ts_ms BIGINT)")
        con.executemany("INSERT INTO raw_cdc.users (user_id, email, full_name, role, is_active, _cdc_ts_ms) "
                        "VALUES (?, ?, ?, ?, true, ?)",
                        [(*[dict(zip(pop["columns"], r, strict=True))[c]
                            for c in ("user_id", "email", "full_name", "role")], now_ms) for r in pop["rows"]])
    keys = [dg.AssetKey(["staging", m]) for m in ("stg_users", "stg_sheet_trainings", "stg_sheet_attendance")]
    result = dg.materialize([corisync_dbt_assets], selection=keys, raise_on_error=False,
                            resources={"dbt": dbt_resource(env), "warehouse": warehouse_resource(env)})
    assert {e.asset_key for e in result.get_asset_materialization_events()} >= set(keys)
    with duckdb.connect(str(env.warehouse_path), read_only=True) as con:
        out = {}
        for model in ("stg_sheet_trainings", "stg_sheet_attendance"):
            schema = con.execute("SELECT table_schema FROM information_schema.tables WHERE table_name = ?",
                                 [model]).fetchone()[0]
            cur = con.execute(f"SELECT * FROM {schema}.{model}")
            names = [d[0] for d in cur.description]
            out[model] = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    return out


def test_sheet_staging_equals_an_independent_parse_of_the_workbook(staged) -> None:
    by_email, by_name = _users()
    expected_trainings = sorted(
        (_int(r.get("training_id")), _date(r.get("date")), (r.get("location") or "").strip() or None,
         _email(r.get("trainer_email")), _person(_email(r.get("trainer_email")), r.get("trainer"), by_email, by_name),
         _int(r.get("capacity"))) for r in _rows_of("trainings"))
    got_trainings = sorted((r["training_id"], r["training_date"], r["location"], r["trainer_email"],
                            r["trainer_user_id"], r["capacity"]) for r in staged["stg_sheet_trainings"])
    assert got_trainings == expected_trainings

    expected_attendance = []
    for term in ("spring", "autumn"):
        for r in _rows_of(f"attendance_{term}"):
            email = _email(r.get("attendee_email") if term == "autumn" else r.get("email"))
            expected_attendance.append((term, _int(r.get("training_id")), _date(r.get("date")), email,
                                        _person(email, r.get("attendee"), by_email, by_name), _flag(r.get("present"))))
    got_attendance = [(r["term"], r["training_id"], r["attendance_date"], r["attendee_email"], r["user_id"],
                       r["present"]) for r in staged["stg_sheet_attendance"]]
    key = lambda t: tuple((x is None, str(x)) for x in t)  # noqa: E731 - None sorts apart from values
    assert sorted(got_attendance, key=key) == sorted(expected_attendance, key=key)
    # the workbook is realistic: most people map to platform users, some do not (outsiders, typos)
    mapped = sum(1 for t in expected_attendance if t[4] is not None)
    assert 0.5 * len(expected_attendance) < mapped < len(expected_attendance)
    assert any(t[2] is None for t in expected_trainings) is False  # every training date parses


def test_the_repos_workspace_snapshot_is_what_the_stand_in_serves(env: Settings) -> None:
    """The code location falls back to the repo's snapshot when Airbyte is unreachable: it must describe the
    workspace the local stand-in serves (ids, streams, destination), or a `make dev` started without it would
    sync nothing. Refresh with `python -m corisync_assets.airbyte.snapshot` against a running stack."""
    from dagster_airbyte.translator import AirbyteWorkspaceData
    from dagster_shared.serdes import deserialize_value

    from corisync_assets.airbyte.workspace import SNAPSHOT, CorisyncAirbyteWorkspace, airbyte_workspace

    with airbyte_workspace(env).process_config_and_initialize_cm() as live:
        served = super(CorisyncAirbyteWorkspace, live).fetch_airbyte_workspace_data()
    assert deserialize_value(SNAPSHOT.read_text(), AirbyteWorkspaceData) == served
    assert {c.name for c in served.connections_by_id.values()} == {TRAINING_SHEETS.name, GA4_WEB.name}
