"""Check selection (dbt indirect selection), the translator's raw CDC mapping, and the schedule/automation
wiring."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from corisync_assets.airbyte.connections import CONNECTIONS
from corisync_assets.dbt import (
    INDIRECT_SELECTION,
    corisync_dbt_assets,
    corisync_dbt_project,
    dbt_automation_sensor,
    dbt_daily_schedule,
    dbt_resource,
)
from corisync_assets.environment import Settings, warehouse_resource
from tests.support.dbt_build import BuiltWarehouse

pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[2]


def captured_tables() -> set[str]:
    """The tables Debezium captures (the raw CDC assets are one per captured table)."""
    config = json.loads((REPO / "docker" / "debezium" / "tc4a-postgres.json").read_text())["config"]
    return {t.split(".", 1)[1] for t in config["table.include.list"].split(",")}


def _checks_on(keys: set[dg.AssetKey]) -> set[dg.AssetCheckKey]:
    return {k for k in corisync_dbt_assets.check_keys if k.asset_key in keys}


def _run_selection(built: BuiltWarehouse, keys: set[dg.AssetKey]) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [corisync_dbt_assets],
        selection=list(keys),
        resources={"dbt": dbt_resource(built.settings), "warehouse": warehouse_resource(built.settings)},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    assert {m.asset_key for m in result.get_asset_materialization_events()} == keys
    return result


def test_indirect_selection_is_explicit() -> None:
    assert INDIRECT_SELECTION == "eager"
    from corisync_assets.environment import Settings

    assert dbt_resource(Settings()).dbt_env["DBT_INDIRECT_SELECTION"] == "eager"


def test_selecting_marts_runs_their_checks(built: BuiltWarehouse) -> None:
    marts = {dg.AssetKey(["marts", "mart_enrollment_funnel"]), dg.AssetKey(["marts", "mart_course_completion"])}
    result = _run_selection(built, marts)
    evaluated = {e.asset_check_key for e in result.get_asset_check_evaluations()}
    want = _checks_on(marts)
    # the marts' own tests, including relationships to (unselected, upstream) staging/dim models and the
    # singular funnel rule
    assert evaluated == want
    names = {k.name for k in evaluated}
    assert "assert_funnel_is_monotonic" in names
    assert any(n.startswith("relationships_mart_enrollment_funnel_course_id") for n in names)
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_selecting_a_staging_model_runs_all_its_checks(built: BuiltWarehouse) -> None:
    stg_enrollments = dg.AssetKey(["staging", "stg_enrollments"])
    result = _run_selection(built, {stg_enrollments})
    evaluated = {e.asset_check_key for e in result.get_asset_check_evaluations()}
    assert evaluated == _checks_on({stg_enrollments})
    # including the relationships tests to models that were not selected (stg_users, stg_courses)...
    names = {k.name for k in evaluated}
    assert {n for n in names if n.startswith("relationships_")} == {
        "relationships_stg_enrollments_user_id__user_id__ref_stg_users_",
        "relationships_stg_enrollments_course_id__course_id__ref_stg_courses_",
    }
    # ...and the singular business rule on it
    assert "assert_completed_enrollments_have_valid_completion" in names


def test_tests_of_unselected_models_are_observations_not_checks(built: BuiltWarehouse) -> None:
    """eager also runs tests attached to other models that reference the selected one; they must not be
    reported as check results of assets that were not selected."""
    stg_users = dg.AssetKey(["staging", "stg_users"])
    result = _run_selection(built, {stg_users})
    assert {e.asset_check_key for e in result.get_asset_check_evaluations()} == _checks_on({stg_users})
    observed = {o.asset_key for o in result.get_asset_observation_events()}
    assert dg.AssetKey(["staging", "stg_enrollments"]) in observed  # its relationships test to stg_users


WEB_KEYS = {dg.AssetKey(["web", name]) for name in ("events", "sessions", "page_daily")}
AIRBYTE_KEYS = {dg.AssetKey(["airbyte", connection.name, stream.name])
                for connection in CONNECTIONS for stream in connection.streams}


def test_every_source_is_a_raw_cdc_web_or_airbyte_asset() -> None:
    manifest = json.loads(corisync_dbt_project.manifest_path.read_text())
    from corisync_assets.dbt import DBT_TRANSLATOR

    source_keys = {DBT_TRANSLATOR.get_asset_key(props) for props in manifest["sources"].values()}
    raw_keys = {dg.AssetKey(["raw_cdc", t]) for t in captured_tables()}
    assert source_keys == raw_keys | WEB_KEYS | AIRBYTE_KEYS
    # changelog sources fold into the same raw asset as the current-state table
    assert any(p["name"].endswith("__changelog") for p in manifest["sources"].values())
    # every upstream dependency of the dbt assets is a dbt asset, a raw CDC asset, a web (Spark) asset or an
    # Airbyte stream's asset (airbyte/<connection>/<stream>, corisync_assets/airbyte/connections.py)
    external = set(corisync_dbt_assets.dependency_keys) - set(corisync_dbt_assets.keys)
    # each captured table and each synced stream feeds dbt: no dangling source or unused asset
    assert external == raw_keys | WEB_KEYS | AIRBYTE_KEYS


def test_graph_reads_raw_to_staging_to_marts() -> None:
    defs = dg.Definitions(
        assets=[
            *[dg.AssetSpec(dg.AssetKey(["raw_cdc", t])) for t in sorted(captured_tables())],
            *[dg.AssetSpec(k) for k in sorted(WEB_KEYS | AIRBYTE_KEYS, key=str)],
            corisync_dbt_assets,
        ],
        resources={"dbt": dbt_resource(Settings()), "warehouse": warehouse_resource(Settings())},
    )
    graph = defs.resolve_asset_graph()
    for key in corisync_dbt_assets.keys:
        layer = key.path[0]
        parents = graph.get(key).parent_keys
        allowed = {"staging": {"raw_cdc", "web", "airbyte", "staging"}, "snapshots": {"staging"},
                   "marts": {"staging", "marts"}, "reporting": {"marts"}}[layer]
        assert {p.path[0] for p in parents} <= allowed, key
        if layer == "staging" and "staging" in {p.path[0] for p in parents}:
            # only the visitors' identities, and the users the sheet's trainers and attendees are matched to
            assert {p for p in parents if p.path[0] == "staging"} <= {
                dg.AssetKey(["staging", "stg_web_identities"]), dg.AssetKey(["staging", "stg_users"])}, key
            if "airbyte" not in {p.path[0] for p in parents}:
                assert dg.AssetKey(["staging", "stg_users"]) not in parents, key
    # a raw asset's children are staging models only
    children = graph.get(dg.AssetKey(["raw_cdc", "enrollments"])).child_keys
    assert {c.path[0] for c in children} == {"staging"}
    assert dg.AssetKey(["staging", "stg_enrollments__changes"]) in children


def test_groups_and_automation() -> None:
    groups = corisync_dbt_assets.group_names_by_key
    assert {groups[k] for k in corisync_dbt_assets.keys} == {"staging", "marts", "reporting"}
    assert all(corisync_dbt_assets.specs_by_key[k].automation_condition is not None for k in corisync_dbt_assets.keys)
    assert dbt_daily_schedule.cron_schedule == "0 5 * * *"
    assert dbt_automation_sensor.name == "dbt_automation_sensor"


def test_the_only_checks_on_the_dbt_assets_are_the_dbt_tests() -> None:
    """Dagster adds every check of a run's assets that has no automation condition of its own to an automation
    run (``_ride_along_check_keys_for_assets``), whatever the sensor's target says: a check on a dbt asset
    that is not a dbt test would be one more step in every automation run."""
    from corisync_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    dbt_keys = set(corisync_dbt_assets.keys)
    on_dbt_assets = set(graph.get_check_keys_for_assets(dbt_keys))
    assert on_dbt_assets == set(corisync_dbt_assets.check_keys)
    assert dbt_automation_sensor.asset_selection.resolve_checks(graph) >= on_dbt_assets


def test_invocations_start_from_the_code_locations_partial_parse() -> None:
    """dagster-dbt copies ``$DBT_TARGET_PATH/partial_parse.msgpack`` into each invocation's own target directory;
    that must be where the code location's parse leaves it, or every build starts with a full parse."""
    resource = dbt_resource(Settings())
    target = Path(resource.project_dir) / resource.dbt_env["DBT_TARGET_PATH"]
    assert target == Path(corisync_dbt_project.manifest_path).parent
    assert (target / "partial_parse.msgpack").is_file()
