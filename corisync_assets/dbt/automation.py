"""When the dbt assets run: eagerly after their raw CDC assets land (automation conditions set by the
translator, evaluated by ``dbt_automation_sensor``), plus a daily full build; freshness checks on marts."""

from __future__ import annotations

import warnings

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    build_last_update_freshness_checks,
    build_sensor_for_freshness_checks,
)
from dagster_dbt import build_schedule_from_dbt_selection

from corisync_assets.dbt.assets import corisync_dbt_assets, dbt_asset_keys
from corisync_assets.dbt.translator import MARTS_MAX_STALENESS

dbt_daily_schedule = build_schedule_from_dbt_selection(
    [corisync_dbt_assets],
    job_name="dbt_daily_build",
    cron_schedule="0 5 * * *",
    dbt_select="fqn:*",
    execution_timezone="UTC",
    schedule_name="dbt_daily_schedule",
)

# Dagster 1.13 prefers FreshnessPolicy (set on every mart by the translator); these explicit asset checks
# add a check result per mart (alertable, runnable from a job or a test) on the same bound.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*is superseded.*")
    marts_freshness_checks = build_last_update_freshness_checks(
        assets=dbt_asset_keys("marts"),
        lower_bound_delta=MARTS_MAX_STALENESS,
    )
    marts_freshness_sensor = build_sensor_for_freshness_checks(
        freshness_checks=marts_freshness_checks,
        name="dbt_marts_freshness_sensor",
        minimum_interval_seconds=300,  # the bound is 26 h; each evaluation is a run that takes a run slot
        default_status=DefaultSensorStatus.RUNNING,
    )

dbt_automation_sensor = AutomationConditionSensorDefinition(
    "dbt_automation_sensor",
    # the dbt assets and their dbt tests; the marts' freshness checks have their own sensor (a bound of
    # 26 h) and would add a step to every automation run, which the next run waits for
    target=AssetSelection.assets(corisync_dbt_assets) - AssetSelection.checks(*marts_freshness_checks),
    default_status=DefaultSensorStatus.RUNNING,
    # the lander lands within seconds; marts follow within one tick plus one dbt build (p95 target 60 s)
    minimum_interval_seconds=5,
)
