"""The local Airbyte stand-in (``corisync_assets/local/airbyte/server.py``) against its API contract.

Most tests run the app in-process (Starlette TestClient) with a FAKE connector: a small Python script written
here that speaks the Airbyte protocol (DISCOVER -> CATALOG; READ -> RECORD, STATE, LOG, TRACE error, a
non-zero exit, or a long sleep to cancel) from a JSON config the test controls. The double stands for the
real connectors only to make failures and cancels happen on demand and keep these tests fast; the expected
rows are computed here from the fake's records. One test drives the stand-in with dagster-airbyte's own client
(real HTTP); the REAL connectors through the stand-in are tested in ``test_local_sync.py``.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import psutil
import pytest
from starlette.testclient import TestClient

from corisync_assets.airbyte.connections import Connection, Stream
from corisync_assets.environment import Settings
from corisync_assets.local.airbyte import workspace as ws
from corisync_assets.local.airbyte.connectors import configured_catalog
from corisync_assets.local.airbyte.kit import ConnectorKit
from corisync_assets.local.airbyte.server import StandIn, create_app, start_in_thread

CLIENT_ID = "standin-test-client"
CLIENT_SECRET = "standin-test-secret-0123456789"

FAKE_CONNECTOR = textwrap.dedent('''
    """Fake Airbyte source: behaviour from its config (see tests/airbyte/test_standin.py)."""
    import json, os, sys, time

    def arg(flag):
        return sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else None

    def out(msg, compact=True):
        sys.stdout.write(json.dumps(msg, separators=(",", ":") if compact else None) + "\\n")
        sys.stdout.flush()

    verb = sys.argv[1]
    config = json.load(open(arg("--config")))
    if verb == "discover":
        out({"type": "CATALOG", "catalog": {"streams": [
            {"name": name, "json_schema": s["schema"], "supported_sync_modes": ["full_refresh", "incremental"],
             "source_defined_cursor": False, "default_cursor_field": []}
            for name, s in config["streams"].items()]}})
        with open(config["discovers"], "a") as f:
            f.write("x")
        sys.exit(0)
    catalog = json.load(open(arg("--catalog")))
    state = json.load(open(arg("--state"))) if arg("--state") else None
    with open(config["state_seen"], "w") as f:
        json.dump(state, f)
    with open(config["pid_file"], "w") as f:
        f.write(str(os.getpid()))
    print("a stray line on stdout, not protocol")
    out({"type": "LOG", "log": {"level": "INFO", "message": "starting read"}}, compact=False)
    sent = 0
    for configured in catalog["streams"]:
        name = configured["stream"]["name"]
        for i, rec in enumerate(config["streams"][name]["records"]):
            # the CDK's compact serialization (the stand-in's fast path) and a spaced one (its parser)
            out({"type": "RECORD", "record": {"stream": name, "data": rec,
                                              "emitted_at": config["emitted_at"] + i}}, compact=i % 3 != 1)
            sent += 1
            if config.get("fail_after") is not None and sent >= config["fail_after"]:
                if config.get("trace"):
                    out({"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": 0, "error": {
                        "message": config["trace"], "internal_message": "internal: " + config["trace"],
                        "failure_type": "config_error"}}})
                sys.stderr.write("fake connector giving up\\n")
                sys.exit(config.get("exit_code", 0))
            if config.get("sleep_after") is not None and sent >= config["sleep_after"]:
                time.sleep(600)
        out({"type": "STATE", "state": {"type": "STREAM", "stream": {
            "stream_descriptor": {"name": name}, "stream_state": {"seen": sent, "sync": config["sync"]}},
            "sourceStats": {"recordCount": float(sent)}}})
''')

PEOPLE_SCHEMA = {"type": "object", "properties": {
    "id": {"type": ["null", "integer"]}, "name": {"type": ["null", "string"]},
    "joined": {"type": ["null", "string"], "format": "date"}, "score": {"type": ["null", "number"]},
    "active": {"type": ["null", "boolean"]}, "tags": {"type": ["null", "array"]}}}
PAGES_SCHEMA = {"type": "object", "properties": {
    "date": {"type": ["null", "string"], "format": "date"}, "path": {"type": ["null", "string"]},
    "views": {"type": ["null", "integer"]}}}

FAKE_SHEETS = Connection(name="fake_sheets", source_type="google-sheets", prefix="fk_",
                         streams=(Stream("people"), Stream("notes")), cron="0 * * * *")
FAKE_GA4 = Connection(name="fake_ga4", source_type="google-analytics-data-api", prefix="fg_",
                      streams=(Stream("pages", sync_mode="incremental_append_dedup", cursor_field=("date",),
                                      primary_key=(("date",), ("path",))),), cron="0 3 * * *")
EMITTED_AT = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms


# --- harness ------------------------------------------------------------------------------------------------


class Harness:
    """A stand-in over the fake connector in a temp home, with a TestClient holding a token."""

    def __init__(self, tmp: Path, script: Path):
        self.tmp = tmp
        self.warehouse = tmp / "warehouse.duckdb"
        self.settings = Settings(home=tmp, duckdb_path=self.warehouse, airbyte_client_id=CLIENT_ID,
                                 airbyte_client_secret=CLIENT_SECRET, airbyte_port=1)
        self.configs = {
            "fake_sheets": self._config({"people": {"schema": PEOPLE_SCHEMA, "records": []},
                                         "notes": {"schema": {"type": "object", "properties": {
                                             "text": {"type": "string"}}}, "records": []}}),
            "fake_ga4": self._config({"pages": {"schema": PAGES_SCHEMA, "records": []}}),
        }

        def command(source_type, verb, *, config=None, catalog=None, state=None):
            argv = [sys.executable, str(script), verb, "--config", str(config)]
            argv += ["--catalog", str(catalog)] if catalog else []
            return argv + (["--state", str(state)] if state else [])

        kit = ConnectorKit(command=command, source_config=lambda conn, url: self.configs[conn.name],
                           configured_catalog=configured_catalog)
        self.standin = StandIn(self.settings, connections=(FAKE_SHEETS, FAKE_GA4), kit=kit)
        self.client = TestClient(create_app(self.standin))

    def _config(self, streams: dict) -> dict:
        return {"streams": streams, "emitted_at": EMITTED_AT, "sync": 0,
                "state_seen": str(self.tmp / f"state_seen_{uuid.uuid4().hex}.json"),
                "pid_file": str(self.tmp / f"pid_{uuid.uuid4().hex}"),
                "discovers": str(self.tmp / f"discovers_{uuid.uuid4().hex}")}

    def token(self) -> dict[str, str]:
        r = self.client.post("/api/public/v1/applications/token",
                             json={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def sync(self, conn: Connection, wait: bool = True) -> dict:
        r = self.client.post("/api/public/v1/jobs", headers=self.auth,
                             json={"connectionId": ws.connection_id(conn.name), "jobType": "sync"})
        assert r.status_code == 200, r.text
        job = r.json()
        if wait:
            self.standin.jobs.wait(job["jobId"], timeout=60)
            job = self.client.get(f"/api/public/v1/jobs/{job['jobId']}", headers=self.auth).json()
        return job

    def job_info(self, job_id: int) -> dict:
        r = self.client.post("/api/v1/jobs/get", headers=self.auth, json={"id": job_id})
        assert r.status_code == 200, r.text
        return r.json()

    def rows(self, table: str, order: str = "1") -> list[dict]:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            cur = con.execute(f"SELECT * FROM raw_airbyte.{table} ORDER BY {order}")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def table_exists(self, table: str) -> bool:
        if not self.warehouse.exists():
            return False
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                                    "'raw_airbyte' AND table_name = ?", [table]).fetchone()[0])


@pytest.fixture(scope="module")
def fake_script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fake-connector") / "fake_source.py"
    path.write_text(FAKE_CONNECTOR)
    return path


@pytest.fixture
def harness(tmp_path: Path, fake_script: Path):
    h = Harness(tmp_path, fake_script)
    with h.client:
        h.auth = h.token()
        yield h


def people(n: int, start: int = 0) -> list[dict]:
    """Records as a sheet-like source sends them; every 5th score is not a number, every 4th date is local."""
    return [{"id": str(i), "name": f"person {i}", "joined": "03/02/2026" if i % 4 == 0 else f"2026-02-{1 + i % 27:02d}",
             "score": "n/a" if i % 5 == 0 else f"{i}.5", "active": "true" if i % 2 else "false",
             "tags": ["a", str(i)]} for i in range(start, start + n)]


# --- API contract -------------------------------------------------------------------------------------------


def test_auth_is_required_and_checks_the_client_credentials(harness):
    c = harness.client
    assert c.get("/health").status_code == 200
    assert c.get("/api/public/v1/connections").status_code == 401
    assert c.get("/api/public/v1/connections", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    assert c.post("/api/v1/connections/get", json={"connectionId": ws.connection_id("fake_sheets")}).status_code == 401
    bad = c.post("/api/public/v1/applications/token", json={"client_id": CLIENT_ID, "client_secret": "wrong"})
    assert bad.status_code == 401 and "access_token" not in bad.json()
    ok = c.post("/api/public/v1/applications/token", json={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                                           "grant-type": "client_credentials"})
    assert ok.status_code == 200 and ok.json()["expires_in"] > 150
    assert CLIENT_SECRET not in ok.text
    headers = {"Authorization": f"Bearer {ok.json()['access_token']}"}
    assert c.get("/api/public/v1/connections", headers=headers).status_code == 200
    workspace = harness.settings.airbyte_workspace_id
    assert c.get(f"/api/public/v1/workspaces/{workspace}", headers=headers).json()["workspaceId"] == workspace
    assert c.get(f"/api/public/v1/workspaces/{uuid.uuid4()}", headers=headers).status_code == 404


def test_connections_page_and_describe_the_contract(harness):
    c, auth = harness.client, harness.auth
    workspace = harness.settings.airbyte_workspace_id
    first = c.get("/api/public/v1/connections", headers=auth,
                  params={"workspaceIds": workspace, "limit": 1}).json()
    assert len(first["data"]) == 1 and first["next"]
    second = c.get(first["next"], headers=auth).json()
    assert len(second["data"]) == 1 and "next" not in second
    listed = {d["name"]: d for d in first["data"] + second["data"]}
    assert set(listed) == {"fake_sheets", "fake_ga4"}
    assert listed["fake_sheets"]["connectionId"] == str(
        uuid.uuid5(uuid.UUID(workspace), "connection:fake_sheets"))
    assert c.get("/api/public/v1/connections", headers=auth,
                 params={"workspaceIds": str(uuid.uuid4())}).json()["data"] == []

    read = c.post("/api/v1/connections/get", headers=auth,
                  json={"connectionId": listed["fake_ga4"]["connectionId"]}).json()
    assert read["name"] == "fake_ga4" and read["prefix"] == "fg_"
    (stream,) = read["syncCatalog"]["streams"]
    assert stream["stream"]["name"] == "pages" and stream["stream"]["jsonSchema"] == PAGES_SCHEMA
    assert stream["config"]["selected"] is True
    assert (stream["config"]["syncMode"], stream["config"]["destinationSyncMode"]) == ("incremental", "append_dedup")
    assert stream["config"]["cursorField"] == ["date"] and stream["config"]["primaryKey"] == [["date"], ["path"]]
    # the discover is cached: asking again does not start the connector again
    c.post("/api/v1/connections/get", headers=auth, json={"connectionId": listed["fake_ga4"]["connectionId"]})
    assert Path(harness.configs["fake_ga4"]["discovers"]).read_text() == "x"

    dest = c.get(f"/api/public/v1/destinations/{read['destinationId']}", headers=auth).json()
    assert dest["destinationType"] == "duckdb"
    assert (dest["configuration"]["database"], dest["configuration"]["schema"]) == ("warehouse", "raw_airbyte")


# --- syncs --------------------------------------------------------------------------------------------------


def test_sync_writes_typed_rows_with_the_airbyte_columns(harness):
    records = people(12)
    harness.configs["fake_sheets"]["streams"]["people"]["records"] = records
    harness.configs["fake_sheets"]["streams"]["notes"]["records"] = [{"text": "hello"}]
    job = harness.sync(FAKE_SHEETS)
    assert job["status"] == "succeeded", harness.job_info(job["jobId"])
    assert job["rowsSynced"] == 13 and job["jobType"] == "sync" and job["duration"].startswith("PT")

    rows = harness.rows("fk_people", "id")
    assert len(rows) == len(records)
    for i, (row, rec) in enumerate(zip(rows, records, strict=True)):
        nulled = []
        joined = datetime.strptime(rec["joined"], "%Y-%m-%d").date() if "-" in rec["joined"] else None
        if joined is None:
            nulled.append("joined")
        score = None if rec["score"] == "n/a" else float(rec["score"])
        if score is None:
            nulled.append("score")
        assert row["id"] == int(rec["id"]) and row["name"] == rec["name"]
        assert row["joined"] == joined and row["score"] == score and row["active"] is (rec["active"] == "true")
        assert json.loads(row["tags"]) == rec["tags"]
        assert str(uuid.UUID(row["_airbyte_raw_id"])) == row["_airbyte_raw_id"]
        assert row["_airbyte_extracted_at"] == datetime.fromtimestamp((EMITTED_AT + i) / 1000, UTC)
        meta = json.loads(row["_airbyte_meta"])
        assert meta["sync_id"] == job["jobId"]
        assert sorted(ch["field"] for ch in meta["changes"]) == sorted(nulled)
        assert all(ch == {"field": ch["field"], "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}
                   for ch in meta["changes"])
        assert row["_airbyte_generation_id"] == 0
    assert len({r["_airbyte_raw_id"] for r in rows}) == len(rows)
    assert [r["text"] for r in harness.rows("fk_notes")] == ["hello"]

    info = harness.job_info(job["jobId"])
    assert info["job"]["status"] == "succeeded"
    stats = {s["streamName"]: s["stats"] for s in info["attempts"][0]["attempt"]["streamStats"]}
    assert stats["people"]["recordsEmitted"] == 12 and stats["notes"]["recordsEmitted"] == 1
    assert stats["people"]["bytesEmitted"] > 0
    listed = harness.client.get("/api/public/v1/jobs", headers=harness.auth,
                                params={"connectionId": ws.connection_id("fake_sheets"),
                                        "createdAtStart": "2000-01-01T00:00:00Z"}).json()["data"]
    assert [j["jobId"] for j in listed] == [job["jobId"]]
    # the connector's LOG messages and stray output went to the job log, not into the data
    log_text = (harness.tmp / "airbyte" / "logs" / f"job-{job['jobId']}.log").read_text()
    assert "starting read" in log_text and "a stray line" in log_text
    # the job listing survives a restart of the stand-in
    restarted = StandIn(harness.settings, connections=(FAKE_SHEETS, FAKE_GA4), kit=harness.standin.kit())
    assert restarted.jobs.get(job["jobId"]).public() == job


def test_overwrite_is_atomic_and_failed_jobs_carry_the_connector_error(harness):
    cfg = harness.configs["fake_sheets"]
    cfg["streams"]["people"]["records"] = people(5)
    first = harness.sync(FAKE_SHEETS)
    assert first["status"] == "succeeded"
    before = harness.rows("fk_people", "id")

    cfg["streams"]["people"]["records"] = people(8, start=100)
    cfg.update(fail_after=3, trace="Unable to read the sheet: header row missing", exit_code=0)
    failed = harness.sync(FAKE_SHEETS)
    assert failed["status"] == "failed"
    (fail,) = harness.job_info(failed["jobId"])["attempts"][0]["attempt"]["failureSummary"]["failures"]
    assert fail["externalMessage"] == "Unable to read the sheet: header row missing"
    assert fail["internalMessage"] == "internal: Unable to read the sheet: header row missing"
    assert fail["failureOrigin"] == "source" and fail["failureType"] == "config_error"
    assert harness.rows("fk_people", "id") == before  # the previous rows, untouched

    cfg.update(fail_after=2, trace=None, exit_code=3)
    crashed = harness.sync(FAKE_SHEETS)
    assert crashed["status"] == "failed"
    (fail,) = harness.job_info(crashed["jobId"])["attempts"][0]["attempt"]["failureSummary"]["failures"]
    assert fail["externalMessage"] == "Source process exited with non-zero exit code 3"
    assert "fake connector giving up" in fail["internalMessage"]
    assert harness.rows("fk_people", "id") == before

    cfg.update(fail_after=None)
    again = harness.sync(FAKE_SHEETS)
    assert again["status"] == "succeeded"
    after = harness.rows("fk_people", "id")
    assert [r["id"] for r in after] == list(range(100, 108))
    assert {r["_airbyte_generation_id"] for r in after} == {1}  # a full refresh is a new generation


def test_append_dedup_keeps_the_latest_record_and_state_goes_to_the_next_read(harness):
    cfg = harness.configs["fake_ga4"]
    pages = cfg["streams"]["pages"]
    pages["records"] = [{"date": "2026-03-01", "path": "/a", "views": 1},
                        {"date": "2026-03-01", "path": "/b", "views": 2},
                        {"date": "2026-03-02", "path": "/a", "views": 3},
                        {"date": "2026-03-01", "path": "/a", "views": 4}]
    cfg["sync"] = 1
    first = harness.sync(FAKE_GA4)
    assert first["status"] == "succeeded", harness.job_info(first["jobId"])
    assert json.loads(Path(cfg["state_seen"]).read_text()) is None  # no state before the first sync
    state_file = harness.tmp / "airbyte" / "state" / "fake_ga4.json"
    first_state = json.loads(state_file.read_text())
    assert first_state == [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "pages"},
                                                         "stream_state": {"seen": 4, "sync": 1}}}]
    got = {(str(r["date"]), r["path"]): r["views"] for r in harness.rows("fg_pages")}
    assert got == {("2026-03-01", "/a"): 4, ("2026-03-01", "/b"): 2, ("2026-03-02", "/a"): 3}

    # second sync: overlapping keys with new values, and the source's schema grew a column ("users") and lost
    # one ("views" is gone): the records tell the stand-in, which discovers again and types the new column
    pages["schema"] = {"type": "object", "properties": {
        "date": PAGES_SCHEMA["properties"]["date"], "path": PAGES_SCHEMA["properties"]["path"],
        "users": {"type": ["null", "integer"]}}}
    pages["records"] = [{"date": "2026-03-02", "path": "/a", "users": 30},
                        {"date": "2026-03-03", "path": "/c", "users": 5}]
    cfg["sync"] = 2
    second = harness.sync(FAKE_GA4)
    assert second["status"] == "succeeded", harness.job_info(second["jobId"])
    assert json.loads(Path(cfg["state_seen"]).read_text()) == first_state  # the persisted state was passed on
    assert json.loads(state_file.read_text())[0]["stream"]["stream_state"] == {"seen": 2, "sync": 2}
    got = {(str(r["date"]), r["path"]): (r["views"], r["users"]) for r in harness.rows("fg_pages")}
    assert got == {("2026-03-01", "/a"): (4, None), ("2026-03-01", "/b"): (2, None),
                   ("2026-03-02", "/a"): (None, 30), ("2026-03-03", "/c"): (None, 5)}
    with duckdb.connect(str(harness.warehouse), read_only=True) as con:
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'fg_pages'").fetchall())
    assert types["users"] == "BIGINT" and types["views"] == "BIGINT" and types["date"] == "DATE"

    # a failed sync persists no state
    cfg.update(fail_after=1, trace="quota exceeded")
    assert harness.sync(FAKE_GA4)["status"] == "failed"
    assert json.loads(state_file.read_text())[0]["stream"]["stream_state"] == {"seen": 2, "sync": 2}


def test_cancel_kills_the_connector_and_writes_nothing(harness):
    cfg = harness.configs["fake_sheets"]
    cfg["streams"]["people"]["records"] = people(20)
    cfg["sleep_after"] = 5
    job = harness.sync(FAKE_SHEETS, wait=False)
    pid_file = Path(cfg["pid_file"])
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 30  # wait until the records before the sleep were read
    while harness.client.get(f"/api/public/v1/jobs/{job['jobId']}", headers=harness.auth).json()["rowsSynced"] < 5:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # like Airbyte: no second sync of a connection while one runs
    conflict = harness.client.post("/api/public/v1/jobs", headers=harness.auth,
                                   json={"connectionId": ws.connection_id("fake_sheets"), "jobType": "sync"})
    assert conflict.status_code == 409

    cancelled = harness.client.delete(f"/api/public/v1/jobs/{job['jobId']}", headers=harness.auth)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not harness.table_exists("fk_people")
    assert not (harness.tmp / "airbyte" / "state" / "fake_sheets.json").exists()
    assert harness.job_info(job["jobId"])["job"]["status"] == "cancelled"


def test_destination_rolls_back_every_stream_when_one_fails_or_the_job_is_cancelled(tmp_path):
    from corisync_assets.local.airbyte.destination import Aborted, StreamLoad, write_streams
    from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse

    def spool(name: str, records: list[dict]) -> Path:
        path = tmp_path / f"{name}-{uuid.uuid4().hex}.jsonl"
        path.write_text("".join(json.dumps({"type": "RECORD", "record": {"stream": "s", "data": r, "emitted_at": 1}})
                                + "\n" for r in records))
        return path

    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    schema = {"properties": {"k": {"type": "integer"}, "v": {"type": "string"}}}

    def loads(a: list[dict], b: list[dict], pk: tuple[str, ...] = ("k",)) -> list[StreamLoad]:
        return [StreamLoad("a", "t_a", schema, "overwrite", spool("a", a)),
                StreamLoad("b", "t_b", schema, "append_dedup", spool("b", b), primary_key=pk)]

    def table(name: str) -> list[tuple]:
        with warehouse.connect(read_only=True) as con:
            return con.execute(f"SELECT k, v FROM raw_airbyte.{name} ORDER BY k").fetchall()

    write_streams(warehouse, loads([{"k": 1, "v": "x"}, {"k": 2, "v": "y"}], [{"k": 1, "v": "b"}]), sync_id=1)
    assert table("t_a") == [(1, "x"), (2, "y")] and table("t_b") == [(1, "b")]
    with pytest.raises(ValueError, match="nope"):  # the second stream fails: the first is rolled back too
        write_streams(warehouse, loads([{"k": 3, "v": "z"}], [{"k": 1, "v": "c"}], pk=("nope",)), sync_id=2)
    with pytest.raises(Aborted):  # cancelled just before the commit
        write_streams(warehouse, loads([{"k": 3, "v": "z"}], [{"k": 1, "v": "c"}]), sync_id=3, abort=lambda: True)
    assert table("t_a") == [(1, "x"), (2, "y")] and table("t_b") == [(1, "b")]


def test_dagster_airbyte_client_syncs_through_the_standin(tmp_path, fake_script):
    """dagster-airbyte's own client over real HTTP: workspace data, sync-and-poll, job details."""
    from dagster_airbyte import AirbyteWorkspace

    h = Harness(tmp_path, fake_script)
    h.configs["fake_sheets"]["streams"]["people"]["records"] = people(3)
    running = start_in_thread(h.standin)
    try:
        airbyte = AirbyteWorkspace(rest_api_base_url=f"{running.url}/api/public/v1",
                                   configuration_api_base_url=f"{running.url}/api/v1",
                                   workspace_id=h.settings.airbyte_workspace_id, client_id=CLIENT_ID,
                                   client_secret=CLIENT_SECRET, poll_interval=0.1, request_max_retries=0)
        data = airbyte.fetch_airbyte_workspace_data()
        by_name = {c.name: c for c in data.connections_by_id.values()}
        assert set(by_name) == {"fake_sheets", "fake_ga4"}
        assert {n for n, s in by_name["fake_sheets"].streams.items() if s.selected} == {"people", "notes"}
        (dest,) = data.destinations_by_id.values()
        assert (dest.type, dest.database, dest.schema) == ("duckdb", "warehouse", "raw_airbyte")
        tables = {p.table_name for p in data.to_airbyte_connection_table_props_data()}
        assert tables == {"fk_people", "fk_notes", "fg_pages"}

        output = airbyte.get_client().sync_and_poll(connection_id=by_name["fake_sheets"].id)
        assert output.job_details["status"] == "succeeded" and output.job_details["rowsSynced"] == 3
        assert output.connection_details["name"] == "fake_sheets"
        assert [r["id"] for r in h.rows("fk_people", "id")] == [0, 1, 2]
    finally:
        running.stop()
