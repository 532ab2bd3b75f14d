"""BigQuery implementation of the landing interface (prod mode; the emulator tier in tests).

Same semantics as the DuckDB reference (`duckdb.py`), in GoogleSQL:

1. DDL outside the transaction (BigQuery allows no DDL inside one): `<table>__changelog`, `<table>` and
   `_dead_letters` are created if missing; new source columns are added to `<table>` (additive evolution).
2. The batch's events (and its dead letters) are loaded into short-lived staging tables in the raw dataset
   with a load job: newline-delimited JSON over a *resumable* upload, which both BigQuery and the
   emulator accept (the client's multipart upload sends a `*/*` part the emulator rejects). Staging
   tables expire after a day even if a crash skips the cleanup.
3. One multi-statement script in one transaction: drop events already in the changelog (by `event_id`;
   within the batch the first occurrence by partition/offset wins), append the rest to the changelog,
   apply them to the current state with one MERGE (latest event per key by partition/offset; deletes
   remove; a truncate clears the table and only events with a higher LSN apply; a snapshot end marker
   deletes rows with a lower `_cdc_lsn`), insert new dead letters. Values stay in wire form until here
   and are cast in SQL (JSON_VALUE, then CAST to NUMERIC/BIGNUMERIC, TIMESTAMP, JSON, ...). CAST, not
   SAFE_CAST: like DuckDB, a value that does not fit fails the batch instead of landing as NULL.

`dagster_gcp.BigQueryResource` has no endpoint or credentials override (needed for the emulator), so this
resource builds the `google.cloud.bigquery.Client` itself: Application Default Credentials in prod,
anonymous credentials and `http://<emulator_host>` when `emulator_host` is set. Every API call carries a
short request timeout and a short retry deadline, so an unreachable endpoint fails in seconds.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import Field, PrivateAttr

from corisync_assets.cdc.envelope import SNAPSHOT_END, ChangeBatch, Column, check_identifier
from corisync_assets.environment import ConfigError, Settings
from corisync_assets.resources.warehouse.base import DEAD_LETTERS, LandResult, Warehouse

#: BigQuery's NUMERIC holds 29 integer and 9 fractional digits, BIGNUMERIC 38 and 38.
_NUMERIC_INT, _NUMERIC_SCALE, _BIGNUMERIC_INT, _BIGNUMERIC_SCALE = 29, 9, 38, 38


def q(*parts: str) -> str:
    """A backquoted (project.)dataset.table path; every part validated as an identifier (project ids may
    contain dashes, so the project part is checked separately by `_check_project`)."""
    return "`" + ".".join(parts) + "`"


def _check_project(project: str) -> str:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.:_")
    if not project or not set(project) <= allowed:
        raise ConfigError(f"CORISYNC_GCP_PROJECT: {project!r} is not a valid GCP project id")
    return project


def bq_type(col: Column) -> str:
    """The column's GoogleSQL type (what a CAST targets; parameterized for decimals)."""
    t = col.logical_type
    if t == "decimal":
        p, s = col.precision, col.scale or 0
        if p is not None and p <= 38:
            if s <= _NUMERIC_SCALE and p - s <= _NUMERIC_INT:
                return f"NUMERIC({p}, {s})" if p >= 1 else "NUMERIC"
            if s <= _BIGNUMERIC_SCALE and p - s <= _BIGNUMERIC_INT:
                return f"BIGNUMERIC({p}, {s})"
        return "STRING"  # unconstrained numeric: keep the exact text rather than round it (as DuckDB)
    return {
        "int16": "INT64", "int32": "INT64", "int64": "INT64", "float32": "FLOAT64", "float64": "FLOAT64",
        "bool": "BOOL", "string": "STRING", "date": "DATE", "timestamp": "DATETIME",
        "timestamptz": "TIMESTAMP", "json": "JSON", "bytes": "BYTES",
    }[t]


def schema_field(col: Column):
    """The column as a table schema field (type and, for decimals, precision/scale)."""
    from google.cloud import bigquery

    t = bq_type(col)
    if t.startswith(("NUMERIC(", "BIGNUMERIC(")):
        base = t.split("(")[0]
        return bigquery.SchemaField(col.name, base, precision=col.precision, scale=col.scale or 0)
    return bigquery.SchemaField(col.name, t)


def sql_value(col: Column, ref: str) -> str:
    """Expression converting the wire value `ref` (JSON_VALUE text) to the column's type."""
    t = col.logical_type
    if t in ("int16", "int32", "int64"):
        return f"CAST({ref} AS INT64)"
    if t in ("float32", "float64"):
        return f"CAST({ref} AS FLOAT64)"
    if t == "bool":
        return f"CAST({ref} AS BOOL)"
    if t == "date":  # days since the epoch
        return f"DATE_FROM_UNIX_DATE(CAST({ref} AS INT64))"
    if t == "timestamp":  # naive timestamp as micro- or milliseconds since the epoch
        fn = "TIMESTAMP_MICROS" if col.scale == 6 else "TIMESTAMP_MILLIS"
        return f"DATETIME({fn}(CAST({ref} AS INT64)), 'UTC')"
    if t == "timestamptz":  # ISO-8601 text with zone
        return f"CAST({ref} AS TIMESTAMP)"
    if t == "json":  # Debezium's io.debezium.data.Json: the JSON document as a string
        return f"PARSE_JSON({ref})"
    if t == "bytes":
        return f"FROM_BASE64({ref})"
    target = bq_type(col)
    return ref if target == "STRING" else f"CAST({ref} AS {target})"


def _fields(spec: str):
    from google.cloud import bigquery

    out = []
    for item in spec.split(","):
        name, typ, *mode = item.split()
        out.append(bigquery.SchemaField(name, typ, mode=mode[0] if mode else "NULLABLE"))
    return out


CHANGELOG_FIELDS = (
    "event_id STRING REQUIRED, op STRING REQUIRED, key JSON, before JSON, after JSON, source_lsn INT64,"
    " source_txid INT64, source_ts_ms INT64, snapshot STRING, kafka_topic STRING, kafka_partition INT64,"
    " kafka_offset INT64, landed_at TIMESTAMP REQUIRED"
)
DEAD_LETTER_FIELDS = (
    "source_table STRING, kafka_topic STRING, kafka_partition INT64, kafka_offset INT64, error STRING,"
    " key STRING, value STRING, landed_at TIMESTAMP REQUIRED"
)
STAGE_EVENT_FIELDS = (
    "_cdc_event_id STRING, _cdc_op STRING, _cdc_lsn INT64, _cdc_txid INT64, _cdc_ts_ms INT64,"
    " _cdc_snapshot STRING, _cdc_topic STRING, _cdc_partition INT64, _cdc_offset INT64, _cdc_key STRING,"
    " _cdc_payload STRING"
)
STAGE_DEAD_FIELDS = (
    "source_table STRING, kafka_topic STRING, kafka_partition INT64, kafka_offset INT64, error STRING,"
    " key STRING, value STRING"
)
CURRENT_META_FIELDS = "_cdc_op STRING, _cdc_lsn INT64, _cdc_ts_ms INT64, _cdc_landed_at TIMESTAMP"
#: project id used with the emulator when CORISYNC_GCP_PROJECT is unset (as in dbt_project/profiles.yml)
EMULATOR_PROJECT = "corisync-emu"
#: current-state columns a MERGE cannot cluster on
_UNCLUSTERABLE = ("FLOAT64", "JSON", "BYTES")


class BigQueryWarehouse(Warehouse):
    """Raw CDC tables in one BigQuery dataset (the dataset dbt's emu/prod targets read as raw_cdc)."""

    project: str = Field(description="GCP project of the raw dataset (CORISYNC_GCP_PROJECT)")
    dataset: str = Field(default="corisync_raw", description="raw dataset (CORISYNC_BQ_RAW_DATASET)")
    location: str = Field(default="EU", description="BigQuery location (CORISYNC_BQ_LOCATION)")
    emulator_host: str | None = Field(
        default=None, description="host:port of a BigQuery emulator (BIGQUERY_EMULATOR_HOST); None: BigQuery"
    )
    request_timeout_s: float = Field(default=30.0, description="timeout of one HTTP request to the API")
    retry_deadline_s: float = Field(default=10.0, description="how long transient API errors are retried")
    job_timeout_s: float = Field(default=600.0, description="how long to wait for a load or script job")

    _client: Any = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, s: Settings) -> BigQueryWarehouse:
        """The raw-dataset warehouse the settings describe (the emulator when BIGQUERY_EMULATOR_HOST is set;
        its project defaults to the dbt emu target's, corisync-emu)."""
        project = s.gcp_project or (EMULATOR_PROJECT if s.bigquery_emulator_host else None)
        if not project:
            raise ConfigError("CORISYNC_GCP_PROJECT must be set to land into BigQuery")
        return cls(project=project, dataset=s.bq_raw_dataset, location=s.bq_location,
                   emulator_host=s.bigquery_emulator_host)

    @property
    def kind(self) -> str:
        return "bigquery"

    # --- client ---------------------------------------------------------------------------------------

    def client(self):
        """The google.cloud.bigquery.Client (built once per resource instance)."""
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self):
        from google.api_core.client_options import ClientOptions
        from google.cloud import bigquery

        project = _check_project(self.project)
        if self.emulator_host:
            from google.auth.credentials import AnonymousCredentials

            endpoint = self.emulator_host if "://" in self.emulator_host else f"http://{self.emulator_host}"
            return bigquery.Client(project=project, location=self.location, credentials=AnonymousCredentials(),
                                   client_options=ClientOptions(api_endpoint=endpoint))
        from dagster_gcp import BigQueryResource
        from google.auth.exceptions import DefaultCredentialsError

        try:  # dagster-gcp's resource: Application Default Credentials, i.e. only from the environment
            with BigQueryResource(project=project, location=self.location).get_client() as client:
                return client
        except DefaultCredentialsError as exc:
            raise ConfigError(
                "BigQuery needs credentials: set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file "
                f"(or run with a VM/workload identity), or BIGQUERY_EMULATOR_HOST for the emulator ({exc})"
            ) from None

    @property
    def _retry(self):
        from google.cloud.bigquery.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_deadline(self.retry_deadline_s)

    def _ref(self, table: str) -> str:
        return f"{self.project}.{check_identifier(self.dataset, 'dataset')}.{check_identifier(table, 'table')}"

    def _sql_ref(self, table: str) -> str:
        return q(_check_project(self.project), check_identifier(self.dataset, "dataset"),
                 check_identifier(table, "table"))

    def _query(self, sql: str):
        """Run a query or script and wait for it; returns the rows of its last statement."""
        job = self.client().query(sql, retry=self._retry, timeout=self.request_timeout_s, job_retry=None)
        return list(job.result(timeout=self.job_timeout_s, retry=self._retry))

    # --- datasets and tables ----------------------------------------------------------------------------

    def create_dataset(self) -> None:
        """Create the raw dataset if missing (tests, the emulator; prod datasets come from terraform)."""
        from google.cloud import bigquery

        ds = bigquery.Dataset(f"{_check_project(self.project)}.{check_identifier(self.dataset, 'dataset')}")
        ds.location = self.location
        self.client().create_dataset(ds, exists_ok=True, retry=self._retry, timeout=self.request_timeout_s)

    def _check_dataset(self) -> None:
        from google.api_core.exceptions import NotFound

        ds_id = f"{_check_project(self.project)}.{check_identifier(self.dataset, 'dataset')}"
        try:
            self.client().get_dataset(ds_id, retry=self._retry, timeout=self.request_timeout_s)
        except NotFound:
            raise ConfigError(
                f"BigQuery dataset {ds_id} does not exist: create it (terraform) or point "
                "CORISYNC_BQ_RAW_DATASET at the raw dataset"
            ) from None

    def _get_table(self, table: str):
        from google.api_core.exceptions import NotFound

        try:
            return self.client().get_table(self._ref(table), retry=self._retry, timeout=self.request_timeout_s)
        except NotFound:
            return None

    def _create_table(self, table: str, fields: list, clustering: list[str] | None = None):
        from google.cloud import bigquery

        t = bigquery.Table(self._ref(table), schema=fields)
        if clustering:
            t.clustering_fields = clustering
        return self.client().create_table(t, exists_ok=True, retry=self._retry, timeout=self.request_timeout_s)

    def _ensure_tables(self, batch: ChangeBatch, current: str, changelog: str) -> None:
        schema = batch.schema
        if self._get_table(changelog) is None:
            self._create_table(changelog, _fields(CHANGELOG_FIELDS), ["source_lsn"])
        cols = [schema_field(c) for c in schema.columns]
        table = self._get_table(current)
        if table is None:
            by_name = {c.name: c for c in schema.columns}
            pk = list(schema.primary_key)
            cluster = pk if 0 < len(pk) <= 4 and all(
                bq_type(by_name[k]) not in _UNCLUSTERABLE for k in pk) else None
            table = self._create_table(current, [*cols, *_fields(CURRENT_META_FIELDS)], cluster)
        existing = {f.name for f in table.schema}
        added = [f for f in cols if f.name not in existing]
        if not added:
            return
        # additive schema evolution: a new source column becomes a new (NULLABLE) column. DDL, not a schema
        # patch: the emulator applies ALTER TABLE to the data but only a patch to its catalog, BigQuery both.
        by_name = {c.name: c for c in schema.columns}
        for f in added:
            self._query(f"ALTER TABLE {self._sql_ref(current)} ADD COLUMN IF NOT EXISTS `{f.name}` "
                        f"{bq_type(by_name[f.name])}")
        table = self._get_table(current)
        stale = [f for f in added if f.name not in {x.name for x in table.schema}]
        if stale:  # emulator only: its catalog missed the ALTER; BigQuery's table already lists the columns
            table.schema = [*table.schema, *stale]
            self.client().update_table(table, ["schema"], retry=self._retry, timeout=self.request_timeout_s)

    def _stage(self, name: str, fields: str, rows: list[dict]) -> str:
        """Load rows into a new staging table (NDJSON, resumable upload); returns its name."""
        from google.cloud import bigquery

        table = f"_stg_{name}_{uuid.uuid4().hex[:12]}"
        t = bigquery.Table(self._ref(table), schema=_fields(fields))
        t.expires = datetime.now(UTC) + timedelta(days=1)
        self.client().create_table(t, retry=self._retry, timeout=self.request_timeout_s)
        data = b"".join(orjson.dumps(r) + b"\n" for r in rows)
        config = bigquery.LoadJobConfig(schema=_fields(fields), source_format="NEWLINE_DELIMITED_JSON",
                                        write_disposition="WRITE_APPEND")
        # size=None makes the client use a resumable upload (multipart sends a part the emulator rejects)
        job = self.client().load_table_from_file(io.BytesIO(data), self._ref(table), job_config=config,
                                                 num_retries=2, timeout=self.request_timeout_s)
        job.result(timeout=self.job_timeout_s, retry=self._retry)
        return table

    def _drop(self, table: str) -> None:
        self.client().delete_table(self._ref(table), not_found_ok=True, retry=self._retry,
                                   timeout=self.request_timeout_s)

    # --- the interface ----------------------------------------------------------------------------------

    def row_count(self, table: str) -> int:
        return self._query(f"SELECT COUNT(*) AS n FROM {self._sql_ref(table)}")[0][0]

    def land(self, batch: ChangeBatch) -> LandResult:
        current, changelog = self.table_names(batch.table)
        if len(batch) and batch.schema is None:  # only truncates so far: the table's columns are unknown
            raise ValueError(f"no row schema seen yet for table {batch.table!r}; cannot land a bare truncate")
        self._check_dataset()
        if self._get_table(DEAD_LETTERS) is None:
            self._create_table(DEAD_LETTERS, _fields(DEAD_LETTER_FIELDS))
        if len(batch):
            self._ensure_tables(batch, current, changelog)
        staged: list[str] = []
        try:
            events = dead = None
            if len(batch):
                events = self._stage(batch.table, STAGE_EVENT_FIELDS, batch.to_arrow().to_pylist())
                staged.append(events)
            if batch.dead_letters:
                dead = self._stage(DEAD_LETTERS.lstrip("_"), STAGE_DEAD_FIELDS, [
                    {"source_table": batch.table, "kafka_topic": d.topic, "kafka_partition": d.partition,
                     "kafka_offset": d.offset, "error": d.error,
                     "key": d.key.decode("utf-8", "replace") if d.key else None,
                     "value": d.value.decode("utf-8", "replace") if d.value is not None else None}
                    for d in batch.dead_letters])
                staged.append(dead)
            if not staged:
                return LandResult(0, 0, 0)
            row = self._query(self.landing_script(batch, events, dead))[0]
            new_events, new_dead = int(row[0]), int(row[1])
        finally:
            for table in staged:
                self._drop(table)
        return LandResult(new_events, len(batch) - new_events, new_dead)

    # --- the script -------------------------------------------------------------------------------------

    def landing_script(self, batch: ChangeBatch, events: str | None, dead: str | None) -> str:
        """The one transaction landing a staged batch; its last statement selects (new events, new dead)."""
        current, changelog = self.table_names(batch.table)
        cur, log, dlq = self._sql_ref(current), self._sql_ref(changelog), self._sql_ref(DEAD_LETTERS)
        # GoogleSQL wants every DECLARE at the top of the script
        parts = ["DECLARE new_events INT64 DEFAULT 0;", "DECLARE new_dead INT64 DEFAULT 0;",
                 "DECLARE truncate_lsn INT64;", "DECLARE snapshot_end INT64;", "BEGIN TRANSACTION;"]
        if dead is not None:
            stg = self._sql_ref(dead)
            # the same message (topic, partition, offset and bytes) dead-lettered twice is one row
            parts.append(f"""
CREATE OR REPLACE TEMP TABLE _dl_new AS
SELECT d.* FROM {stg} d
WHERE NOT EXISTS (
    SELECT 1 FROM {dlq} x
    WHERE x.kafka_topic = d.kafka_topic AND x.kafka_partition = d.kafka_partition
      AND x.kafka_offset = d.kafka_offset
      AND (x.value = d.value OR (x.value IS NULL AND d.value IS NULL)));
SET new_dead = (SELECT COUNT(*) FROM _dl_new);
INSERT INTO {dlq} (source_table, kafka_topic, kafka_partition, kafka_offset, error, key, value, landed_at)
SELECT source_table, kafka_topic, kafka_partition, kafka_offset, error, key, value, CURRENT_TIMESTAMP()
FROM _dl_new;""")
        if events is not None:
            parts.append(self._events_sql(batch, self._sql_ref(events), cur, log))
        parts.append("COMMIT TRANSACTION;")
        # BigQuery drops a script's temp tables when it ends; the emulator keeps them in the dataset
        temps = (["_dl_new"] if dead is not None else []) + (["_new", "_latest"] if events is not None else [])
        parts += [f"DROP TABLE IF EXISTS {t};" for t in temps]
        parts.append("SELECT new_events, new_dead;")
        return "\n".join(parts)

    @staticmethod
    def _events_sql(batch: ChangeBatch, stg: str, cur: str, log: str) -> str:
        schema = batch.schema
        by_name = {c.name: c for c in schema.columns}

        def raw(col: Column) -> str:  # deletes carry the primary key in the Kafka key only
            ref = f"JSON_VALUE(_cdc_payload, '$.after.{col.name}')"
            return f"COALESCE({ref}, JSON_VALUE(_cdc_key, '$.{col.name}'))" if col.name in schema.primary_key else ref

        names = [check_identifier(c.name, "column") for c in schema.columns]
        cols = ", ".join(f"`{n}`" for n in names)
        pk = [check_identifier(k, "key column") for k in schema.primary_key]
        match = " AND ".join(f"t.`{k}` = l.`{k}`" for k in pk)
        ends = ", ".join(f"'{v}'" for v in sorted(SNAPSHOT_END))
        sets = ", ".join(f"`{n}` = l.`{n}`" for n in names)
        meta_sets = "_cdc_op = l._cdc_op, _cdc_lsn = l._cdc_lsn, _cdc_ts_ms = l._cdc_ts_ms, " \
                    "_cdc_landed_at = CURRENT_TIMESTAMP()"
        values = ", ".join(f"l.`{n}`" for n in names)
        return f"""
CREATE OR REPLACE TEMP TABLE _new AS
SELECT * FROM {stg} i
WHERE NOT EXISTS (
    SELECT 1 FROM {log} c
    WHERE c.source_lsn BETWEEN (SELECT MIN(_cdc_lsn) FROM {stg}) AND (SELECT MAX(_cdc_lsn) FROM {stg})
      AND c.event_id = i._cdc_event_id)
QUALIFY ROW_NUMBER() OVER (PARTITION BY _cdc_event_id ORDER BY _cdc_partition, _cdc_offset) = 1;
SET new_events = (SELECT COUNT(*) FROM _new);
INSERT INTO {log} (event_id, op, key, before, after, source_lsn, source_txid, source_ts_ms, snapshot,
                   kafka_topic, kafka_partition, kafka_offset, landed_at)
SELECT _cdc_event_id, _cdc_op, PARSE_JSON(_cdc_key),
       PARSE_JSON(NULLIF(JSON_QUERY(_cdc_payload, '$.before'), 'null')),
       PARSE_JSON(NULLIF(JSON_QUERY(_cdc_payload, '$.after'), 'null')),
       _cdc_lsn, _cdc_txid, _cdc_ts_ms, _cdc_snapshot, _cdc_topic, _cdc_partition, _cdc_offset,
       CURRENT_TIMESTAMP()
FROM _new;
SET truncate_lsn = (SELECT MAX(_cdc_lsn) FROM _new WHERE _cdc_op = 't');
DELETE FROM {cur} WHERE truncate_lsn IS NOT NULL;
CREATE OR REPLACE TEMP TABLE _latest AS
SELECT {", ".join(f"{sql_value(c, raw(c))} AS `{c.name}`" for c in schema.columns)},
       _cdc_op, _cdc_lsn, _cdc_ts_ms
FROM _new
WHERE _cdc_op <> 't' AND _cdc_lsn > COALESCE(truncate_lsn, -1)
QUALIFY ROW_NUMBER() OVER (PARTITION BY {", ".join(raw(by_name[k]) for k in pk)}
                           ORDER BY _cdc_partition DESC, _cdc_offset DESC) = 1;
MERGE {cur} t USING _latest l ON {match}
WHEN MATCHED AND l._cdc_op = 'd' THEN DELETE
WHEN MATCHED THEN UPDATE SET {sets}, {meta_sets}
WHEN NOT MATCHED AND l._cdc_op <> 'd' THEN
    INSERT ({cols}, _cdc_op, _cdc_lsn, _cdc_ts_ms, _cdc_landed_at)
    VALUES ({values}, l._cdc_op, l._cdc_lsn, l._cdc_ts_ms, CURRENT_TIMESTAMP());
-- A finished snapshot re-read every live row at its LSN: older rows were deleted while their delete
-- event was lost (e.g. the local broker restarted before landing).
SET snapshot_end = (SELECT MAX(_cdc_lsn) FROM _new WHERE _cdc_op = 'r' AND _cdc_snapshot IN ({ends}));
DELETE FROM {cur} WHERE _cdc_lsn < snapshot_end;"""
