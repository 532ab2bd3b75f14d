"""The Airbyte assets against a double of Airbyte's API (``api_double.py``; no Airbyte server can run here):
the keys come out of the workspace as ``airbyte/<connection>/<stream>``, a sync runs sync-and-poll to the end and
reports records per stream and the rows the warehouse holds, a failed job fails the asset with Airbyte's error, a
cancelled one fails too, and the code location loads from the repo's snapshot when Airbyte is unreachable."""

from __future__ import annotations

import warnings
from pathlib import Path

import duckdb
import pytest
import responses
from dagster import AssetKey, DagsterInstance, Failure, materialize

from corisync_assets.airbyte import assets as airbyte_assets_module
from corisync_assets.airbyte.assets import build_airbyte_assets
from corisync_assets.airbyte.connections import CONNECTIONS, Connection
from corisync_assets.airbyte.workspace import AirbyteUnreachableWarning, airbyte_workspace
from corisync_assets.environment import ConfigError, load_settings
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
from tests.airbyte.api_double import BASE, AirbyteApiDouble, Script

WORKSPACE = "0c5d3a5e-1111-4222-8333-444455556666"
SECRET = "s3cr3t-client-secret"

EXPECTED_KEYS = {
    AssetKey(["airbyte", "training_sheets", "trainings"]),
    AssetKey(["airbyte", "training_sheets", "attendance_spring"]),
    AssetKey(["airbyte", "training_sheets", "attendance_autumn"]),
    AssetKey(["airbyte", "ga4_web", "course_pages"]),
}


@pytest.fixture
def env(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CORISYNC_AIRBYTE_CLIENT_ID", "dagster")
    monkeypatch.setenv("CORISYNC_AIRBYTE_CLIENT_SECRET", SECRET)
    s = load_settings({"CORISYNC_HOME": str(tmp_path), "CORISYNC_AIRBYTE_URL": BASE,
                       "CORISYNC_AIRBYTE_WORKSPACE_ID": WORKSPACE, "CORISYNC_AIRBYTE_CLIENT_ID": "dagster",
                       "CORISYNC_AIRBYTE_CLIENT_SECRET": SECRET})
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))

    def destination_writes(conn: Connection, rows: dict[str, int]) -> None:
        with duckdb.connect(warehouse.path) as con:
            con.execute("CREATE SCHEMA IF NOT EXISTS raw_airbyte")
            for stream, n in rows.items():
                con.execute(f"CREATE OR REPLACE TABLE raw_airbyte.{conn.table(stream)} AS "
                            f"SELECT range AS i FROM range({n})")

    double = AirbyteApiDouble(WORKSPACE, "dagster", SECRET, destination_writes)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        double.register(rsps)
        yield s, double, warehouse


def _assets(s):
    workspace = airbyte_workspace(s).model_copy(update={"poll_interval": 0.01})
    return workspace, build_airbyte_assets(workspace, "raw_airbyte")


def _sheets(assets):
    return next(a for a in assets if a.op.name == "airbyte_training_sheets")


def test_keys_come_from_the_workspace(env, monkeypatch) -> None:
    s, double, _ = env

    def no_instance(*_args, **_kwargs):
        raise AssertionError("definitions load built an ephemeral DagsterInstance for the Airbyte workspace")

    # the workspace is initialized (its EnvVar credentials resolved) without one: building it costs ~0.8 s a load
    monkeypatch.setattr(DagsterInstance, "ephemeral", no_instance)
    _, assets = _assets(s)
    assert {k for a in assets for k in a.keys} == EXPECTED_KEYS
    assert "POST /api/v1/connections/get" in double.calls  # really read from the API, not the snapshot
    assert "POST /api/public/v1/applications/token" in double.calls  # with the credentials the EnvVars name
    spec = next(spec for a in assets for spec in a.specs if spec.key.path[-1] == "course_pages")
    assert spec.group_name == "airbyte"


def test_sync_and_poll_to_completion_reports_records_per_stream(env) -> None:
    s, double, warehouse = env
    workspace, assets = _assets(s)
    rows = {"trainings": 7, "attendance_spring": 31, "attendance_autumn": 12}
    double.scripts["training_sheets"] = Script(["pending", "running", "running", "succeeded"], rows=rows)
    result = materialize([_sheets(assets)], resources={"airbyte": workspace, "warehouse": warehouse})
    assert result.success
    got = {m.asset_key.path[-1]: m.metadata for m in result.get_asset_materialization_events()
           for m in [m.event_specific_data.materialization]}
    assert {k: v["records_synced"].value for k, v in got.items()} == rows
    assert {k: v["dagster/row_count"].value for k, v in got.items()} == rows
    assert double.calls.count("POST /api/public/v1/jobs") == 1
    assert sum(c.startswith("GET /api/public/v1/jobs/") for c in double.calls) == 4  # polled to the end


def test_a_failed_job_fails_the_asset_with_airbytes_error(env) -> None:
    s, double, warehouse = env
    workspace, assets = _assets(s)
    error = "Sheet 'attendance_autumn' has no header row: the stream's columns can't be read"
    double.scripts["training_sheets"] = Script(["running", "failed"], failure=error)
    with pytest.raises(Failure) as info:
        materialize([_sheets(assets)], resources={"airbyte": workspace, "warehouse": warehouse})
    assert error in info.value.description
    assert "training_sheets" in info.value.description


def test_a_cancelled_job_fails_the_asset(env) -> None:
    s, double, warehouse = env
    workspace, assets = _assets(s)
    double.scripts["training_sheets"] = Script(["running", "cancelled"])
    with pytest.raises(Failure, match="cancelled"):
        materialize([_sheets(assets)], resources={"airbyte": workspace, "warehouse": warehouse})


def test_success_without_the_tables_is_not_green(env) -> None:
    s, double, warehouse = env
    workspace, assets = _assets(s)
    double.scripts["training_sheets"] = Script(["succeeded"], rows={})  # Airbyte says yes, nothing landed
    with pytest.raises(Failure, match=r"the warehouse has no raw_airbyte\.sheets_trainings"):
        materialize([_sheets(assets)], resources={"airbyte": workspace, "warehouse": warehouse})


def test_unreachable_airbyte_loads_the_repos_snapshot_with_a_warning(env) -> None:
    s, double, _ = env
    double.reachable = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, assets = _assets(s)
    assert {k for a in assets for k in a.keys} == EXPECTED_KEYS
    message = next(str(w.message) for w in caught if issubclass(w.category, AirbyteUnreachableWarning))
    assert BASE in message and "workspace_snapshot.json" in message
    assert SECRET not in message


def test_a_cached_workspace_wins_over_the_snapshot(env) -> None:
    s, double, _ = env
    _assets(s)  # a live fetch writes the cache
    double.reachable = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, assets = _assets(s)
    message = next(str(w.message) for w in caught if issubclass(w.category, AirbyteUnreachableWarning))
    assert f"workspace-{WORKSPACE}.json" in message
    ids = {a.op.name: next(iter(a.specs)).metadata["dagster-airbyte/connection_id"] for a in assets}
    from tests.airbyte.api_double import connection_id

    assert ids == {f"airbyte_{c.name}": connection_id(c) for c in CONNECTIONS}


def test_half_a_credential_is_one_clear_error(tmp_path: Path) -> None:
    s = load_settings({"CORISYNC_HOME": str(tmp_path), "CORISYNC_AIRBYTE_CLIENT_ID": "dagster"})
    with pytest.raises(ConfigError, match="CORISYNC_AIRBYTE_CLIENT_SECRET is not set"):
        airbyte_workspace(s)


def test_stream_stats_and_failures_are_read_from_the_config_api_shape() -> None:
    report = {"attempts": [{"attempt": {"failureSummary": {"failures": [{"externalMessage": "first try"}]}}},
                           {"attempt": {"streamStats": [{"streamName": "a", "stats": {"recordsEmitted": 3}}],
                                        "failureSummary": {"failures": [{"failureOrigin": "destination",
                                                                         "externalMessage": "disk full"}]}}}]}
    assert airbyte_assets_module.stream_records(report) == {"a": 3}
    assert airbyte_assets_module.failure_message(report) == "disk full (origin: destination)"


def test_schedules_sync_the_sheet_hourly_and_ga4_daily() -> None:
    from dagster import AssetSpec, Definitions

    from corisync_assets.airbyte.assets import airbyte_schedules

    by_name = {s.name: s for s in airbyte_schedules()}
    sheets, ga4 = by_name["airbyte_training_sheets_schedule"], by_name["airbyte_ga4_web_schedule"]
    assert sheets.cron_schedule == "0 * * * *"  # every hour
    minute, hour, *rest = ga4.cron_schedule.split()
    assert minute.isdigit() and hour.isdigit() and rest == ["*", "*", "*"]  # once a day
    assert {s.default_status.value for s in by_name.values()} == {"RUNNING"}
    graph = Definitions(assets=[AssetSpec(k) for k in EXPECTED_KEYS]).resolve_asset_graph()
    for schedule, connection in ((sheets, "training_sheets"), (ga4, "ga4_web")):
        targeted = schedule.target.resolvable_to_job.selection.resolve(graph)
        assert targeted == {k for k in EXPECTED_KEYS if k.path[1] == connection}
