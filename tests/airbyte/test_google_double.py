"""The Google API double (``corisync_assets/local/google_apis.py``: Google cannot be reached from here) and the
fixtures it serves, in process (Starlette's TestClient): the response shapes the connectors rely on, checked
against the CSV files parsed here; and the workbook generator (committed fixtures = its output, ``--rows``).
"""

from __future__ import annotations

import base64
import csv
import json
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from corisync_assets.local.fixtures import make_workbook
from corisync_assets.local.google_apis import GA4_PROPERTY_ID, SPREADSHEET_ID, google_app

FIXTURES = Path(__file__).resolve().parents[2] / "corisync_assets" / "local" / "fixtures"
SHEETS = f"/sheets/v4/spreadsheets/{SPREADSHEET_ID}"
SHEETS_SCOPE = "https://www.googleapis.com/auth/spreadsheets.readonly"
GA4_SCOPE = "https://www.googleapis.com/auth/analytics.readonly"


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def rstrip(row: list[str]) -> list[str]:
    """A row without its trailing empty cells (Google leaves them out)."""
    while row and row[-1] == "":
        row = row[:-1]
    return row


def jwt(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def bearer(client: TestClient, scope: str) -> dict[str, str]:
    now = int(time.time())
    resp = client.post("/oauth2/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": jwt({"iss": "sa@tc4a-local.iam.gserviceaccount.com", "scope": scope, "iat": now,
                          "exp": now + 3600, "aud": "http://testserver/oauth2/token"})})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    book = tmp_path_factory.mktemp("book")
    (book / "a tab.csv").write_text("Name,,Score\nann,x,1\n,,\nbob,,\n,,\n,,\n", encoding="utf-8")
    for f in (FIXTURES / "training_workbook").glob("*.csv"):
        (book / f.name).write_bytes(f.read_bytes())
    return TestClient(google_app(workbook_dir=book))


def test_tokens_and_scopes(client):
    assert client.get(SHEETS).status_code == 401
    assert client.get(SHEETS, headers={"Authorization": "Bearer made-up"}).json()["error"]["status"] == \
        "UNAUTHENTICATED"
    ga4_only = bearer(client, GA4_SCOPE)
    assert client.get(SHEETS, headers=ga4_only).status_code == 403
    expired = client.post("/oauth2/v4/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                                    "assertion": jwt({"iss": "x", "scope": SHEETS_SCOPE,
                                                                      "exp": 1})})
    assert expired.status_code == 400 and expired.json()["error"] == "invalid_grant"
    refreshed = client.post("/oauth2/v4/token", data={"grant_type": "refresh_token", "client_id": "c",
                                                      "client_secret": "s", "refresh_token": "r"})
    assert refreshed.status_code == 200
    assert client.get(SHEETS, headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"}).status_code \
        == 200


def test_spreadsheet_properties_and_header_grid(client):
    auth = bearer(client, SHEETS_SCOPE)
    assert client.get("/sheets/v4/spreadsheets/1SomeOtherSpreadsheet-00000000", headers=auth).status_code == 404
    meta = client.get(SHEETS, params={"includeGridData": "false", "alt": "json"}, headers=auth).json()
    titles = [s["properties"]["title"] for s in meta["sheets"]]
    assert titles == ["a tab", "attendance_autumn", "attendance_spring", "trainings"]
    assert all("data" not in s for s in meta["sheets"])
    assert {s["properties"]["sheetType"] for s in meta["sheets"]} == {"GRID"}
    assert meta["sheets"][3]["properties"]["gridProperties"]["rowCount"] == 1000  # Google's default grid
    header = client.get(SHEETS, params={"includeGridData": "true", "ranges": "'a tab'!1:1"}, headers=auth).json()
    (sheet,) = header["sheets"]
    (row,) = sheet["data"][0]["rowData"]
    assert [c.get("formattedValue") for c in row["values"]] == ["Name", None, "Score"]
    assert row["values"][1] == {}  # a blank header cell, as Google returns it
    trainings = client.get(SHEETS, params={"includeGridData": "true", "ranges": "trainings!1:2"}, headers=auth).json()
    rows = trainings["sheets"][0]["data"][0]["rowData"]
    expected = read_csv(FIXTURES / "training_workbook" / "trainings.csv")[:2]
    assert [[c.get("formattedValue", "") for c in r["values"]] for r in rows] == [rstrip(r) for r in expected]
    date_cell = rows[1]["values"][2]
    assert "numberValue" in date_cell["effectiveValue"]  # dd/mm/yyyy is a date underneath
    assert client.get(SHEETS, params={"ranges": "nope!1:1"}, headers=auth).status_code == 400


def test_values_batch_get_like_google(client):
    auth = bearer(client, SHEETS_SCOPE)
    resp = client.get(f"{SHEETS}/values:batchGet", headers=auth,
                      params=[("ranges", "'a tab'!2:1002"), ("ranges", "trainings!2:10002"),
                              ("majorDimension", "ROWS")]).json()
    small, trainings = resp["valueRanges"]
    assert small["range"] == "'a tab'!A2:Z1000"  # clipped to the grid
    # trailing empty cells and trailing empty rows left out; an empty row inside the range is []
    assert small["values"] == [["ann", "x", "1"], [], ["bob"]]
    csv_rows = read_csv(FIXTURES / "training_workbook" / "trainings.csv")[1:]
    while csv_rows and not any(csv_rows[-1]):
        csv_rows.pop()
    assert trainings["values"] == [rstrip(r) for r in csv_rows]
    empty = client.get(f"{SHEETS}/values:batchGet", params={"ranges": "'a tab'!7:9"}, headers=auth).json()
    assert "values" not in empty["valueRanges"][0]
    beyond = client.get(f"{SHEETS}/values:batchGet", params={"ranges": "'a tab'!1001:2000"}, headers=auth)
    assert beyond.status_code == 400 and "exceeds grid limits" in beyond.json()["error"]["message"]


def test_ga4_report(client):
    auth = bearer(client, GA4_SCOPE)
    url = f"/analyticsdata/v1beta/properties/{GA4_PROPERTY_ID}:runReport"
    assert client.post("/analyticsdata/v1beta/properties/999:runReport", json={}, headers=auth).status_code == 403
    meta = client.get(f"/analyticsdata/v1beta/properties/{GA4_PROPERTY_ID}/metadata", headers=auth).json()
    assert {m["apiName"]: m["type"] for m in meta["metrics"]} == {
        "sessions": "TYPE_INTEGER", "screenPageViews": "TYPE_INTEGER", "totalUsers": "TYPE_INTEGER"}
    with (FIXTURES / "ga4_course_pages.csv").open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if "2026-09-03" <= r["date"] <= "2026-09-05"]
    by_day: dict[str, int] = {}
    for r in rows:
        by_day[r["date"].replace("-", "")] = by_day.get(r["date"].replace("-", ""), 0) + int(r["sessions"])
    body = {"dimensions": [{"name": "date"}], "metrics": [{"name": "sessions"}],
            "dateRanges": [{"startDate": "2026-09-03", "endDate": "2026-09-05"}], "limit": 2}
    page1 = client.post(url, json=body, headers=auth).json()
    page2 = client.post(url, params={"offset": 2}, json=body, headers=auth).json()
    assert page1["rowCount"] == 3 and page1["metricHeaders"] == [{"name": "sessions", "type": "TYPE_INTEGER"}]
    got = {r["dimensionValues"][0]["value"]: int(r["metricValues"][0]["value"]) for r in page1["rows"] + page2["rows"]}
    assert got == by_day
    bad = client.post(url, json={**body, "metrics": [{"name": "bounceRate"}]}, headers=auth)
    assert bad.status_code == 400 and "bounceRate" in bad.json()["error"]["message"]


def test_committed_fixtures_are_the_generators_output(tmp_path):
    pop = make_workbook.load_population()
    make_workbook.write_tabs(make_workbook.workbook(pop), tmp_path / "book")
    for f in (FIXTURES / "training_workbook").glob("*.csv"):
        assert (tmp_path / "book" / f.name).read_bytes() == f.read_bytes(), f.name
    assert sorted(p.name for p in (tmp_path / "book").iterdir()) == sorted(
        p.name for p in (FIXTURES / "training_workbook").glob("*.csv"))
    make_workbook.write_ga4(make_workbook.ga4_rows(pop), tmp_path / "ga4.csv")
    assert (tmp_path / "ga4.csv").read_bytes() == (FIXTURES / "ga4_course_pages.csv").read_bytes()


def test_scaled_workbook_has_the_rows_asked_for():
    tabs = make_workbook.workbook(make_workbook.load_population(), rows=5000)
    assert len(tabs["attendance_spring"]) - 1 + len(tabs["attendance_autumn"]) - 1 == 5000
    assert tabs["attendance_autumn"][0][3] == "Attendee email" and tabs["attendance_spring"][0][3] == "Email"


def test_workbook_reconciles_with_the_demo_population_both_ways():
    """Registered people missing from the sheet, and people in the sheet not registered for that training
    (platform users and outsiders): the reconciliation mart has something to find."""
    raw = json.loads((FIXTURES / "demo_population.json").read_text(encoding="utf-8"))
    email_of = {row[0]: row[1] for row in raw["users"]["rows"]}
    registered = {(t, email_of[u]) for t, u in raw["attendance"]["rows"]}
    in_sheet = set()
    for tab in ("attendance_spring", "attendance_autumn"):
        for row in read_csv(FIXTURES / "training_workbook" / f"{tab}.csv")[1:]:
            if any(c.strip() for c in row) and row[3].strip():
                in_sheet.add((int(row[0]), row[3].strip().lower()))
    assert len(registered & in_sheet) > 80
    assert len(registered - in_sheet) >= 10
    not_registered = in_sheet - registered
    assert sum(1 for _, e in not_registered if e in email_of.values()) >= 10  # platform users, walk-ins
    assert sum(1 for _, e in not_registered if e not in email_of.values()) >= 10  # outsiders and typos
    trainings = read_csv(FIXTURES / "training_workbook" / "trainings.csv")
    ids = {int(r[0]) for r in trainings[1:] if r[0].strip()}
    assert {t for t, *_ in raw["trainings"]["rows"]} < ids  # every platform training, plus sheet-only ones
    assert sum(1 for r in trainings[1:] if not any(c.strip() for c in r)) >= 2
