"""DuckDB implementation of the landing interface (local mode).

Values arrive in wire form (exact strings for numerics and timestamps); SQL casts them once per batch, so
decoding stays cheap and no precision is lost. DuckDB allows one writer process per file: connections are
short-lived and retried while another run (or dbt) holds the lock.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import filelock
from pydantic import PrivateAttr

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
from corisync_assets.resources.warehouse.base import (
    DEAD_LETTER_SUMMARY_SQL,
    DEAD_LETTERS,
    LandResult,
    PartitionedTable,
    RelationReader,
    StoredDeadLetter,
    TableRows,
    Warehouse,
    snapshot_end_sql,
)
from corisync_assets.resources.warehouse.writer_slot import build_copy_path, writer_slot_path

if TYPE_CHECKING:
    import pyarrow as pa


def _scalar(con, sql: str, params: list | None = None) -> Any:
    """The one value of a one-row query, its result read to the end: a connection with a result still
    open refuses to register or unregister an Arrow table (DuckDB 2)."""
    return con.execute(sql, params or []).fetchall()[0][0]


def q(name: str) -> str:
    return '"' + check_identifier(name) + '"'


def _literal(text: str) -> str:
    """``text`` as a SQL string constant."""
    return "'" + text.replace("'", "''") + "'"


def sql_type(col: Column) -> str:
    t = col.logical_type
    if t == "decimal":
        if col.fixed_decimal:
            return f"DECIMAL({col.precision},{col.scale or 0})"
        return "VARCHAR"  # unconstrained numeric: keep the exact text rather than round it
    if t == "timestamp" and col.scale == 9:
        return "TIMESTAMP_NS"
    return {
        "int16": "SMALLINT", "int32": "INTEGER", "int64": "BIGINT", "float32": "REAL", "float64": "DOUBLE",
        "bool": "BOOLEAN", "string": "VARCHAR", "date": "DATE", "time": "TIME", "timetz": "TIMETZ",
        "timestamp": "TIMESTAMP", "timestamptz": "TIMESTAMPTZ", "interval": "INTERVAL", "json": "JSON", "array": "JSON",
        "bytes": "BLOB", "text": "VARCHAR",
    }[t]


def json_type(col: Column) -> str:
    """Type json_transform extracts the wire value as (exact text unless the JSON value is a plain scalar;
    JSON for arrays and for values landed as their text)."""
    return {"int16": "BIGINT", "int32": "BIGINT", "int64": "BIGINT", "float32": "DOUBLE", "float64": "DOUBLE",
            "bool": "BOOLEAN", "date": "BIGINT", "time": "BIGINT", "timestamp": "BIGINT", "array": "JSON",
            "text": "JSON"}.get(col.logical_type, "VARCHAR")


#: units per microsecond -> the expression turning `ref` (an integer in those units) into microseconds
_TO_MICROS = {3: "({ref}) * 1000", 6: "({ref})", 9: "({ref}) // 1000"}


def sql_value(col: Column, ref: str) -> str:
    """Expression converting the wire value in `ref` to the column's SQL type."""
    t = col.logical_type
    if t == "date":
        return _infinities(ref, DATE_INFINITY, "DATE", f"CAST(DATE '1970-01-01' + CAST({ref} AS INTEGER) AS DATE)")
    if t == "timestamp":
        return _infinities(ref, TIMESTAMP_INFINITY, sql_type(col), {
            3: f"epoch_ms({ref})", 6: f"make_timestamp({ref})", 9: f"make_timestamp_ns({ref})"}[col.scale])
    if t == "time":  # units since midnight; Postgres' 24:00:00 is a valid TIME in DuckDB too
        micros = _TO_MICROS[col.scale].format(ref=ref)
        return (f"CASE WHEN {micros} = 86400000000 THEN TIME '24:00:00' "
                f"ELSE TIME '00:00:00' + to_microseconds({micros}) END")
    if t == "interval":
        return _interval(ref)
    if t == "bytes":
        return f"from_base64({ref})"
    if t == "text":  # a JSON string's own text; any other JSON value's text
        return f"CASE WHEN json_type({ref}) = 'VARCHAR' THEN {ref} ->> '$' ELSE CAST({ref} AS VARCHAR) END"
    if t == "timestamptz":  # ISO-8601 text with zone; a year past 9999 comes signed (+10000-01-01T…Z)
        return (f"CASE WHEN regexp_matches({ref}, '^[+][0-9]{{6}}') THEN TRY_CAST(substr({ref}, 2) AS TIMESTAMPTZ) "
                f"ELSE CAST(ltrim({ref}, '+') AS TIMESTAMPTZ) END")
    if t == "decimal":  # Debezium writes numeric NaN as NAN, Postgres as NaN; a DECIMAL has none: NULL
        return f"CAST(NULLIF({ref}, '{NAN_WIRE}') AS {sql_type(col)})" if col.fixed_decimal else \
            f"replace({ref}, '{NAN_WIRE}', 'NaN')"
    return f"CAST({ref} AS {sql_type(col)})"


def _interval(ref: str) -> str:
    """Postgres' three interval fields (months, days, microseconds) from Debezium's ISO text (see
    envelope.INTERVAL_ISO), kept apart as DuckDB's INTERVAL keeps them (it cannot CAST ISO 8601 text). A text
    that does not match fails the cast of its empty parts, and so the landing."""
    parts = f"regexp_extract({ref}, '{INTERVAL_ISO}', ['y', 'mo', 'd', 'h', 'mi', 's'])"

    def part(name: str, typ: str = "BIGINT") -> str:
        return f"CAST(struct_extract({parts}, '{name}') AS {typ})"

    months = f"CAST({part('y')} * 12 + {part('mo')} AS INTEGER)"
    micros = (f"{part('h')} * 3600000000 + {part('mi')} * 60000000 "
              f"+ CAST({part('s', 'DECIMAL(38, 9)')} * 1000000 AS BIGINT)")
    return f"to_months({months}) + to_days({part('d', 'INTEGER')}) + to_microseconds({micros})"


def _infinities(ref: str, sentinels: dict[str, tuple[int, ...]], sql: str, otherwise: str) -> str:
    cases = " ".join(f"WHEN {ref} IN ({', '.join(map(str, wire))}) THEN CAST('{name}' AS {sql})"
                     for name, wire in sentinels.items())
    return f"CASE {cases} ELSE {otherwise} END"


def default_value(col: Column) -> str:
    """The column's Postgres default (``col.default``, a wire value as JSON text) as a typed SQL constant."""
    return sql_value(col, f"json_transform({_literal(col.default)}, '\"{json_type(col)}\"')")


_CANONICAL: dict[str, str] = {}


def _canonical_type(con, sql: str) -> str:
    """How DuckDB names ``sql`` in DESCRIBE (TIMESTAMPTZ -> TIMESTAMP WITH TIME ZONE), asked once per type."""
    if sql not in _CANONICAL:
        _CANONICAL[sql] = con.execute(f"SELECT typeof(CAST(NULL AS {sql}))").fetchall()[0][0]
    return _CANONICAL[sql]


CHANGELOG_DDL = """(
    event_id VARCHAR NOT NULL, op VARCHAR NOT NULL, key JSON, before JSON, after JSON,
    source_lsn BIGINT, source_txid BIGINT, source_ts_ms BIGINT, snapshot VARCHAR,
    kafka_topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT, landed_at TIMESTAMPTZ NOT NULL)"""

DEAD_LETTER_DDL = """(
    source_table VARCHAR, kafka_topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT,
    error VARCHAR, key VARCHAR, value VARCHAR, landed_at TIMESTAMPTZ NOT NULL, replayed_at TIMESTAMPTZ)"""


def _parquet_source(table: PartitionedTable, files_by_date) -> str | None:
    files = sorted(f for files in files_by_date.values() for f in files)
    if not files:
        return None
    listed = ", ".join(_literal(f) for f in files)
    return (f"read_parquet([{listed}], hive_partitioning = true, union_by_name = true, "
            f"hive_types = {{'{table.partition}': DATE}})")


#: how long a dbt build waits for the one before it to publish (a daily full build takes minutes)
BUILD_WAIT_S = 3600.0


def _copy_database(source: Path, target: Path) -> None:
    """The file and its write-ahead log, if one was left (writers close their connections, which checkpoints
    it, before they release the slot). Each part lands whole (a temporary file, then a rename)."""
    for suffix in ("", ".wal"):
        src, dst = Path(f"{source}{suffix}"), Path(f"{target}{suffix}")
        if src.exists():
            partial = dst.with_name(dst.name + ".partial")
            shutil.copyfile(src, partial)
            os.replace(partial, dst)
        else:
            dst.unlink(missing_ok=True)


def _publish(con, alias: str, relations) -> int:
    """See ``DuckDBWarehouse.publish_dbt_build``; ``con`` has the copy attached as ``alias``."""
    wanted: list[tuple[str, str]] = list(dict.fromkeys(tuple(r) for r in relations))
    schemas = sorted({s for s, _ in wanted})
    if not schemas:
        return 0
    in_schemas = ", ".join(_literal(s) for s in schemas)

    def kinds(database: str) -> dict[tuple[str, str], tuple[str, str | None, str | None]]:
        return {(s, n): (kind, sql, comment) for s, n, kind, sql, comment in con.execute(
            f"SELECT schema_name, table_name, 'table', NULL, comment FROM duckdb_tables() "
            f"WHERE database_name = ? AND schema_name IN ({in_schemas}) "
            f"UNION ALL SELECT schema_name, view_name, 'view', sql, comment FROM duckdb_views() "
            f"WHERE database_name = ? AND NOT internal AND schema_name IN ({in_schemas})",
            [database, database]).fetchall()}

    home = con.execute("SELECT current_database()").fetchall()[0][0]
    built, present = kinds(alias), kinds(home)
    column_comments: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for s, n, column, comment in con.execute(
            f"SELECT schema_name, table_name, column_name, comment FROM duckdb_columns() "
            f"WHERE database_name = ? AND comment IS NOT NULL AND schema_name IN ({in_schemas})",
            [alias]).fetchall():
        column_comments.setdefault((s, n), []).append((column, comment))
    published = 0
    con.execute("BEGIN")
    try:
        for schema in schemas:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {q(schema)}")
        for relation in wanted:
            if relation not in built:
                continue
            kind, sql, comment = built[relation]
            ref = f"{q(relation[0])}.{q(relation[1])}"
            if relation in present and present[relation][0] != kind:
                con.execute(f"DROP {present[relation][0].upper()} {ref}")
            if kind == "table":
                con.execute(f"CREATE OR REPLACE TABLE {ref} AS FROM {alias}.{ref}")
            else:  # DuckDB keeps a view's SQL as "CREATE VIEW <schema>.<name> AS ...", naming no catalog
                con.execute(re.sub(r"^\s*CREATE\s+VIEW\b", "CREATE OR REPLACE VIEW", sql, count=1, flags=re.I))
            if comment is not None:
                con.execute(f"COMMENT ON {kind.upper()} {ref} IS {_literal(comment)}")
            for column, text in column_comments.get(relation, []):
                con.execute(f"COMMENT ON COLUMN {ref}.{q(column)} IS {_literal(text)}")
            published += 1
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return published


@dataclass
class _Unfolded:
    """A table's events landed in the open transaction, not folded into its current state yet."""

    current: str
    schema: TableSchema
    events: list  # Arrow tables of the incoming rows' columns (held, not copied)


def _stage(con, unfolded: dict[str, _Unfolded], table: str, current: str, schema: TableSchema,
           incoming: pa.Table, all_new: bool) -> None:
    """Keep the new events (view ``_new`` over ``incoming``) for their table's fold, in the open
    transaction: the incoming Arrow table itself when all of it is new (no copy), else the new rows."""
    events = incoming if all_new else con.sql("SELECT * FROM _new").to_arrow_table()
    staged = unfolded.get(table)
    if staged is None:
        unfolded[table] = _Unfolded(current, schema, [events])
    else:
        staged.events.append(events)


def _fold(con, unfolded: dict[str, _Unfolded], table: str) -> None:
    """Fold a table's staged events into its current state (once per transaction, or before a schema
    change, a replay or a snapshot's end)."""
    import pyarrow as pa

    staged = unfolded.pop(table, None)
    if staged is not None:
        con.register("_unfolded", pa.concat_tables(staged.events))
        try:
            _apply_current(con, staged.current, staged.schema, "_unfolded")
        finally:
            con.unregister("_unfolded")


class DuckDBWarehouse(Warehouse):
    """Raw CDC tables in one DuckDB file (the same file dbt's local target reads)."""

    path: str
    schema_name: str = "raw_cdc"
    #: schema of the tables loaded from the lake (web analytics)
    lake_schema: str = "raw_web"
    lock_timeout_s: float = 300.0

    @property
    def kind(self) -> str:
        return "duckdb"

    _session_con: Any = PrivateAttr(default=None)
    _dlq_ready: set = PrivateAttr(default_factory=set)  # dead-letter tables known to have today's columns
    _in_session: bool = PrivateAttr(default=False)
    #: the session's warehouse transaction left open by ``land_all(..., commit=False)``: table -> events
    #: landed in it whose current state is not folded yet (None: no transaction open)
    _landing_tx: dict[str, _Unfolded] | None = PrivateAttr(default=None)

    def _open(self, read_only: bool = False):
        import duckdb  # here, not at import: the code location loads without it

        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                return duckdb.connect(self.path, read_only=read_only)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.25)

    @contextmanager
    def connect(self, read_only: bool = False):
        con = self._open(read_only)
        try:
            yield con
        finally:
            con.close()

    @property
    def lock_path(self) -> str:
        """The writer slot shared by every process that writes this file (lander, raw runs, dbt)."""
        return writer_slot_path(self.path)

    @contextmanager
    def exclusive(self):
        """Hold the file's writer slot (a file lock beside it) so writers queue instead of failing: DuckDB
        itself refuses a second writer process outright, and dbt-duckdb does not retry."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self.lock_path, timeout=self.lock_timeout_s)
        with lock:
            yield self

    @property
    def build_path(self) -> str:
        return build_copy_path(self.path)

    @contextmanager
    def dbt_build(self):
        """dbt builds in a copy of the file, so the lander is kept out only while the file is copied and
        while the build is published, not for the whole build (DuckDB lets no other process open a file,
        not even to read it, while one writes it). The copy is taken under the writer slot, between two
        landings: it is the transactionally consistent cut dbt reads. One build at a time (a lock beside
        the copy, held until the caller is done publishing)."""
        build = Path(self.build_path)
        build.parent.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(f"{build}.build.lock", timeout=BUILD_WAIT_S):
            with self.exclusive():
                _copy_database(Path(self.path), build)
            yield str(build)

    def publish_dbt_build(self, relations):
        """One transaction on the warehouse with the copy attached read-only: each table rewritten from the
        copy, each view created again from its SQL, descriptions (dbt's persist_docs) copied. A relation the
        copy lacks (not built yet) is left as it is."""
        build = self.build_path
        if not Path(build).exists():
            return 0
        alias = "corisync_dbt_build"
        with self.connect() as con:
            con.execute(f"ATTACH {_literal(build)} AS {alias} (READ_ONLY)")
            try:
                return _publish(con, alias, relations)
            finally:
                con.execute(f"DETACH {alias}")

    @contextmanager
    def session(self):
        """One connection for all batches of a landing run (the file lock is released when the run ends)."""
        self._in_session = True
        try:
            yield self
        finally:
            self._in_session = False
            self._landing_tx = None  # a transaction still open ends with the connection: rolled back
            if self._session_con is not None:
                self._session_con.close()
                self._session_con = None

    @contextmanager
    def _writer(self):
        if not self._in_session:
            with self.connect() as con:
                yield con
            return
        if self._session_con is None:
            self._session_con = self._open()
            # checkpoint once when the session closes, not every few batches in the middle of a landing
            self._session_con.execute("SET checkpoint_threshold = '1GB'")
            # a transaction that spans several writes (land_all(commit=False)) writes each full row group
            # into the file as soon as it is complete, while the next ones are consumed, rather than five at
            # a time or all at the COMMIT that ends the landing
            self._session_con.execute("SET write_buffer_row_group_count = 1")
        yield self._session_con

    def prepare(self) -> None:
        """Open the session's connection and warm the Arrow conversion: the first Python -> Arrow conversion
        of a process imports pandas (pyarrow checks for its types), a few tenths of a second."""
        with self._writer():
            pass
        ChangeBatch(table="").to_arrow()

    def existing_relations(self, relations):
        if not Path(self.path).exists():
            return set()
        with self.connect(read_only=True) as con:
            found = set(con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall())
        return {r for r in relations if tuple(r) in found}

    def relation_sql(self, database, schema, name):
        return ".".join(map(q, (database, schema, name)))

    def relation_reader(self, build_path=None):
        """One read-only connection to the file (or the build's copy); a cursor per call, one per thread."""
        import duckdb

        con = duckdb.connect(build_path or self.path, read_only=True)

        def columns(database: str, schema: str, name: str) -> list[tuple[str, str]]:
            return con.cursor().execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = ? AND "
                "table_schema = ? AND table_name = ? ORDER BY ordinal_position", [database, schema, name]).fetchall()

        return RelationReader(columns, lambda sql: con.cursor().execute(sql).fetchall(), con.close)

    def table_row_counts(self, relations):
        """One query: ``count(*)`` of every base table among ``relations`` (DuckDB answers it from storage
        metadata); views are left out, counting them would run them. Callers hold the writer slot."""
        if not Path(self.path).exists():
            return {}
        with self.connect(read_only=True) as con:
            tables = set(con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                                     "WHERE table_type = 'BASE TABLE'").fetchall())
            wanted = sorted({tuple(r) for r in relations} & tables)
            if not wanted:
                return {}
            union = " UNION ALL ".join(f"SELECT {i}, count(*) FROM {q(schema)}.{q(name)}"
                                       for i, (schema, name) in enumerate(wanted))
            return {wanted[i]: n for i, n in con.execute(union).fetchall()}

    def read_tables(self, relations, limit=None):
        """One connection for all of them; a relation that does not exist is left out. Callers hold the
        writer slot."""
        if not Path(self.path).exists():
            return {}
        out = {}
        with self.connect() as con:
            found = set(con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall())
            for schema, name in relations:
                if (schema, name) not in found:
                    continue
                ref = f"{q(schema)}.{q(name)}"
                result = con.execute(f"SELECT * FROM {ref}" + ("" if limit is None else f" LIMIT {int(limit)}"))
                columns = [(d[0], str(d[1])) for d in result.description]
                rows = result.fetchall()
                count = len(rows) if limit is None else con.execute(f"SELECT count(*) FROM {ref}").fetchall()[0][0]
                out[(schema, name)] = TableRows(columns, rows, count)
        return out

    @contextmanager
    def _reading_dead_letters(self):
        """(connection, the table's reference, whether it has replayed_at) on one read-only connection, or
        None when there is no dead-letter table yet. Tables made before replay existed lack the column until
        the next landing adds it."""
        if not Path(self.path).exists():
            yield None
            return
        with self.connect(read_only=True) as con:
            columns = {r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                [self.schema_name, DEAD_LETTERS]).fetchall()}
            yield (con, f"{q(self.schema_name)}.{q(DEAD_LETTERS)}", "replayed_at" in columns) if columns else None

    def _dead_letter_rows(self):
        with self._reading_dead_letters() as found:
            if found is None:
                return []
            con, dlq, replayable = found
            pending = "replayed_at IS NULL" if replayable else "TRUE"
            return con.execute(DEAD_LETTER_SUMMARY_SQL.format(table=dlq, pending=pending)).fetchall()

    def dead_letters(self, table=None):
        with self._reading_dead_letters() as found:
            if found is None:
                return []
            con, dlq, replayable = found
            replayed = "replayed_at IS NOT NULL" if replayable else "FALSE"
            rows = con.execute(
                f"SELECT source_table, kafka_topic, kafka_partition, kafka_offset, error, key, value, {replayed} "
                f"FROM {dlq} WHERE ? IS NULL OR source_table = ? ORDER BY 2, 3, 4", [table, table]).fetchall()
        return [StoredDeadLetter(*row) for row in rows]

    def mark_replayed(self, table, positions):
        if not positions:
            return 0
        dlq = f"{q(self.schema_name)}.{q(DEAD_LETTERS)}"
        with self._writer() as con:
            self._ensure_dead_letter_table(con, dlq)
            con.execute("CREATE OR REPLACE TEMP TABLE _replayed (t VARCHAR, p INTEGER, o BIGINT)")
            con.executemany("INSERT INTO _replayed VALUES (?, ?, ?)", [tuple(p) for p in positions])
            n = con.execute(f"""UPDATE {dlq} d SET replayed_at = now() FROM _replayed r
                WHERE d.source_table = ? AND d.kafka_topic = r.t AND d.kafka_partition = r.p
                  AND d.kafka_offset = r.o AND d.replayed_at IS NULL""", [table]).fetchall()[0][0]
            con.execute("DROP TABLE _replayed")
        return n

    def _ensure_dead_letter_table(self, con, dlq: str) -> None:
        if dlq in self._dlq_ready:
            return
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {q(self.schema_name)}")
        con.execute(f"CREATE TABLE IF NOT EXISTS {dlq} {DEAD_LETTER_DDL}")
        con.execute(f"ALTER TABLE {dlq} ADD COLUMN IF NOT EXISTS replayed_at TIMESTAMPTZ")
        self._dlq_ready.add(dlq)

    def replace_partitions(self, loads):
        """One transaction for all tables: dbt never sees events ahead of their sessions."""
        schema = q(self.lake_schema)
        counts = {}
        with self._writer() as con:
            con.execute("BEGIN")
            try:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                for table, files_by_date in loads.items():
                    target = f"{schema}.{q(table.name)}"
                    con.execute(f"CREATE TABLE IF NOT EXISTS {target} ({table.ddl('duckdb')})")
                    for statement in table.replace_sql(target, _parquet_source(table, files_by_date),
                                                       list(files_by_date)):
                        con.execute(statement)
                    counts[table.name] = con.execute(table.count_sql(target, list(files_by_date))).fetchone()[0]
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return counts

    def row_count(self, table: str) -> int:
        with self.connect() as con:
            return con.execute(f"SELECT count(*) FROM {q(self.schema_name)}.{q(table)}").fetchone()[0]

    def land_all(self, batches: Sequence[ChangeBatch], replay: bool = False, commit: bool = True
                 ) -> list[LandResult]:
        """Every batch in the session's transaction; ``commit=False`` leaves it open for the next call.

        Current state is folded once per transaction (and per table schema), from all of the transaction's
        events: a row changed in several calls is parsed and rewritten once, and a transaction of more than a
        row group (122,880 rows) per table writes the changelog's row groups straight into the file instead
        of the WAL and a checkpoint."""
        if not commit and (replay or not self._in_session):
            raise ValueError("commit=False keeps the transaction open for the session's next land_all: "
                             "only in a session(), and not for replays")
        s = q(self.schema_name)
        dlq = f"{s}.{q(DEAD_LETTERS)}"
        results = []
        with self._writer() as con:
            if self._landing_tx is None:
                con.execute("BEGIN")
                self._landing_tx = {}
            unfolded = self._landing_tx
            try:
                self._ensure_dead_letter_table(con, dlq)
                for batch in batches:
                    current, changelog = self.table_names(batch.table)
                    cur = f"{s}.{q(current)}"
                    new_dead = self._land_dead_letters(con, dlq, batch)
                    new_events = duplicates = 0
                    if len(batch):
                        new_events, duplicates = self._land_events(
                            con, cur, f"{s}.{q(changelog)}", batch, unfolded, replay)
                    if batch.snapshot_ends and _scalar(
                            con, "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? "
                            "AND table_name = ?", [self.schema_name, current]):
                        _fold(con, unfolded, batch.table)  # the events before the snapshot's end first
                        con.execute(snapshot_end_sql(cur, batch.snapshot_ends))
                    results.append(LandResult(new_events, duplicates, new_dead))
                if commit:
                    for table in list(unfolded):
                        _fold(con, unfolded, table)
                    self._landing_tx = None
                    con.execute("COMMIT")
            except BaseException:
                self._landing_tx = None
                con.execute("ROLLBACK")
                raise
        return results

    def _land_dead_letters(self, con, dlq: str, batch: ChangeBatch) -> int:
        if not batch.dead_letters:
            return 0
        rows = [
            (batch.table, d.topic, d.partition, d.offset, d.error,
             d.key.decode("utf-8", "replace") if d.key else None,
             d.value.decode("utf-8", "replace") if d.value is not None else None)
            for d in batch.dead_letters
        ]
        con.execute("CREATE TEMP TABLE _dl (source_table VARCHAR, kafka_topic VARCHAR, kafka_partition INTEGER,"
                    " kafka_offset BIGINT, error VARCHAR, key VARCHAR, value VARCHAR)")
        con.executemany("INSERT INTO _dl VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        # the same message (topic, partition, offset and bytes) dead-lettered twice is one row
        n = con.execute(
            f"""INSERT INTO {dlq} (source_table, kafka_topic, kafka_partition, kafka_offset, error, key, value,
                                   landed_at)
                SELECT d.*, now() FROM _dl d WHERE NOT EXISTS (
                SELECT 1 FROM {dlq} x WHERE x.kafka_topic = d.kafka_topic AND x.kafka_partition = d.kafka_partition
                AND x.kafka_offset = d.kafka_offset AND x.value IS NOT DISTINCT FROM d.value)"""
        ).fetchone()[0]
        con.execute("DROP TABLE _dl")
        return n

    def _ensure_tables(self, con, cur: str, log: str, batch: ChangeBatch) -> None:
        schema = batch.schema
        con.execute(f"CREATE TABLE IF NOT EXISTS {log} {CHANGELOG_DDL}")
        cols = ", ".join(f"{q(c.name)} {sql_type(c)}" for c in schema.columns)
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {cur} ({cols}, _cdc_op VARCHAR, _cdc_lsn BIGINT, _cdc_ts_ms BIGINT,"
            " _cdc_landed_at TIMESTAMPTZ)"
        )
        existing = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {cur})").fetchall())
        for c in schema.columns:
            want = sql_type(c)
            if c.name not in existing:  # a new source column becomes a new column; existing rows get its default
                if c.default is None:
                    con.execute(f"ALTER TABLE {cur} ADD COLUMN {q(c.name)} {want}")
                else:
                    con.execute(f"ALTER TABLE {cur} ADD COLUMN {q(c.name)} {want} DEFAULT {default_value(c)}")
                    con.execute(f"ALTER TABLE {cur} ALTER COLUMN {q(c.name)} DROP DEFAULT")
            elif existing[c.name] != _canonical_type(con, want):  # e.g. int -> bigint, numeric(10,2) -> (12,4)
                con.execute(f"ALTER TABLE {cur} ALTER COLUMN {q(c.name)} SET DATA TYPE {want}")

    def _land_events(self, con, cur: str, log: str, batch: ChangeBatch, unfolded: dict[str, _Unfolded],
                     replay: bool = False) -> tuple[int, int]:
        if batch.schema is None:  # only truncates so far: the table's columns are still unknown
            raise ValueError(f"no row schema seen yet for table {batch.table!r}; cannot land a bare truncate")
        staged = unfolded.get(batch.table)
        if staged is not None and (replay or staged.schema != batch.schema):
            # before a schema change (a new column's default goes to the rows already there) or a replay
            _fold(con, unfolded, batch.table)
            staged = None
        if staged is None:  # else this transaction's earlier batch of the same schema made the tables ready
            self._ensure_tables(con, cur, log, batch)
        incoming = batch.to_arrow()
        con.register("_incoming", incoming)
        low, high = batch.lsn_range
        try:
            # Only positions are materialized: copying the payloads would cost more than the dedupe itself.
            # The LSN range as constants: the changelog's row groups outside it are skipped by their zone maps.
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE _new_pos AS
                SELECT _cdc_partition AS p, _cdc_offset AS o FROM _incoming i
                WHERE NOT EXISTS (
                    SELECT 1 FROM {log} c
                    WHERE c.source_lsn BETWEEN {int(low)} AND {int(high)}
                      AND c.event_id = i._cdc_event_id)
                QUALIFY row_number() OVER (PARTITION BY _cdc_event_id ORDER BY _cdc_partition, _cdc_offset) = 1"""
            )
            new = _scalar(con, "SELECT count(*) FROM _new_pos")
            source = "_incoming" if new == len(batch) else (
                "(SELECT i.* FROM _incoming i SEMI JOIN _new_pos n ON i._cdc_partition = n.p AND i._cdc_offset = n.o)"
            )
            con.execute(f"CREATE OR REPLACE TEMP VIEW _new AS SELECT * FROM {source}")
            if new:
                con.execute(
                    f"""INSERT INTO {log}
                    SELECT _cdc_event_id, _cdc_op, CAST(_cdc_key AS JSON), nullif(_ba[1], 'null'),
                           nullif(_ba[2], 'null'), _cdc_lsn, _cdc_txid, _cdc_ts_ms, _cdc_snapshot, _cdc_topic,
                           _cdc_partition, _cdc_offset, now()
                    FROM (SELECT *, json_extract(_cdc_payload, ['$.before', '$.after']) AS _ba FROM _new)"""
                )
                if replay:
                    _apply_current(con, cur, batch.schema, "_new", log)
                else:
                    _stage(con, unfolded, batch.table, cur, batch.schema, incoming, new == len(batch))
            con.execute("DROP VIEW _new")
            con.execute("DROP TABLE _new_pos")
        finally:
            con.unregister("_incoming")
        return new, len(batch) - new


def _apply_current(con, cur: str, schema: TableSchema, source: str, newer_in: str | None = None) -> None:
    """Upsert the latest event per row into current state. An event older than a column with a default
    has no value for it, and the row takes the column's default (as in Postgres, where existing rows read
    the default of a column added with one), whether the column is new to the warehouse or the table
    is (its first landing may span the change). ``newer_in`` (replays):
    the changelog; a row whose changelog holds a newer event than the replayed one keeps its state (a
    row's changes have increasing LSNs: Postgres' row lock orders them)."""
    truncate_lsn = _scalar(con, f"SELECT max(_cdc_lsn) FROM {source} WHERE _cdc_op = 't'")
    if truncate_lsn is not None:
        con.execute(f"DELETE FROM {cur}")
    row_spec = "{" + ", ".join(f'"{c.name}": "{json_type(c)}"' for c in schema.columns) + "}"
    by_name = {c.name: c for c in schema.columns}
    key_spec = "{" + ", ".join(f'"{k}": "{json_type(by_name[k])}"' for k in schema.primary_key) + "}"

    def raw(col: Column) -> str:  # deletes carry the primary key in the Kafka key only
        ref = f"_p.after.{q(col.name)}"
        return f"coalesce({ref}, _k.{q(col.name)})" if col.name in schema.primary_key else ref

    # The latest event per row: Debezium writes a row's key JSON the same way every time, so the key
    # text identifies the row without parsing; only the winners' payloads are parsed and cast.
    def value(col: Column) -> str:
        if col.default is not None and col.name not in schema.primary_key:
            return (f"CASE WHEN json_exists(_cdc_payload, '$.after.{col.name}') THEN {sql_value(col, raw(col))} "
                    f"ELSE {default_value(col)} END")
        return sql_value(col, raw(col))

    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _latest AS
        SELECT {", ".join(f"{value(c)} AS {q(c.name)}" for c in schema.columns)},
               _cdc_op, _cdc_lsn, _cdc_ts_ms{", _cdc_key" if newer_in is not None else ""}
        FROM (SELECT *, json_transform(_cdc_payload, '{{"after": {row_spec}}}') AS _p,
                        json_transform(_cdc_key, '{key_spec}') AS _k
              FROM {source}
              WHERE _cdc_op <> 't' AND _cdc_lsn > {int(truncate_lsn) if truncate_lsn is not None else -1}
              QUALIFY row_number() OVER (PARTITION BY _cdc_key
                                         ORDER BY _cdc_partition DESC, _cdc_offset DESC) = 1)"""
    )
    if newer_in is not None:
        con.execute(f"""DELETE FROM _latest l WHERE EXISTS (
            SELECT 1 FROM {newer_in} c WHERE c.key = CAST(l._cdc_key AS JSON) AND c.source_lsn > l._cdc_lsn)""")
    match = " AND ".join(f"t.{q(k)} = l.{q(k)}" for k in schema.primary_key)
    con.execute(f"DELETE FROM {cur} t USING _latest l WHERE {match}")
    names = ", ".join(q(c.name) for c in schema.columns)
    con.execute(
        f"""INSERT INTO {cur} ({names}, _cdc_op, _cdc_lsn, _cdc_ts_ms, _cdc_landed_at)
        SELECT {names}, _cdc_op, _cdc_lsn, _cdc_ts_ms, now() FROM _latest WHERE _cdc_op <> 'd'"""
    )
    con.execute("DROP TABLE _latest")
    ends = ", ".join(f"'{v}'" for v in sorted(SNAPSHOT_END))
    snapshot_end = _scalar(con, f"SELECT max(_cdc_lsn) FROM {source} WHERE _cdc_op = 'r' AND _cdc_snapshot IN ({ends})")
    if snapshot_end is not None:
        # A finished snapshot re-read every live row at its LSN: older rows were deleted while their delete
        # event was lost (e.g. the local broker restarted before landing).
        con.execute(f"DELETE FROM {cur} WHERE _cdc_lsn < {int(snapshot_end)}")
