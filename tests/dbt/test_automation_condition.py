"""The dbt automation condition: eager, but never beside a dbt run in progress, and no landing forgotten.

Evaluated with Dagster's own ``evaluate_automation_conditions`` on an ephemeral instance: materializations are
reported runless (no warehouse, no dbt process), a dbt run "in progress" is a run record in STARTED state
whose plan holds one mart, and a "dbt run" that really executes is a stand-in multi-asset with the dbt
assets' own specs (conditions included) that only reports each selected key. The expected requests are
written out here from the dbt project's graph (manifest ``parent_map``), not taken from the condition.
"""

from __future__ import annotations

import graphlib
import json

import dagster as dg
import pytest

from corisync_assets.dbt import DBT_TRANSLATOR, corisync_dbt_assets, corisync_dbt_project

RAW_ENROLLMENTS = dg.AssetKey(["raw_cdc", "enrollments"])
DIM_USERS = dg.AssetKey(["marts", "dim_users"])


def _graph() -> tuple[dict[dg.AssetKey, set[dg.AssetKey]], set[dg.AssetKey]]:
    """Parents of every dbt model/snapshot (as asset keys) and the raw keys (raw CDC, the web Spark assets and
    the Airbyte streams), from the manifest."""
    manifest = json.loads(corisync_dbt_project.manifest_path.read_text())
    nodes = {**manifest["nodes"], **manifest["sources"]}
    built = {uid for uid, n in manifest["nodes"].items() if n["resource_type"] in ("model", "snapshot")}
    parents = {DBT_TRANSLATOR.get_asset_key(nodes[uid]):
               {DBT_TRANSLATOR.get_asset_key(nodes[p]) for p in manifest["parent_map"][uid] if p in nodes}
               for uid in built}
    raw = {k for deps in parents.values() for k in deps if k.path[0] in ("raw_cdc", "web", "airbyte")}
    return parents, raw


def _downstream_of(root: dg.AssetKey, parents: dict[dg.AssetKey, set[dg.AssetKey]]) -> set[dg.AssetKey]:
    """What a landing rebuilds: everything downstream except the reporting views (they read their marts)."""
    found: set[dg.AssetKey] = set()
    frontier = {root}
    while frontier:
        frontier = {child for child, deps in parents.items() if deps & frontier} - found
        found |= frontier
    return {k for k in found if k.path[0] != "reporting"}


def test_reporting_views_are_built_when_missing_and_not_after_a_landing() -> None:
    parents, raw = _graph()
    views = {k for k in parents if k.path[0] == "reporting"}
    assert len(views) >= 4
    unused = dg.ResourceDefinition.none_resource()
    defs = dg.Definitions(assets=[corisync_dbt_assets, *(dg.AssetSpec(k) for k in sorted(raw, key=str))],
                          resources={"dbt": unused, "warehouse": unused})
    instance = dg.DagsterInstance.ephemeral()
    for key in [*raw, *(k for k in parents if k not in views)]:  # all but the views exist
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    selection = dg.AssetSelection.assets(corisync_dbt_assets)
    first = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection)
    assert _requested(first) == views
    for key in views:
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    instance.report_runless_asset_event(dg.AssetMaterialization(RAW_ENROLLMENTS))
    after = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=first.cursor)
    assert _requested(after) == _downstream_of(RAW_ENROLLMENTS, parents) and not _requested(after) & views


@pytest.fixture
def setup():
    parents, raw = _graph()
    unused = dg.ResourceDefinition.none_resource()  # nothing executes here: conditions are only evaluated
    defs = dg.Definitions(assets=[corisync_dbt_assets, *(dg.AssetSpec(k) for k in sorted(raw, key=str))],
                          resources={"dbt": unused, "warehouse": unused})
    instance = dg.DagsterInstance.ephemeral()
    for key in [*raw, *parents]:  # everything exists: nothing is missing
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    selection = dg.AssetSelection.assets(corisync_dbt_assets)
    first = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection)
    return parents, defs, instance, selection, first.cursor


def _requested(result: dg.EvaluateAutomationConditionsResult) -> set[dg.AssetKey]:
    return {r.key for r in result.results if result.get_num_requested(r.key)}


def test_a_landing_requests_everything_downstream_in_one_evaluation(setup):
    parents, defs, instance, selection, cursor = setup
    instance.report_runless_asset_event(dg.AssetMaterialization(RAW_ENROLLMENTS))
    result = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=cursor)
    expected = _downstream_of(RAW_ENROLLMENTS, parents)
    assert expected and _requested(result) == expected


def test_a_sync_of_the_training_sheets_requests_their_staging_and_marts(setup):
    """dbt follows the Airbyte syncs: the streams of one connection land in one run, and the next evaluation
    requests everything downstream of them (the sheet's staging, the reconciliation mart), nothing else."""
    parents, defs, instance, selection, cursor = setup
    streams = [dg.AssetKey(["airbyte", "training_sheets", s]) for s in ("trainings", "attendance_spring",
                                                                      "attendance_autumn")]
    for key in streams:
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    result = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=cursor)
    expected = set().union(*(_downstream_of(k, parents) for k in streams))
    assert dg.AssetKey(["marts", "mart_training_attendance_reconciliation"]) in expected
    assert _requested(result) == expected


def test_no_request_while_any_dbt_asset_is_in_a_run_then_all_of_it(setup):
    parents, defs, instance, selection, cursor = setup
    job = defs.resolve_implicit_global_asset_job_def()
    run = instance.create_run_for_job(job_def=job, asset_selection=frozenset({DIM_USERS}),
                                      status=dg.DagsterRunStatus.STARTED)
    instance.report_runless_asset_event(dg.AssetMaterialization(RAW_ENROLLMENTS))

    during = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=cursor)
    assert _requested(during) == set(), "automation started a dbt run beside one in progress"

    instance.report_run_canceled(run)
    after = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=during.cursor)
    assert _requested(after) == _downstream_of(RAW_ENROLLMENTS, parents)


def test_a_landing_during_a_run_is_not_forgotten_when_that_run_materializes(setup):
    """The run in progress may have read the raw table before the landing: its materializations must not
    count as having handled it (``eager`` forgets it, and the marts wait for the next landing)."""
    parents, defs, instance, selection, cursor = setup
    job = defs.resolve_implicit_global_asset_job_def()
    downstream = _downstream_of(RAW_ENROLLMENTS, parents)
    run = instance.create_run_for_job(job_def=job, asset_selection=frozenset(downstream),
                                      status=dg.DagsterRunStatus.STARTED)
    instance.report_runless_asset_event(dg.AssetMaterialization(RAW_ENROLLMENTS))
    during = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=cursor)
    assert _requested(during) == set()

    for key in downstream:  # the run in progress builds everything, then ends
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    instance.report_run_canceled(run)
    after = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=during.cursor)
    assert _requested(after) == downstream


def test_a_run_that_built_parents_and_children_together_requests_nothing_more():
    """Only a request resets the trigger: a staging model materialized by the run that also built the marts
    must not request the marts again (no run after every run)."""
    parents, raw = _graph()
    specs = list(corisync_dbt_assets.specs)

    @dg.multi_asset(specs=specs, can_subset=True, name="dbt_stand_in")
    def stand_in(context):
        for key in graphlib.TopologicalSorter(parents).static_order():  # parents first, as dbt builds
            if key in context.selected_asset_keys:
                yield dg.MaterializeResult(asset_key=key)

    defs = dg.Definitions(assets=[stand_in, *(dg.AssetSpec(k) for k in sorted(raw, key=str))])
    instance = dg.DagsterInstance.ephemeral()
    selection = dg.AssetSelection.assets(stand_in)
    cursor = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection).cursor
    for key in raw:
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    first = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=cursor)
    views = {k for k in parents if k.path[0] == "reporting"}  # missing: built with the first run
    assert _requested(first) == set().union(*(_downstream_of(k, parents) for k in raw)) | views

    # execute what was requested in one run, as the automation sensor would, then evaluate two more ticks
    built = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=sorted(_requested(first), key=str))
    assert built.success
    cursor = first.cursor
    for _ in range(2):
        tick = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=cursor)
        cursor = tick.cursor
        assert _requested(tick) == set(), "a run's own materializations requested another run"

    instance.report_runless_asset_event(dg.AssetMaterialization(RAW_ENROLLMENTS))
    landing = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=cursor)
    assert _requested(landing) == _downstream_of(RAW_ENROLLMENTS, parents)
