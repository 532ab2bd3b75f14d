"""Airbyte in Dagster: the Google Sheets training records and GA4 web analytics, one asset per stream
(``airbyte/<connection>/<stream>``), synced by Airbyte (prod) or the local stack's stand-in running the same
connectors (local), feeding the dbt sources in ``dbt_project/models/staging/_airbyte_sources.yml``.

Compose in ``corisync_assets/definitions.py`` with ``airbyte_definitions(settings())``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagster import Definitions

    from corisync_assets.environment import Settings


def airbyte_definitions(s: Settings) -> Definitions:
    import warnings

    from dagster import BetaWarning, Definitions, PreviewWarning

    from corisync_assets.environment import warehouse_resource

    # dagster-airbyte's workspace API is marked beta/preview; one note here instead of a dozen per load
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        warnings.simplefilter("ignore", PreviewWarning)
        from corisync_assets.airbyte.assets import airbyte_schedules, build_airbyte_assets
        from corisync_assets.airbyte.workspace import airbyte_workspace

        workspace = airbyte_workspace(s)
        return Definitions(assets=build_airbyte_assets(workspace, s.airbyte_schema), schedules=airbyte_schedules(),
                           resources={"airbyte": workspace, "warehouse": warehouse_resource(s)})
