"""A request-level double of the Airbyte API, in the style of dagster-airbyte's own tests (``responses``).

No Airbyte server can run here (it needs Docker and Kubernetes), so the tests that check the Dagster side against
Airbyte's API *as it answers in prod* use this double: the public REST API (``/api/public/v1``: token, workspace,
connections, destinations, jobs) and the config API (``/api/v1``: connections/get, jobs/get) that dagster-airbyte
0.29 and CoriSync call, with the response shapes of Airbyte 1.x. Jobs follow a scripted list of statuses per
connection; "succeeded" writes rows into the test's DuckDB file as Airbyte's destination would.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import responses

from corisync_assets.airbyte.connections import CONNECTIONS, Connection

BASE = "http://airbyte.test:8000"
REST = f"{BASE}/api/public/v1"
CONFIG = f"{BASE}/api/v1"
DESTINATION_ID = "9f7d1b58-0000-4000-8000-00000000d001"


def connection_id(conn: Connection) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"airbyte-double/{conn.name}"))


def stream_schema(columns: list[str]) -> dict:
    return {"type": "object", "properties": {c: {"type": ["null", "string"]} for c in columns}}


@dataclass
class Script:
    """What the next job of a connection does: statuses seen by successive polls, then the end state."""

    statuses: list[str]
    failure: str | None = None
    rows: dict[str, int] = field(default_factory=dict)  # stream -> rows the destination writes on success


@dataclass
class AirbyteApiDouble:
    workspace_id: str
    client_id: str
    client_secret: str
    on_success: Callable[[Connection, dict[str, int]], None]
    scripts: dict[str, Script] = field(default_factory=dict)
    jobs: dict[int, dict] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    reachable: bool = True

    # --- wiring -------------------------------------------------------------------------------------------
    def register(self, rsps: responses.RequestsMock) -> None:
        rsps.add_callback(responses.POST, f"{REST}/applications/token", callback=self._token)
        rsps.add_callback(responses.GET, f"{REST}/workspaces/{self.workspace_id}", callback=self._workspace)
        rsps.add_callback(responses.GET, re.compile(rf"{re.escape(REST)}/connections(\?.*)?$"),
                          callback=self._connections)
        rsps.add_callback(responses.POST, f"{CONFIG}/connections/get", callback=self._connection)
        rsps.add_callback(responses.GET, f"{REST}/destinations/{DESTINATION_ID}", callback=self._destination)
        rsps.add_callback(responses.POST, f"{REST}/jobs", callback=self._start)
        rsps.add_callback(responses.GET, re.compile(rf"{re.escape(REST)}/jobs\?.*$"), callback=self._list_jobs)
        rsps.add_callback(responses.GET, re.compile(rf"{re.escape(REST)}/jobs/\d+$"), callback=self._poll)
        rsps.add_callback(responses.DELETE, re.compile(rf"{re.escape(REST)}/jobs/\d+$"), callback=self._cancel)
        rsps.add_callback(responses.POST, f"{CONFIG}/jobs/get", callback=self._job_report)

    def _authorized(self, request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _reply(self, request, body: dict, status: int = 200):
        self.calls.append(f"{request.method} {request.url.split('?')[0].removeprefix(BASE)}")
        if not self.reachable:
            raise ConnectionError("Airbyte double: connection refused")
        if not request.url.endswith("/applications/token") and not self._authorized(request):
            return 401, {}, json.dumps({"message": "Unauthorized"})
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    # --- endpoints ----------------------------------------------------------------------------------------
    def _token(self, request):
        body = json.loads(request.body)
        if (body.get("client_id"), body.get("client_secret")) != (self.client_id, self.client_secret):
            return self._reply(request, {"message": "invalid client credentials"}, 401)
        return self._reply(request, {"access_token": self.token, "token_type": "Bearer", "expires_in": 180})

    def _workspace(self, request):
        return self._reply(request, {"workspaceId": self.workspace_id, "name": "tc4a"})

    def _connections(self, request):
        data = [{"connectionId": connection_id(c), "name": c.name, "workspaceId": self.workspace_id,
                 "destinationId": DESTINATION_ID, "status": "active"} for c in CONNECTIONS]
        return self._reply(request, {"data": data, "next": ""})

    def _connection(self, request):
        wanted = json.loads(request.body)["connectionId"]
        conn = next(c for c in CONNECTIONS if connection_id(c) == wanted)
        streams = [{"stream": {"name": s.name, "jsonSchema": stream_schema(["training_id", "date"])},
                    "config": {"selected": True, "syncMode": s.sync_mode.split("_")[0],
                               "destinationSyncMode": ("overwrite" if s.sync_mode.startswith("full")
                                                       else "append_dedup")}}
                   for s in conn.streams]
        return self._reply(request, {"connectionId": wanted, "name": conn.name, "prefix": conn.prefix,
                                     "destinationId": DESTINATION_ID, "syncCatalog": {"streams": streams}})

    def _destination(self, request):
        return self._reply(request, {"destinationId": DESTINATION_ID, "destinationType": "bigquery",
                                     "configuration": {"project_id": "tc4a-prod", "dataset_id": "corisync_airbyte"}})

    def _start(self, request):
        wanted = json.loads(request.body)["connectionId"]
        conn = next(c for c in CONNECTIONS if connection_id(c) == wanted)
        job_id = len(self.jobs) + 1
        script = self.scripts.pop(conn.name)
        self.jobs[job_id] = {"conn": conn, "script": script, "polls": 0, "status": "pending"}
        return self._reply(request, self._job_json(job_id))

    def _job_json(self, job_id: int) -> dict:
        job = self.jobs[job_id]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"jobId": job_id, "status": job["status"], "jobType": "sync",
                "connectionId": connection_id(job["conn"]), "startTime": now, "lastUpdatedAt": now,
                "rowsSynced": sum(job["script"].rows.values()) if job["status"] == "succeeded" else 0}

    def _list_jobs(self, request):
        return self._reply(request, {"data": [self._job_json(i) for i in self.jobs
                                              if self.jobs[i]["status"] != "gone"], "next": ""})

    def _poll(self, request):
        job_id = int(request.url.rsplit("/", 1)[1])
        job = self.jobs[job_id]
        statuses = job["script"].statuses
        job["status"] = statuses[min(job["polls"], len(statuses) - 1)]
        job["polls"] += 1
        if job["status"] == "succeeded" and not job.get("written"):
            self.on_success(job["conn"], job["script"].rows)
            job["written"] = True
        return self._reply(request, self._job_json(job_id))

    def _cancel(self, request):
        job_id = int(request.url.rsplit("/", 1)[1])
        self.jobs[job_id]["status"] = "cancelled"
        return self._reply(request, self._job_json(job_id))

    def _job_report(self, request):
        job_id = int(json.loads(request.body)["id"])
        job = self.jobs[job_id]
        script: Script = job["script"]
        attempt = {"id": 0, "status": job["status"], "recordsSynced": sum(script.rows.values()),
                   "streamStats": [{"streamName": s, "stats": {"recordsEmitted": n, "bytesEmitted": 100 * n}}
                                   for s, n in script.rows.items()]}
        if script.failure:
            attempt["failureSummary"] = {"failures": [{"failureOrigin": "source", "externalMessage": script.failure,
                                                       "internalMessage": "traceback ..."}]}
        return self._reply(request, {"job": {"id": job_id, "status": job["status"]},
                                     "attempts": [{"attempt": attempt}]})
