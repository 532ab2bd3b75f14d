"""dbt in Dagster: the dbt project (dbt_project/) as assets downstream of the raw CDC assets.

Compose in ``corisync_assets/definitions.py``::

    from corisync_assets.dbt import dbt_definitions
    defs = Definitions.merge(..., dbt_definitions(settings()))

or pick the pieces: ``corisync_dbt_assets``, ``dbt_resource(settings)`` (bind as resource key ``"dbt"``),
``dbt_daily_schedule``, ``dbt_automation_sensor``. Marts carry a ``FreshnessPolicy`` (the translator).
"""

from __future__ import annotations

# First: every module of this package imports dagster_dbt, which must not pull dbt-core in.
import corisync_assets.no_dbt_core  # noqa: F401

# isort: split
from dagster import Definitions

from corisync_assets.dbt.assets import DBT_TRANSLATOR, corisync_dbt_assets, dbt_asset_keys
from corisync_assets.dbt.automation import dbt_automation_sensor, dbt_daily_schedule
from corisync_assets.dbt.project import corisync_dbt_project, dbt_project_for, prepare
from corisync_assets.dbt.resource import (
    DBT_PROJECT_DIR,
    INDIRECT_SELECTION,
    CorisyncDbtCliResource,
    dbt_env,
    dbt_resource,
)
from corisync_assets.dbt.translator import MARTS_MAX_STALENESS, CorisyncDbtTranslator
from corisync_assets.environment import Settings, warehouse_resource

DBT_RESOURCE_KEY = "dbt"


def dbt_definitions(s: Settings) -> Definitions:
    """Everything dbt contributes to the code location, with its resource bound for ``s``."""
    return Definitions(
        assets=[corisync_dbt_assets],
        schedules=[dbt_daily_schedule],
        sensors=[dbt_automation_sensor],
        # the warehouse too: dbt builds hold its writer slot (the same object the CDC part binds)
        resources={DBT_RESOURCE_KEY: dbt_resource(s), "warehouse": warehouse_resource(s)},
    )


__all__ = [
    "DBT_PROJECT_DIR",
    "DBT_RESOURCE_KEY",
    "DBT_TRANSLATOR",
    "INDIRECT_SELECTION",
    "MARTS_MAX_STALENESS",
    "CorisyncDbtCliResource",
    "CorisyncDbtTranslator",
    "corisync_dbt_assets",
    "corisync_dbt_project",
    "dbt_asset_keys",
    "dbt_automation_sensor",
    "dbt_daily_schedule",
    "dbt_definitions",
    "dbt_env",
    "dbt_project_for",
    "dbt_resource",
    "prepare",
]
