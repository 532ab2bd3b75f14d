"""Dagster's instance storage for the local stack is the project's Postgres (dagster-postgres), not SQLite."""

from __future__ import annotations

import os

import pytest
from dagster import DagsterInstance, materialize
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from corisync_assets.cdc.assets import build_raw_cdc_assets
from corisync_assets.local import postgres
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.stack


def test_runs_and_events_are_stored_in_the_project_postgres(stack, tmp_path, monkeypatch):
    for name, value in postgres.dagster_env(stack).items():
        monkeypatch.setenv(name, value)
    postgres.write_dagster_yaml(stack)
    with DagsterInstance.from_config(os.environ["DAGSTER_HOME"]) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        pipe = Pipeline(stack, tmp_path / "wh.duckdb", instance=instance)
        result = materialize(build_raw_cdc_assets(pipe.connector)[:1], instance=instance,
                             resources={"kafka": pipe.kafka, "warehouse": pipe.warehouse})
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and run.is_success
        assert instance.get_latest_materialization_event(result.get_asset_materialization_events()[0].asset_key)
    row = postgres.psql(stack, f"SELECT count(*) FROM runs WHERE run_id = '{result.run_id}';", db="dagster")
    assert row.strip() == "1"
