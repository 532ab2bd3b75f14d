"""Sensor-driven, with the Dagster daemon on the real stack: a Postgres commit reaches the raw table, then the
marts, with no manual step. The tests assert the order of events, never a duration.

The module starts ``dagster-daemon run -w workspace.yaml`` (it spawns the code server, which launches the
run workers) against the session's test stack, with its own Dagster instance (Postgres storage as under
``make dev``, in a fresh database of the test cluster; ``QueuedRunCoordinator`` with
``max_concurrent_runs: 3``, the dev ``dagster.yaml``), its own DuckDB warehouse and its own consumer group.
The test process only seeds Postgres, commits marker rows and reads: the warehouse (read-only, through the
writers' slot) and the instance.

* Without the lander: ``raw_cdc_lag_sensor`` sees lag with stalled offsets and requests a run of
  ``raw_cdc``; that run lands the marker in ``raw_cdc.users``; then ``dbt_automation_sensor`` launches a
  ``dbt build`` that puts it in ``marts.dim_users``.
* With the lander (``corisync lander``, as ``make dev`` runs it): the lander's runless materialization of
  ``raw_cdc/users`` lands the marker; automation builds the marts after it.

The materialization that landed the marker is the one whose ``offset_ranges`` cover the marker's Kafka
offset (read from ``raw_cdc.users__changelog``); the mart build is the first materialization of
``marts/dim_users`` stored after it (it read the landing: see ``Platform.first_build_after``). That run
executed the dbt step and nothing else (no check rides along), and Dagster's freshness daemon then holds
``marts/dim_users`` as fresh under the marts' freshness policy. Failures
quote the runs and the tail of the daemon's log (``artifacts/e2e/dagster-daemon.log``, git-ignored).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, EventLogRecord
from dagster._core.definitions.freshness import FreshnessState

from corisync_assets.cdc.sensors import ACTIVE_STATUSES
from corisync_assets.environment import Settings
from corisync_assets.local import postgres
from corisync_assets.local.demo import run_demo
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
from tests.support.pipeline import pg_connect
from tests.support.processes import stop_process_group

pytestmark = [pytest.mark.stack, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "e2e"
RAW_USERS = AssetKey(["raw_cdc", "users"])
DIM_USERS = AssetKey(["marts", "dim_users"])
LAG_SENSOR = "raw_cdc_lag_sensor"
AUTOMATION_SENSOR = "dbt_automation_sensor"
SENSOR_TAG = "dagster/sensor_name"
AUTOMATION_TAG = "dagster/from_automation_condition"
SCHEDULE_TAG = "dagster/schedule_name"
#: bounds on waiting, generous for a loaded 2-core machine; the tests never assert a duration
DAEMON_START_S = float(os.environ.get("CORISYNC_E2E_DAEMON_START_S", "240"))
STEP_TIMEOUT_S = float(os.environ.get("CORISYNC_E2E_STEP_TIMEOUT_S", "420"))
DAEMONS = {"SENSOR", "ASSET", "QUEUED_RUN_COORDINATOR", "FRESHNESS_DAEMON"}


@dataclass
class Platform:
    settings: Settings
    env: dict[str, str]
    instance: DagsterInstance
    warehouse: DuckDBWarehouse
    daemon: subprocess.Popen
    log: Path

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "<no daemon log>"

    def runs_summary(self) -> str:
        lines = []
        for rec in reversed(self.instance.get_run_records(limit=40)):
            run = rec.dagster_run
            tags = {k: v for k, v in run.tags.items() if k in (SENSOR_TAG, AUTOMATION_TAG, SCHEDULE_TAG)}
            lines.append(f"  {run.run_id[:8]} {run.job_name} {run.status.value} created "
                         f"{rec.create_timestamp:%H:%M:%S} tags={tags} assets="
                         f"{sorted(k.to_user_string() for k in run.asset_selection or [])[:4]}...")
        return "\n".join(lines) or "  <no runs>"

    def explain(self, message: str) -> str:
        return f"{message}\nruns (oldest first):\n{self.runs_summary()}\ndaemon log tail:\n{self.log_tail()}"

    def wait_for(self, what: str, check: Callable[[], object], timeout: float = STEP_TIMEOUT_S) -> object:
        """Poll ``check`` until it returns something truthy; fail with the runs and the daemon log."""
        deadline = time.monotonic() + timeout
        while True:
            if self.daemon.poll() is not None:
                pytest.fail(self.explain(f"dagster-daemon exited with {self.daemon.returncode} while waiting "
                                         f"for {what}"))
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(self.explain(f"no {what} within {timeout:.0f}s"))
            time.sleep(1.0)

    def query(self, sql: str, params: list | None = None) -> list[tuple] | None:
        """Read the warehouse (read-only, in the writers' slot); None while a table it needs is missing."""
        if not Path(self.warehouse.path).exists():
            return None
        import duckdb

        with self.warehouse.exclusive(), self.warehouse.connect(read_only=True) as con:
            try:
                return con.execute(sql, params or []).fetchall()
            except duckdb.CatalogException:
                return None

    def marker_offset(self, user_id: int) -> tuple[int, int] | None:
        """(partition, offset) of the marker's insert in raw_cdc.users__changelog, once it has landed."""
        rows = self.query("SELECT kafka_partition, kafka_offset FROM raw_cdc.users__changelog "
                          "WHERE op = 'c' AND CAST(json_extract(after, '$.user_id') AS BIGINT) = ?", [user_id])
        return rows[0] if rows else None

    def in_table(self, table: str, user_id: int) -> bool:
        rows = self.query(f"SELECT count(*) FROM {table} WHERE user_id = ?", [user_id])
        return bool(rows and rows[0][0])

    def materializations(self, key: AssetKey) -> list[EventLogRecord]:
        return list(self.instance.fetch_materializations(key, limit=1000, ascending=True).records)

    def landing_of(self, partition: int, offset: int) -> EventLogRecord | None:
        """The raw_cdc/users materialization whose offset ranges cover the marker's event."""
        for record in self.materializations(RAW_USERS):
            mat = record.asset_materialization
            ranges = mat.metadata.get("offset_ranges") if mat else None
            span = (ranges.value if ranges is not None else {}).get(str(partition))
            if span and span["first"] <= offset <= span["last"] and mat.metadata["events_landed"].value:
                return record
        return None

    def first_build_after(self, key: AssetKey, after: EventLogRecord) -> EventLogRecord | None:
        """The first materialization of ``key`` stored after ``after``. Every writer holds the warehouse's
        writer slot and a dbt build records its materializations before releasing it, so a build recorded
        after a landing was recorded read that landing."""
        return next((r for r in self.materializations(key) if r.storage_id > after.storage_id), None)

    def raw_runs_active(self) -> bool:
        return any(rec.dagster_run.asset_selection and RAW_USERS in rec.dagster_run.asset_selection
                   for rec in self.instance.get_run_records(limit=50)
                   if rec.dagster_run.status in ACTIVE_STATUSES)

    def commit_marker(self) -> int:
        """A new user (unique email) in Postgres, autocommit; returns its user_id once COMMIT has returned."""
        tag = uuid.uuid4().hex[:10]
        with pg_connect(self.settings) as pg:
            return pg.execute("INSERT INTO users (email, full_name, country_code, role) VALUES "
                              "(%s, 'sensor-driven marker', 'PT', 'learner') RETURNING user_id",
                              (f"{tag}@sensor.example",)).fetchone()[0]


def _away_from_the_hourly_schedule(platform: Platform, margin_s: float = 180.0) -> None:
    """Where the code location has the ``raw_cdc_hourly`` schedule (a raw run at minute 0), a marker committed
    shortly before it would be landed by that run instead of one the lag sensor requested: commit clear of it."""
    from corisync_assets.cdc import sensors

    if not hasattr(sensors, "raw_cdc_hourly_schedule"):
        return
    now = datetime.now(UTC)
    to_the_hour = 3600 - (now.minute * 60 + now.second)
    if to_the_hour > margin_s:
        return
    time.sleep(to_the_hour + 5)
    platform.wait_for("end of the hourly raw run", lambda: not platform.raw_runs_active())


@pytest.fixture(scope="module")
def platform(stack: Settings, tmp_path_factory) -> Iterator[Platform]:
    """The daemon on the test stack, with a fresh instance (own database), warehouse and consumer group."""
    from corisync_assets.dbt.project import dbt_project_for

    run_demo(rate=0, duration=0, s=stack, out=lambda _line: None)  # seed when empty: every table has rows
    tmp = tmp_path_factory.mktemp("sensor-driven")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(postgres.DAGSTER_YAML)  # what `corisync stack up` writes for dev
    db = f"dagster_e2e_{uuid.uuid4().hex[:8]}"
    postgres.psql(stack, f'CREATE DATABASE "{db}" OWNER "{postgres.DAGSTER_USER}";')
    settings = stack.model_copy(update={"duckdb_path": tmp / "warehouse.duckdb",
                                        "consumer_group": f"sensor-driven-{uuid.uuid4().hex[:8]}"})
    env = {**os.environ, **postgres.dagster_env(stack), "DAGSTER_HOME": str(home), "DAGSTER_PG_DB": db,
           "CORISYNC_DUCKDB_PATH": str(settings.duckdb_path), "CORISYNC_CONSUMER_GROUP": settings.consumer_group,
           # offsets still for 10 s, not make dev's 60 s, count as stalled: the same decision, sooner
           "CORISYNC_LAG_STALL_S": "10",
           # the freshness daemon evaluates every 30 s by default; sooner here, the same evaluation
           "FRESHNESS_DAEMON_INTERVAL_SECONDS": "2"}
    env.pop("DAGSTER_IS_DEV_CLI", None)
    dbt_project_for(settings)  # the manifest the code server will load is current (no parse race with it)

    saved = {k: os.environ.get(k) for k in env if k.startswith("DAGSTER_")}
    os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_")})  # the yaml reads them
    instance = DagsterInstance.from_config(str(home))  # creates the schema before the daemon connects
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "dagster-daemon.log"
    daemon_bin = Path(sys.executable).parent / "dagster-daemon"
    with log.open("wb") as out:
        daemon = subprocess.Popen([str(daemon_bin), "run", "-w", "workspace.yaml"], cwd=REPO, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    p = Platform(settings, env, instance, DuckDBWarehouse(path=str(settings.duckdb_path)), daemon, log)
    try:
        p.wait_for("heartbeat of the sensor, automation and run-queue daemons",
                   lambda: set(instance.get_daemon_heartbeats()) >= DAEMONS, timeout=DAEMON_START_S)
        yield p
    finally:
        stop_process_group(daemon, term_wait_s=30)
        instance.dispose()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        with contextlib.suppress(Exception):  # the stack goes down with the session anyway
            postgres.psql(stack, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE);')


def _assert_automation_built_after(p: Platform, landing: EventLogRecord, user_id: int) -> EventLogRecord:
    """Automation (no manual step) built marts/dim_users after ``landing``, and the marker is in it."""
    p.wait_for(f"marker user {user_id} in marts.dim_users", lambda: p.in_table("marts.dim_users", user_id))
    build = p.wait_for("materialization of marts/dim_users after the landing",
                       lambda: p.first_build_after(DIM_USERS, landing))
    assert build.storage_id > landing.storage_id and build.timestamp >= landing.timestamp
    run = p.instance.get_run_by_id(build.run_id)
    assert run is not None
    assert run.tags.get(SENSOR_TAG) == AUTOMATION_SENSOR and run.tags.get(AUTOMATION_TAG) == "true", \
        p.explain(f"marts/dim_users was built by run {run.run_id} with tags {dict(run.tags)}, not by automation")
    p.wait_for(f"end of the dbt run {run.run_id}", lambda: p.instance.get_run_by_id(run.run_id).is_finished)
    status = p.instance.get_run_by_id(run.run_id).status
    assert status == DagsterRunStatus.SUCCESS, p.explain(f"the dbt run {run.run_id} ended {status.value}")
    from corisync_assets.dbt import corisync_dbt_assets

    steps = {r.event_log_entry.step_key
             for r in p.instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_START).records}
    assert steps == {corisync_dbt_assets.op.name}, p.explain(f"the automation run {run.run_id} ran steps {steps}")
    p.wait_for("marts/dim_users fresh by its freshness policy", lambda: _freshness(p, DIM_USERS) == FreshnessState.PASS)
    return build


def _freshness(p: Platform, key: AssetKey) -> FreshnessState | None:
    record = p.instance.get_freshness_state_records([key]).get(key)
    return record.freshness_state if record else None


def test_a_commit_reaches_raw_through_the_lag_sensor_then_the_marts_through_automation(platform):
    p = platform
    # committed while the daemon runs, as under `make dev` without a lander; the sensor's first run may land
    # it together with the seed data (the catch-up): what matters is which run landed it, then what built
    _away_from_the_hourly_schedule(p)
    user_id = p.commit_marker()

    position = p.wait_for(f"marker user {user_id} in raw_cdc.users__changelog", lambda: p.marker_offset(user_id))
    assert p.in_table("raw_cdc.users", user_id), "the marker is in the changelog but not in the current state"
    landing = p.wait_for(f"materialization of raw_cdc/users covering Kafka offset {position}",
                         lambda: p.landing_of(*position))
    assert landing.run_id, p.explain("the marker was landed without a run, but no lander is running")
    raw_run = p.instance.get_run_by_id(landing.run_id)
    assert raw_run.tags.get(SENSOR_TAG) == LAG_SENSOR, p.explain(
        f"the run {raw_run.run_id} that landed the marker was not launched by {LAG_SENSOR}: {dict(raw_run.tags)}")
    assert set(raw_run.asset_selection or ()) >= {RAW_USERS}, "the sensor's run does not select raw_cdc/users"
    p.wait_for(f"end of the raw run {raw_run.run_id}", lambda: p.instance.get_run_by_id(raw_run.run_id).is_finished)
    assert p.instance.get_run_by_id(raw_run.run_id).status == DagsterRunStatus.SUCCESS, \
        p.explain(f"the raw run {raw_run.run_id} did not succeed")

    _assert_automation_built_after(p, landing, user_id)


@pytest.fixture
def lander(platform: Platform) -> Iterator[subprocess.Popen]:
    """``corisync lander`` with the daemon's environment (same instance, warehouse and consumer group)."""
    log = ARTIFACTS / "lander.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "corisync_assets.local.cli", "lander"], cwd=REPO,
                                env=platform.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop_process_group(proc, term_wait_s=30)


def test_with_the_lander_a_runless_landing_then_automation_builds_the_marts(platform, lander):
    p = platform
    user_id = p.commit_marker()
    position = p.wait_for(f"marker user {user_id} in raw_cdc.users__changelog", lambda: p.marker_offset(user_id))
    assert lander.poll() is None, f"the lander exited:\n{(ARTIFACTS / 'lander.log').read_text()[-4000:]}"
    landing = p.wait_for(f"materialization of raw_cdc/users covering Kafka offset {position}",
                         lambda: p.landing_of(*position))
    assert not landing.run_id, p.explain(f"the marker was landed by run {landing.run_id}, not by the lander")
    _assert_automation_built_after(p, landing, user_id)
