"""Parsing: every target parses with no database and no credentials (CI requirement), and a clean checkout
(no target/ folder) prepares its manifest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from dagster_dbt import DbtProject

from corisync_assets.dbt import DBT_PROJECT_DIR, prepare
from corisync_assets.dbt.project import _is_current
from corisync_assets.dbt.resource import dbt_executable
from corisync_assets.environment import Settings

pytestmark = pytest.mark.timeout(300)


def _parse(target: str, tmp_path: Path, **env: str) -> dict:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k != "GOOGLE_APPLICATION_CREDENTIALS" and not k.startswith(("CORISYNC_", "BIGQUERY_"))
    }
    clean.update(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), **env)  # no ADC anywhere
    out = tmp_path / f"target-{target}"
    started = time.monotonic()
    proc = subprocess.run(
        [
            dbt_executable(),
            "parse",
            "--target",
            target,
            "--target-path",
            str(out),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--no-partial-parse",
        ],
        cwd=DBT_PROJECT_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(f"\ndbt parse --target {target}: {time.monotonic() - started:.1f}s")
    return json.loads((out / "manifest.json").read_text())


def test_parse_prod_without_credentials_honours_dataset_settings(tmp_path: Path) -> None:
    """One parse: the staging dataset keeps its default, the raw and marts datasets follow the settings."""
    manifest = _parse("prod", tmp_path, CORISYNC_GCP_PROJECT="ci-dummy-project", CORISYNC_BQ_RAW_DATASET="raw_x",
                      CORISYNC_BQ_MARTS_DATASET="marts_x", CORISYNC_BQ_AIRBYTE_DATASET="airbyte_x")
    assert manifest["metadata"]["adapter_type"] == "bigquery"
    nodes = manifest["nodes"]
    assert nodes["model.corisync.mart_enrollment_funnel"]["relation_name"] == (
        "`ci-dummy-project`.`marts_x`.`mart_enrollment_funnel`"
    )
    assert nodes["model.corisync.dim_users"]["relation_name"] == "`ci-dummy-project`.`marts_x`.`dim_users`"
    assert nodes["model.corisync.stg_users"]["relation_name"] == "`ci-dummy-project`.`corisync_staging`.`stg_users`"
    sources = {s["name"]: s["relation_name"] for s in manifest["sources"].values()}
    assert sources["enrollments__changelog"] == "`ci-dummy-project`.`raw_x`.`enrollments__changelog`"
    # the Airbyte tables are in the dataset of Airbyte's BigQuery destination
    assert {s["schema"] for s in manifest["sources"].values() if s["source_name"] != "airbyte"} == {"raw_x"}
    assert sources["ga4_course_pages"] == "`ci-dummy-project`.`airbyte_x`.`ga4_course_pages`"
    assert {s["schema"] for s in manifest["sources"].values() if s["source_name"] == "airbyte"} == {"airbyte_x"}
    events = nodes["model.corisync.fct_enrollment_events"]["config"]
    assert events["partition_by"] == {"field": "changed_at", "data_type": "timestamp", "granularity": "day"}
    assert events["cluster_by"] == ["course_id", "user_id"]
    assert events["incremental_strategy"] == "merge"


def test_parse_emu_and_local(tmp_path: Path) -> None:
    assert _parse("emu", tmp_path)["metadata"]["adapter_type"] == "bigquery"
    local = _parse("local", tmp_path)
    assert local["metadata"]["adapter_type"] == "duckdb"
    assert {s["schema"] for s in local["sources"].values()} == {"raw_cdc", "raw_web", "raw_airbyte"}
    events = local["nodes"]["model.corisync.fct_enrollment_events"]["config"]
    assert events["incremental_strategy"] == "delete+insert" and events.get("partition_by") is None


def test_clean_checkout_prepares_the_manifest(tmp_path: Path) -> None:
    copy = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    project = DbtProject(copy, target_path=Path("target") / "local", target="local")
    s = Settings(home=tmp_path)
    assert not project.manifest_path.exists()
    started = time.monotonic()
    prepare(project, s)
    print(f"\nprepare (dbt parse, clean checkout): {time.monotonic() - started:.1f}s")
    assert project.manifest_path.exists() and _is_current(project, s)
    # an edited model makes it stale (re-parsed at the next load); so do other dataset settings
    model = copy / "models" / "marts" / "dim_users.sql"
    os.utime(model, (time.time() + 5, time.time() + 5))
    assert not _is_current(project, s)
    prepare(project, s)
    assert _is_current(project, s)
    assert not _is_current(project, Settings(home=tmp_path, bq_marts_dataset="other"))
