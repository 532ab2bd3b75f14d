"""The dbt models, snapshots and tests as Dagster assets and asset checks."""


from dagster import AssetExecutionContext, AssetKey
from dagster_dbt import DbtCliResource, dbt_assets

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

    Materializations carry the row count, the column schema and (DuckDB and BigQuery alike, via sqlglot)
    column lineage.
    """
    yield from dbt.cli(["build"], context=context).stream().fetch_row_counts().fetch_column_metadata()


def dbt_asset_keys(layer: str | None = None) -> list[AssetKey]:
    """Keys of the dbt assets, optionally only one layer ("staging", "marts", "snapshots")."""
    keys = sorted(corisync_dbt_assets.keys, key=lambda k: k.to_user_string())
    return [k for k in keys if layer is None or k.path[0] == layer]
