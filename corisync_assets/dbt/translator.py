"""How dbt nodes become Dagster assets.

Asset keys (documented for composing with the rest of the code location):

* dbt source ``raw_cdc.T`` and ``raw_cdc.T__changelog`` -> ``["raw_cdc", T]``: the raw CDC asset that lands
  both tables, so no source node is left dangling and the graph reads Postgres table -> raw CDC asset ->
  staging -> marts.
* a source with ``meta.dagster.asset_key`` -> that key (the web tables: ``["web", "events"]``, ..., the
  Spark assets of ``corisync_assets/web``)
* models in models/staging -> ``["staging", name]`` (group ``staging``)
* models in models/marts -> ``["marts", name]`` (group ``marts``)
* models in models/reporting -> ``["reporting", name]`` (group ``reporting``): views for Looker Studio, built
  when missing or when their SQL changed (a view follows its mart by itself)
* snapshots -> ``["snapshots", name]`` (group ``staging``)
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from dagster import AssetKey, AssetSpec, AutomationCondition, AutomationContext, AutomationResult, FreshnessPolicy
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

from corisync_assets.dbt.deferral import BUILT_RESOURCE_TYPES

if TYPE_CHECKING:
    from dagster_dbt import DbtProject

RAW_PREFIX = "raw_cdc"
CHANGELOG_SUFFIX = "__changelog"

#: Marts must have been rebuilt within this window (the daily schedule alone satisfies it): a freshness
#: policy on every mart, evaluated by Dagster's freshness daemon (automation.py says why not checks).
MARTS_MAX_STALENESS = timedelta(hours=26)
MARTS_WARN_STALENESS = timedelta(hours=25)


def raw_table_of_source(source_name: str) -> str:
    """``users__changelog`` -> ``users``; ``users`` -> ``users``."""
    return source_name.removesuffix(CHANGELOG_SUFFIX)


def layer_of(dbt_resource_props: Mapping[str, Any]) -> str:
    if dbt_resource_props["resource_type"] == "snapshot":
        return "snapshots"
    folders = dbt_resource_props.get("fqn", [])[1:-1]
    return next((layer for layer in ("marts", "reporting") if layer in folders), "staging")


def one_dbt_run_at_a_time(dbt_keys: list[AssetKey]) -> AutomationCondition:
    """``eager`` with two changes: the whole dbt project is the unit of "in progress", and only a request
    counts as handling an update.

    Rebuild as soon as anything upstream (ultimately a raw CDC landing) has been updated and nothing
    upstream is missing. Within one evaluation the request propagates down the graph, so a landing
    requests staging and marts in the same run.

    * ``eager`` waits only while the asset or one of its own parents is in a run. Under a steady stream
      that lets automation start a second dbt run beside the first with the assets the first did not hold,
      and every later run is such a fragment: the runs then queue for the one DuckDB writer, and a mart
      waits for a run that includes it. Waiting while *any* dbt asset is in progress makes the runs follow
      one another, each one the whole set of assets changed since the last.
    * ``eager`` (``since_last_handled``) also forgets an update when the asset materializes afterwards.
      A landing that arrives while a run is building the asset is then forgotten when that run ends,
      although the run may have read the raw table before it; and when a run's last materializations are
      first seen on the same tick as the next landing, the materialization wins (the request that
      propagates down has no timestamp to compare), so the marts miss the next run and wait one more cycle.
      Here only a request resets the trigger. That cannot loop: ``any_deps_updated`` ignores a parent's
      update made by a run that also targeted the asset.
    """
    return (
        (AutomationCondition.newly_missing() | AutomationCondition.any_deps_updated()).since(
            (AutomationCondition.newly_requested() | AutomationCondition.initial_evaluation()).with_label(
                "requested"))
        & ~AutomationCondition.any_deps_missing()
        & NoDbtRunInProgress(dbt_keys)
    ).with_label("eager, one dbt run at a time")


def views_when_changed(dbt_keys: list[AssetKey]) -> AutomationCondition:
    """For views over tables (reporting): build when missing (unless the last attempt failed: no retry loop)
    or when the SQL changed (dagster-dbt's code version), once the parents exist; a rebuilt parent needs
    nothing (the view reads it)."""
    return (
        ((AutomationCondition.missing() & ~AutomationCondition.execution_failed())
         | AutomationCondition.code_version_changed().since_last_handled())
        & ~AutomationCondition.any_deps_missing()
        & NoDbtRunInProgress(dbt_keys)
    ).with_label("views: when missing or changed")


class NoDbtRunInProgress(AutomationCondition[AssetKey]):
    """True for every candidate while none of ``dbt_keys`` is in a run in progress, else false.

    The same as ``~(in_progress(k1) | ... | in_progress(kn))`` spelled with ``asset_matches``, which Dagster
    evaluated for every dbt asset on every tick: n x n sub-conditions (here 27 x 27), each one a node of the
    evaluation record Dagster stores. That took 2-6 s of a busy core per 5 s tick under ``make dev``, about
    as much CPU as the builds it scheduled. This operand asks the question once per tick (the answer is cached
    on the tick's asset graph view) and is one node. A Python condition is evaluated in the code server
    (``dbt_automation_sensor`` sets ``use_user_code_server``)."""

    def __init__(self, dbt_keys: list[AssetKey]) -> None:
        self._keys = tuple(dbt_keys)
        self._busy: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # the tick's view -> the answer

    @property
    def name(self) -> str:
        return "no_dbt_run_in_progress"

    @property
    def description(self) -> str:
        return f"none of the {len(self._keys)} dbt assets is in a run in progress"

    @property
    def requires_cursor(self) -> bool:
        return False

    async def evaluate(self, context: AutomationContext) -> AutomationResult:
        view = context.asset_graph_view
        busy = self._busy.get(view)
        if busy is None:
            busy = False
            for key in self._keys:
                running = await view.compute_run_in_progress_subset(key=key, from_subset=view.get_full_subset(key=key))
                if not running.is_empty:
                    busy = True
                    break
            self._busy[view] = busy
        return AutomationResult(context, true_subset=context.get_empty_subset() if busy else context.candidate_subset)


class CorisyncDbtTranslator(DagsterDbtTranslator):
    def __init__(self) -> None:
        super().__init__(
            DagsterDbtTranslatorSettings(
                enable_asset_checks=True,
                # raw_cdc.T and raw_cdc.T__changelog are both the asset ["raw_cdc", T]
                enable_duplicate_source_asset_keys=True,
                enable_code_references=True,
            )
        )

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if spec.key.path[0] == "reporting":
            spec = spec.replace_attributes(automation_condition=self._automation_condition(manifest, views=True))
        elif spec.key.path[0] != RAW_PREFIX:
            spec = spec.replace_attributes(automation_condition=self._automation_condition(manifest))
        if spec.key.path[0] == "marts" and spec.freshness_policy is None:
            spec = spec.replace_attributes(
                freshness_policy=FreshnessPolicy.time_window(
                    fail_window=MARTS_MAX_STALENESS, warn_window=MARTS_WARN_STALENESS
                )
            )
        return spec

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            declared = (dbt_resource_props.get("meta") or {}).get("dagster", {}).get("asset_key")
            if declared:
                return AssetKey(declared)
            return AssetKey([RAW_PREFIX, raw_table_of_source(dbt_resource_props["name"])])
        return AssetKey([layer_of(dbt_resource_props), dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return None
        layer = layer_of(dbt_resource_props)
        return "staging" if layer == "snapshots" else layer

    def _automation_condition(self, manifest: Mapping[str, Any], views: bool = False) -> AutomationCondition:
        # one condition object per manifest (the same for every node; also keeps evaluation cheap)
        cached = getattr(self, "_condition", None)
        if cached is None or cached[0] is not manifest:
            keys = sorted((self.get_asset_key(node) for node in manifest["nodes"].values()
                           if node["resource_type"] in BUILT_RESOURCE_TYPES), key=lambda k: k.path)
            self._condition = cached = (manifest, one_dbt_run_at_a_time(keys), views_when_changed(keys))
        return cached[2] if views else cached[1]
