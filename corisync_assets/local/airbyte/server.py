"""The local Airbyte stand-in: the subset of Airbyte's HTTP API that dagster-airbyte's ``AirbyteWorkspace``
calls, over the real connectors, so the Dagster code is the same locally and against a real Airbyte.

No Airbyte server runs on this machine (it needs Docker and Kubernetes). This one serves the connections of
``corisync_assets/airbyte/connections.py`` in one workspace, runs their syncs as jobs (``jobs.py``) that
write the local DuckDB warehouse like Airbyte's destinations v2 (``destination.py``), and mounts the Google
API double under ``/google`` (one process, one port), where the connectors it runs are pointed.

Endpoints (``<base>`` = ``http://127.0.0.1:<CORISYNC_AIRBYTE_PORT>``; all but the token, ``/health`` and
``/google`` need ``Authorization: Bearer <token>``, else 401):

* ``POST /api/public/v1/applications/token`` -- client credentials (``client_id``/``client_secret``, JSON or
  form) checked against the settings -> ``{access_token, token_type, expires_in}``
* ``GET  /api/public/v1/workspaces/{id}``
* ``GET  /api/public/v1/connections?workspaceIds=&limit=&offset=`` -- paginated (``data``, ``next``)
* ``GET  /api/public/v1/connections/{id}``
* ``GET  /api/public/v1/destinations/{id}`` -- destinationType ``duckdb``, configuration database/schema
* ``POST /api/public/v1/jobs`` ``{connectionId, jobType: "sync"}`` -> JobResponse (409 while one runs)
* ``GET  /api/public/v1/jobs?connectionId=&createdAtStart=&limit=&offset=`` -> ``data`` (newest first)
* ``GET  /api/public/v1/jobs/{id}``, ``DELETE /api/public/v1/jobs/{id}`` (cancel)
* ``POST /api/v1/connections/get`` ``{connectionId}`` -> ConnectionRead with the discovered syncCatalog
* ``POST /api/v1/jobs/get`` ``{id}`` -> JobInfoRead: per-stream stats and the connector's failure messages
* ``POST /api/v1/sources/discover_schema`` ``{sourceId, disable_cache}`` -> the catalog (refreshes the cache)
* ``GET  /health``, ``GET /api/v1/health``

Run: ``python -m corisync_assets.local.airbyte`` (``corisync stack up`` does it; settings from the
environment, client id and secret generated into ``<home>/secrets.env``); ``start_in_thread`` serves one
in-process for tests.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from corisync_assets.airbyte.connections import CONNECTIONS, Connection
from corisync_assets.environment import Settings
from corisync_assets.local.airbyte import workspace as ws
from corisync_assets.local.airbyte.discovery import DiscoverCache
from corisync_assets.local.airbyte.jobs import Job, JobConflict, JobManager
from corisync_assets.local.airbyte.kit import ConnectorKit, default_kit
from corisync_assets.served import ServedApp, serve, serve_in_thread

log = logging.getLogger("corisync_assets.local.airbyte.server")

TOKEN_TTL_S = 180  # as Airbyte: dagster-airbyte refreshes its token after 150 s
DEFAULT_PAGE = 20
MAX_PAGE = 100


class StandIn:
    """The stand-in's state: settings, connections, connector kit, discover cache, jobs, tokens."""

    def __init__(self, s: Settings, *, connections: Sequence[Connection] = CONNECTIONS,
                 kit: ConnectorKit | None = None, base_url: str | None = None, warehouse: Any = None):
        if not (s.airbyte_client_id and s.airbyte_client_secret):
            raise ValueError("the Airbyte stand-in needs CORISYNC_AIRBYTE_CLIENT_ID and CORISYNC_AIRBYTE_CLIENT_SECRET "
                             "(`corisync stack up` generates them into <home>/secrets.env)")
        self.settings = s
        self.workspace_id = s.airbyte_workspace_id
        self.connections = {ws.connection_id(c.name): c for c in connections}
        self.sources = {ws.source_id(c.name): c for c in connections}
        self.base_url = (base_url or f"http://127.0.0.1:{s.airbyte_port}").rstrip("/")
        self._kit = kit
        self._warehouse = warehouse
        self.discover = DiscoverCache(s.home, self.kit)
        self.jobs = JobManager(s.home, connections, self.kit, self.discover, self.warehouse,
                               lambda: self.google_api_url)
        self._tokens: dict[str, float] = {}
        self._tokens_lock = threading.Lock()

    # lazily: the real connectors' module and DuckDB are only needed once a job or a discover runs
    def kit(self) -> ConnectorKit:
        if self._kit is None:
            self._kit = default_kit()
        return self._kit

    def warehouse(self):
        if self._warehouse is None:
            from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse

            self._warehouse = DuckDBWarehouse(path=str(self.settings.warehouse_path))
        return self._warehouse

    @property
    def google_api_url(self) -> str:
        return self.base_url + "/google"

    def discovered(self, conn: Connection, refresh: bool = False) -> dict[str, Any]:
        config = self.kit().source_config(conn, self.google_api_url)
        return self.discover.catalog(conn, config, self.google_api_url, refresh=refresh)

    # --- tokens ---

    def issue_token(self, client_id: str, client_secret: str) -> str | None:
        s = self.settings
        ok = hmac.compare_digest(client_id.encode(), (s.airbyte_client_id or "").encode()) & hmac.compare_digest(
            client_secret.encode(), (s.airbyte_client_secret or "").encode())
        if not ok:
            return None
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._tokens_lock:
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + TOKEN_TTL_S
        return token

    def token_valid(self, token: str) -> bool:
        with self._tokens_lock:
            exp = self._tokens.get(token)
        return exp is not None and exp > time.monotonic()


# --- helpers ------------------------------------------------------------------------------------------------


def _problem(status: int, detail: str, title: str | None = None) -> JSONResponse:
    """Airbyte's public API errors are problem+json; its config API reads ``message``: give both."""
    return JSONResponse({"type": f"https://reference.airbyte.com/reference/errors#{status}", "status": status,
                         "title": title or detail, "detail": detail, "message": detail}, status_code=status)


def _authorized(request: Request) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and bool(token) and request.app.state.standin.token_valid(token.strip())


def authed(handler):
    async def wrapper(request: Request):
        if not _authorized(request):
            resp = _problem(401, "Unauthorized: a valid bearer token is required", "unauthorized")
            resp.headers["WWW-Authenticate"] = "Bearer"
            return resp
        return await handler(request)

    wrapper.__name__ = handler.__name__
    return wrapper


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _page_params(request: Request) -> tuple[int, int] | JSONResponse:
    try:
        limit = int(request.query_params.get("limit", DEFAULT_PAGE))
        offset = int(request.query_params.get("offset", 0))
    except ValueError:
        return _problem(400, "limit and offset must be integers")
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        return _problem(400, f"limit must be 1..{MAX_PAGE} and offset >= 0")
    return limit, offset


def _page(request: Request, items: list[dict[str, Any]], limit: int, offset: int) -> dict[str, Any]:
    out: dict[str, Any] = {"data": items[offset:offset + limit]}
    if offset + limit < len(items):
        out["next"] = str(request.url.include_query_params(limit=limit, offset=offset + limit))
    if offset > 0:
        out["previous"] = str(request.url.include_query_params(limit=limit, offset=max(0, offset - limit)))
    return out


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _workspace_ids(request: Request) -> set[str]:
    return {w.strip() for v in request.query_params.getlist("workspaceIds") for w in v.split(",") if w.strip()}


def _standin(request: Request) -> StandIn:
    return request.app.state.standin


# --- endpoints ----------------------------------------------------------------------------------------------


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "connections": len(_standin(request).connections)})


async def api_health(request: Request) -> JSONResponse:
    return JSONResponse({"available": True})


async def token(request: Request) -> JSONResponse:
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        body: dict[str, Any] = dict(parse_qsl((await request.body()).decode(errors="replace")))
    else:
        body = await _json_body(request)
    grant = body.get("grant_type") or body.get("grant-type") or "client_credentials"
    if grant != "client_credentials":
        return _problem(400, f"unsupported grant type {grant!r}")
    tok = _standin(request).issue_token(str(body.get("client_id") or ""), str(body.get("client_secret") or ""))
    if tok is None:
        return _problem(401, "invalid client credentials", "unauthorized")
    return JSONResponse({"access_token": tok, "token_type": "Bearer", "expires_in": TOKEN_TTL_S})


@authed
async def get_workspace(request: Request) -> JSONResponse:
    standin = _standin(request)
    if request.path_params["workspace_id"] != standin.workspace_id:
        return _problem(404, f"workspace {request.path_params['workspace_id']} not found")
    return JSONResponse(ws.workspace_response(standin.workspace_id))


@authed
async def list_connections(request: Request) -> JSONResponse:
    standin = _standin(request)
    page = _page_params(request)
    if isinstance(page, JSONResponse):
        return page
    wanted = _workspace_ids(request)
    items = ([] if wanted and standin.workspace_id not in wanted else
             [ws.connection_response(c, standin.workspace_id) for c in standin.connections.values()])
    return JSONResponse(_page(request, items, *page))


@authed
async def get_connection(request: Request) -> JSONResponse:
    standin = _standin(request)
    conn = standin.connections.get(request.path_params["connection_id"])
    if conn is None:
        return _problem(404, f"connection {request.path_params['connection_id']} not found")
    return JSONResponse(ws.connection_response(conn, standin.workspace_id))


@authed
async def get_destination(request: Request) -> JSONResponse:
    standin = _standin(request)
    if request.path_params["destination_id"] != ws.destination_id():
        return _problem(404, f"destination {request.path_params['destination_id']} not found")
    return JSONResponse(ws.destination_response(standin.workspace_id, standin.settings.warehouse_path))


@authed
async def create_job(request: Request) -> JSONResponse:
    standin = _standin(request)
    body = await _json_body(request)
    conn_id = str(body.get("connectionId") or "")
    if conn_id not in standin.connections:
        return _problem(404, f"connection {conn_id!r} not found")
    if (body.get("jobType") or "sync") != "sync":
        return _problem(422, f"jobType {body.get('jobType')!r} is not supported by the local stand-in (only sync)")
    try:
        job = standin.jobs.start(conn_id)
    except JobConflict as exc:
        return _problem(409, str(exc), "conflict")
    return JSONResponse(job.public())


@authed
async def list_jobs(request: Request) -> JSONResponse:
    standin = _standin(request)
    page = _page_params(request)
    if isinstance(page, JSONResponse):
        return page
    q = request.query_params
    wanted = _workspace_ids(request)
    if wanted and standin.workspace_id not in wanted:
        return JSONResponse({"data": []})
    start, end = _parse_time(q.get("createdAtStart")), _parse_time(q.get("createdAtEnd"))
    jobs = [j for j in standin.jobs.list(q.get("connectionId") or None)
            if (start is None or j.created_at >= start) and (end is None or j.created_at <= end)
            and (not q.get("status") or j.status == q.get("status"))
            and (not q.get("jobType") or q.get("jobType") == "sync")]
    field, _, direction = (q.get("orderBy") or "createdAt|DESC").partition("|")
    key = (lambda j: j.updated_at) if field == "updatedAt" else (lambda j: (j.created_at, j.id))
    jobs.sort(key=key, reverse=direction.upper() != "ASC")
    return JSONResponse(_page(request, [j.public() for j in jobs], *page))


def _job(request: Request, job_id: Any) -> Job | JSONResponse:
    try:
        job = _standin(request).jobs.get(int(job_id))
    except (TypeError, ValueError):
        return _problem(400, f"job id {job_id!r} is not an integer")
    return job if job is not None else _problem(404, f"job {job_id} not found")


@authed
async def get_job(request: Request) -> JSONResponse:
    job = _job(request, request.path_params["job_id"])
    return job if isinstance(job, JSONResponse) else JSONResponse(job.public())


@authed
async def cancel_job(request: Request) -> JSONResponse:
    job = _job(request, request.path_params["job_id"])
    if isinstance(job, JSONResponse):
        return job
    await run_in_threadpool(_standin(request).jobs.cancel, job.id)
    return JSONResponse(job.public())


@authed
async def config_connection(request: Request) -> JSONResponse:
    standin = _standin(request)
    body = await _json_body(request)
    conn = standin.connections.get(str(body.get("connectionId") or ""))
    if conn is None:
        return _problem(404, f"connection {body.get('connectionId')!r} not found")
    try:
        discovered = await run_in_threadpool(standin.discovered, conn)
    except Exception as exc:  # DiscoverError, or no connectors venv: one line for dagster-airbyte's log
        log.warning("connection %s: discover failed: %s", conn.name, exc)
        return _problem(502, f"connection {conn.name}: {exc}")
    return JSONResponse(ws.connection_read(conn, standin.workspace_id, discovered))


@authed
async def config_job(request: Request) -> JSONResponse:
    body = await _json_body(request)
    job = _job(request, body.get("id"))
    return job if isinstance(job, JSONResponse) else JSONResponse(job.job_info())


@authed
async def discover_schema(request: Request) -> JSONResponse:
    standin = _standin(request)
    body = await _json_body(request)
    conn = standin.sources.get(str(body.get("sourceId") or ""))
    if conn is None:
        return _problem(404, f"source {body.get('sourceId')!r} not found")
    try:
        discovered = await run_in_threadpool(standin.discovered, conn, bool(body.get("disable_cache")))
    except Exception as exc:
        return JSONResponse({"jobInfo": {"succeeded": False, "failureReason": {"externalMessage": str(exc)}}})
    return JSONResponse({"catalog": {"streams": ws.catalog_streams(conn, discovered)},
                         "jobInfo": {"succeeded": True}})


def create_app(standin: StandIn, *, google: Any = None) -> Starlette:
    """The stand-in's ASGI app; ``google``: the Google API double (an ASGI app) to mount under ``/google``."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await run_in_threadpool(standin.jobs.shutdown)

    pub, cfg = "/api/public/v1", "/api/v1"
    routes = [
        Route("/health", health),
        Route(f"{cfg}/health", api_health),
        Route(f"{pub}/applications/token", token, methods=["POST"]),
        Route(f"{pub}/workspaces/{{workspace_id}}", get_workspace),
        Route(f"{pub}/connections", list_connections),
        Route(f"{pub}/connections/{{connection_id}}", get_connection),
        Route(f"{pub}/destinations/{{destination_id}}", get_destination),
        Route(f"{pub}/jobs", create_job, methods=["POST"]),
        Route(f"{pub}/jobs", list_jobs, methods=["GET"]),
        Route(f"{pub}/jobs/{{job_id}}", get_job, methods=["GET"]),
        Route(f"{pub}/jobs/{{job_id}}", cancel_job, methods=["DELETE"]),
        Route(f"{cfg}/connections/get", config_connection, methods=["POST"]),
        Route(f"{cfg}/jobs/get", config_job, methods=["POST"]),
        Route(f"{cfg}/sources/discover_schema", discover_schema, methods=["POST"]),
    ]
    if google is not None:
        routes.append(Mount("/google", app=google))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.standin = standin
    return app


def default_google_app():
    """The Sheets/GA4 double (``corisync_assets.local.google_apis``), or None when it is not available."""
    try:
        from corisync_assets.local.google_apis import google_app
    except ImportError as exc:
        log.warning("no Google API double (%s): the real connectors cannot reach Google from here", exc)
        return None
    return google_app()


# --- serving ------------------------------------------------------------------------------------------------


@dataclass
class RunningStandIn(ServedApp):
    """A stand-in served by uvicorn in a thread of this process (``start_in_thread``)."""

    standin: StandIn | None = None


def start_in_thread(standin: StandIn, *, google: Any = None, host: str = "127.0.0.1", port: int = 0,
                    timeout: float = 30.0) -> RunningStandIn:
    """Serve ``standin`` in a daemon thread (port 0: any free one); returns once it listens, with
    ``standin.base_url`` set to the bound address (so its jobs point the connectors at this /google)."""
    served = serve_in_thread(create_app(standin, google=google), host, port, name="airbyte-standin",
                             timeout=timeout, timeout_graceful_shutdown=10)
    standin.base_url = served.url
    return RunningStandIn(served.url, served.app, served.server, served.thread, standin)


def main() -> None:
    """``python -m corisync_assets.local.airbyte``: serve on 127.0.0.1:<CORISYNC_AIRBYTE_PORT> until SIGTERM."""
    import sys

    from corisync_assets.environment import settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    s = settings()
    try:
        standin = StandIn(s)
    except ValueError as exc:
        print(f"airbyte stand-in: {exc}", file=sys.stderr)
        sys.exit(2)
    app = create_app(standin, google=default_google_app())
    log.info("Airbyte stand-in on %s (workspace %s, %d connections)", standin.base_url, standin.workspace_id,
             len(standin.connections))
    serve(app, "127.0.0.1", s.airbyte_port, "info", timeout_graceful_shutdown=10)
