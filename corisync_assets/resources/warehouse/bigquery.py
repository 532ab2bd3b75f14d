"""BigQuery implementation of the landing interface (prod mode; the emulator tier in tests).

BigQuery limits how often a table may be changed by jobs (load jobs, DML), so landing a batch every second
the way DuckDB does (one transaction per cycle doing the upserts) would soon be queued or refused. Landing is
split in two, as BigQuery's own CDC ingestion is (docs/bigquery_landing.md has the reasoning and the quotas):

**Append, every cycle, no job.** `land_all` appends each event of every table, in wire form (the Debezium
payload and key as text, plus LSN, tx id, topic/partition/offset), and each dead letter to one landing table,
``_cdc_stream``, through the BigQuery **Storage Write API** default stream (gRPC ``AppendRows``; committed
on acknowledgement, at-least-once). Only after every append of the cycle was acknowledged does it append the
cycle's marker to ``_cdc_cycles``. No load job, no query, no DML per cycle. An event this process already
appended in a complete cycle (same ``event_id``) is reported as a duplicate and not appended again.

**Fold, on a bounded cadence, one query job.** `fold` (due every ``fold_interval_s``, or forced, e.g. at the
end of a raw run) runs ONE multi-statement script. It reads the rows of every complete cycle not yet folded (a
marker in ``_cdc_cycles``, no row in ``_cdc_folded``) into temp tables, then in one transaction (which first
updates ``_cdc_fold_state``, so concurrent folds conflict and one is aborted, then retried) it, per table,
appends the new events to
``<table>__changelog`` (dropping events whose ``event_id`` is already there: appends may repeat after a
crash) and applies them to ``<table>`` with one MERGE (latest event per key; deletes remove; a truncate clears
the table and only events with a higher LSN apply; a finished snapshot removes rows with a lower LSN), dedupes
dead letters into ``_dead_letters``, and records the folded cycles. Rows of a cycle whose marker is missing
(the lander died mid-cycle; its Kafka offsets were not committed, so the events come again in a later cycle)
are never folded. Every table is thus folded up to the same set of complete cycles in one transaction: the
tables dbt reads (current state and changelog) are always a transactionally consistent cut of Postgres.

Schemas: the fold needs each table's columns (logical types, primary key) to write its SQL. They are
registered in ``_cdc_schemas`` when a process first meets a schema (an INSERT job, after an ALTER TABLE job
when the schema adds columns to ``<table>``), and read back with ``tabledata.list`` (not a job) when folding.

Values stay in wire form until the fold and are cast in SQL (JSON_VALUE, then CAST to NUMERIC/BIGNUMERIC,
TIMESTAMP, JSON, ...). CAST, not SAFE_CAST: like DuckDB, a value that does not fit fails the fold instead of
landing as NULL.

`dagster_gcp.BigQueryResource` has no endpoint or credentials override (needed for the emulator), so this
resource builds the `google.cloud.bigquery.Client` (and the Storage Write API client) itself: Application
Default Credentials in prod, anonymous credentials and `http://<emulator_host>` (gRPC on its port + 10, the
emulator's default pair 9050/9060) when `emulator_host` is set. Every API call carries a short request timeout
and a short retry deadline, so an unreachable endpoint fails in seconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

from pydantic import Field, PrivateAttr

from corisync_assets.cdc.envelope import (
    DATE_INFINITY,
    INTERVAL_ISO,
    NAN_WIRE,
    SNAPSHOT_END,
    TIMESTAMP_INFINITY,
    ChangeBatch,
    Column,
    TableSchema,
    check_identifier,
)
from corisync_assets.environment import ConfigError, Settings
from corisync_assets.resources.warehouse.base import (
    DEAD_LETTER_SUMMARY_SQL,
    DEAD_LETTERS,
    PARTITIONED_TYPES,
    LandResult,
    RelationReader,
    StoredDeadLetter,
    TableRows,
    Warehouse,
    snapshot_end_sql,
)

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


def _table_parts(project: str, dataset: str, table: str) -> tuple[str, str, str]:
    """(project, dataset, table) of a table's full name, each part validated."""
    return _check_project(project), check_identifier(dataset, "dataset"), check_identifier(table, "table")


def bq_type(col: Column) -> str:
    """The column's GoogleSQL type (what a CAST targets; parameterized for decimals)."""
    t = col.logical_type
    if t == "decimal":
        p, s = col.precision, col.scale or 0
        if col.fixed_decimal:
            if s <= _NUMERIC_SCALE and p - s <= _NUMERIC_INT:
                return f"NUMERIC({p}, {s})" if p >= 1 else "NUMERIC"
            if s <= _BIGNUMERIC_SCALE and p - s <= _BIGNUMERIC_INT:
                return f"BIGNUMERIC({p}, {s})"
        return "STRING"  # unconstrained numeric: keep the exact text rather than round it (as DuckDB)
    return {
        "int16": "INT64", "int32": "INT64", "int64": "INT64", "float32": "FLOAT64", "float64": "FLOAT64",
        "bool": "BOOL", "string": "STRING", "date": "DATE", "time": "TIME", "timestamp": "DATETIME",
        "timestamptz": "TIMESTAMP", "interval": "INTERVAL", "json": "JSON", "array": "JSON", "bytes": "BYTES",
        # GoogleSQL has no time with zone: its exact text; values without a mapping: their exact text
        "timetz": "STRING", "text": "STRING",
    }[t]


def schema_field(col: Column):
    """The column as a table schema field (type and, for decimals, precision/scale)."""
    from google.cloud import bigquery

    t = bq_type(col)
    if t.startswith(("NUMERIC(", "BIGNUMERIC(")):
        base = t.split("(")[0]
        return bigquery.SchemaField(col.name, base, precision=col.precision, scale=col.scale or 0)
    return bigquery.SchemaField(col.name, t)


def wire_ref(col: Column, doc: str, path: str) -> str:
    """The column's wire value at JSONPath `path` of the JSON text `doc`: a scalar's text (JSON_VALUE); an
    array as JSON text; for ``text`` columns whichever of the two the value is."""
    query = f"NULLIF(JSON_QUERY({doc}, '{path}'), 'null')"
    if col.logical_type == "array":
        return query
    if col.logical_type == "text":
        return f"COALESCE(JSON_VALUE({doc}, '{path}'), {query})"
    return f"JSON_VALUE({doc}, '{path}')"


#: units -> the expression turning `ref` (an integer in those units, as text) into INT64 microseconds
_TO_MICROS = {3: "CAST({ref} AS INT64) * 1000", 6: "CAST({ref} AS INT64)", 9: "DIV(CAST({ref} AS INT64), 1000)"}


#: GoogleSQL's DATE range (0001-01-01 .. 9999-12-31) in days since the epoch, and its DATETIME/TIMESTAMP
#: range per wire unit (milli-, micro-, nanoseconds; every int64 of nanoseconds lies within it)
_DAYS_RANGE = (-719_162, 2_932_896)
_UNITS_RANGE = {3: (-62_135_596_800_000, 253_402_300_799_999),
                6: (-62_135_596_800_000_000, 253_402_300_799_999_999), 9: None}


def _in_range(value: str, bounds: tuple[int, int] | None, expr: str) -> str:
    """``expr`` where the integer ``value`` lies within ``bounds`` (None: always), else NULL."""
    return expr if bounds is None else f"IF({value} BETWEEN {bounds[0]} AND {bounds[1]}, {expr}, NULL)"


def _clamped(ref: str, sentinels: dict[str, tuple], high: str, low: str, otherwise: str) -> str:
    """``otherwise``, except for the wire texts of +/-infinity (``sentinels``), which become ``high``/``low``."""
    def wire(name: str) -> str:
        return ", ".join(f"'{v}'" for v in sentinels[name])

    return f"CASE WHEN {ref} IN ({wire('infinity')}) THEN {high} WHEN {ref} IN ({wire('-infinity')}) THEN {low} " \
           f"ELSE {otherwise} END"


def sql_value(col: Column, ref: str) -> str:
    """Expression converting the wire value `ref` (see wire_ref) to the column's type."""
    t = col.logical_type
    if t == "time":  # units since midnight (GoogleSQL's TIME ends at 23:59:59.999999: 24:00:00 wraps to 0)
        return f"TIME_ADD(TIME '00:00:00', INTERVAL {_TO_MICROS[col.scale].format(ref=ref)} MICROSECOND)"
    if t == "array":
        return f"PARSE_JSON({ref})"
    if t in ("int16", "int32", "int64"):
        return f"CAST({ref} AS INT64)"
    if t in ("float32", "float64"):
        return f"CAST({ref} AS FLOAT64)"
    if t == "bool":
        return f"CAST({ref} AS BOOL)"
    # GoogleSQL has no infinity: Postgres' +/-infinity land as the ends of BigQuery's ranges; a value outside
    # them (years 0001..9999; Postgres reaches 4713 BC and 5874897 AD) as NULL: no GoogleSQL type holds it
    if t == "date":  # days since the epoch
        days = f"CAST({ref} AS INT64)"
        return _clamped(ref, DATE_INFINITY, "DATE '9999-12-31'", "DATE '0001-01-01'",
                        _in_range(days, _DAYS_RANGE, f"DATE_FROM_UNIX_DATE({days})"))
    if t == "timestamp":  # naive timestamp as milli-, micro- or nanoseconds since the epoch (kept to micros)
        stamp = f"DATETIME(TIMESTAMP_MICROS({_TO_MICROS[col.scale].format(ref=ref)}), 'UTC')"
        return _clamped(ref, TIMESTAMP_INFINITY, "DATETIME '9999-12-31 23:59:59.999999'",
                        "DATETIME '0001-01-01 00:00:00'",
                        _in_range(f"CAST({ref} AS INT64)", _UNITS_RANGE[col.scale], stamp))
    if t == "timestamptz":  # ISO-8601 text in UTC (Z); a year past 9999 signed (+10000-…), 1 BC as year 0000
        return _clamped(ref, {"infinity": ("infinity",), "-infinity": ("-infinity",)},
                        "TIMESTAMP '9999-12-31 23:59:59.999999+00'", "TIMESTAMP '0001-01-01 00:00:00+00'",
                        f"IF(REGEXP_CONTAINS({ref}, r'^[0-9]{{4}}-') AND NOT STARTS_WITH({ref}, '0000-'), "
                        f"CAST({ref} AS TIMESTAMP), NULL)")
    if t == "json":  # Debezium's io.debezium.data.Json: the JSON document as a string
        return f"PARSE_JSON({ref})"
    if t == "interval":
        return _interval(ref)
    if t == "bytes":
        return f"FROM_BASE64({ref})"
    target = bq_type(col)
    if t == "decimal":  # Debezium writes numeric NaN as NAN, Postgres as NaN; a NUMERIC has none: NULL
        return f"REPLACE({ref}, '{NAN_WIRE}', 'NaN')" if target == "STRING" else \
            f"CAST(NULLIF({ref}, '{NAN_WIRE}') AS {target})"
    return ref if target == "STRING" else f"CAST({ref} AS {target})"


def _interval(ref: str) -> str:
    """Postgres' three interval fields (months, days, microseconds) from Debezium's ISO text (see
    envelope.INTERVAL_ISO), kept apart as GoogleSQL's INTERVAL keeps them (a sum of single-part intervals).
    Seconds become microseconds by their digits (padded to six decimals, the point dropped): exact, and
    the sign of ``-0.5`` kept. Anything else goes to CAST, which fails the fold on a text it cannot read.
    GoogleSQL's range is narrower than Postgres' (+/-10000 years, 3660000 days, 87840000 hours): a value
    beyond it fails the fold too."""
    parts = f"REGEXP_EXTRACT_ALL({ref}, r'-?[0-9]+(?:[.][0-9]+)?')"

    def part(i: int) -> str:
        return f"CAST({parts}[OFFSET({i})] AS INT64)"

    seconds = f"CONCAT({parts}[OFFSET(5)], IF(STRPOS({parts}[OFFSET(5)], '.') = 0, '.', ''))"
    padded = f"SUBSTR(CONCAT({seconds}, '000000'), 1, STRPOS({seconds}, '.') + 6)"
    seconds_micros = f"CAST(REPLACE({padded}, '.', '') AS INT64)"
    return (f"CASE WHEN REGEXP_CONTAINS({ref}, r'{INTERVAL_ISO}') THEN INTERVAL ({part(0)} * 12 + {part(1)}) MONTH "
            f"+ INTERVAL {part(2)} DAY + INTERVAL {part(3)} HOUR + INTERVAL {part(4)} MINUTE "
            f"+ INTERVAL {seconds_micros} MICROSECOND ELSE CAST({ref} AS INTERVAL) END")


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
    " key STRING, value STRING, landed_at TIMESTAMP REQUIRED, replayed_at TIMESTAMP"
)
CURRENT_META_FIELDS = "_cdc_op STRING, _cdc_lsn INT64, _cdc_ts_ms INT64, _cdc_landed_at TIMESTAMP"

#: the landing table: every appended event (``_cdc_error`` NULL) and dead letter (``_cdc_error`` set) of every
#: table, in wire form, tagged with its cycle. Column order = field numbers of the Storage Write API rows.
STREAM = "_cdc_stream"
STREAM_FIELDS = (
    "_cdc_cycle STRING REQUIRED, _cdc_landed_at TIMESTAMP REQUIRED, _cdc_table STRING REQUIRED,"
    " _cdc_event_id STRING, _cdc_op STRING, _cdc_lsn INT64, _cdc_txid INT64, _cdc_ts_ms INT64,"
    " _cdc_snapshot STRING, _cdc_topic STRING, _cdc_partition INT64, _cdc_offset INT64, _cdc_key STRING,"
    " _cdc_payload STRING, _cdc_error STRING"
)
#: one row per complete cycle, appended after all of the cycle's rows were acknowledged
CYCLES = "_cdc_cycles"
CYCLE_FIELDS = (
    "cycle_id STRING REQUIRED, landed_at TIMESTAMP REQUIRED, tables STRING, events INT64, dead_letters INT64,"
    " writer STRING"
)
#: one row per folded cycle (written by the fold, in its transaction)
FOLDED = "_cdc_folded"
FOLDED_FIELDS = "cycle_id STRING REQUIRED, landed_at TIMESTAMP, fold_id STRING, folded_at TIMESTAMP REQUIRED"
#: one row: the last fold; every fold updates it first, so concurrent folds conflict and one is aborted
FOLD_STATE = "_cdc_fold_state"
#: the row schemas seen per table (columns with logical types, primary key), content-addressed
SCHEMAS = "_cdc_schemas"
SCHEMA_FIELDS = "table_name STRING REQUIRED, schema_id STRING REQUIRED, schema STRING REQUIRED, registered_at TIMESTAMP"

#: project id used with the emulator when CORISYNC_GCP_PROJECT is unset (as in dbt_project/profiles.yml)
EMULATOR_PROJECT = "corisync-emu"
#: the emulator serves gRPC (Storage Write API) on its REST port + 10 (its defaults: 9050 and 9060)
EMULATOR_GRPC_OFFSET = 10
#: current-state columns a MERGE cannot cluster on
_UNCLUSTERABLE = ("FLOAT64", "JSON", "BYTES", "INTERVAL")
#: AppendRows accepts requests up to 10 MB; rows are packed into requests below this
MAX_APPEND_BYTES = 8 * 1024 * 1024
_WRITE_SCOPE = "https://www.googleapis.com/auth/bigquery"


# --- rows for the Storage Write API ---------------------------------------------------------------------

_PROTO_TYPES = {"STRING": 9, "INT64": 3, "TIMESTAMP": 3}  # FieldDescriptorProto.Type: TIMESTAMP = int64 micros


@cache
def _row_type(name: str, spec: str):
    """(DescriptorProto, message class) of a proto2 row matching a table spec (field numbers = column order)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    file = descriptor_pb2.FileDescriptorProto(name=f"corisync_{name}.proto", package="corisync", syntax="proto2")
    message = file.message_type.add(name=name)
    for number, item in enumerate(spec.split(","), 1):
        column, typ, *_mode = item.split()
        # every field optional (LABEL_OPTIONAL): REQUIRED columns accept optional fields, and a missing value
        # is then refused by BigQuery instead of being encoded as the proto2 default
        message.field.add(name=column, number=number, type=_PROTO_TYPES[typ], label=1)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message, message_factory.GetMessageClass(pool.FindMessageTypeByName(f"corisync.{name}"))


def _micros(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def _column_json(c: Column) -> dict:
    out = {"name": c.name, "type": c.logical_type, "precision": c.precision, "scale": c.scale,
           "source_type": c.source_type}
    if c.default is not None:  # only then: the ids of schemas without defaults stay what they were
        out["default"] = c.default
    return out


def schema_to_json(schema: TableSchema) -> str:
    return json.dumps({"columns": [_column_json(c) for c in schema.columns],
                       "primary_key": list(schema.primary_key)}, sort_keys=True, separators=(",", ":"))


def schema_from_json(text: str) -> TableSchema:
    data = json.loads(text)
    return TableSchema(tuple(Column(c["name"], c["type"], c["precision"], c["scale"], c["source_type"],
                                    default=c.get("default")) for c in data["columns"]),
                       tuple(data["primary_key"]))


def default_value(col: Column) -> str:
    """The column's Postgres default (``col.default``, a wire value as JSON text) as a typed SQL constant."""
    return sql_value(col, wire_ref(col, json.dumps(col.default), "$"))


def schema_id(schema: TableSchema) -> str:
    return hashlib.sha256(schema_to_json(schema).encode()).hexdigest()[:16]


def union_schema(schemas: Sequence[TableSchema]) -> TableSchema:
    """Every column ever seen, newest definition first (as the decoder merges a schema change mid-batch);
    the primary key of the newest schema."""
    merged = schemas[0]
    for newer in schemas[1:]:
        names = {c.name for c in newer.columns}
        merged = TableSchema(newer.columns + tuple(c for c in merged.columns if c.name not in names),
                             newer.primary_key)
    return merged


class AppendError(RuntimeError):
    """The Storage Write API refused an append (the cycle is incomplete; nothing of it will be folded)."""


class BigQueryWarehouse(Warehouse):
    """Raw CDC tables in one BigQuery dataset (the dataset dbt's emu/prod targets read as raw_cdc)."""

    project: str = Field(description="GCP project of the raw dataset (CORISYNC_GCP_PROJECT)")
    dataset: str = Field(default="corisync_raw", description="raw dataset (CORISYNC_BQ_RAW_DATASET)")
    location: str = Field(default="EU", description="BigQuery location (CORISYNC_BQ_LOCATION)")
    emulator_host: str | None = Field(
        default=None, description="host:port of a BigQuery emulator (BIGQUERY_EMULATOR_HOST); None: BigQuery"
    )
    emulator_grpc_host: str | None = Field(
        default=None, description="host:port of the emulator's gRPC API (default: emulator_host's port + 10)"
    )
    request_timeout_s: float = Field(default=30.0, description="timeout of one API request (REST or AppendRows)")
    retry_deadline_s: float = Field(default=10.0, description="how long transient API errors are retried")
    job_timeout_s: float = Field(default=600.0, description="how long to wait for a query job (fold, DDL)")
    fold_interval_s: float = Field(
        default=300.0, ge=0,
        description="fold() folds at most this often unless forced; each fold is one query job with one INSERT"
        " and one MERGE per table, billed ~1 GB + the current-state tables (docs/bigquery_landing.md)",
    )
    fold_grace_s: float = Field(
        default=3600.0, gt=0,
        description="cycles landed up to this long before the last fold are still looked at (a cycle whose"
        " marker became visible after a fold that started later than its landing)",
    )
    stream_retention_days: int = Field(
        default=7, ge=1, description="partition expiration of the landing tables (_cdc_stream, _cdc_cycles, ...)"
    )
    dedupe_memory: int = Field(
        default=200_000, ge=0, description="event ids of recent complete cycles kept to skip re-appends"
    )

    _client: Any = PrivateAttr(default=None)
    _write_client: Any = PrivateAttr(default=None)
    _ready: bool = PrivateAttr(default=False)
    _registered: dict = PrivateAttr(default_factory=dict)  # table -> set of schema ids in _cdc_schemas
    _recent: Any = PrivateAttr(default_factory=OrderedDict)  # event ids / dead-letter keys of complete cycles
    _last_fold: float | None = PrivateAttr(default=None)  # time.monotonic() of this process's last fold
    _unfolded: bool = PrivateAttr(default=False)  # this process completed a cycle since its last fold

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

    # --- clients --------------------------------------------------------------------------------------

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
            raise _credentials_error(exc) from None

    def write_client(self):
        """The Storage Write API client (google.cloud.bigquery_storage_v1.BigQueryWriteClient)."""
        if self._write_client is None:
            self._write_client = self._make_write_client()
        return self._write_client

    def _make_write_client(self):
        from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

        if self.emulator_host:
            import grpc
            from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
                BigQueryWriteGrpcTransport,
            )

            channel = grpc.insecure_channel(self.grpc_host)
            return BigQueryWriteClient(transport=BigQueryWriteGrpcTransport(channel=channel))
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            credentials, _ = google.auth.default(scopes=[_WRITE_SCOPE])
        except DefaultCredentialsError as exc:
            raise _credentials_error(exc) from None
        return BigQueryWriteClient(credentials=credentials)

    @property
    def grpc_host(self) -> str:
        """Where the emulator's Storage Write API listens (only meaningful with an emulator)."""
        if self.emulator_grpc_host:
            return self.emulator_grpc_host
        host = (self.emulator_host or "").split("://")[-1]
        name, _, port = host.rpartition(":")
        if not port.isdigit():
            raise ConfigError(f"BIGQUERY_EMULATOR_HOST {self.emulator_host!r} is not host:port")
        return f"{name}:{int(port) + EMULATOR_GRPC_OFFSET}"

    @property
    def _retry(self):
        from google.cloud.bigquery.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_deadline(self.retry_deadline_s)

    def _ref(self, table: str) -> str:
        return f"{self.project}.{check_identifier(self.dataset, 'dataset')}.{check_identifier(table, 'table')}"

    def _sql_ref(self, table: str) -> str:
        return q(*_table_parts(self.project, self.dataset, table))

    def _query(self, sql: str, params: dict[str, str] | None = None):
        """Run a query or script and wait for it; returns the rows of its last statement."""
        from google.cloud import bigquery

        config = None
        if params:
            config = bigquery.QueryJobConfig(query_parameters=[
                bigquery.ScalarQueryParameter(k, "STRING", v) for k, v in params.items()])
        job = self.client().query(sql, job_config=config, retry=self._retry, timeout=self.request_timeout_s,
                                  job_retry=None)
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

    def _create_table(self, table: str, fields: list, clustering: list[str] | None = None,
                      partition: tuple[str, str] | None = None):
        """Create a table if missing; ``partition`` = (granularity, column): time-partitioned with the
        landing tables' expiration."""
        from google.cloud import bigquery

        t = bigquery.Table(self._ref(table), schema=fields)
        if clustering:
            t.clustering_fields = clustering
        if partition:
            t.time_partitioning = bigquery.TimePartitioning(
                type_=partition[0], field=partition[1], expiration_ms=self.stream_retention_days * 86_400_000)
        return self.client().create_table(t, exists_ok=True, retry=self._retry, timeout=self.request_timeout_s)

    def _setup(self) -> None:
        """Once per process: the dataset exists; the landing, bookkeeping and dead-letter tables exist;
        the registered schemas are known. A few REST calls; a job only when creating _cdc_fold_state."""
        if self._ready:
            return
        self._check_dataset()
        specs = {
            DEAD_LETTERS: (DEAD_LETTER_FIELDS, None),
            STREAM: (STREAM_FIELDS, ("HOUR", "_cdc_landed_at")),
            CYCLES: (CYCLE_FIELDS, ("DAY", "landed_at")),
            FOLDED: (FOLDED_FIELDS, ("DAY", "folded_at")),
            SCHEMAS: (SCHEMA_FIELDS, None),
        }
        for table, (fields, partition) in specs.items():
            found = self._get_table(table)
            if found is None:
                self._create_table(table, _fields(fields), partition=partition)
            elif table == DEAD_LETTERS and "replayed_at" not in {f.name for f in found.schema}:
                # made before dead letters could be replayed
                self._query(f"ALTER TABLE {self._sql_ref(table)} ADD COLUMN IF NOT EXISTS replayed_at TIMESTAMP")
        if self._get_table(FOLD_STATE) is None:
            self._query(f"CREATE TABLE IF NOT EXISTS {self._sql_ref(FOLD_STATE)} AS SELECT 1 AS id, "
                        "CAST(NULL AS STRING) AS fold_id, CAST(NULL AS TIMESTAMP) AS folded_at")
        self._registered = {}
        for table, sid, _schema in self._read_schemas():
            self._registered.setdefault(table, set()).add(sid)
        self._ready = True

    def _read_schemas(self) -> list[tuple[str, str, str]]:
        """(table, schema id, schema JSON) registered, oldest first (tabledata.list: no job)."""
        rows = self.client().list_rows(self._ref(SCHEMAS), retry=self._retry, timeout=self.request_timeout_s)
        found = sorted(((r["registered_at"], r["table_name"], r["schema_id"], r["schema"]) for r in rows),
                       key=lambda r: (r[0] or datetime.min.replace(tzinfo=UTC), r[2]))
        return [(t, sid, schema) for _at, t, sid, schema in found]

    def _register(self, table: str, schema: TableSchema) -> None:
        """First sight of this schema in this process: make sure `<table>` and `<table>__changelog` exist with
        its columns, and record it in _cdc_schemas (one job, only when something is missing)."""
        sid = schema_id(schema)
        if sid in self._registered.get(table, set()):
            return
        current, changelog = self.table_names(table)
        added = self._ensure_tables(schema, current, changelog)
        if added:  # DDL, not a schema patch: the emulator applies ALTER TABLE to the data, a patch only to its catalog
            by_name = {c.name: c for c in schema.columns}
            # rows already folded get a new column's Postgres default, as Postgres' existing rows do (one DML)
            fills = [f"`{f.name}` = {default_value(by_name[f.name])}" for f in added
                     if by_name[f.name].default is not None]
            self._query("\n".join(
                [f"ALTER TABLE {self._sql_ref(current)} ADD COLUMN IF NOT EXISTS `{f.name}` "
                 f"{bq_type(by_name[f.name])};" for f in added]
                + ([f"UPDATE {self._sql_ref(current)} SET {', '.join(fills)} WHERE TRUE;"] if fills else [])))
        self._query(
            f"INSERT INTO {self._sql_ref(SCHEMAS)} (table_name, schema_id, schema, registered_at)\n"
            f"SELECT @table_name, @schema_id, @schema, CURRENT_TIMESTAMP() FROM (SELECT 1)\n"
            f"WHERE NOT EXISTS (SELECT 1 FROM {self._sql_ref(SCHEMAS)} WHERE table_name = @table_name"
            f" AND schema_id = @schema_id)",
            {"table_name": table, "schema_id": sid, "schema": schema_to_json(schema)})
        if added:
            t = self._get_table(current)
            stale = [f for f in added if f.name not in {x.name for x in t.schema}]
            if stale:  # emulator only: its catalog missed the ALTER; BigQuery's table already lists the columns
                t.schema = [*t.schema, *stale]
                self.client().update_table(t, ["schema"], retry=self._retry, timeout=self.request_timeout_s)
        self._registered.setdefault(table, set()).add(sid)

    def _ensure_tables(self, schema: TableSchema, current: str, changelog: str) -> list:
        """Create the changelog and current-state tables if missing; returns the source columns the current
        state lacks (additive evolution: the caller adds them, each a new NULLABLE column)."""
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
        return [f for f in cols if f.name not in existing]

    # --- the interface ----------------------------------------------------------------------------------

    def replace_partitions(self, loads):
        """Per table: each date's Parquet files go to a staging table by load job (from the bucket in prod;
        from local files on the emulator), then one script swaps the dates in a transaction. Tables are
        day-partitioned on the partition column, without expiration."""
        from google.cloud import bigquery

        counts = {}
        for table, files_by_date in loads.items():
            fields = [bigquery.SchemaField(name, PARTITIONED_TYPES["bigquery"][kind]) for name, kind in table.columns]
            t = bigquery.Table(self._ref(table.name), schema=fields)
            t.time_partitioning = bigquery.TimePartitioning(type_="DAY", field=table.partition)
            self.client().create_table(t, exists_ok=True, retry=self._retry, timeout=self.request_timeout_s)
            dates = sorted(files_by_date)
            staged, sources = [], []
            try:
                for day in dates:
                    if not files_by_date[day]:
                        continue
                    stg = f"_lake_stg_{table.name}_{day:%Y%m%d}_{uuid.uuid4().hex[:8]}"
                    staged.append(stg)
                    self._create_table(stg, [f for f in fields if f.name != table.partition])
                    self._load_parquet(stg, files_by_date[day])
                    sources.append(f"SELECT *, DATE '{day.isoformat()}' AS {table.partition} "
                                   f"FROM {self._sql_ref(stg)}")
                source = "(" + " UNION ALL ".join(sources) + ")" if sources else None
                statements = table.replace_sql(self._sql_ref(table.name), source, dates)
                if statements:
                    self._query("\n".join(["BEGIN TRANSACTION;", *(f"{st};" for st in statements),
                                           "COMMIT TRANSACTION;"]))
            finally:
                for stg in staged:
                    self.client().delete_table(self._ref(stg), not_found_ok=True, retry=self._retry,
                                               timeout=self.request_timeout_s)
            counts[table.name] = int(self._query(table.count_sql(self._sql_ref(table.name), dates))[0][0])
        return counts

    def _load_parquet(self, table: str, files: Sequence[str]) -> None:
        """Append Parquet files to the (new, empty) ``table``: one load job from gs:// URIs, else one per file."""
        from google.cloud import bigquery

        config = bigquery.LoadJobConfig(source_format="PARQUET", write_disposition="WRITE_APPEND")
        if all(f.startswith("gs://") for f in files):
            self.client().load_table_from_uri(list(files), self._ref(table), job_config=config,
                                              timeout=self.request_timeout_s).result(timeout=self.job_timeout_s)
            return
        for path in files:
            with open(path, "rb") as fh:
                self.client().load_table_from_file(fh, self._ref(table), job_config=config,
                                                   timeout=self.request_timeout_s).result(timeout=self.job_timeout_s)

    def row_count(self, table: str) -> int:
        return self._query(f"SELECT COUNT(*) AS n FROM {self._sql_ref(table)}")[0][0]

    def _dead_letter_rows(self):
        from google.api_core.exceptions import NotFound

        try:
            return [tuple(r) for r in self._query(DEAD_LETTER_SUMMARY_SQL.format(
                table=self._sql_ref(DEAD_LETTERS), pending="replayed_at IS NULL"))]
        except NotFound:  # nothing dead-lettered yet
            return []

    def dead_letters(self, table=None):
        from google.api_core.exceptions import NotFound

        try:
            rows = self._query(
                "SELECT source_table, kafka_topic, kafka_partition, kafka_offset, error, key, value,"
                " replayed_at IS NOT NULL"
                f" FROM {self._sql_ref(DEAD_LETTERS)} WHERE @t IS NULL OR source_table = @t ORDER BY 2, 3, 4",
                {"t": table})
        except NotFound:
            return []
        return [StoredDeadLetter(*tuple(r)) for r in rows]

    def mark_replayed(self, table, positions):
        """UPDATE (one DML job per 500 positions); topics are checked against Kafka's charset."""
        positions = list(positions)
        if not positions:
            return 0
        self._setup()
        for topic, _partition, _offset in positions:
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", topic):
                raise ValueError(f"not a Kafka topic name: {topic!r}")
        dlq, n = self._sql_ref(DEAD_LETTERS), 0
        for i in range(0, len(positions), 500):  # a statement stays far below BigQuery's query length limit
            listed = " OR ".join(f"(kafka_topic = '{t}' AND kafka_partition = {int(p)} AND kafka_offset = {int(o)})"
                                 for t, p, o in positions[i:i + 500])
            job = self.client().query(
                f"UPDATE {dlq} SET replayed_at = CURRENT_TIMESTAMP()"
                f" WHERE source_table = '{check_identifier(table, 'table')}' AND replayed_at IS NULL AND ({listed})",
                retry=self._retry, timeout=self.request_timeout_s, job_retry=None)
            job.result(timeout=self.job_timeout_s, retry=self._retry)
            n += int(job.num_dml_affected_rows or 0)
        return n

    def _land_replayed(self, batch: ChangeBatch) -> LandResult:
        """Replayed dead letters, outside the stream and the fold: loaded into a staging table (a load job),
        then applied by the fold's own statements (``events_sql`` with the replay guard) in one script."""
        from google.cloud import bigquery

        check_identifier(batch.table, "table")
        if not len(batch):
            return LandResult(0, 0, 0)
        self._setup()
        self._register(batch.table, batch.schema)
        new_events, _keys = self._new_events(batch)
        landed_at = datetime.now(UTC)
        stamp = {"_cdc_cycle": f"replay-{uuid.uuid4().hex[:12]}", "_cdc_landed_at": landed_at.isoformat(),
                 "_cdc_table": batch.table}
        stg = f"_cdc_replay_{uuid.uuid4().hex[:12]}"
        fields = _fields(STREAM_FIELDS)
        self._create_table(stg, fields)
        try:
            ndjson = b"\n".join(json.dumps({**stamp, **e}).encode() for e in new_events)
            self.client().load_table_from_file(
                io.BytesIO(ndjson), self._ref(stg), timeout=self.request_timeout_s,
                job_config=bigquery.LoadJobConfig(schema=fields, source_format="NEWLINE_DELIMITED_JSON"),
            ).result(timeout=self.job_timeout_s)
            current, changelog = self.table_names(batch.table)
            script = "\n".join([
                "DECLARE new_events INT64 DEFAULT 0;", "DECLARE truncate_lsn INT64;", "DECLARE snapshot_end INT64;",
                "BEGIN TRANSACTION;",
                self.events_sql(self._folded_schemas()[batch.table], self._sql_ref(stg),
                                self._sql_ref(current), self._sql_ref(changelog), "_r", guard=True),
                "COMMIT TRANSACTION;",
                "DROP TABLE IF EXISTS _new_r;", "DROP TABLE IF EXISTS _latest_r;",
                "SELECT new_events;",
            ])
            new = int(self._query(script)[0]["new_events"] or 0)
        finally:
            self.client().delete_table(self._ref(stg), not_found_ok=True, retry=self._retry,
                                       timeout=self.request_timeout_s)
        return LandResult(new, len(batch) - new, 0)

    def read_tables(self, relations, limit=None):
        """tables.get (columns, row count) and tabledata.list (rows): REST calls, free, no query job. Views
        have no stored rows for tabledata.list: they are left out, like relations that do not exist."""
        from google.api_core.exceptions import NotFound

        out = {}
        for dataset, name in relations:
            ref = ".".join(_table_parts(self.project, dataset, name))
            try:
                table = self.client().get_table(ref, retry=self._retry, timeout=self.request_timeout_s)
            except NotFound:
                continue
            if table.table_type != "TABLE":
                continue
            rows = self.client().list_rows(table, max_results=limit, retry=self._retry,
                                           timeout=self.request_timeout_s)
            out[(dataset, name)] = TableRows([(f.name, f.field_type) for f in table.schema],
                                             [tuple(r.values()) for r in rows], int(table.num_rows or 0))
        return out

    def relation_sql(self, database, schema, name):
        """Each part quoted on its own, as dbt's BigQuery adapter writes a relation."""
        return ".".join(f"`{part}`" for part in _table_parts(database, schema, name))

    def relation_reader(self, build_path=None):
        """Columns from tables.get (REST, no job), as dbt's BigQuery adapter reads them; queries as jobs."""
        from google.api_core.exceptions import NotFound

        def columns(database: str, schema: str, name: str) -> list[tuple[str, str]]:
            ref = ".".join(_table_parts(database, schema, name))
            try:
                table = self.client().get_table(ref, retry=self._retry, timeout=self.request_timeout_s)
            except NotFound:
                return []
            return [(f.name, f.field_type) for f in table.schema]

        return RelationReader(columns, lambda sql: [tuple(row.values()) for row in self._query(sql)], lambda: None)

    def existing_relations(self, relations: Sequence[tuple[str, str]]) -> set[tuple[str, str]] | None:
        """Tables and views among (dataset, name), from tables.list (REST, no job)."""
        from google.api_core.exceptions import NotFound

        found: set[tuple[str, str]] = set()
        for dataset in sorted({r[0] for r in relations}):
            try:
                names = {t.table_id for t in self.client().list_tables(
                    f"{_check_project(self.project)}.{check_identifier(dataset, 'dataset')}",
                    retry=self._retry, timeout=self.request_timeout_s)}
            except NotFound:
                continue
            found |= {(dataset, name) for ds, name in relations if ds == dataset and name in names}
        return found

    def land_all(self, batches: Sequence[ChangeBatch], replay: bool = False, commit: bool = True
                 ) -> list[LandResult]:
        """Append every batch's new events and dead letters to _cdc_stream, then the cycle's marker to
        _cdc_cycles (Storage Write API; no job). Current state and changelog follow at the next fold. Every
        call is committed when it returns (``commit`` changes nothing: an append leaves nothing open)."""
        if replay:
            return [self._land_replayed(batch) for batch in batches]
        batches = list(batches)
        for batch in batches:
            check_identifier(batch.table, "table")
            if len(batch) and batch.schema is None:  # only truncates so far: the table's columns are unknown
                raise ValueError(f"no row schema seen yet for table {batch.table!r}; cannot land a bare truncate")
            if len(batch) and batch.table.startswith("_cdc_"):
                raise ValueError(f"table name {batch.table!r} uses the reserved prefix _cdc_")
        if not any(len(b) or b.dead_letters for b in batches):
            self._end_snapshots(batches)
            return [LandResult(0, 0, 0) for _ in batches]
        self._setup()
        landed_at = datetime.now(UTC)
        cycle = f"{landed_at:%Y%m%dT%H%M%S.%f}Z-{uuid.uuid4().hex[:8]}"
        stamp = {"_cdc_cycle": cycle, "_cdc_landed_at": _micros(landed_at)}
        _descriptor, row_class = _row_type("StreamRow", STREAM_FIELDS)
        rows: list[bytes] = []
        seen: list[Any] = []
        results = []
        for batch in batches:
            if len(batch):
                self._register(batch.table, batch.schema)
            new_events, keys = self._new_events(batch)
            seen += keys
            rows += [row_class(**stamp, _cdc_table=batch.table, **e).SerializeToString() for e in new_events]
            new_dead, keys = self._new_dead_letters(batch)
            seen += keys
            rows += [row_class(**stamp, _cdc_table=batch.table, **d).SerializeToString() for d in new_dead]
            results.append(LandResult(len(new_events), len(batch) - len(new_events), len(new_dead)))
        if rows:
            self._append(STREAM, "StreamRow", STREAM_FIELDS, rows)
            marker = _row_type("CycleRow", CYCLE_FIELDS)[1](
                cycle_id=cycle, landed_at=stamp["_cdc_landed_at"],
                tables=",".join(sorted({b.table for b, r in zip(batches, results, strict=True)
                                        if r.new_events or r.dead_letters})),
                events=sum(r.new_events for r in results), dead_letters=sum(r.dead_letters for r in results),
                writer=f"{socket.gethostname()}:{os.getpid()}")
            self._append(CYCLES, "CycleRow", CYCLE_FIELDS, [marker.SerializeToString()])
            self._remember(seen)
            self._unfolded = True
        self._end_snapshots(batches)
        return results

    def _end_snapshots(self, batches: Sequence[ChangeBatch]) -> None:
        """Finished re-snapshots (rare): fold now, so current state holds the re-read rows, then delete the
        rows older than the request (one DML job per table)."""
        ends = [b for b in batches if b.snapshot_ends]
        if not ends:
            return
        self.fold(force=True)
        existing = self.existing_relations([(self.dataset, b.table) for b in ends]) or set()
        for batch in ends:
            if (self.dataset, batch.table) in existing:
                self._query(snapshot_end_sql(self._sql_ref(batch.table), batch.snapshot_ends))

    def _new_events(self, batch: ChangeBatch) -> tuple[list[dict], list[tuple]]:
        """The batch's events not appended before by this process (first occurrence by partition/offset
        within the batch), as stream-row fields; and their keys for the memory of recent cycles."""
        first: dict[str, tuple] = {}
        for row in batch.rows:  # META_COLUMNS order
            eid = row[0]
            if (batch.table, eid) in self._recent:  # event ids are unique per table (snapshots share LSNs)
                continue
            prev = first.get(eid)
            if prev is None or (row[7], row[8]) < (prev[7], prev[8]):
                first[eid] = row
        out = []
        for eid, op, lsn, txid, ts_ms, snapshot, topic, partition, offset, key, payload in first.values():
            fields = {"_cdc_event_id": eid, "_cdc_op": op, "_cdc_lsn": lsn, "_cdc_txid": txid, "_cdc_ts_ms": ts_ms,
                      "_cdc_snapshot": snapshot, "_cdc_topic": topic, "_cdc_partition": partition,
                      "_cdc_offset": offset, "_cdc_key": key,
                      "_cdc_payload": payload.decode() if isinstance(payload, bytes) else payload}
            out.append({k: v for k, v in fields.items() if v is not None})
        return out, [(batch.table, eid) for eid in first]

    def _new_dead_letters(self, batch: ChangeBatch) -> tuple[list[dict], list[tuple]]:
        """The batch's dead letters not appended before by this process (same message: same topic, partition,
        offset and bytes), as stream-row fields; and their keys for the memory of recent cycles."""
        out, keys = [], {}
        for d in batch.dead_letters:
            key = ("dead", d.topic, d.partition, d.offset, hashlib.sha256(d.value or b"").hexdigest(), d.value is None)
            if key in self._recent or key in keys:
                continue
            keys[key] = None
            fields = {"_cdc_topic": d.topic, "_cdc_partition": d.partition, "_cdc_offset": d.offset,
                      "_cdc_error": d.error, "_cdc_key": d.key.decode("utf-8", "replace") if d.key else None,
                      "_cdc_payload": d.value.decode("utf-8", "replace") if d.value is not None else None}
            out.append({k: v for k, v in fields.items() if v is not None})
        return out, list(keys)

    def _remember(self, keys: list) -> None:
        if not self.dedupe_memory:
            return
        recent = self._recent
        for key in keys:
            recent[key] = None
        while len(recent) > self.dedupe_memory:
            recent.popitem(last=False)

    def _append(self, table: str, row_type: str, spec: str, rows: list[bytes]) -> None:
        """Append serialized rows to the table's default stream: one AppendRows call (one connection), as
        few requests (< 10 MB each) as possible; raises unless every request was acknowledged."""
        from google.cloud.bigquery_storage_v1 import types

        stream = (f"projects/{_check_project(self.project)}/datasets/{check_identifier(self.dataset, 'dataset')}"
                  f"/tables/{check_identifier(table, 'table')}/streams/_default")
        descriptor = _row_type(row_type, spec)[0]
        chunks: list[list[bytes]] = [[]]
        size = 0
        for row in rows:
            if chunks[-1] and size + len(row) > MAX_APPEND_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(row)
            size += len(row) + 8
        requests = []
        for i, chunk in enumerate(chunks):
            data = types.AppendRowsRequest.ProtoData(rows=types.ProtoRows(serialized_rows=chunk))
            if i == 0:  # the writer schema once per connection; the stream name on every request
                data.writer_schema = types.ProtoSchema(proto_descriptor=descriptor)
            requests.append(types.AppendRowsRequest(write_stream=stream, proto_rows=data))
        responses = self.write_client().append_rows(
            requests=iter(requests), timeout=self.request_timeout_s,
            # routing header: lets the service pick the table's region (the client cannot read it off a stream)
            metadata=(("x-goog-request-params", f"write_stream={stream}"),))
        acknowledged = 0
        for response in responses:
            if response.error.code or response.row_errors:
                errors = "; ".join(f"row {e.index}: {e.message}" for e in response.row_errors)
                raise AppendError(f"AppendRows to {table} failed: {response.error.message or errors}")
            acknowledged += 1
        if acknowledged != len(requests):
            raise AppendError(f"AppendRows to {table}: {acknowledged} of {len(requests)} request(s) acknowledged")

    # --- fold -------------------------------------------------------------------------------------------

    @property
    def defers_current_state(self) -> bool:
        return True

    def fold(self, force: bool = False) -> dict | None:
        """Fold every complete, unfolded cycle into changelog and current state (one query job, one
        transaction); without ``force`` only when due: at the first call of a process (cycles an earlier
        process left), then every ``fold_interval_s`` if this process landed anything since its last fold.
        Returns what was folded, or None when not due or nothing was waiting."""
        now = time.monotonic()
        if not force and self._last_fold is not None and (
                not self._unfolded or now - self._last_fold < self.fold_interval_s):
            return None
        # also when the fold fails: an unforced one is retried after fold_interval_s, not at every cycle
        self._last_fold, unfolded, self._unfolded = now, self._unfolded, False
        started = time.monotonic()
        try:
            self._setup()
            try:
                result = self._fold_once()
            except Exception as exc:
                if "concurrent update" not in str(exc).lower():
                    raise
                # another process folded the same cycles at the same time and won: fold what is left
                result = self._fold_once()
        except BaseException:
            self._unfolded = unfolded
            raise
        if result is not None:
            result["seconds"] = round(time.monotonic() - started, 3)
        return result

    def _folded_schemas(self) -> dict[str, TableSchema]:
        """Per table, the union of every row schema registered: what the fold applies events with."""
        by_table: dict[str, list[TableSchema]] = {}
        for table, _sid, schema in self._read_schemas():
            by_table.setdefault(table, []).append(schema_from_json(schema))
        return {table: union_schema(schemas) for table, schemas in sorted(by_table.items())}

    def _fold_once(self) -> dict | None:
        tables = self._folded_schemas()
        fold_id = uuid.uuid4().hex
        row = self._query(self.fold_script(tables, fold_id))[0]
        cycles, first, last, new_dead, *counts = row.values()
        if not cycles:
            return None
        return {"fold_id": fold_id, "cycles": int(cycles), "first_cycle_at": first.isoformat(),
                "last_cycle_at": last.isoformat(), "dead_letters": int(new_dead or 0),
                "new_events": {t: int(n) for t, n in zip(tables, counts, strict=True) if n}}

    def fold_script(self, tables: dict[str, TableSchema], fold_id: str) -> str:
        """The fold: one script, one transaction; its last statement selects (cycles, first and last cycle
        time, new dead letters, new events per table in ``tables`` order)."""
        if not fold_id.isalnum():
            raise ValueError(f"fold id {fold_id!r} must be alphanumeric")
        stream, cycles, folded, state = (self._sql_ref(t) for t in (STREAM, CYCLES, FOLDED, FOLD_STATE))
        counters = [f"n_{i}" for i in range(len(tables))]
        parts = [
            "DECLARE horizon TIMESTAMP;", "DECLARE cycles INT64 DEFAULT 0;", "DECLARE lo TIMESTAMP;",
            "DECLARE hi TIMESTAMP;", "DECLARE new_events INT64 DEFAULT 0;", "DECLARE new_dead INT64 DEFAULT 0;",
            "DECLARE truncate_lsn INT64;", "DECLARE snapshot_end INT64;",
            *[f"DECLARE {n} INT64 DEFAULT 0;" for n in counters],
            # What to fold, read before the transaction: the landing tables are written by the Storage Write
            # API, and a transaction need not read them (its snapshot holds only the temp tables made here).
            f"SET horizon = (SELECT TIMESTAMP_SUB(COALESCE(MAX(folded_at), TIMESTAMP '1970-01-02 00:00:00+00'),"
            f" INTERVAL {int(self.fold_grace_s)} SECOND) FROM {state});",
            f"""CREATE OR REPLACE TEMP TABLE _fold_cycles AS
SELECT DISTINCT c.cycle_id, c.landed_at FROM {cycles} c
WHERE c.landed_at >= horizon
  AND NOT EXISTS (SELECT 1 FROM {folded} f WHERE f.folded_at >= horizon AND f.cycle_id = c.cycle_id);""",
            "SET cycles = (SELECT COUNT(*) FROM _fold_cycles);",
            "SET lo = (SELECT MIN(landed_at) FROM _fold_cycles);",
            "SET hi = (SELECT MAX(landed_at) FROM _fold_cycles);",
            "IF cycles > 0 THEN",
            # the landing partitions of those cycles only (lo/hi are constants for partition pruning)
            f"""CREATE OR REPLACE TEMP TABLE _fold_rows AS
SELECT s.* FROM {stream} s
WHERE s._cdc_landed_at BETWEEN lo AND hi AND s._cdc_cycle IN (SELECT cycle_id FROM _fold_cycles);""",
            "END IF;",
            "BEGIN TRANSACTION;",
            # first: conflicts with any concurrent fold, so at most one of them commits
            f"UPDATE {state} SET fold_id = '{fold_id}', folded_at = CURRENT_TIMESTAMP() WHERE TRUE;",
            "IF cycles > 0 THEN",
            # cycles a fold committed since they were read above are not folded again
            f"DELETE FROM _fold_cycles WHERE cycle_id IN (SELECT cycle_id FROM {folded} WHERE folded_at >= horizon);",
            "SET cycles = (SELECT COUNT(*) FROM _fold_cycles);",
            "SET lo = (SELECT MIN(landed_at) FROM _fold_cycles);",
            "SET hi = (SELECT MAX(landed_at) FROM _fold_cycles);",
            "DELETE FROM _fold_rows WHERE _cdc_cycle NOT IN (SELECT cycle_id FROM _fold_cycles);",
            "END IF;",
            "IF cycles > 0 THEN",
        ]
        for i, ((table, schema), counter) in enumerate(zip(tables.items(), counters, strict=True)):
            current, changelog = self.table_names(table)
            parts += [
                f"IF EXISTS (SELECT 1 FROM _fold_rows WHERE _cdc_table = '{table}' AND _cdc_error IS NULL) THEN",
                f"CREATE OR REPLACE TEMP TABLE _stg_{i} AS SELECT * FROM _fold_rows"
                f" WHERE _cdc_table = '{table}' AND _cdc_error IS NULL;",
                self.events_sql(schema, f"_stg_{i}", self._sql_ref(current), self._sql_ref(changelog), f"_{i}"),
                f"SET {counter} = new_events;",
                "END IF;",
            ]
        parts += [self._dead_letters_sql(self._sql_ref(DEAD_LETTERS)),
                  f"INSERT INTO {folded} (cycle_id, landed_at, fold_id, folded_at)\n"
                  f"SELECT cycle_id, landed_at, '{fold_id}', CURRENT_TIMESTAMP() FROM _fold_cycles;",
                  "END IF;",
                  "COMMIT TRANSACTION;"]
        # BigQuery drops a script's temp tables when it ends; the emulator keeps them in the dataset
        temps = ["_fold_cycles", "_fold_rows", "_dl_new",
                 *[f"{t}_{i}" for i in range(len(tables)) for t in ("_stg", "_new", "_latest")]]
        parts += [f"DROP TABLE IF EXISTS {t};" for t in temps]
        parts.append(f"SELECT cycles, lo, hi, new_dead{''.join(', ' + n for n in counters)};")
        return "\n".join(parts)

    @staticmethod
    def _dead_letters_sql(dlq: str) -> str:
        # the same message (topic, partition, offset and bytes) dead-lettered twice is one row
        return f"""IF EXISTS (SELECT 1 FROM _fold_rows WHERE _cdc_error IS NOT NULL) THEN
CREATE OR REPLACE TEMP TABLE _dl_new AS
SELECT d._cdc_table AS source_table, d._cdc_topic AS kafka_topic, d._cdc_partition AS kafka_partition,
       d._cdc_offset AS kafka_offset, d._cdc_error AS error, d._cdc_key AS key, d._cdc_payload AS value
FROM _fold_rows d
WHERE d._cdc_error IS NOT NULL
  AND NOT EXISTS (
    SELECT 1 FROM {dlq} x
    WHERE x.kafka_topic = d._cdc_topic AND x.kafka_partition = d._cdc_partition
      AND x.kafka_offset = d._cdc_offset
      AND (x.value = d._cdc_payload OR (x.value IS NULL AND d._cdc_payload IS NULL)))
QUALIFY ROW_NUMBER() OVER (PARTITION BY d._cdc_topic, d._cdc_partition, d._cdc_offset, d._cdc_payload
                           ORDER BY d._cdc_landed_at, d._cdc_cycle) = 1;
SET new_dead = (SELECT COUNT(*) FROM _dl_new);
IF new_dead > 0 THEN
INSERT INTO {dlq} (source_table, kafka_topic, kafka_partition, kafka_offset, error, key, value, landed_at)
SELECT source_table, kafka_topic, kafka_partition, kafka_offset, error, key, value, CURRENT_TIMESTAMP()
FROM _dl_new;
END IF;
END IF;"""

    @staticmethod
    def events_sql(schema: TableSchema, stg: str, cur: str, log: str, suffix: str = "", guard: bool = False) -> str:
        """Apply the staged events `stg` (rows of _cdc_stream, any number of cycles) to changelog and current
        state; sets ``new_events``. Order of events: cycle (landing time), then partition/offset. Its temp tables
        are ``_new<suffix>`` and ``_latest<suffix>`` (one pair per table, so that no temp table is created twice in
        the fold's transaction)."""
        new, latest = f"_new{suffix}", f"_latest{suffix}"
        by_name = {c.name: c for c in schema.columns}

        def raw(col: Column) -> str:  # deletes carry the primary key in the Kafka key only
            ref = wire_ref(col, "_cdc_payload", f"$.after.{col.name}")
            if col.name in schema.primary_key:
                return f"COALESCE({ref}, {wire_ref(col, '_cdc_key', f'$.{col.name}')})"
            return ref

        def value(col: Column) -> str:
            """An event older than a column with a default has no value for it (JSON_QUERY is NULL only for an
            absent member): it takes the default, as the row does in Postgres."""
            if col.default is None or col.name in schema.primary_key:
                return sql_value(col, raw(col))
            return (f"IF(JSON_QUERY(_cdc_payload, '$.after.{col.name}') IS NULL AND _cdc_op <> 'd', "
                    f"{default_value(col)}, {sql_value(col, raw(col))})")

        names = [check_identifier(c.name, "column") for c in schema.columns]
        cols = ", ".join(f"`{n}`" for n in names)
        pk = [check_identifier(k, "key column") for k in schema.primary_key]
        match = " AND ".join(f"t.`{k}` = l.`{k}`" for k in pk)
        ends = ", ".join(f"'{v}'" for v in sorted(SNAPSHOT_END))
        sets = ", ".join(f"`{n}` = l.`{n}`" for n in names)
        meta_sets = "_cdc_op = l._cdc_op, _cdc_lsn = l._cdc_lsn, _cdc_ts_ms = l._cdc_ts_ms, " \
                    "_cdc_landed_at = CURRENT_TIMESTAMP()"
        values = ", ".join(f"l.`{n}`" for n in names)
        # replays: a row whose changelog holds a newer event than the replayed one keeps its state (a row's
        # changes have increasing LSNs: Postgres' row lock orders them)
        newer = f"""
DELETE FROM {latest} l WHERE EXISTS (
    SELECT 1 FROM {log} c
    WHERE TO_JSON_STRING(c.key) = TO_JSON_STRING(PARSE_JSON(l._cdc_key)) AND c.source_lsn > l._cdc_lsn);""" \
            if guard else ""
        first = "_cdc_landed_at, _cdc_cycle, _cdc_partition, _cdc_offset"
        last = "_cdc_landed_at DESC, _cdc_cycle DESC, _cdc_partition DESC, _cdc_offset DESC"
        return f"""CREATE OR REPLACE TEMP TABLE {new} AS
SELECT * FROM {stg} i
WHERE NOT EXISTS (
    SELECT 1 FROM {log} c
    WHERE c.source_lsn BETWEEN (SELECT MIN(_cdc_lsn) FROM {stg}) AND (SELECT MAX(_cdc_lsn) FROM {stg})
      AND c.event_id = i._cdc_event_id)
QUALIFY ROW_NUMBER() OVER (PARTITION BY _cdc_event_id ORDER BY {first}) = 1;
SET new_events = (SELECT COUNT(*) FROM {new});
IF new_events > 0 THEN
INSERT INTO {log} (event_id, op, key, before, after, source_lsn, source_txid, source_ts_ms, snapshot,
                   kafka_topic, kafka_partition, kafka_offset, landed_at)
SELECT _cdc_event_id, _cdc_op, PARSE_JSON(_cdc_key),
       PARSE_JSON(NULLIF(JSON_QUERY(_cdc_payload, '$.before'), 'null')),
       PARSE_JSON(NULLIF(JSON_QUERY(_cdc_payload, '$.after'), 'null')),
       _cdc_lsn, _cdc_txid, _cdc_ts_ms, _cdc_snapshot, _cdc_topic, _cdc_partition, _cdc_offset,
       CURRENT_TIMESTAMP()
FROM {new};
SET truncate_lsn = (SELECT MAX(_cdc_lsn) FROM {new} WHERE _cdc_op = 't');
IF truncate_lsn IS NOT NULL THEN
DELETE FROM {cur} WHERE TRUE;
END IF;
CREATE OR REPLACE TEMP TABLE {latest} AS
SELECT {", ".join(f"{value(c)} AS `{c.name}`" for c in schema.columns)},
       _cdc_op, _cdc_lsn, _cdc_ts_ms{", _cdc_key" if guard else ""}
FROM {new}
WHERE _cdc_op <> 't' AND _cdc_lsn > COALESCE(truncate_lsn, -1)
QUALIFY ROW_NUMBER() OVER (PARTITION BY {", ".join(raw(by_name[k]) for k in pk)} ORDER BY {last}) = 1;{newer}
MERGE {cur} t USING {latest} l ON {match}
WHEN MATCHED AND l._cdc_op = 'd' THEN DELETE
WHEN MATCHED THEN UPDATE SET {sets}, {meta_sets}
WHEN NOT MATCHED AND l._cdc_op <> 'd' THEN
    INSERT ({cols}, _cdc_op, _cdc_lsn, _cdc_ts_ms, _cdc_landed_at)
    VALUES ({values}, l._cdc_op, l._cdc_lsn, l._cdc_ts_ms, CURRENT_TIMESTAMP());
-- A finished snapshot re-read every live row at its LSN: older rows were deleted while their delete
-- event was lost (e.g. the local broker restarted before landing).
SET snapshot_end = (SELECT MAX(_cdc_lsn) FROM {new} WHERE _cdc_op = 'r' AND _cdc_snapshot IN ({ends}));
IF snapshot_end IS NOT NULL THEN
DELETE FROM {cur} WHERE _cdc_lsn < snapshot_end;
END IF;
END IF;"""


def _credentials_error(exc: Exception) -> ConfigError:
    return ConfigError(
        "BigQuery needs credentials: set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file "
        f"(or run with a VM/workload identity), or BIGQUERY_EMULATOR_HOST for the emulator ({exc})"
    )
