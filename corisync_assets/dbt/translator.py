"""How dbt nodes become Dagster assets.

Asset keys (documented for composing with the rest of the code location):

* dbt source ``raw_cdc.T`` and ``raw_cdc.T__changelog`` -> ``["raw_cdc", T]``: the raw CDC asset that lands
  both tables, so no source node is left dangling and the graph reads Postgres table -> raw CDC asset ->
  staging -> marts.
* models in models/staging -> ``["staging", name]`` (group ``staging``)
* models in models/marts -> ``["marts", name]`` (group ``marts``)
* snapshots -> ``["snapshots", name]`` (group ``staging``)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from dagster import AssetKey, AssetSpec, AutomationCondition, FreshnessPolicy
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

if TYPE_CHECKING:
    from dagster_dbt import DbtProject

RAW_PREFIX = "raw_cdc"
CHANGELOG_SUFFIX = "__changelog"

#: Marts must have been rebuilt within this window (the daily schedule alone satisfies it): a freshness
#: policy on every mart, and the same bound in the explicit freshness checks (automation.py).
MARTS_MAX_STALENESS = timedelta(hours=26)
MARTS_WARN_STALENESS = timedelta(hours=25)


def raw_table_of_source(source_name: str) -> str:
    """``users__changelog`` -> ``users``; ``users`` -> ``users``."""
    return source_name.removesuffix(CHANGELOG_SUFFIX)


def layer_of(dbt_resource_props: Mapping[str, Any]) -> str:
    if dbt_resource_props["resource_type"] == "snapshot":
        return "snapshots"
    fqn = dbt_resource_props.get("fqn", [])
    return "marts" if "marts" in fqn[1:-1] else "staging"


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
        if spec.key.path[0] == "marts" and spec.freshness_policy is None:
            spec = spec.replace_attributes(
                freshness_policy=FreshnessPolicy.time_window(
                    fail_window=MARTS_MAX_STALENESS, warn_window=MARTS_WARN_STALENESS
                )
            )
        return spec

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return AssetKey([RAW_PREFIX, raw_table_of_source(dbt_resource_props["name"])])
        return AssetKey([layer_of(dbt_resource_props), dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return None
        return "marts" if layer_of(dbt_resource_props) == "marts" else "staging"

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> AutomationCondition | None:
        # Rebuild as soon as anything upstream (ultimately a raw CDC landing) has been updated, once no
        # upstream asset is missing or still running. Within one evaluation the condition propagates
        # down the graph, so a landing requests staging and marts in the same run.
        return AutomationCondition.eager()
