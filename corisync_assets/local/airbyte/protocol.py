"""Reading a connector's ``read`` output (the Airbyte protocol, one JSON message per stdout line) and keeping
its state between syncs.

RECORD lines are the bulk of the output: a record in the CDK's own serialization (``{"type":"RECORD",
"record":{"stream":"<name>",...``) is recognised by its prefix and copied as it is to the stream's spool
file, without parsing; the destination parses the spool in DuckDB. Every other line (and any RECORD written
differently) is parsed: STATE messages are kept (the last per stream, or the last global/legacy state), LOG
messages go to the job log, TRACE errors are the sync's failure message. The state a sync persists is the
previous one updated with what this sync emitted; it is written only after the destination committed, as
Airbyte does, so a failed sync re-reads from the last committed point.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import orjson

_FAST = b'{"type":"RECORD","record":{"stream":"'
_STATS_KEYS = ("sourceStats", "destinationStats")


def _descriptor_key(state: dict[str, Any]) -> tuple[str | None, str]:
    d = (state.get("stream") or {}).get("stream_descriptor") or {}
    return d.get("namespace"), d.get("name", "")


def _clean(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in _STATS_KEYS}


class StateCollector:
    """The state messages of one read (the ``state`` object of each STATE message)."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str | None, str], dict[str, Any]] = {}
        self.global_: dict[str, Any] | None = None
        self.legacy: Any = None
        self.count = 0

    def add(self, state: dict[str, Any]) -> None:
        self.count += 1
        kind = (state.get("type") or "").upper()
        if kind == "STREAM":
            self.streams[_descriptor_key(state)] = _clean(state)
        elif kind == "GLOBAL":
            self.global_ = _clean(state)
        elif "data" in state:  # LEGACY (typed or not)
            self.legacy = state["data"]

    def merged(self, previous: Any) -> Any:
        """The state to persist: ``previous`` (what the read started from) updated with this read's."""
        if self.global_ is not None:
            return [self.global_]
        if self.streams:
            kept: dict[tuple[str | None, str], dict[str, Any]] = {}
            if isinstance(previous, list):
                kept = {_descriptor_key(s): s for s in previous
                        if isinstance(s, dict) and (s.get("type") or "").upper() == "STREAM"}
            kept.update(self.streams)
            return list(kept.values())
        if self.legacy is not None:
            return self.legacy
        return previous


class OutputReader:
    """Feeds on a connector's stdout lines: spools the selected streams' records, keeps states and errors."""

    def __init__(self, spool_dir: Path, streams: Iterable[str], log: IO[bytes]):
        self.spool_dir = spool_dir
        self.selected = {s.encode(): s for s in streams}
        self.log = log
        self.files: dict[bytes, IO[bytes]] = {}
        self.records: dict[str, int] = {s: 0 for s in self.selected.values()}
        self.bytes: dict[str, int] = {s: 0 for s in self.selected.values()}
        self.states = StateCollector()
        self.errors: list[dict[str, Any]] = []
        self.ignored = 0  # records of streams not in the configured catalog

    def spool(self, stream: str) -> Path:
        return self.spool_dir / f"{stream}.jsonl"

    def _write(self, name: bytes, line: bytes) -> None:
        f = self.files.get(name)
        if f is None:
            if name not in self.selected:
                self.ignored += 1
                return
            f = self.files[name] = open(self.spool(self.selected[name]), "wb", buffering=1 << 20)  # noqa: SIM115
        f.write(line if line.endswith(b"\n") else line + b"\n")
        stream = self.selected[name]
        self.records[stream] += 1
        self.bytes[stream] += len(line)

    def feed(self, line: bytes) -> None:
        if line.startswith(_FAST):
            end = line.find(b'"', len(_FAST))
            name = line[len(_FAST):end]
            if end > 0 and b"\\" not in name:
                self._write(name, line)
                return
        stripped = line.strip()
        if not stripped:
            return
        try:
            msg = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            self.log.write(line if line.endswith(b"\n") else line + b"\n")  # not protocol: a stray print
            return
        if not isinstance(msg, dict):
            return
        kind = msg.get("type")
        if kind == "RECORD":
            stream = (msg.get("record") or {}).get("stream")
            if isinstance(stream, str):
                self._write(stream.encode(), stripped)
        elif kind == "STATE" and isinstance(msg.get("state"), dict):
            self.states.add(msg["state"])
        elif kind == "LOG":
            log = msg.get("log") or {}
            self.log.write(f"{log.get('level', 'INFO')} {log.get('message', '')}\n".encode(errors="replace"))
        elif kind == "TRACE":
            trace = msg.get("trace") or {}
            if trace.get("type") == "ERROR":
                self.errors.append(trace.get("error") or {"message": "unknown error"})
                self.log.write(f"ERROR {(trace.get('error') or {}).get('message')}\n".encode(errors="replace"))

    def close(self) -> None:
        for f in self.files.values():
            f.close()

    def spools(self) -> dict[str, Path]:
        """Stream -> spool file, for the streams that had records."""
        return {self.selected[name]: self.spool(self.selected[name]) for name in self.files}


def load_state(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def save_state(path: Path, state: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)
