"""The dbt manifest: whether it is current, and ``dbt parse`` when it is not. Imports neither Dagster nor dbt.

It lives outside the ``corisync_assets.dbt`` package (whose ``__init__`` imports dagster-dbt and with it dbt-core,
seconds of imports) so that the code location can start a needed parse first thing: ``start_early()``, called
before anything else by ``corisync_assets.definitions`` (through ``corisync_assets.early_dbt_parse``), runs
``dbt parse`` in its own process while the code location imports Dagster, dagster-dbt and the rest on the other
core; ``corisync_assets.dbt.project`` waits for it where the dbt assets need the manifest. A parse that was not
started early runs the same way, then and there.

A manifest is current when the stamp written next to it after a successful parse records the same inputs as now:
the settings dbt's profile reads, the dbt-core version, and for every source file of the dbt project its path,
size and mtime (so an edited, added, deleted or renamed model, macro, test or snapshot makes it stale).
Concurrent loads are serialized by a lock file next to the manifest (the one ``dagster-dbt`` uses); a process
that got the lock after another one parsed finds the manifest current and does not parse again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

from corisync_assets.dbt_worker import SOCKET_ENV, socket_path
from corisync_assets.environment import PROJECT_ROOT, Settings, settings
from corisync_assets.resources.warehouse.writer_slot import build_copy_path

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
#: Where the packaged (prod) copy of the dbt project lives inside the Python package (git-ignored).
PACKAGED_PROJECT_DIR = Path(__file__).resolve().parent / "dbt" / "dbt-project"
STAMP = "corisync_parse_inputs.json"
SOURCE_GLOBS = (
    "dbt_project.yml",
    "profiles.yml",
    "models/**/*",
    "macros/**/*",
    "snapshots/**/*",
    "tests/**/*",
    "seeds/**/*",
    "analyses/**/*",
)
#: How long a load waits for another process's parse of the same manifest (a parse takes seconds).
LOCK_TIMEOUT_S = 600.0
#: How long a parse may take before it is killed and the load fails (a full parse takes 5-10 s here).
PARSE_TIMEOUT_S = 300.0


def dbt_executable() -> str:
    """The dbt next to this interpreter (the venv's, also when the venv is not activated), else PATH's."""
    beside = Path(sys.executable).parent / "dbt"
    return os.fspath(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


def warm_dbt_executable() -> str:
    """``corisync-dbt`` next to this interpreter (a dbt command through the warm dbt worker when one listens,
    else the dbt CLI itself: corisync_assets/dbt_worker.py), or plain dbt where it is not installed."""
    beside = Path(sys.executable).parent / "corisync-dbt"
    return os.fspath(beside) if beside.exists() else dbt_executable()


def profile_env(s: Settings) -> dict[str, str]:
    """The environment dbt's profile (dbt_project/profiles.yml) reads, derived from the settings."""
    env = {
        "CORISYNC_DBT_TARGET": s.effective_dbt_target,
        "CORISYNC_DUCKDB_PATH": str(s.warehouse_path),
        "CORISYNC_BQ_LOCATION": s.bq_location,
        "CORISYNC_BQ_RAW_DATASET": s.bq_raw_dataset,
        "CORISYNC_BQ_STAGING_DATASET": s.bq_staging_dataset,
        "CORISYNC_BQ_MARTS_DATASET": s.bq_marts_dataset,
        "CORISYNC_BQ_AIRBYTE_DATASET": s.bq_airbyte_dataset,
    }
    if s.gcp_project:
        env["CORISYNC_GCP_PROJECT"] = s.gcp_project
    return env


def using_dagster_dev() -> bool:
    """As ``dagster_dbt.dbt_project.using_dagster_dev`` (without importing it)."""
    return bool(os.getenv("DAGSTER_IS_DEV_CLI"))


def target_path(s: Settings) -> Path:
    """The target path, relative to the project directory: one manifest per dbt target."""
    return Path("target") / s.effective_dbt_target


def packaged_manifest(s: Settings) -> Path:
    return PACKAGED_PROJECT_DIR / target_path(s) / "manifest.json"


def uses_packaged_project(s: Settings) -> bool:
    """The packaged project (prod image) is used as is, never parsed; ``dagster dev`` uses the source tree."""
    return packaged_manifest(s).exists() and not using_dagster_dev()


def parse_inputs(project_dir: Path, s: Settings) -> dict[str, Any]:
    env = profile_env(s)
    env.pop("CORISYNC_DUCKDB_PATH")  # not part of the manifest (DuckDB relation names use the file stem)
    env["duckdb_catalog"] = s.warehouse_path.stem
    try:
        dbt_version = metadata.version("dbt-core")
    except metadata.PackageNotFoundError:
        dbt_version = None
    return {"env": env, "dbt-core": dbt_version, "sources": source_files(project_dir)}


def source_files(project_dir: Path) -> dict[str, list[int]]:
    """[mtime_ns, size] of every source file of the dbt project, by relative path: an edited, added, deleted
    or renamed model, macro, test or snapshot changes it."""
    sources = {}
    for pattern in SOURCE_GLOBS:
        for path in project_dir.glob(pattern):
            if path.is_file():
                st = path.stat()
                sources[path.relative_to(project_dir).as_posix()] = [st.st_mtime_ns, st.st_size]
    return dict(sorted(sources.items()))


def is_current(project_dir: Path, target: Path, s: Settings) -> bool:
    """True when ``project_dir/target/manifest.json`` was parsed from these sources with these settings."""
    manifest = project_dir / target / "manifest.json"
    stamp = manifest.parent / STAMP
    if not (manifest.exists() and stamp.exists()):
        return False
    try:
        return json.loads(stamp.read_text()) == parse_inputs(project_dir, s)
    except ValueError:
        return False


class Parse:
    """A ``dbt parse`` running in its own process, holding the manifest's lock until ``wait()``."""

    def __init__(self, project_dir: Path, target: Path, s: Settings, lock: Any) -> None:
        self.manifest = project_dir / target / "manifest.json"
        self._lock = lock
        self._inputs = parse_inputs(project_dir, s)  # before the parse: an edit made meanwhile makes it stale
        self._args = [
            warm_dbt_executable(),
            "parse",
            "--quiet",
            "--target",
            s.effective_dbt_target,
            "--target-path",
            os.fspath(target),
            "--profiles-dir",
            os.fspath(project_dir),
        ]
        # DuckDB's path as the builds see it (they build in a copy of the warehouse, Warehouse.dbt_build): dbt
        # reuses a partial parse only if made with the same profile, and the builds start from this one
        env = {**os.environ, **profile_env(s), "CORISYNC_DUCKDB_PATH": build_copy_path(os.fspath(s.warehouse_path)),
               "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        # through the warm dbt worker when one listens (`make dev`): no dbt imports, ~2 s for an edited project
        # against ~5 s for the dbt CLI's partial parse; corisync-dbt is the dbt CLI itself otherwise
        env[SOCKET_ENV] = os.fspath(socket_path(s.home))
        self._out = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  closed in wait(); not a pipe: nobody reads it meanwhile
        try:
            self._proc = subprocess.Popen(
                self._args, cwd=project_dir, env=env, stdout=self._out, stderr=subprocess.STDOUT, text=True
            )
        except BaseException:
            self._out.close()
            lock.release()
            raise

    def running(self) -> bool:
        return self._proc.poll() is None

    def wait(self, timeout: float | None = None) -> Path:
        """Wait for the parse (at most ``timeout``, default ``PARSE_TIMEOUT_S``); stamp the manifest and release
        the lock. Raises if dbt failed, or kills it and raises if it took longer (a hung parse must not hold a
        definitions load, and the manifest's lock with it, until someone kills the code server)."""
        timeout = PARSE_TIMEOUT_S if timeout is None else timeout
        try:
            try:
                code = self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.terminate()  # corisync-dbt passes it on to the worker's dbt process as SIGINT
                try:
                    self._proc.wait(10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
                raise RuntimeError(f"dbt parse did not finish within {timeout:.0f}s and was stopped "
                                   f"({' '.join(self._args)})") from None
            if code != 0:
                self._out.seek(0)
                raise RuntimeError(f"dbt parse failed ({' '.join(self._args)}):\n{self._out.read()}")
            (self.manifest.parent / STAMP).write_text(json.dumps(self._inputs, sort_keys=True))
            return self.manifest
        finally:
            self._out.close()
            self._lock.release()


def start_parse(project_dir: Path, target: Path, s: Settings, *, force: bool = False) -> Parse | None:
    """Start ``dbt parse`` unless (``force`` aside) the manifest is current once the lock is held."""
    from filelock import FileLock

    manifest = project_dir / target / "manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    # not thread-local: an early parse may be waited for (and its lock released) by another thread
    lock = FileLock(manifest.with_suffix(".concurrent-update-lock"), thread_local=False)
    lock.acquire(timeout=LOCK_TIMEOUT_S)
    try:
        if not force and is_current(project_dir, target, s):  # parsed by another process meanwhile
            lock.release()
            return None
        return Parse(project_dir, target, s, lock)
    except BaseException:
        if lock.is_locked:
            lock.release()
        raise


_running: dict[Path, Parse] = {}
_guard = threading.RLock()


def ensure_current(project_dir: Path, target: Path, s: Settings) -> Path:
    """The manifest, current for these settings: waits for a parse started early, parses if still needed."""
    manifest = project_dir / target / "manifest.json"
    with _guard:
        early = _running.pop(manifest.resolve(), None)
        if early is not None:
            early.wait()
        if not is_current(project_dir, target, s):
            parse = start_parse(project_dir, target, s)
            if parse is not None:
                parse.wait()
    return manifest


def parse_now(project_dir: Path, target: Path, s: Settings) -> Path:
    """``dbt parse`` now, whether or not the manifest is current."""
    manifest = project_dir / target / "manifest.json"
    with _guard:
        early = _running.pop(manifest.resolve(), None)
        if early is not None:
            early.wait()
        parse = start_parse(project_dir, target, s, force=True)
        assert parse is not None
        return parse.wait()


def start_early(s: Settings | None = None, project_dir: Path = DBT_PROJECT_DIR) -> bool:
    """Start the parse the dbt project will need for these settings (default: the process's), if any, and
    return at once: True when a parse was started (``ensure_current`` waits for it)."""
    s = s or settings()
    if project_dir == DBT_PROJECT_DIR and uses_packaged_project(s):
        return False
    target = target_path(s)
    if is_current(project_dir, target, s):
        return False
    manifest = (project_dir / target / "manifest.json").resolve()
    with _guard:
        if manifest in _running:
            return True
        parse = start_parse(project_dir, target, s)
        if parse is not None:
            _running[manifest] = parse
        return parse is not None
