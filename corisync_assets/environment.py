"""The one local/prod switch.

Every environment variable the platform reads is declared in ``ENV_VARS`` and read here, nowhere else
(`definitions.py` asks this module for resources, the dbt target and addresses); the one exception is the
Metabase provisioning job, a compose one-shot outside the code location, which reads its ``metabase:``
variables in ``corisync_assets/metabase/config.py``; the web event collector, a service of its own, reads
its ``collector:`` variables through these same settings. ``local`` is the default:
the embedded stack on this machine with DuckDB as warehouse; ``prod`` points the same assets at a Kafka
cluster, Debezium Connect, a Spark cluster and BigQuery.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Every variable the code reads, with the modes that read it. docker/.env.example and the compose files
#: are tested against this list (tests/deploy).
ENV_VARS: dict[str, str] = {
    "CORISYNC_ENV": "both: local (default) or prod",
    "CORISYNC_HOME": "local: folder for the local stack's data (default <repo>/.corisync)",
    "CORISYNC_CONNECTOR_CONFIG": "both: path of the Debezium connector config (Kafka Connect JSON)",
    "CORISYNC_KAFKA_BOOTSTRAP": "both: Kafka bootstrap servers",
    "CORISYNC_KAFKA_SECURITY_PROTOCOL": "prod: PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL",
    "CORISYNC_KAFKA_SASL_MECHANISM": "prod: SASL mechanism, e.g. SCRAM-SHA-512",
    "CORISYNC_KAFKA_SASL_USERNAME": "prod: SASL user",
    "CORISYNC_KAFKA_SASL_PASSWORD": "prod: SASL password (secret)",
    "CORISYNC_CONSUMER_GROUP": "both: consumer group the raw CDC assets commit to",
    "CORISYNC_LAG_THRESHOLD": "both: lag above which the sensor requests a run (default 0: any lag)",
    "CORISYNC_LAG_STALL_S": "both: seconds a lagging group's offsets must stand still before the sensor requests a "
                            "raw run (default 60: the lander, when running, keeps them moving)",
    "CORISYNC_PG_HOST": "both: operational Postgres host (read by Debezium through the connector config)",
    "CORISYNC_PG_PORT": "both: operational Postgres port",
    "CORISYNC_PG_DATABASE": "both: operational database name",
    "CORISYNC_PG_USER": "both: operational database owner (demo data, tests)",
    "CORISYNC_PG_PASSWORD": "both: its password (secret)",
    "CORISYNC_PG_CDC_USER": "both: replication role Debezium connects as",
    "CORISYNC_PG_CDC_PASSWORD": "both: its password (secret)",
    "CORISYNC_DUCKDB_PATH": "local: the DuckDB warehouse file",
    "CORISYNC_GCP_PROJECT": "prod: GCP project of the BigQuery datasets",
    "CORISYNC_BQ_LOCATION": "prod: BigQuery location, e.g. EU",
    "CORISYNC_BQ_RAW_DATASET": "prod: dataset the raw CDC tables land in",
    "CORISYNC_BQ_STAGING_DATASET": "prod: dataset of the dbt staging models",
    "CORISYNC_BQ_MARTS_DATASET": "prod: dataset of the dbt marts",
    "GOOGLE_APPLICATION_CREDENTIALS": "prod: service-account key file (secret); unset on GCE with a VM identity",
    "BIGQUERY_EMULATOR_HOST": "emu: address of the local BigQuery emulator",
    "CORISYNC_DBT_TARGET": "both: override the dbt target (local, emu, prod); default follows CORISYNC_ENV",
    "CORISYNC_SPARK_MASTER": "both: Spark master URL (default local[*])",
    "CORISYNC_EXPORTS_URI": "both: where exports for dashboards go: a folder (local default <home>/exports) or "
                            "gs://bucket/prefix (prod)",
    "CORISYNC_WEB_TOPIC": "both: Kafka topic of the web analytics events (default web.events; its DLQ is <topic>.dlq)",
    "CORISYNC_WEB_CONSUMER_GROUP": "both: consumer group the web Spark assets commit to (default corisync-web)",
    "CORISYNC_LAKE_URI": "both: the lake the Spark assets write Parquet to: a folder (local default <home>/lake) or "
                         "gs://bucket/prefix (prod)",
    "CORISYNC_COLLECTOR_HOST": "collector: address the web event collector listens on (default 127.0.0.1)",
    "CORISYNC_COLLECTOR_PORT": "collector: its port (default 28080)",
    "CORISYNC_COLLECTOR_WRITE_KEYS": "collector: the collector's write keys, source=key[,source=key...] (secret); "
                                     "local: generated on first `stack up`",
    "CORISYNC_COLLECTOR_ALLOWED_ORIGINS": "collector: comma-separated origins allowed by the collector's CORS policy",
    "CORISYNC_COLLECTOR_RATE_LIMIT": "collector: events per second each write key may send (burst: 2 s worth)",
    "CORISYNC_COLLECTOR_MAX_BODY_BYTES": "collector: largest batch body the collector accepts (default 512 KiB)",
    "CORISYNC_AIRBYTE_URL": "both: base URL of the Airbyte server (its APIs are <url>/api/public/v1 and <url>/api/v1); "
                            "local default: the stand-in of the local stack, http://127.0.0.1:<CORISYNC_AIRBYTE_PORT>",
    "CORISYNC_AIRBYTE_PORT": "local: port of the local Airbyte stand-in (default 28001)",
    "CORISYNC_AIRBYTE_WORKSPACE_ID": "both: the Airbyte workspace of the connections (local default: the stand-in's)",
    "CORISYNC_AIRBYTE_CLIENT_ID": "both: Airbyte application client id; local: generated on first `stack up`",
    "CORISYNC_AIRBYTE_CLIENT_SECRET": "both: its client secret (secret); local: generated on first `stack up`",
    "CORISYNC_BQ_AIRBYTE_DATASET": "prod: dataset Airbyte's BigQuery destination writes to (default corisync_airbyte)",
    "DAGSTER_PG_HOST": "both: Postgres host of Dagster's instance storage",
    "DAGSTER_PG_PORT": "both: its port",
    "DAGSTER_PG_DB": "both: its database",
    "DAGSTER_PG_USER": "both: its user",
    "DAGSTER_PG_PASSWORD": "both: its password (secret)",
    # Read only by the Metabase provisioning job (corisync_assets/metabase/config.py), not by Dagster.
    "METABASE_URL": "metabase: base URL of Metabase for the provisioning job (default http://localhost:3001)",
    "METABASE_ADMIN_EMAIL": "metabase: admin login (created by the job on a fresh instance)",
    "METABASE_ADMIN_PASSWORD": "metabase: its password (secret)",
    "METABASE_BQ_CREDENTIALS_FILE": "metabase: key file of the read-only metabase service account (secret)",
}

Mode = Literal["local", "prod"]

#: the workspace the local Airbyte stand-in serves (a fixed id: nothing secret about it)
LOCAL_AIRBYTE_WORKSPACE_ID = "5ae6b09b-fdec-41af-aaf7-7d94cfc33ef6"


class Settings(BaseModel):
    """Typed view of the environment; defaults describe the local stack."""

    mode: Mode = "local"
    home: Path = PROJECT_ROOT / ".corisync"
    connector_config: Path = PROJECT_ROOT / "docker" / "debezium" / "tc4a-postgres.json"
    kafka_bootstrap: str = "127.0.0.1:29092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = Field(default=None, repr=False)
    consumer_group: str = "corisync-raw-cdc"
    lag_threshold: int = 0
    lag_stall_s: float = 60.0
    pg_host: str = "127.0.0.1"
    pg_port: int = 25432
    pg_database: str = "tc4a"
    pg_user: str = "tc4a_app"
    pg_password: str | None = Field(default=None, repr=False)
    pg_cdc_user: str = "corisync_cdc"
    pg_cdc_password: str | None = Field(default=None, repr=False)
    duckdb_path: Path | None = None
    gcp_project: str | None = None
    bq_location: str = "EU"
    bq_raw_dataset: str = "corisync_raw"
    bq_staging_dataset: str = "corisync_staging"
    bq_marts_dataset: str = "corisync_marts"
    bigquery_emulator_host: str | None = None
    dbt_target: str | None = None
    spark_master: str = "local[*]"
    exports_uri: str | None = None
    web_topic: str = "web.events"
    web_consumer_group: str = "corisync-web"
    lake_uri: str | None = None
    collector_host: str = "127.0.0.1"
    collector_port: int = 28080
    collector_write_keys: str | None = Field(default=None, repr=False)
    collector_allowed_origins: str = "http://localhost:3000,http://127.0.0.1:3000"
    collector_rate_limit: float = 5000.0
    collector_max_body_bytes: int = 512 * 1024
    airbyte_url: str | None = None
    airbyte_port: int = 28001
    airbyte_workspace_id: str = LOCAL_AIRBYTE_WORKSPACE_ID
    airbyte_client_id: str | None = None
    airbyte_client_secret: str | None = Field(default=None, repr=False)
    bq_airbyte_dataset: str = "corisync_airbyte"

    @property
    def warehouse_path(self) -> Path:
        return self.duckdb_path or self.home / "warehouse.duckdb"

    @property
    def exports_location(self) -> str:
        """Where exports for dashboards are written: a folder, or gs://bucket/prefix."""
        return self.exports_uri or str(self.home / "exports")

    @property
    def lake_location(self) -> str:
        """Where the Spark assets write Parquet: a folder, or gs://bucket/prefix."""
        return self.lake_uri or str(self.home / "lake")

    @property
    def airbyte_base_url(self) -> str:
        """The Airbyte server: the configured one, else the local stack's stand-in."""
        return (self.airbyte_url or f"http://127.0.0.1:{self.airbyte_port}").rstrip("/")

    @property
    def airbyte_schema(self) -> str:
        """Where Airbyte's destination writes: the BigQuery dataset in prod, schema raw_airbyte locally."""
        return self.bq_airbyte_dataset if self.mode == "prod" else "raw_airbyte"

    @property
    def web_dlq_topic(self) -> str:
        return self.web_topic + ".dlq"

    @property
    def effective_dbt_target(self) -> str:
        return self.dbt_target or ("prod" if self.mode == "prod" else "local")

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka settings shared by every client (consumer, producer, admin)."""
        from corisync_assets.resources.kafka import client_conf

        return client_conf(self.kafka_bootstrap, self.kafka_security_protocol, self.kafka_sasl_mechanism,
                           self.kafka_sasl_username, self.kafka_sasl_password)


_FIELDS = {
    "mode": "CORISYNC_ENV",
    "home": "CORISYNC_HOME",
    "connector_config": "CORISYNC_CONNECTOR_CONFIG",
    "kafka_bootstrap": "CORISYNC_KAFKA_BOOTSTRAP",
    "kafka_security_protocol": "CORISYNC_KAFKA_SECURITY_PROTOCOL",
    "kafka_sasl_mechanism": "CORISYNC_KAFKA_SASL_MECHANISM",
    "kafka_sasl_username": "CORISYNC_KAFKA_SASL_USERNAME",
    "kafka_sasl_password": "CORISYNC_KAFKA_SASL_PASSWORD",
    "consumer_group": "CORISYNC_CONSUMER_GROUP",
    "lag_threshold": "CORISYNC_LAG_THRESHOLD",
    "lag_stall_s": "CORISYNC_LAG_STALL_S",
    "pg_host": "CORISYNC_PG_HOST",
    "pg_port": "CORISYNC_PG_PORT",
    "pg_database": "CORISYNC_PG_DATABASE",
    "pg_user": "CORISYNC_PG_USER",
    "pg_password": "CORISYNC_PG_PASSWORD",
    "pg_cdc_user": "CORISYNC_PG_CDC_USER",
    "pg_cdc_password": "CORISYNC_PG_CDC_PASSWORD",
    "duckdb_path": "CORISYNC_DUCKDB_PATH",
    "gcp_project": "CORISYNC_GCP_PROJECT",
    "bq_location": "CORISYNC_BQ_LOCATION",
    "bq_raw_dataset": "CORISYNC_BQ_RAW_DATASET",
    "bq_staging_dataset": "CORISYNC_BQ_STAGING_DATASET",
    "bq_marts_dataset": "CORISYNC_BQ_MARTS_DATASET",
    "bigquery_emulator_host": "BIGQUERY_EMULATOR_HOST",
    "dbt_target": "CORISYNC_DBT_TARGET",
    "spark_master": "CORISYNC_SPARK_MASTER",
    "exports_uri": "CORISYNC_EXPORTS_URI",
    "web_topic": "CORISYNC_WEB_TOPIC",
    "web_consumer_group": "CORISYNC_WEB_CONSUMER_GROUP",
    "lake_uri": "CORISYNC_LAKE_URI",
    "collector_host": "CORISYNC_COLLECTOR_HOST",
    "collector_port": "CORISYNC_COLLECTOR_PORT",
    "collector_write_keys": "CORISYNC_COLLECTOR_WRITE_KEYS",
    "collector_allowed_origins": "CORISYNC_COLLECTOR_ALLOWED_ORIGINS",
    "collector_rate_limit": "CORISYNC_COLLECTOR_RATE_LIMIT",
    "collector_max_body_bytes": "CORISYNC_COLLECTOR_MAX_BODY_BYTES",
    "airbyte_url": "CORISYNC_AIRBYTE_URL",
    "airbyte_port": "CORISYNC_AIRBYTE_PORT",
    "airbyte_workspace_id": "CORISYNC_AIRBYTE_WORKSPACE_ID",
    "airbyte_client_id": "CORISYNC_AIRBYTE_CLIENT_ID",
    "airbyte_client_secret": "CORISYNC_AIRBYTE_CLIENT_SECRET",
    "bq_airbyte_dataset": "CORISYNC_BQ_AIRBYTE_DATASET",
}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


_environ_lock = threading.RLock()


@contextmanager
def exported(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` overlaid on this process's environment for the block (for libraries that read it: dbt's
    profile, Dagster's ``dagster.yaml``), then each of those variables as it was; one block at a time."""
    with _environ_lock, overlaid(env):
        yield


@contextmanager
def overlaid(env: Mapping[str, str | None]) -> Iterator[None]:
    """``env`` set in this process's environment (None: the variable removed) for the block, then each of
    those variables as it was. No lock: for a block that owns the environment meanwhile (a test session's
    stack); concurrent callers use :func:`exported`."""
    saved = {name: os.environ.get(name) for name in env}
    try:
        _set_environ(env)
        yield
    finally:
        _set_environ(saved)


def _set_environ(values: Mapping[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def local_secrets_file(home: Path) -> Path:
    """Passwords the local stack generated on first `stack up` (git-ignored, mode 600)."""
    return home / "secrets.env"


def _load_local_secrets(home: Path) -> None:
    """Make the local stack's generated passwords visible as environment variables (env wins)."""
    path = local_secrets_file(home)
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip():
            os.environ.setdefault(name.strip(), value.strip())


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read the settings from the environment; raise ConfigError naming the bad variable."""
    env = os.environ if environ is None else environ
    raw = {field: env[var] for field, var in _FIELDS.items() if env.get(var, "") != ""}
    mode = raw.get("mode", "local")
    if mode not in ("local", "prod"):
        raise ConfigError(f"CORISYNC_ENV must be 'local' or 'prod', not {mode!r}")
    if mode == "local" and environ is None:
        _load_local_secrets(Path(raw.get("home", Settings.model_fields["home"].default)))
        raw = {field: os.environ[var] for field, var in _FIELDS.items() if os.environ.get(var, "") != ""}
    try:
        settings = Settings(**raw)
    except Exception as exc:  # pydantic names the field; translate it to the variable
        first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": ["?"], "msg": str(exc)}
        field = str(first["loc"][0])
        raise ConfigError(f"{_FIELDS.get(field, field)}: {first['msg']}") from None
    if settings.mode == "prod":
        missing = [v for f, v in _FIELDS.items() if f in ("gcp_project",) and getattr(settings, f) is None]
        if "kafka_bootstrap" not in raw:
            missing.append("CORISYNC_KAFKA_BOOTSTRAP")
        if missing:
            raise ConfigError(f"prod mode needs {', '.join(missing)} set")
    return settings


@cache
def settings() -> Settings:
    """Process-wide settings (read once)."""
    return load_settings()


def resources(s: Settings) -> dict:
    """The resources every asset, sensor and schedule is bound to; the only place that picks per mode."""
    from dagster import EnvVar

    from corisync_assets.resources.kafka import KafkaResource

    kafka = KafkaResource(
        bootstrap_servers=s.kafka_bootstrap,
        security_protocol=s.kafka_security_protocol,
        sasl_mechanism=s.kafka_sasl_mechanism,
        sasl_username=s.kafka_sasl_username,
        # the secret stays an EnvVar: Dagster resolves it at run time and never shows it in the UI
        sasl_password=EnvVar("CORISYNC_KAFKA_SASL_PASSWORD") if s.kafka_sasl_password else None,
        consumer_group=s.consumer_group,
    )
    from corisync_assets.exports.store import ExportStore
    from corisync_assets.web.assets import WebPipeline

    web = WebPipeline(topic=s.web_topic, consumer_group=s.web_consumer_group, lake_uri=s.lake_location,
                      spark_master=s.spark_master)
    return {"kafka": kafka, "warehouse": warehouse_resource(s), "exports": ExportStore(uri=s.exports_location),
            "web": web}


_warehouses: dict[str, object] = {}


def warehouse_resource(s: Settings):
    """The warehouse raw CDC lands in (and whose writer slot dbt shares): BigQuery in prod, DuckDB locally.

    One object per settings, so the CDC and dbt parts of the code location bind the very same resource."""
    key = s.model_dump_json()
    if key not in _warehouses:
        if s.mode == "prod":
            from corisync_assets.resources.warehouse.bigquery import BigQueryWarehouse

            _warehouses[key] = BigQueryWarehouse.from_settings(s)
        else:
            from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse

            _warehouses[key] = DuckDBWarehouse(path=str(s.warehouse_path))
    return _warehouses[key]
