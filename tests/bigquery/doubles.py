"""Request-level doubles of BigQuery for what the emulator cannot show: which requests a landing cycle and a
fold send, requests the service refuses, request sizes, table options.

* `RestDouble` — BigQuery's REST API (``bigquery/v2``) as the `google-cloud-bigquery` client calls it, built
  on the `responses` library (it intercepts the client's `requests` session; no socket): datasets.get,
  tables.get/insert/list, tabledata.list, jobs.insert/get and jobs.getQueryResults. Tables are kept as the
  client created them; a query job is answered by ``answer(sql) -> (columns, rows)``, or fails with the
  next message in ``job_errors``. Every request is kept in ``calls``.
* `WriteApiDouble` — the Storage Write API: a local gRPC server implementing ``BigQueryWrite/AppendRows``
  only. It records every call (its metadata and requests, rows decoded with the writer schema the call
  sent), acknowledges each request, or answers with the error ``refuse(table, request)`` returns.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
import responses

HOST = "bq.double"


@dataclass
class Call:
    method: str
    path: str  # below /bigquery/v2/projects/<project>/
    body: dict | None


class RestDouble:
    """BigQuery's REST API for one project, on http://bq.double (use as a context manager)."""

    def __init__(self, project: str, answer: Callable[[str], tuple[list[tuple[str, str]], list[tuple]]] | None = None):
        self.project = project
        self.answer = answer or (lambda sql: ([], []))
        self.calls: list[Call] = []
        self.datasets: set[str] = set()
        self.tables: dict[tuple[str, str], dict] = {}
        self.rows: dict[tuple[str, str], list[dict]] = {}  # tabledata.list contents
        self.jobs: dict[str, dict] = {}
        self.job_errors: list[str] = []  # the next query jobs fail with these messages, in order
        self._mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        base = re.compile(rf"http://{re.escape(HOST)}(:\d+)?/bigquery/v2/projects/{re.escape(project)}/(?P<path>[^?]*)")
        for method in ("GET", "POST", "PATCH", "PUT", "DELETE"):
            self._mock.add_callback(method, base, callback=self._handle)

    def __enter__(self) -> RestDouble:
        self._mock.start()
        return self

    def __exit__(self, *exc) -> None:
        self._mock.stop()
        self._mock.reset()

    # --- what tests look at --------------------------------------------------------------------------

    def requests(self, method: str | None = None, path: str | None = None) -> list[Call]:
        return [c for c in self.calls if (method is None or c.method == method)
                and (path is None or re.fullmatch(path, c.path))]

    @property
    def query_jobs(self) -> list[str]:
        """SQL of every query job inserted, in order."""
        return [c.body["configuration"]["query"]["query"] for c in self.requests("POST", "jobs")]

    @property
    def load_jobs(self) -> list[dict]:
        return [c.body for c in self.requests("POST", "jobs") if "load" in c.body.get("configuration", {})]

    # --- the API --------------------------------------------------------------------------------------

    def _handle(self, request) -> tuple[int, dict, str]:
        path = re.match(r"https?://[^/]+/bigquery/v2/projects/[^/]+/([^?]*)", request.url).group(1)
        body = json.loads(request.body) if request.body else None
        self.calls.append(Call(request.method, path, body))
        parts = path.split("/")
        try:
            status, payload = self._route(request.method, parts, body)
        except KeyError:
            status, payload = 404, {"error": {"code": 404, "message": f"Not found: {path}", "errors": [
                {"reason": "notFound", "message": f"Not found: {path}"}]}}
        return status, {"Content-Type": "application/json"}, json.dumps(payload)

    def _route(self, method: str, parts: list[str], body: dict | None) -> tuple[int, dict]:
        match (method, parts):
            case ("GET", ["datasets", ds]):
                if ds not in self.datasets:
                    raise KeyError(ds)
                return 200, {"datasetReference": {"projectId": self.project, "datasetId": ds}, "location": "EU"}
            case ("POST", ["datasets"]):
                ds = body["datasetReference"]["datasetId"]
                self.datasets.add(ds)
                return 200, body
            case ("GET", ["datasets", ds, "tables"]):
                return 200, {"tables": [{"tableReference": {"projectId": self.project, "datasetId": d,
                                                            "tableId": t}} for d, t in self.tables if d == ds]}
            case ("POST", ["datasets", ds, "tables"]):
                table = body["tableReference"]["tableId"]
                if (ds, table) in self.tables:
                    return 409, {"error": {"code": 409, "message": "Already Exists", "errors": [
                        {"reason": "duplicate", "message": "Already Exists"}]}}
                self.tables[(ds, table)] = {**body, "numRows": "0"}
                return 200, self.tables[(ds, table)]
            case ("GET", ["datasets", ds, "tables", table]):
                return 200, self.tables[(ds, table)]
            case ("PATCH" | "PUT", ["datasets", ds, "tables", table]):
                self.tables[(ds, table)].update(body)
                return 200, self.tables[(ds, table)]
            case ("GET", ["datasets", ds, "tables", table, "data"]):
                fields = [f["name"] for f in self.tables[(ds, table)]["schema"]["fields"]]
                rows = self.rows.get((ds, table), [])
                return 200, {"totalRows": str(len(rows)), "rows": [
                    {"f": [{"v": _wire(r.get(name))} for name in fields]} for r in rows]}
            case ("POST", ["jobs"]):
                job_id = body["jobReference"]["jobId"]
                status = {"state": "DONE"}
                if self.job_errors:
                    status["errorResult"] = {"reason": "invalidQuery", "message": self.job_errors.pop(0)}
                    status["errors"] = [status["errorResult"]]
                self.jobs[job_id] = {**body, "status": status, "statistics": {"query": {}}}
                return 200, self.jobs[job_id]
            case ("GET", ["jobs", job_id]):
                return 200, self.jobs[job_id]
            case ("GET", ["queries", job_id]):
                job = self.jobs[job_id]
                if "errorResult" in job["status"]:
                    error = job["status"]["errorResult"]
                    return 400, {"error": {"code": 400, "message": error["message"], "errors": [error]}}
                columns, rows = self.answer(job["configuration"]["query"]["query"])
                return 200, {"kind": "bigquery#getQueryResultsResponse", "jobComplete": True,
                             "jobReference": job["jobReference"], "totalRows": str(len(rows)),
                             "schema": {"fields": [{"name": n, "type": t, "mode": "NULLABLE"} for n, t in columns]},
                             "rows": [{"f": [{"v": _wire(v)} for v in row]} for row in rows]}
        raise KeyError("/".join(parts))


def _wire(value: Any) -> Any:
    return None if value is None else str(value)


# --- the Storage Write API ------------------------------------------------------------------------------

_APPEND_ROWS = "/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows"


@dataclass
class AppendCall:
    """One AppendRows call (one connection): its metadata and requests, in order."""

    table: str
    metadata: list[tuple[str, str]]
    requests: list[Any] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # decoded with the writer schema of the call

    def header(self, key: str) -> list[str]:
        """Every value sent for a metadata key (gRPC allows repeats)."""
        return [v for k, v in self.metadata if k == key]

    @property
    def writer_schemas(self) -> list[bool]:
        """Per request: did it carry the writer schema?"""
        return ["writer_schema" in r.proto_rows for r in self.requests]


class WriteApiDouble:
    """A gRPC server with BigQueryWrite/AppendRows on 127.0.0.1 (``host``); stop() when done."""

    def __init__(self) -> None:
        from google.cloud.bigquery_storage_v1 import types

        self.types = types
        self.calls: list[AppendCall] = []
        self.refuse: Callable[[str, Any], str | None] = lambda table, request: None
        self._lock = threading.Lock()
        handler = grpc.method_handlers_generic_handler("google.cloud.bigquery.storage.v1.BigQueryWrite", {
            "AppendRows": grpc.stream_stream_rpc_method_handler(
                self._append_rows, request_deserializer=types.AppendRowsRequest.deserialize,
                response_serializer=types.AppendRowsResponse.serialize)})
        # BigQuery takes AppendRows requests of up to 10 MB (gRPC servers default to 4 MB)
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4),
                                  options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)])
        self.server.add_generic_rpc_handlers((handler,))
        self.host = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)

    def calls_to(self, table: str) -> list[AppendCall]:
        return [c for c in self.calls if c.table == table]

    def _append_rows(self, requests, context):
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        call = None
        message_class = None
        for request in requests:
            table = request.write_stream.split("/tables/")[1].split("/")[0]
            if call is None:
                call = AppendCall(table, list(context.invocation_metadata()))
                with self._lock:
                    self.calls.append(call)
            call.requests.append(request)
            if "writer_schema" in request.proto_rows:
                descriptor = request.proto_rows.writer_schema.proto_descriptor
                file = descriptor_pb2.FileDescriptorProto(name=f"double_{id(call)}.proto", syntax="proto2")
                file.message_type.add().CopyFrom(descriptor)
                pool = descriptor_pool.DescriptorPool()
                pool.Add(file)
                message_class = message_factory.GetMessageClass(pool.FindMessageTypeByName(descriptor.name))
            error = self.refuse(table, request)
            if error:
                yield self.types.AppendRowsResponse(error={"code": 3, "message": error},
                                                    write_stream=request.write_stream)
                continue
            for raw in request.proto_rows.rows.serialized_rows:
                message = message_class.FromString(raw)
                call.rows.append({f.name: v for f, v in message.ListFields()})
            yield self.types.AppendRowsResponse(append_result={"offset": None}, write_stream=request.write_stream)
