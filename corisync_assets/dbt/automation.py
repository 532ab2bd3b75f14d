"""When the dbt assets run: eagerly after their raw CDC assets land (automation conditions set by the
translator, evaluated by ``dbt_automation_sensor``), plus a daily full build.

The marts' freshness is a ``FreshnessPolicy`` on each mart (the translator), which Dagster's freshness daemon
evaluates from the materializations it already records: no run, no step. Explicit freshness *checks*
(``build_last_update_freshness_checks``, which Dagster 1.13 marks as superseded by the policy) were dropped:
Dagster adds every check of the selected assets that has no automation condition of its own to an
automation run, so each run that built a mart ended with a freshness-check step (3-4 s that the next run
waited for), and their own sensor launched a run every 5 minutes for the same answer."""

from __future__ import annotations

import warnings

from dagster import AssetSelection, AutomationConditionSensorDefinition, BetaWarning, DefaultSensorStatus
from dagster_dbt import build_schedule_from_dbt_selection

from corisync_assets.dbt.assets import corisync_dbt_assets

dbt_daily_schedule = build_schedule_from_dbt_selection(
    [corisync_dbt_assets],
    job_name="dbt_daily_build",
    cron_schedule="0 5 * * *",
    dbt_select="fqn:*",
    execution_timezone="UTC",
    schedule_name="dbt_daily_schedule",
)

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=BetaWarning, message=".*use_user_code_server.*")
    dbt_automation_sensor = AutomationConditionSensorDefinition(
        "dbt_automation_sensor",
        # the dbt assets and their dbt tests (the only checks on them: nothing else rides along in their runs)
        target=AssetSelection.assets(corisync_dbt_assets),
        default_status=DefaultSensorStatus.RUNNING,
        # evaluated in the code server (beta in Dagster 1.13): the conditions include a Python operand
        # (translator.NoDbtRunInProgress), which the asset daemon cannot evaluate
        use_user_code_server=True,
        # the lander lands within seconds; marts follow within one tick plus one dbt build (p95 target 60 s)
        minimum_interval_seconds=5,
    )
