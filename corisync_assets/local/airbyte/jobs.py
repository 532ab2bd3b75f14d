"""Sync jobs of the local Airbyte stand-in: one background thread per job runs the connector's ``read``.

A job: build the connector config (Google pointed at the stand-in's own double), take the discovered catalog
(cached), the configured catalog and the state persisted by the last successful sync
(``<home>/airbyte/state/<connection>.json``), then run the connector with stdout streamed line by line
(``protocol.OutputReader``: records spooled per stream, states kept, TRACE errors collected) and stderr to
``<home>/airbyte/logs/job-<id>.log``. A TRACE error or a non-zero exit fails the job with that message
(``failureSummary``, as Airbyte reports it); a cancel kills the connector's process tree and writes nothing.
On success every stream is written through the destination in one transaction, THEN the state is persisted,
THEN the job succeeds. If the records carry fields the cached schema lacks (a sheet's header changed), the
catalog is discovered again before writing, so the new columns get their discovered types.

Like Airbyte, one job at a time per connection (``JobConflict``: HTTP 409). Jobs are kept in memory and in
``<home>/airbyte/jobs.json``, so the listing survives a restart; a job that was running when the stand-in
stopped is reported failed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from corisync_assets.airbyte.connections import Connection
from corisync_assets.local.airbyte import destination, protocol
from corisync_assets.local.airbyte.discovery import DiscoverCache, DiscoverError
from corisync_assets.local.airbyte.kit import ConnectorKit, connector_env, write_private_json
from corisync_assets.local.airbyte.workspace import DESTINATION_SCHEMA, SYNC_MODES, connection_id, primary_key

log = logging.getLogger("corisync_assets.local.airbyte.jobs")

RUNNING = ("pending", "running", "incomplete")
MAX_KEPT_JOBS = 500


class JobConflict(Exception):
    """A job of this connection is already running."""


class DestinationError(Exception):
    """Writing the sync's records to the warehouse failed (nothing was committed)."""


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_duration(seconds: float) -> str:
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return "PT" + (f"{h}H" if h else "") + (f"{m}M" if m else "") + (f"{sec}S" if sec or not (h or m) else "")


@dataclass
class Job:
    id: int
    connection: str
    connection_id: str
    status: str = "pending"
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    #: stream -> [records emitted, bytes emitted]
    stream_stats: dict[str, list[int]] = field(default_factory=dict)
    #: stream -> rows in its table after the sync, values nulled by typecasts (succeeded jobs)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    log_path: str = ""
    state_messages: int = 0

    def __post_init__(self) -> None:
        self._cancel = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._reader: protocol.OutputReader | None = None
        self._done = threading.Event()

    # --- derived ---

    @property
    def running(self) -> bool:
        return self.status in RUNNING

    def _stats(self) -> dict[str, list[int]]:
        reader = self._reader
        if reader is not None and self.running:  # live counts while the connector runs
            return {s: [reader.records[s], reader.bytes[s]] for s in reader.records}
        return self.stream_stats

    @property
    def records(self) -> int:
        return sum(r for r, _ in self._stats().values())

    @property
    def bytes(self) -> int:
        return sum(b for _, b in self._stats().values())

    # --- API shapes ---

    def public(self) -> dict[str, Any]:
        """Public API JobResponse (``/api/public/v1/jobs``)."""
        out = {"jobId": self.id, "status": self.status, "jobType": "sync", "connectionId": self.connection_id,
               "startTime": iso(self.created_at), "lastUpdatedAt": iso(self.updated_at),
               "bytesSynced": self.bytes, "rowsSynced": self.records}
        if self.ended_at is not None:
            out["duration"] = iso_duration(self.ended_at - self.created_at)
        return out

    def job_info(self) -> dict[str, Any]:
        """Configuration API JobInfoRead (``POST /api/v1/jobs/get``): the job and its one attempt."""
        committed = self.status == "succeeded"
        stats = self._stats()
        stream_stats = [{"streamName": s, "stats": {
            "recordsEmitted": r, "bytesEmitted": b, "recordsCommitted": r if committed else 0,
            "bytesCommitted": b if committed else 0}} for s, (r, b) in sorted(stats.items())]
        total = {"recordsEmitted": self.records, "bytesEmitted": self.bytes,
                 "recordsCommitted": self.records if committed else 0,
                 "bytesCommitted": self.bytes if committed else 0, "stateMessagesEmitted": self.state_messages}
        attempt: dict[str, Any] = {
            "id": 0, "status": "running" if self.running else ("succeeded" if committed else "failed"),
            "createdAt": int(self.created_at), "updatedAt": int(self.updated_at),
            "recordsSynced": self.records, "bytesSynced": self.bytes,
            "totalStats": total, "streamStats": stream_stats,
        }
        if self.ended_at is not None:
            attempt["endedAt"] = int(self.ended_at)
        if self.failures:
            attempt["failureSummary"] = {"failures": self.failures, "partialSuccess": False}
        return {
            "job": {"id": self.id, "configType": "sync", "configId": self.connection_id, "enabled": True,
                    "createdAt": int(self.created_at), "updatedAt": int(self.updated_at), "status": self.status,
                    "aggregatedStats": total, "streamAggregatedStats": stream_stats},
            "attempts": [{"attempt": attempt, "logs": {"logLines": []}}],
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Job:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})


def failure(origin: str, kind: str, message: str, internal: str | None = None,
            stacktrace: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"failureOrigin": origin, "failureType": kind, "externalMessage": message,
                           "internalMessage": internal or message, "retryable": False,
                           "timestamp": int(time.time() * 1000)}
    if stacktrace:
        out["stacktrace"] = stacktrace
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL a connector process we started and its children."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


class JobManager:
    """Starts, tracks, cancels and persists the sync jobs of the stand-in's connections."""

    def __init__(self, home: Path, connections: Sequence[Connection], kit: Callable[[], ConnectorKit],
                 discover: DiscoverCache, warehouse: Callable[[], Any], google_api_url: Callable[[], str]):
        self.root = home / "airbyte"
        self.connections = {connection_id(c.name): c for c in connections}
        self._kit = kit
        self.discover = discover
        self._warehouse = warehouse
        self._google_api_url = google_api_url
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self.jobs: dict[int, Job] = {}
        self._load()

    # --- persistence ---

    @property
    def jobs_file(self) -> Path:
        return self.root / "jobs.json"

    def state_path(self, conn: Connection) -> Path:
        return self.root / "state" / f"{conn.name}.json"

    def _load(self) -> None:
        try:
            raw = json.loads(self.jobs_file.read_text())
        except (OSError, ValueError):
            return
        for item in raw:
            job = Job.from_json(item)
            if job.running:  # the stand-in stopped while it ran
                job.status = "failed"
                job.ended_at = job.updated_at
                job.failures.append(failure("airbyte_platform", "system_error",
                                            "The Airbyte stand-in stopped while this job was running."))
            job._done.set()
            self.jobs[job.id] = job

    def _save(self) -> None:
        with self._save_lock:
            with self._lock:
                kept = sorted(self.jobs.values(), key=lambda j: j.id)[-MAX_KEPT_JOBS:]
                data = json.dumps([j.to_json() for j in kept])
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.jobs_file.with_suffix(".tmp")
            tmp.write_text(data)
            tmp.replace(self.jobs_file)

    # --- API ---

    def start(self, conn_id: str) -> Job:
        conn = self.connections[conn_id]
        with self._lock:
            busy = [j.id for j in self.jobs.values() if j.connection_id == conn_id and j.running]
            if busy:
                raise JobConflict(f"A sync is already running for connection {conn.name} ({conn_id}): job {busy[0]}")
            job = Job(id=max(self.jobs, default=0) + 1, connection=conn.name, connection_id=conn_id)
            job.log_path = str(self.root / "logs" / f"job-{job.id}.log")
            self.jobs[job.id] = job
        self._save()
        threading.Thread(target=self._run, args=(job, conn), name=f"airbyte-job-{job.id}", daemon=True).start()
        log.info("job %s started for connection %s", job.id, conn.name)
        return job

    def get(self, job_id: int) -> Job | None:
        return self.jobs.get(job_id)

    def list(self, connection_id: str | None = None) -> list[Job]:
        with self._lock:
            jobs = list(self.jobs.values())
        return [j for j in jobs if connection_id is None or j.connection_id == connection_id]

    def cancel(self, job_id: int, wait: float = 10.0) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        if job.running:
            job._cancel.set()
            proc = job._proc
            if proc is not None and proc.poll() is None:
                kill_tree(proc.pid)
            job._done.wait(wait)
        return job

    def wait(self, job_id: int, timeout: float = 60.0) -> Job:
        job = self.jobs[job_id]
        if not job._done.wait(timeout):
            raise TimeoutError(f"job {job_id} still {job.status} after {timeout}s")
        return job

    def shutdown(self) -> None:
        """Cancel what runs (the connectors die with the stand-in, nothing half-written)."""
        for job in list(self.jobs.values()):
            if job.running:
                self.cancel(job.id, wait=5.0)

    # --- the job ---

    def _set(self, job: Job, status: str) -> None:
        job.status = status
        job.updated_at = time.time()
        if status not in RUNNING:
            job.ended_at = job.updated_at
        self._save()

    def _fail(self, job: Job, *failures: dict[str, Any]) -> None:
        job.failures.extend(failures)
        log.warning("job %s (%s) failed: %s", job.id, job.connection, failures[0]["externalMessage"])
        self._set(job, "failed")

    def _run(self, job: Job, conn: Connection) -> None:
        workdir = self.root / "jobs" / str(job.id)
        try:
            self._set(job, "running")
            self._sync(job, conn, workdir)
        except destination.Aborted:
            self._set(job, "cancelled")
        except DiscoverError as exc:
            self._fail(job, failure("source", "config_error", str(exc)))
        except DestinationError as exc:
            self._fail(job, failure("destination", "system_error", str(exc), stacktrace=traceback.format_exc()))
        except Exception as exc:  # the stand-in's own failure: report it like Airbyte's platform would
            self._fail(job, failure("airbyte_platform", "system_error", f"{type(exc).__name__}: {exc}",
                                    stacktrace=traceback.format_exc()))
        finally:
            job._proc = None
            job._reader = None
            shutil.rmtree(workdir, ignore_errors=True)
            if job.running:  # defensive: never leave a job running
                self._fail(job, failure("airbyte_platform", "system_error", "the job ended without a status"))
            job._done.set()
            log.info("job %s (%s) %s: %s records", job.id, job.connection, job.status, job.records)

    def _sync(self, job: Job, conn: Connection, workdir: Path) -> None:
        kit = self._kit()
        google = self._google_api_url()
        config = kit.source_config(conn, google)
        discovered = self.discover.catalog(conn, config, google)
        if any(s.name not in {d["name"] for d in discovered.get("streams", [])} for s in conn.streams):
            discovered = self.discover.catalog(conn, config, google, refresh=True)  # the cache may be stale
        by_name = {s["name"]: s for s in discovered.get("streams", [])}
        missing = [s.name for s in conn.streams if s.name not in by_name]
        if missing:
            found = ", ".join(sorted(by_name)) or "none"
            self._fail(job, failure("source", "config_error",
                                    f"stream(s) {', '.join(missing)} of connection {conn.name} not found in the "
                                    f"source (it has: {found})"))
            return
        catalog = kit.configured_catalog(conn, discovered)
        previous_state = protocol.load_state(self.state_path(conn))
        workdir.mkdir(parents=True, exist_ok=True)
        files = {"config": write_private_json(workdir / "config.json", config),
                 "catalog": write_private_json(workdir / "catalog.json", catalog),
                 "state": write_private_json(workdir / "state.json", previous_state) if previous_state else None}
        argv = kit.command(conn.source_type, "read", **files)
        Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
        if job._cancel.is_set():  # cancelled while it discovered
            raise destination.Aborted("cancelled before the connector started")
        with open(job.log_path, "ab") as job_log:
            reader = protocol.OutputReader(workdir, [s.name for s in conn.streams], job_log)
            job._reader = reader
            try:
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=job_log, stdin=subprocess.DEVNULL,
                                        env=connector_env(google), cwd=workdir, bufsize=1 << 20)
            except OSError as exc:
                raise DiscoverError(f"cannot run the {conn.source_type} connector: {exc}") from None
            job._proc = proc
            started = time.monotonic()
            if job._cancel.is_set():
                kill_tree(proc.pid)
            try:
                for line in proc.stdout:
                    reader.feed(line)
            finally:
                reader.close()
                rc = proc.wait()
        job.stream_stats = {s: [reader.records[s], reader.bytes[s]] for s in reader.records}
        job.state_messages = reader.states.count
        if job._cancel.is_set():
            self._set(job, "cancelled")
            return
        if reader.errors:
            self._fail(job, *[failure("source", e.get("failure_type") or "system_error",
                                      e.get("message") or "unknown error", e.get("internal_message"),
                                      e.get("stack_trace")) for e in reader.errors])
            return
        if rc != 0:
            self._fail(job, failure("source", "system_error", f"Source process exited with non-zero exit code {rc}",
                                    _tail(Path(job.log_path))))
            return
        read_done = time.monotonic()
        self._write(job, conn, config, google, by_name, reader)
        protocol.save_state(self.state_path(conn), reader.states.merged(previous_state))
        log.info("job %s (%s): read %.2fs, write %.2fs", job.id, conn.name, read_done - started,
                 time.monotonic() - read_done)
        self._set(job, "succeeded")

    def _write(self, job: Job, conn: Connection, config: dict, google: str, by_name: dict[str, dict],
               reader: protocol.OutputReader) -> None:
        spools = reader.spools()
        fields = destination.record_fields(spools)
        drifted = any(keys - set((by_name[s].get("json_schema") or {}).get("properties") or {})
                      for s, keys in fields.items())
        if drifted:  # the source's schema changed since it was discovered: type the new columns too
            log.info("job %s: records carry fields the cached catalog lacks; discovering %s again", job.id, conn.name)
            fresh = self.discover.catalog(conn, config, google, refresh=True)
            by_name.update({s["name"]: s for s in fresh.get("streams", [])})
        loads = []
        for stream in conn.streams:
            d = by_name[stream.name]
            dest_mode = SYNC_MODES[stream.sync_mode][1]
            pk = primary_key(stream, d)
            if any(len(p) != 1 for p in pk):
                raise ValueError(f"stream {stream.name}: nested primary keys are not supported by the stand-in")
            loads.append(destination.StreamLoad(
                stream=stream.name, table=conn.table(stream.name), json_schema=d.get("json_schema") or {},
                destination_sync_mode=dest_mode, spool=spools.get(stream.name),
                primary_key=tuple(p[0] for p in pk),
                cursor_field=tuple(stream.cursor_field or d.get("default_cursor_field") or ())))
        try:
            written = destination.write_streams(self._warehouse(), loads, sync_id=job.id,
                                                schema=DESTINATION_SCHEMA, abort=job._cancel.is_set)
        except destination.Aborted:
            raise
        except Exception as exc:
            raise DestinationError(f"{type(exc).__name__}: {exc}") from exc
        job.tables = {s: {"table": w.table, "rows": w.rows, "records_written": w.records, "nulled": w.nulled}
                      for s, w in written.items()}


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])
