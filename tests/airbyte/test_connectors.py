"""The real Airbyte source connectors (PyPI packages, run through launch.py in .venv-airbyte) against the Google
API double (``corisync_assets/local/google_apis.py``; Google cannot be reached from here), served by uvicorn
on a free port in a thread.

Expected values come from the fixtures parsed here with the csv module; nothing is taken from the double or the
connector configs except what the test sends. The connector runs (seconds each: airbyte-cdk imports, and the GA4
connector builds its 58 built-in report streams on every run) happen once per session, the GA4 chain beside the
Sheets chain; the tests then only look at their output. Reading every row of the workbook and the GA4 fixture,
and GA4's incremental reads with state, are tested through the whole path (stand-in, Dagster, warehouse) in
``test_local_sync.py``; here the reads are only those of a broken workbook.

Documented connector behaviour (PyPI Sheets 0.11.0, airbyte-cdk 6.61):
* a blank header cell ends the header: the tab's stream keeps the columns before the gap, the cells after it
  are dropped without a warning, and the sync succeeds (``test_missing_header_cell_truncates_the_stream``);
* a renamed header renames the field: records carry the new snake_case name, whatever the configured catalog
  says, and the old name disappears; the sync succeeds (``test_renamed_header_renames_the_field``);
* empty cells and cells holding only spaces are left out of a record (not null); other cells keep their spaces;
* rows whose cells are all empty are skipped.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from corisync_assets.airbyte.connections import GA4_WEB, TRAINING_SHEETS, Connection
from corisync_assets.local.airbyte import connectors
from corisync_assets.local.airbyte.discovery import SEED_DIR, config_hash
from corisync_assets.local.google_apis import google_app

FIXTURES = Path(__file__).resolve().parents[2] / "corisync_assets" / "local" / "fixtures"
WORKBOOK = FIXTURES / "training_workbook"
GA4_CSV = FIXTURES / "ga4_course_pages.csv"
RUN_TIMEOUT_S = 240


# --- plain-Python expectations -----------------------------------------------------------------------------


def snake(header: str) -> str:
    return header.strip().lower().replace(" ", "_").replace("-", "_")


def expected_sheet_records(path: Path) -> list[dict[str, str]]:
    """What the tab holds, as the connector is documented to emit it: the header up to its first blank cell,
    snake_case; blank rows skipped; blank cells left out."""
    with path.open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    columns = []
    for cell in header:
        if not cell.strip():
            break
        columns.append(snake(cell))
    out = []
    for row in rows:
        record = {col: cell for col, cell in zip(columns, row, strict=False) if cell.strip()}
        if record:
            out.append(record)
    return out


# --- running the connectors --------------------------------------------------------------------------------


@dataclass
class Run:
    argv: list[str]
    returncode: int
    messages: list[dict[str, Any]]
    stderr: str
    seconds: float
    non_json: list[str] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    def records(self, stream: str) -> list[dict[str, Any]]:
        return [m["record"]["data"] for m in self.of("RECORD") if m["record"]["stream"] == stream]

    def errors(self) -> list[str]:
        return [m["trace"]["error"]["message"] for m in self.of("TRACE") if m["trace"].get("type") == "ERROR"]

    def warnings(self) -> list[str]:
        return [m["log"]["message"] for m in self.of("LOG") if m["log"]["level"] in ("WARN", "ERROR", "FATAL")]

    def describe(self) -> str:
        return (f"{' '.join(self.argv[2:])}: exit {self.returncode} in {self.seconds:.1f}s; errors {self.errors()}; "
                f"stderr tail {self.stderr.strip().splitlines()[-3:]}")


def run_connector(api_url: str, tmp: Path, source_type: str, verb: str, *, config: dict | None = None,
                  catalog: dict | None = None, state: list | None = None, name: str) -> Run:
    paths = {}
    for key, value in (("config", config), ("catalog", catalog), ("state", state)):
        if value is not None:
            paths[key] = tmp / f"{name}.{key}.json"
            paths[key].write_text(json.dumps(value))
    argv = connectors.connector_command(source_type, verb, **paths)
    env = {**os.environ, "CORISYNC_GOOGLE_API_URL": api_url, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT_S)
    messages, non_json = [], []
    for line in proc.stdout.splitlines():
        try:
            messages.append(json.loads(line))
        except ValueError:
            non_json.append(line)
    return Run(argv, proc.returncode, messages, proc.stderr, time.monotonic() - started, non_json)


def broken_workbook(folder: Path) -> Path:
    """The fixture workbook after two edits: attendance_spring lost its Attendee header (the column still
    holds names), attendance_autumn's Attendee email became E-mail."""
    shutil.copytree(WORKBOOK, folder)
    for tab, old, new in (("attendance_spring", "Attendee", ""), ("attendance_autumn", "Attendee email", "E-mail")):
        path = folder / f"{tab}.csv"
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        rows[0] = [new if cell == old else cell for cell in rows[0]]
        with path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows(rows)
    return folder


@pytest.fixture(scope="session")
def google_api(tmp_path_factory) -> Iterator[str]:
    """The double on a free port: ``/google`` serves the fixtures, ``/broken`` the broken workbook."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from corisync_assets.served import serve_in_thread

    broken = broken_workbook(tmp_path_factory.mktemp("google") / "broken_workbook")
    app = Starlette(routes=[Mount("/google", app=google_app(workbook_dir=WORKBOOK)),
                            Mount("/broken", app=google_app(workbook_dir=broken))])
    served = serve_in_thread(app, name="google-double")
    yield served.url
    served.stop(timeout=10)


@pytest.fixture(scope="session")
def runs(google_api: str, tmp_path_factory) -> dict[str, Any]:
    """Every connector run of this module: the GA4 chain (discover, first read, second read with the first's
    state) and the Sheets chain side by side, each in order (a read needs its discover's catalog)."""
    if not connectors.CONNECTOR_VENV.joinpath("bin", "python").exists():
        pytest.fail(f"the Airbyte connectors' venv {connectors.CONNECTOR_VENV} is missing: run "
                    "`make airbyte-connectors` (part of `make install`, which `make test` runs)", pytrace=False)
    tmp = tmp_path_factory.mktemp("connectors")
    api, broken_api = f"{google_api}/google", f"{google_api}/broken"
    out: dict[str, Any] = {}  # the runs, and the two configured catalogs

    def run(source_type: str, verb: str, name: str, url: str = api, **kw: Any) -> Run:
        out[name] = run_connector(url, tmp, source_type, verb, name=name, **kw)
        return out[name]

    def catalog_of(conn: Connection, discover: Run) -> dict[str, Any]:
        assert discover.of("CATALOG"), discover.describe()
        return connectors.configured_catalog(conn, discover.of("CATALOG")[0])

    def ga4_chain() -> None:
        ga4 = "google-analytics-data-api"
        config = connectors.source_config(GA4_WEB, api)
        out["ga4_catalog"] = catalog_of(GA4_WEB, run(ga4, "discover", "ga4_discover", config=config))

    def sheets_chain() -> None:
        sheets = "google-sheets"
        config = connectors.source_config(TRAINING_SHEETS, api)
        out["sheets_catalog"] = catalog = catalog_of(TRAINING_SHEETS,
                                                     run(sheets, "discover", "sheets_discover", config=config))
        # the catalog discovered before the sheet broke, as in a scheduled sync after the trainers' edit
        run(sheets, "read", "sheets_broken", url=broken_api, catalog=catalog,
            config=connectors.source_config(TRAINING_SHEETS, broken_api))
        run(sheets, "check", "sheets_check", config=config)
        run(sheets, "spec", "sheets_spec")

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(ga4_chain), pool.submit(sheets_chain)]:
            future.result()
    return out


# --- the tests ---------------------------------------------------------------------------------------------


def test_spec(runs):
    """Sheets keeps its spec in spec.yaml next to the manifest: launch.py's source class must still find it."""
    run = runs["sheets_spec"]
    assert run.returncode == 0 and len(run.of("SPEC")) == 1, run.describe()
    spec = run.of("SPEC")[0]["spec"]["connectionSpecification"]
    assert set(spec["required"]) == {"spreadsheet_id", "credentials"}
    assert {"names_conversion", "batch_size"} <= set(spec["properties"])


def test_check(runs):
    run = runs["sheets_check"]
    assert [m["connectionStatus"]["status"] for m in run.of("CONNECTION_STATUS")] == ["SUCCEEDED"], run.describe()


def test_discover_sheets_streams_and_schemas(runs):
    streams = {s["name"]: s for s in runs["sheets_discover"].of("CATALOG")[0]["catalog"]["streams"]}
    assert set(streams) == {s.name for s in TRAINING_SHEETS.streams}
    for name, stream in streams.items():
        with (WORKBOOK / f"{name}.csv").open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f))
        props = stream["json_schema"]["properties"]
        assert list(props) == [snake(h) for h in header]  # in sheet order
        assert all(p == {"type": ["null", "string"]} for p in props.values())
        assert stream["supported_sync_modes"] == ["full_refresh"]
    assert "email" in streams["attendance_spring"]["json_schema"]["properties"]
    assert "attendee_email" in streams["attendance_autumn"]["json_schema"]["properties"]
    configured = runs["sheets_catalog"]["streams"]
    assert [(c["stream"]["name"], c["sync_mode"], c["destination_sync_mode"]) for c in configured] == [
        (s.name, "full_refresh", "overwrite") for s in TRAINING_SHEETS.streams]


def test_discover_ga4_course_pages(runs):
    streams = {s["name"]: s for s in runs["ga4_discover"].of("CATALOG")[0]["catalog"]["streams"]}
    assert {s.name for s in GA4_WEB.streams} <= set(streams)  # plus the connector's built-in reports
    course_pages = streams["course_pages"]
    assert course_pages["json_schema"]["properties"] == {
        "sessions": {"type": ["null", "integer"]}, "screenPageViews": {"type": ["null", "integer"]},
        "totalUsers": {"type": ["null", "integer"]}, "date": {"type": ["null", "string"]},
        "pagePath": {"type": ["null", "string"]}, "property_id": {"type": ["string"]},
        "startDate": {"type": ["null", "string"]}, "endDate": {"type": ["null", "string"]}}
    assert course_pages["default_cursor_field"] == ["date"]
    assert course_pages["source_defined_primary_key"] == [["property_id"], ["date"], ["pagePath"]]
    (configured,) = runs["ga4_catalog"]["streams"]
    assert (configured["sync_mode"], configured["destination_sync_mode"], configured["cursor_field"],
            configured["primary_key"]) == ("incremental", "append_dedup", ["date"],
                                           [["property_id"], ["date"], ["pagePath"]])


def test_the_repos_catalogs_are_what_the_connectors_discover(runs):
    """The stand-in starts from the catalogs kept in the repo (a cold discover is slower than a definitions load
    may wait): they must be what the connectors discover now, for the config the stand-in sends."""
    for conn, name in ((TRAINING_SHEETS, "sheets_discover"), (GA4_WEB, "ga4_discover")):
        seed = json.loads((SEED_DIR / f"{conn.name}.json").read_text())
        assert seed["catalog"] == runs[name].of("CATALOG")[0]["catalog"], (
            f"{conn.name}: refresh with `python -m corisync_assets.local.airbyte.discovery`")
        assert seed["config_hash"] == config_hash(connectors.source_config(conn, "http://any"))


def test_missing_header_cell_truncates_the_stream(runs):
    """attendance_spring lost its 'Attendee' header: the stream keeps training_id and date, silently."""
    run = runs["sheets_broken"]
    assert run.returncode == 0 and not run.errors() and not run.warnings(), run.describe()
    records = run.records("attendance_spring")
    full = expected_sheet_records(WORKBOOK / "attendance_spring.csv")
    assert records == [{k: v for k, v in r.items() if k in ("training_id", "date")} for r in full]
    assert {k for r in records for k in r} == {"training_id", "date"}  # attendee, email, present, notes: gone
    assert run.records("trainings") == expected_sheet_records(WORKBOOK / "trainings.csv")  # other tabs unharmed


def test_renamed_header_renames_the_field(runs):
    """attendance_autumn's 'Attendee email' became 'E-mail': records carry e_mail although the configured
    catalog (discovered before the edit) knows attendee_email; nothing fails."""
    run = runs["sheets_broken"]
    configured = {c["stream"]["name"]: c for c in runs["sheets_catalog"]["streams"]}
    assert "attendee_email" in configured["attendance_autumn"]["stream"]["json_schema"]["properties"]
    full = expected_sheet_records(WORKBOOK / "attendance_autumn.csv")
    renamed = [{("e_mail" if k == "attendee_email" else k): v for k, v in r.items()} for r in full]
    assert run.records("attendance_autumn") == renamed
    assert not any("attendee_email" in r for r in run.records("attendance_autumn"))

