"""The dbt models, snapshots and tests as Dagster assets and asset checks."""

from dagster import AssetExecutionContext, AssetKey
from dagster_dbt import DbtCliResource, dbt_assets
from dagster_dbt.core.dbt_event_iterator import DbtEventIterator

from corisync_assets.dbt.project import corisync_dbt_project
from corisync_assets.dbt.translator import CorisyncDbtTranslator

DBT_TRANSLATOR = CorisyncDbtTranslator()


@dbt_assets(
    manifest=corisync_dbt_project.manifest_path,
    project=corisync_dbt_project,
    dagster_dbt_translator=DBT_TRANSLATOR,
    name="corisync_dbt",
)
def corisync_dbt_assets(context: AssetExecutionContext, dbt: DbtCliResource):
    """``dbt build`` of the selected models/snapshots; their tests report as asset checks.

    Materializations carry the row count, the column schema and column lineage (sqlglot, DuckDB and
    BigQuery dialects alike).

    DuckDB allows one writing process per file, and dagster-dbt reads row counts and column metadata
    through an in-process adapter. Against DuckDB the dbt events are therefore collected until the dbt
    process has exited, then enriched (no lock contention with the dbt process); BigQuery streams them.
    Either way the in-process connections are closed at the end, so the file is free for the next run.
    """
    invocation = dbt.cli(["build"], context=context, raise_on_error=False)
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


def dbt_asset_keys(layer: str | None = None) -> list[AssetKey]:
    """Keys of the dbt assets, optionally only one layer ("staging", "marts", "snapshots")."""
    keys = sorted(corisync_dbt_assets.keys, key=lambda k: k.to_user_string())
    return [k for k in keys if layer is None or k.path[0] == layer]
