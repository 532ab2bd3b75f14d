"""A warm dbt: ``corisync dbt-worker`` keeps dbt-core imported and the project's manifest parsed, and forks a
process per dbt command; ``corisync-dbt`` (the dbt resource's executable) hands its command to it.

Why: a ``dbt build`` process spends seconds before its first query (imports ~3.5 s, reading the partial-parse
state and writing a manifest ~2-3 s here, more on two busy cores), and automation starts one per landing. A
child forked from the worker starts with all of that done: measured on the dbt tests' warehouse (164 nodes,
2026-11-28), 8.2-9.2 s for the whole command against 13-19 s for the dbt CLI, the build itself unchanged.

How a command runs:

* ``corisync-dbt ARGS`` (``main``) connects to the socket named by ``CORISYNC_DBT_WORKER_SOCKET`` (the dbt
  resource sets it to ``<CORISYNC_HOME>/dbt-worker.sock``) and sends its arguments, environment and working
  directory, with its own stdout and stderr as file descriptors (SCM_RIGHTS). When nothing answers there it
  *becomes* the dbt CLI (``exec``), so without a worker everything runs as before.
* The worker (``serve``) forks; the child takes the command's environment, directory, stdout and stderr,
  runs it through ``dbtRunner`` (dbt's programmatic entry point, the same click command as the CLI), sends its
  exit code (dbt's: 0 success, 1 failure, 2 error) and exits. dagster-dbt reads the child's JSON log lines
  from the pipe it gave ``corisync-dbt``, as it would read dbt's own. The child is dbt's process for
  everything else too: it takes the warehouse's writer slot at its first connection and releases it when it
  exits (``resources/warehouse/duckdb_writer_slot.py``).
* ``build``, ``run``, ``test``, ``seed`` and ``snapshot`` get the worker's parsed manifest when it is current
  for the command: parsed from the same project files (path, size, mtime), with the same profile/target
  flags and the same ``CORISYNC_*`` / ``DBT_*`` settings, and every variable the project's ``env_var()``
  read at parse time still has its value. Otherwise the worker parses again first (in a forked child that
  sends the manifest back, so that the worker never runs dbt's static parser itself: ``_Manifests._parse``;
  partial parsing from its own target directory); if that parse fails the child runs the command without a
  manifest, so dbt reports the error as the CLI would. Other commands (``parse``, ``show``, ...) run
  without one.
* Ctrl-C / a run's termination: ``corisync-dbt`` forwards SIGINT and SIGTERM to the child as SIGINT (dbt's
  own cancel), then still waits for its exit code.

``corisync dev`` (and ``bench/freshness.py``) start the worker; the tests start their own
(tests/dbt/test_dbt_worker.py). This module imports only the standard library at import time:
``corisync-dbt`` starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any

SOCKET_ENV = "CORISYNC_DBT_WORKER_SOCKET"
SOCKET_NAME = "dbt-worker.sock"
#: commands that run on a parsed manifest
MANIFEST_COMMANDS = {"build", "run", "test", "seed", "snapshot"}
#: set per invocation by dagster-dbt, not part of what a parse depends on
PER_INVOCATION = {"DBT_TARGET_PATH", "DBT_LOG_PATH", "DBT_LOG_FORMAT", "DBT_INDIRECT_SELECTION"}
#: flags whose value changes what a parse produces
PARSE_FLAGS = ("--target", "-t", "--profile", "--project-dir", "--profiles-dir", "--vars")
_HEADER = struct.Struct("!I")
_CODE = struct.Struct("!i")


def socket_path(home: Path) -> Path:
    return home / SOCKET_NAME


# ---------------------------------------------------------------------------------------------- the client


def main() -> None:
    """``corisync-dbt``: the command through the worker, or the dbt CLI itself when no worker answers."""
    path = os.environ.get(SOCKET_ENV)
    conn = None
    if path:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(path)
        except OSError:
            conn.close()
            conn = None
    if conn is None:
        # dbt_manifest.dbt_executable's rule, not imported: that module loads the settings (pydantic), and
        # this process must start in milliseconds; corisync-dbt always sits beside the venv's dbt
        dbt = os.fspath(Path(sys.executable).parent / "dbt")
        os.execv(dbt, [dbt, *sys.argv[1:]])
    sys.exit(_through_worker(conn, sys.argv[1:]))


def _through_worker(conn: socket.socket, argv: list[str]) -> int:
    payload = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
    sys.stdout.flush()
    sys.stderr.flush()
    socket.send_fds(conn, [_HEADER.pack(len(payload))], [1, 2])
    conn.sendall(payload)
    pid = _recv_int(conn)
    if pid is None:
        print("corisync-dbt: the dbt worker closed the connection before starting the command", file=sys.stderr)
        return 2

    def cancel(_signum, _frame):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)

    signal.signal(signal.SIGINT, cancel)
    signal.signal(signal.SIGTERM, cancel)
    code = _recv_int(conn)
    if code is None:
        print(f"corisync-dbt: the dbt process of the worker (pid {pid}) ended without an exit code",
              file=sys.stderr)
        return 2
    return code


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        try:
            chunk = conn.recv(n - len(data))
        except InterruptedError:
            continue
        if not chunk:
            return None
        data += chunk
    return data


def _recv_int(conn: socket.socket) -> int | None:
    data = _recv_exact(conn, _CODE.size)
    return None if data is None else _CODE.unpack(data)[0]


# ---------------------------------------------------------------------------------------------- the worker


def serve(path: Path, *, out=print) -> int:
    """Accept commands on the Unix socket ``path`` until SIGTERM/SIGINT; one forked child per command."""
    from dbt.cli.main import dbtRunner  # noqa: F401  (imported once here: every child starts with it)

    path = Path(path)
    if len(os.fsencode(path)) > 100:
        raise ValueError(f"dbt worker: socket path too long for a Unix socket ({len(os.fsencode(path))} bytes): "
                         f"{path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(os.fspath(path))
    server.listen(16)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    manifests = _Manifests(path.parent / "dbt-worker")
    out(f"dbt worker: listening on {path}", flush=True)
    try:
        while True:
            conn, _ = server.accept()
            try:
                _serve_one(conn, manifests, out)
            except Exception as exc:  # a broken request must not stop the worker
                out(f"dbt worker: request failed: {type(exc).__name__}: {exc}", flush=True)
            finally:
                conn.close()
    except KeyboardInterrupt:
        return 0
    finally:
        server.close()
        path.unlink(missing_ok=True)


def _serve_one(conn: socket.socket, manifests: _Manifests, out) -> None:
    header, fds, _flags, _addr = socket.recv_fds(conn, _HEADER.size, 2)
    try:
        if len(header) != _HEADER.size or len(fds) != 2:
            raise ValueError("malformed request (expected a length and stdout/stderr descriptors)")
        payload = _recv_exact(conn, _HEADER.unpack(header)[0])
        if payload is None:
            raise ValueError("the client went away before sending its command")
        request = json.loads(payload)
        argv, env, cwd = list(request["argv"]), dict(request["env"]), request["cwd"]
        manifest = manifests.current(argv, env, cwd, out) if _command(argv) in MANIFEST_COMMANDS else None
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()  # the child's collections skip what it inherits (touching it would copy its pages)
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _run_child(conn, fds, argv, env, cwd, manifest)
        out(f"dbt worker: {_command(argv)} in pid {pid}" + (" (parsed manifest)" if manifest else ""), flush=True)
    finally:
        for fd in fds:
            os.close(fd)


def _run_child(conn: socket.socket, fds: list[int], argv: list[str], env: dict, cwd: str, manifest: Any) -> None:
    code = 2
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        conn.sendall(_CODE.pack(os.getpid()))
        from dbt.cli.main import dbtRunner

        result = dbtRunner(manifest=manifest).invoke(argv)
        code = 0 if result.success else (2 if result.exception is not None else 1)
        _close_duckdb()
    except BaseException as exc:  # reported on the command's stderr, exit code 2
        print(f"corisync-dbt: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            conn.sendall(_CODE.pack(code))
        finally:
            os._exit(code)


def _close_duckdb() -> None:
    """Close dbt-duckdb's kept-open connection (a checkpoint, as at the CLI's exit) before ``os._exit``."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:
        return
    env = DuckDBConnectionManager._ENV
    if env is not None:
        DuckDBConnectionManager.close_all_connections()
        env.close()


def _command(argv: list[str]) -> str | None:
    """dbt's subcommand: the first argument that is not a global flag (or its value)."""
    with_value = {"--log-format", "--log-level", "--log-level-file", "--log-path", "--target-path", "--profiles-dir",
                  "--project-dir", "--printer-width", "--log-format-file", "--record-timing-info", "-r"}
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in with_value:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


class _Manifests:
    """The worker's parsed manifest, and when a command may use it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.key: str | None = None
        self.manifest: Any = None

    def current(self, argv: list[str], env: dict, cwd: str, out) -> Any:
        from corisync_assets.dbt_manifest import source_files

        project = Path(_flag(argv, "--project-dir") or env.get("DBT_PROJECT_DIR") or cwd)
        if not project.is_absolute():
            project = Path(cwd) / project
        flags = [(f, _flag(argv, f)) for f in PARSE_FLAGS]
        settings = {k: v for k, v in env.items() if k.startswith(("CORISYNC_", "DBT_")) and k not in PER_INVOCATION}
        key = json.dumps([os.fspath(project), cwd, flags, settings, source_files(project)], sort_keys=True)
        if key != self.key or not self._env_vars_hold(env):
            self.key, self.manifest = None, None
            self.manifest = self._parse(argv, env, cwd, project, out)
            self.key = key if self.manifest is not None else None
        return self.manifest

    def _env_vars_hold(self, env: dict) -> bool:
        used = getattr(self.manifest, "env_vars", None) or {}
        return all(env.get(name) == value for name, value in used.items())

    def _parse(self, argv: list[str], env: dict, cwd: str, project: Path, out) -> Any:
        """``dbt parse`` of the project in a forked child, which sends the manifest back (pickled fields).

        Not in the worker itself: dbt's static parser (``dbt_extractor``, also used for the ``ref()`` of YAML
        tests) runs in Rust on a rayon thread pool that exists only in the process that first used it. A child
        forked from a worker that had parsed in itself waited forever on the pool's missing threads as soon as
        it parsed (a ``parse`` command: the code location's, through corisync_assets/dbt_manifest.py)."""
        import pickle

        target = self.workdir / "target"
        args = ["parse", "--quiet", "--project-dir", os.fspath(project)]
        for flag in PARSE_FLAGS:
            value = _flag(argv, flag)
            if value is not None and flag != "--project-dir":
                args += [flag, value]
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_fd)
            code = 1
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # as in a command's child: dbt may wait on its own
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.environ.clear()
                os.environ.update({k: v for k, v in env.items() if k not in PER_INVOCATION},
                                  DBT_TARGET_PATH=os.fspath(target), DBT_LOG_PATH=os.fspath(self.workdir / "logs"),
                                  DBT_LOG_FORMAT="text")
                os.chdir(cwd)
                from dbt.cli.main import dbtRunner

                result = dbtRunner().invoke(args)
                sent = (True, _manifest_fields(result.result)) if result.success else (False, str(result.exception))
                with os.fdopen(write_fd, "wb") as pipe:
                    pickle.dump(sent, pipe, protocol=pickle.HIGHEST_PROTOCOL)
                code = 0
            except BaseException as exc:
                print(f"dbt worker: parse process: {type(exc).__name__}: {exc}", file=sys.stderr)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            sent = pipe.read()
        try:
            success, result = pickle.loads(sent)
        except Exception:
            success, result = False, "the parse process ended without a result"
        if not success:
            out(f"dbt worker: parse failed ({result}); commands run without a parsed manifest", flush=True)
            return None
        from dbt.contracts.graph.manifest import Manifest

        out(f"dbt worker: parsed {project}", flush=True)
        return Manifest(**result)


def _manifest_fields(manifest: Any) -> dict[str, Any]:
    """A parsed manifest as its constructor's public fields (its lookups and lock are rebuilt by the receiver).
    Not pickled whole: dbt's ``Manifest.__reduce_ex__`` leaves out ``fixtures``, which shifts every lookup
    after it into the wrong field, and its lock (a multiprocessing one) does not pickle."""
    import dataclasses

    return {f.name: getattr(manifest, f.name) for f in dataclasses.fields(manifest) if not f.name.startswith("_")}


def _flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None
