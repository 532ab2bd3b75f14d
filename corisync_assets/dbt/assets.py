"""The dbt models, snapshots and tests as Dagster assets and asset checks."""

from dagster import AssetExecutionContext, AssetKey
from dagster_dbt import DbtCliResource, dbt_assets
from dagster_dbt.core.dbt_event_iterator import DbtEventIterator

from corisync_assets.dbt.project import corisync_dbt_project
from corisync_assets.dbt.translator import CorisyncDbtTranslator
from corisync_assets.resources.warehouse.base import Warehouse

DBT_TRANSLATOR = CorisyncDbtTranslator()


@dbt_assets(
    manifest=corisync_dbt_project.manifest_path,
    project=corisync_dbt_project,
    dagster_dbt_translator=DBT_TRANSLATOR,
    name="corisync_dbt",
)
def corisync_dbt_assets(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
    """``dbt build`` of the selected models/snapshots; their tests report as asset checks.

    Materializations carry the row count, the column schema and column lineage (sqlglot, DuckDB and
    BigQuery dialects alike).

    DuckDB allows one writing process per file, and dagster-dbt reads row counts and column metadata
    through an in-process adapter. Against DuckDB the dbt events are therefore collected until the dbt
    process has exited, then enriched (no lock contention with the dbt process); BigQuery streams them.
    Either way the in-process connections are closed at the end, so the file is free for the next run.
    The whole build holds the warehouse's writer slot (DuckDB: the lander waits a few seconds instead of
    dbt failing to open the file; BigQuery: no such limit, nothing is held).
    """
    args = ["build"]
    with warehouse.exclusive():
        deferred = _deferred_tests(context, warehouse)
        if deferred:
            context.log.info(f"leaving out {len(deferred)} test(s) whose other parent does not exist yet: {deferred}")
            args += ["--exclude", " ".join(deferred)]
        invocation = dbt.cli(args, context=context, raise_on_error=False)
        try:
            events = invocation.stream()
            if invocation.manifest.get("metadata", {}).get("adapter_type") == "duckdb":
                events = DbtEventIterator(iter(list(events)), invocation)
            yield from events.fetch_row_counts().fetch_column_metadata()
        finally:
            if invocation.adapter is not None:
                invocation.adapter.cleanup_connections()
    if not invocation.is_successful():
        raise invocation.get_error() or RuntimeError("dbt build failed")


def _deferred_tests(context: AssetExecutionContext, warehouse: Warehouse) -> list[str]:
    import json

    from corisync_assets.dbt.deferral import tests_to_defer

    manifest = json.loads(corisync_dbt_project.manifest_path.read_text())
    own = set(corisync_dbt_assets.keys)
    nodes = {DBT_TRANSLATOR.get_asset_key(n): (n["schema"], n.get("alias") or n["name"])
             for n in manifest["nodes"].values() if n["resource_type"] in ("model", "snapshot", "seed")}
    existing = warehouse.existing_relations(list(nodes.values()))
    if existing is not None:
        built = {key for key, relation in nodes.items() if relation in existing}
    else:  # the warehouse cannot tell: what the instance saw built
        latest = context.instance.get_latest_materialization_events(list(own))
        built = {key for key, event in latest.items() if event is not None}
    return tests_to_defer(manifest, DBT_TRANSLATOR.get_asset_key, context.selected_asset_keys & own, built)


def dbt_asset_keys(layer: str | None = None) -> list[AssetKey]:
    """Keys of the dbt assets, optionally only one layer ("staging", "marts", "snapshots")."""
    keys = sorted(corisync_dbt_assets.keys, key=lambda k: k.to_user_string())
    return [k for k in keys if layer is None or k.path[0] == layer]
