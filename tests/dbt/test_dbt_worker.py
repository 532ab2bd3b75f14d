"""The warm dbt worker (corisync_assets/dbt_worker.py): commands through it behave as the dbt CLI's.

Real dbt, real DuckDB, a real worker process (``corisync dbt-worker``) per test module. Expectations come from
outside the worker: the marts' figures computed in Python from the simulated platform (tests/dbt/expected.py),
the data a model's own SQL selects, and the same command's exit code and output from the dbt CLI. The worker's
log says which process ran each command and whether it had the parsed manifest, so a test cannot pass by
silently falling back to the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from corisync_assets import dbt_worker
from corisync_assets.dbt_manifest import DBT_PROJECT_DIR, dbt_executable, warm_dbt_executable
from corisync_assets.environment import warehouse_resource
from tests.dbt import expected
from tests.dbt.fixture_warehouse import build_warehouse
from tests.support.dbt_build import rows_at, warehouse_settings

pytestmark = pytest.mark.timeout(600)


class Worker:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.socket = dbt_worker.socket_path(home)
        self.log = home / "dbt-worker.log"
        env = {**os.environ, "CORISYNC_HOME": str(home)}
        self._log = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "corisync_assets.local.cli", "dbt-worker"],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while "listening" not in self.text():
            assert self.proc.poll() is None, self.text()
            assert time.monotonic() < deadline, "the dbt worker did not start listening in 60 s"
            time.sleep(0.1)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def served(self) -> list[str]:
        return [line for line in self.text().splitlines() if " in pid " in line]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self._log.close()


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    w = Worker(tmp_path_factory.mktemp("dbt-worker"))
    yield w
    w.stop()
    assert not w.socket.exists(), "the worker leaves no socket behind"


def test_the_dbt_assets_built_through_the_worker_hold_what_the_platform_did(worker: Worker):
    """The Dagster dbt asset with the worker listening: the run's dbt command is served by a forked child with
    the parsed manifest, and the marts it builds from a fresh fixture warehouse (its own: other tests add
    changes to the shared ``built`` one) hold the figures computed in Python from the simulated platform
    (tests/dbt/expected.py)."""
    from corisync_assets.dbt import corisync_dbt_assets, dbt_resource

    s = warehouse_settings(worker.home)
    platform = build_warehouse(s.warehouse_path)
    resource = dbt_resource(s)
    assert resource.dbt_executable == warm_dbt_executable() and resource.dbt_executable.endswith("corisync-dbt")
    before = len(worker.served())
    result = dg.materialize([corisync_dbt_assets], resources={"dbt": resource, "warehouse": warehouse_resource(s)},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    served = worker.served()[before:]
    assert len(served) == 1 and served[0].startswith("dbt worker: build in pid ") and "(parsed manifest)" in served[0]
    want = expected.dim_users(platform)
    got = {r["user_id"]: r for r in rows_at(s.warehouse_path, "select * from marts.dim_users")}
    assert want and set(got) == set(want)
    for uid, w in want.items():
        for col, value in w.items():
            assert got[uid][col] == value, (uid, col)
    funnel = expected.enrollment_funnel(platform)
    rows = rows_at(s.warehouse_path, "select * from marts.mart_enrollment_funnel")
    counts = ("enrolled", "started", "completed", "dropped")
    assert {(r["course_id"], r["enrollment_month"]): tuple(r[c] for c in counts) for r in rows} == {
        k: tuple(w[c] for c in counts) for k, w in funnel.items()}


def _copy_project(dst: Path) -> Path:
    shutil.copytree(DBT_PROJECT_DIR, dst, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    return dst


def _dbt(executable: str, args: list[str], home: Path, cwd: Path, socket: Path | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CORISYNC_HOME": str(home), "CORISYNC_DUCKDB_PATH": str(home / "warehouse.duckdb"),
           "CORISYNC_DBT_TARGET": "local", "DBT_TARGET_PATH": str(home / "target"), "DBT_LOG_PATH": str(home / "logs"),
           dbt_worker.SOCKET_ENV: str(socket or home / "no-worker.sock")}
    return subprocess.run([executable, *args, "--project-dir", str(cwd), "--profiles-dir", str(cwd)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def test_an_edited_model_is_parsed_again_before_it_runs(tmp_path, worker: Worker):
    """The worker's manifest is only used while the project's files are as they were parsed: after a model
    changes, the next command runs the new SQL."""
    project = _copy_project(tmp_path / "project")
    model = project / "models" / "staging" / "stg_example.sql"
    model.write_text("select 1 as answer\n")
    first = _dbt(warm_dbt_executable(), ["run", "--select", "stg_example"], tmp_path, project, worker.socket)
    assert first.returncode == 0, first.stdout + first.stderr
    model.write_text("select 2 as answer, 'edited' as note\n")
    second = _dbt(warm_dbt_executable(), ["run", "--select", "stg_example"], tmp_path, project, worker.socket)
    assert second.returncode == 0, second.stdout + second.stderr
    served = worker.served()[-2:]
    assert all("run in pid" in line and "(parsed manifest)" in line for line in served), served
    assert worker.text().count(f"parsed {project}") == 2
    assert rows_at(tmp_path / "warehouse.duckdb", "SELECT * FROM staging.stg_example") == [
        {"answer": 2, "note": "edited"}]


def test_a_failing_command_exits_as_the_dbt_cli_does(tmp_path, worker: Worker):
    """Same command, same exit code and the same error on the output, through the worker and from dbt."""
    project = _copy_project(tmp_path / "project")
    args = ["show", "--inline", "select no_such_column from (select 1 as x)"]
    cli = _dbt(dbt_executable(), args, tmp_path, project, None)
    warm = _dbt(warm_dbt_executable(), args, tmp_path, project, worker.socket)
    assert cli.returncode != 0
    assert warm.returncode == cli.returncode
    assert "no_such_column" in warm.stdout + warm.stderr
    assert worker.served()[-1].startswith("dbt worker: show in pid ")


def test_without_a_worker_corisync_dbt_is_the_dbt_cli(tmp_path):
    """No worker at the socket: ``corisync-dbt`` becomes dbt itself (exec): same exit code, same result."""
    project = _copy_project(tmp_path / "project")
    args = ["show", "--inline", "select 6 * 7 as answer", "--output", "json"]
    cli = _dbt(dbt_executable(), args, tmp_path, project, None)
    warm = _dbt(warm_dbt_executable(), args, tmp_path, project, None)
    assert cli.returncode == warm.returncode == 0, warm.stdout + warm.stderr
    assert '"answer": 42' in cli.stdout and '"answer": 42' in warm.stdout
    assert "dbt worker" not in warm.stdout + warm.stderr


@pytest.mark.timeout(240)  # the hang it guards against would otherwise last the module's 600 s
def test_the_code_locations_parse_goes_through_a_listening_worker(tmp_path, worker: Worker):
    """A stale manifest at definitions load (corisync_assets/dbt_manifest.py) is parsed by the worker listening in
    the settings' home, and an edit made after it reaches the manifest; with no worker there, by the dbt CLI. The
    manifest's SQL is compared with what the test wrote, the serving process with the worker's log. The worker has
    parsed in itself before (a forked child whose parent ran dbt's static parser waited forever: its thread pool)."""
    from corisync_assets.dbt_manifest import ensure_current, is_current
    from corisync_assets.environment import Settings

    project = _copy_project(tmp_path / "project")
    model = project / "models" / "staging" / "stg_example.sql"
    target = Path("target") / "local"
    with_worker = Settings(home=worker.home, duckdb_path=tmp_path / "warehouse.duckdb")
    without = Settings(home=tmp_path / "no-worker-home", duckdb_path=tmp_path / "warehouse.duckdb")

    def compiled_sql() -> str:
        nodes = json.loads((project / target / "manifest.json").read_text())["nodes"]
        return nodes["model.corisync.stg_example"]["raw_code"].strip()

    # the worker parses in itself first (a run's manifest), as under `make dev`: its children must still parse
    model.write_text("select -1 as answer\n")
    run = _dbt(warm_dbt_executable(), ["run", "--select", "stg_example"], tmp_path, project, worker.socket)
    assert run.returncode == 0 and worker.text().count(f"parsed {project}") == 1, run.stdout + run.stderr
    for n, (s, through_worker) in enumerate([(with_worker, True), (without, False), (with_worker, True)]):
        model.write_text(f"select {n} as answer\n")
        os.utime(model, ns=(time.time_ns() + n * 10**9,) * 2)  # a later mtime even within the clock's resolution
        before = len(worker.served())
        assert not is_current(project, target, s)
        ensure_current(project, target, s)
        assert is_current(project, target, s) and compiled_sql() == f"select {n} as answer"
        served = worker.served()[before:]
        if through_worker:
            assert len(served) == 1 and served[0].startswith("dbt worker: parse in pid "), served
        else:
            assert served == [], served
