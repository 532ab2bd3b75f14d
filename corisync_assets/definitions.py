"""The code location: composes every part of CoriSync into one `Definitions` (`defs`).

The only module that knows every part; what differs between local and prod comes from `environment`.
Data flows one way: Postgres sources -> raw CDC assets (Debezium/Kafka) and web events (collector/Kafka) ->
Spark web assets, and Google Sheets / GA4 -> Airbyte assets -> dbt staging -> marts -> exports.
"""

# First: a missing or stale dbt manifest starts parsing in its own process while the imports below load.
import corisync_assets.early_dbt_parse  # noqa: F401

# isort: split
from dagster import Definitions, in_process_executor

from corisync_assets.airbyte import airbyte_definitions
from corisync_assets.cdc.assets import build_raw_cdc_assets, postgres_source_specs
from corisync_assets.cdc.connector_config import load_connector_config
from corisync_assets.cdc.reconcile_check import reconciliation_definitions
from corisync_assets.cdc.resnapshot import resnapshot_job
from corisync_assets.cdc.sensors import build_lag_sensor, raw_cdc_catch_up_job
from corisync_assets.dbt import dbt_definitions
from corisync_assets.environment import resources, settings
from corisync_assets.exports import exports_definitions
from corisync_assets.web import web_definitions, web_lag_target


def build_definitions() -> Definitions:
    s = settings()
    connector = load_connector_config(s.connector_config)
    cdc = Definitions(
        assets=[*postgres_source_specs(connector), *build_raw_cdc_assets(connector)],
        jobs=[raw_cdc_catch_up_job, resnapshot_job],
        sensors=[build_lag_sensor(connector, threshold=s.lag_threshold, stall_s=s.lag_stall_s,
                                  targets=(web_lag_target(s),))],
        resources=resources(s),
    )
    # One process per run: each step of the default multiprocess executor would load the definitions again
    # (seconds per run), and a run here is one op (raw_cdc, or one dbt build) anyway.
    return Definitions.merge(cdc, reconciliation_definitions(connector), web_definitions(s), airbyte_definitions(s),
                             dbt_definitions(s), exports_definitions(), Definitions(executor=in_process_executor))


defs = build_definitions()
