"""Self-reconciliation: does the warehouse's current state of each captured table equal Postgres?

A green raw asset must mean the data is there. This compares, per captured table, every row of
``raw_cdc.<t>`` with the table in Postgres, at one consistent point, and reports the keys that differ.

**Consistent point.** On a connection of its own, the check reads the replication slot's ``restart_lsn`` F, then
opens a REPEATABLE READ READ ONLY transaction whose first statement reads ``L = pg_current_wal_insert_lsn()``
and ``pg_current_snapshot()``: that statement takes the snapshot ``S`` every Postgres read of the check then
uses. Every transaction visible in ``S`` committed before ``L``. The check then makes the warehouse hold every
change up to ``L``: it emits ``pg_logical_emit_message(false, 'corisync', 'reconcile')`` (so WAL moves past
``L`` even on an idle database), waits until the connector's replication slot has confirmed ``L``
(``confirmed_flush_lsn >= L``: Debezium flushed everything before it to Kafka; bounded wait, else
:class:`NotCaughtUp`), and lands what Kafka holds (``land_changes``, as the raw asset does).

**Changed during the check.** The warehouse may now be ahead of ``S``: landing took whatever Kafka had, and the
lander (BigQuery: the fold) goes on. A key is left out of the comparison, and counted as
``changed_during_check``, when the warehouse changelog holds an event of it that ``S`` does not see:

* its ``source_lsn > L`` (written after the snapshot was taken), or
* its ``source_lsn > F`` and its transaction is one ``S`` does not see: ``source_txid`` in the snapshot's
  in-progress list, or ``>= xmax`` (not completed when ``S`` was taken). This covers a transaction that wrote
  before ``L`` and committed after it. F bounds the events looked at: a logical slot's restart position never
  passes the first record of a transaction still running, so every such transaction wrote after F; and their
  xids are recent, so comparing Debezium's 32-bit ``txId`` with the snapshot modulo 2^32 is exact.

A truncate ``S`` does not see leaves out every key of the table. Everything else must match: a key that
changed only before ``S`` has all its events landed, in order, so its warehouse row must equal Postgres'.
The changelog is read for this before and after the comparison (a change landing meanwhile is covered).

(``L`` is the WAL *insert* position: it lies past the commit record of everything ``S`` sees, whatever
``synchronous_commit`` is.)

**Comparison.** Row count, and every compared column's canonical text
(:mod:`corisync_assets.resources.warehouse.canonical`: the same text rendered by Postgres and by the
warehouse; columns of types without one are listed in ``columns_not_compared``). Tables are read in chunks of
``chunk_rows`` keys (fewer for wide rows) by primary-key range: keyset pagination on the key, composite keys
included. Per chunk each side returns only its row count and the md5 of its rows' texts in key order, so a
table of any size is read in bounded memory; only a chunk whose two answers differ is read key by key (an
md5 per row) and compared in Python, then the first differing keys' columns are compared to name them. The
two sides run concurrently (Postgres on this thread, the warehouse on a worker). Postgres uses one backend
and no parallel workers (it is the operational database); DuckDB reads under its writer slot.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from corisync_assets.resources.warehouse import canonical as canon
from corisync_assets.resources.warehouse.reader import SqlReader

#: differing keys listed in a result
FIRST_N = 20
#: keys per chunk (both sides return one aggregate per chunk; a differing chunk is read key by key) ...
CHUNK_ROWS = 100_000
#: ... fewer for wide rows: about this many bytes of row text per chunk (each side holds one chunk's text)
CHUNK_BYTES = 64 << 20
#: how long the replication slot may take to confirm the consistent point
CATCH_UP_TIMEOUT_S = 120.0
#: differing keys held for the final re-check against changes landed during the comparison; beyond it they
#: are counted as differing without that re-check
KEEP_DIFFERING = 100_000

MISSING = "missing_in_warehouse"
EXTRA = "extra_in_warehouse"
VALUES = "values_differ"
DUPLICATE = "duplicate_in_warehouse"


class NotCaughtUp(RuntimeError):
    """The replication slot did not confirm the consistent point in time: the warehouse cannot be complete."""


class ReconcileError(RuntimeError):
    """The table cannot be compared at all (no primary key, key column not comparable, ...)."""


@dataclass(frozen=True)
class TableRef:
    """A captured table: Postgres ``schema.table`` and its warehouse table name."""

    schema: str
    table: str
    warehouse_table: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"


def lsn_int(text: str) -> int:
    """``'16/B374D848'`` -> the 64-bit WAL position (as Debezium's ``source.lsn``)."""
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


@dataclass(frozen=True)
class ConsistentPoint:
    """Where the comparison stands: the snapshot's WAL position ``lsn`` (L), ``lsn_floor`` (F: no transaction
    the snapshot does not see wrote before it; 0 when unknown), and the snapshot (xmin, xmax, in-progress)."""

    lsn: int
    lsn_floor: int
    xmin: int
    xmax: int
    xip: tuple[int, ...]

    @classmethod
    def parse(cls, lsn_floor: str | None, lsn: str, snapshot: str) -> ConsistentPoint:
        xmin, xmax, xip = snapshot.split(":")
        return cls(lsn_int(lsn), lsn_int(lsn_floor) if lsn_floor else 0, int(xmin), int(xmax),
                   tuple(int(x) for x in xip.split(",") if x))

    @property
    def lsn_text(self) -> str:
        return lsn_text(self.lsn)

    def unseen_sql(self, dialect: str) -> str:
        """Warehouse condition on a changelog row: its event is not in the snapshot (see the module doc).
        Debezium's ``txId`` may be the 32-bit xid: both sides are compared modulo 2^32."""
        mod = (lambda a, b: f"MOD({a}, {b})") if dialect == "bigquery" else (lambda a, b: f"(({a}) % {b})")
        wrap = 1 << 32
        txid = mod("source_txid", wrap)
        unseen = [f"{mod(f'{txid} - {self.xmax % wrap} + {wrap}', wrap)} < {wrap // 2}"]  # txid >= xmax
        if self.xip:
            unseen.append(f"{txid} IN ({', '.join(str(x % wrap) for x in self.xip)})")
        return (f"(source_lsn > {self.lsn} OR (source_lsn > {self.lsn_floor} AND source_txid IS NOT NULL "
                f"AND ({' OR '.join(unseen)})))")


@dataclass(frozen=True)
class KeyDifference:
    key: dict[str, str]  # primary key column -> canonical text
    kind: str  # MISSING | EXTRA | VALUES | DUPLICATE
    columns: tuple[str, ...] = ()  # for VALUES: the columns that differ

    def as_json(self) -> dict:
        out: dict[str, Any] = {"key": self.key, "difference": self.kind}
        if self.columns:
            out["columns"] = list(self.columns)
        return out


@dataclass
class TableResult:
    """The comparison of one table (the check's metadata, see :meth:`metadata`)."""

    ref: TableRef
    lsn: str
    passed: bool = False
    postgres_rows: int = 0
    warehouse_rows: int | None = None  # None: the warehouse has no such table
    keys_compared: int = 0
    differing: dict[str, int] = field(default_factory=lambda: dict.fromkeys((MISSING, EXTRA, VALUES, DUPLICATE), 0))
    changed_during_check: int = 0
    first_differences: list[KeyDifference] = field(default_factory=list)
    columns_compared: list[str] = field(default_factory=list)
    columns_not_compared: dict[str, str] = field(default_factory=dict)
    columns_missing_in_warehouse: list[str] = field(default_factory=list)
    chunks: int = 0
    chunks_differing: int = 0
    chunk_rows: int = CHUNK_ROWS
    seconds: float = 0.0
    problem: str | None = None  # why the table could not be compared (then passed is False)

    @property
    def keys_differing(self) -> int:
        return sum(self.differing.values())

    @property
    def rows_per_second(self) -> float:
        return round(max(self.postgres_rows, self.warehouse_rows or 0) / self.seconds, 1) if self.seconds else 0.0

    @property
    def description(self) -> str:
        if self.problem:
            return self.problem
        if self.passed:
            return (f"{self.keys_compared} keys equal to Postgres at LSN {self.lsn}"
                    + (f" ({self.changed_during_check} changed during the check, left out)"
                       if self.changed_during_check else ""))
        kinds = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in self.differing.items() if n)
        return f"{self.keys_differing} of {self.keys_compared} keys differ from Postgres at LSN {self.lsn}: {kinds}"

    def metadata(self) -> dict[str, Any]:
        """Plain values (JSON-able) under the check's metadata keys."""
        return {
            "consistent_lsn": self.lsn,
            "postgres_rows": self.postgres_rows,
            "warehouse_rows": self.warehouse_rows if self.warehouse_rows is not None else -1,
            "warehouse_table_exists": self.warehouse_rows is not None,
            "keys_compared": self.keys_compared,
            "keys_differing": self.keys_differing,
            **self.differing,
            "changed_during_check": self.changed_during_check,
            "first_differing_keys": [d.as_json() for d in self.first_differences],
            "columns_compared": self.columns_compared,
            "columns_not_compared": self.columns_not_compared,
            "columns_missing_in_warehouse": self.columns_missing_in_warehouse,
            "chunks": self.chunks,
            "chunks_differing": self.chunks_differing,
            "chunk_rows": self.chunk_rows,
            "duration_s": round(self.seconds, 3),
            "rows_per_second": self.rows_per_second,
        }


# --- the consistent point ---------------------------------------------------------------------------------


def open_snapshot(conn, slot: str | None = None) -> ConsistentPoint:
    """Set the canonical session on ``conn`` (a psycopg connection used by nothing else), read the slot's
    restart position (F), and open the REPEATABLE READ READ ONLY transaction whose first statement takes the
    snapshot and reads L. The transaction stays open for the comparison; roll it back when done."""
    from psycopg import IsolationLevel

    conn.autocommit = True
    for name, value in canon.PG_SESSION.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    floor = conn.execute("SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                         (slot,)).fetchone() if slot else None
    conn.autocommit = False
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    lsn, snapshot = conn.execute("SELECT pg_current_wal_insert_lsn()::text, pg_current_snapshot()::text").fetchone()
    return ConsistentPoint.parse(floor[0] if floor else None, lsn, snapshot)


NUDGE_EVERY_S = 2.5  # above the local engine's offset.flush.interval.ms (1 s)


def wait_for_slot(conn, slot: str, lsn: int, timeout_s: float = CATCH_UP_TIMEOUT_S, poll_s: float = 0.2) -> float:
    """Emit a logical message (WAL moves past ``lsn`` even when nothing else is written) and wait until the
    replication slot confirmed ``lsn``; returns the seconds waited. ``conn``: an autocommit connection.

    The message is re-emitted every ``NUDGE_EVERY_S``: an embedded Debezium engine commits offsets (and so
    confirms the slot) only when a later batch arrives after its flush interval, so on an idle database the
    batch holding the first message may never be confirmed."""
    t0 = next_nudge = time.monotonic()
    while True:
        if time.monotonic() >= next_nudge:
            conn.execute("SELECT pg_logical_emit_message(false, 'corisync', 'reconcile')")
            next_nudge = time.monotonic() + NUDGE_EVERY_S
        row = conn.execute("SELECT confirmed_flush_lsn::text, active FROM pg_replication_slots WHERE slot_name = %s",
                           (slot,)).fetchone()
        if row is not None and row[0] is not None and lsn_int(row[0]) >= lsn:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout_s:
            state = ("does not exist" if row is None else
                     f"has confirmed {row[0]} ({'active' if row[1] else 'no connector attached'})")
            raise NotCaughtUp(f"not caught up: replication slot {slot!r} {state}, short of the consistent point "
                              f"{lsn_text(lsn)} after {timeout_s:.0f}s; the warehouse cannot be complete "
                              "(is Debezium running?)")
        time.sleep(poll_s)


# --- one table --------------------------------------------------------------------------------------------


@dataclass
class _Side:
    """SQL pieces of one side (Postgres or the warehouse) for one table."""

    relation: str
    key_refs: list[str]  # key expressions, ordered as the key is paged
    key_params: list[str]  # parameter expressions compared with them
    key_texts: list[str]  # the key columns' canonical texts
    column_texts: list[str]  # every compared column's canonical text
    dialect: canon.Dialect

    def range(self, lo: tuple | None, hi: tuple | None) -> tuple[str, list]:
        """The chunk (lo, hi] (None: unbounded) as a condition and its parameters."""
        conds, params = [], []
        for bound, render in ((lo, canon.key_after), (hi, canon.key_at_most)):
            if bound is not None:
                cond, values = render(self.dialect, self.key_refs, self.key_params, bound)
                conds.append(cond)
                params += values
        return (" AND ".join(conds) or "TRUE"), params

    def keys_in(self, keys: Sequence[tuple]) -> tuple[str, list[str]]:
        terms = ["(" + " AND ".join(f"{r} = {p}" for r, p in zip(self.key_refs, self.key_params, strict=True)) + ")"
                 for _ in keys]
        return "(" + " OR ".join(terms) + ")", [v for key in keys for v in key]

    def aggregate_sql(self, where: str) -> str:
        return canon.chunk_aggregate_sql(self.dialect, self.column_texts, self.key_refs, self.relation, where)

    def rows_sql(self, where: str) -> str:
        return (f"SELECT {', '.join(self.key_texts)}, {canon.row_hash(self.dialect, self.column_texts)} "
                f"FROM {self.relation} WHERE {where}")


def pg_columns(pg, schema: str, table: str) -> tuple[list[canon.PgColumn], list[str]] | None:
    """The table's columns (classified) and primary key column names, or None when it does not exist."""
    row = pg.execute("SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                     "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')", (schema, table)).fetchone()
    if row is None:
        return None
    oid = row[0]
    db_collation = pg.execute("SELECT datcollate FROM pg_database WHERE datname = current_database()").fetchone()[0]
    types: dict[int, tuple] = {}

    def resolve(type_oid: int, typmod: int) -> tuple[str, str, int | None, int]:
        """(base type name, typtype, element type oid, typmod) through any domains."""
        while True:
            if type_oid not in types:
                types[type_oid] = pg.execute(
                    "SELECT typname, typtype, typbasetype, typtypmod, typelem, typcategory FROM pg_type "
                    "WHERE oid = %s", (type_oid,)).fetchone()
            name, typtype, basetype, domain_typmod, elem, category = types[type_oid]
            if typtype != "d":
                return name, typtype, (elem if category == "A" and elem else None), typmod
            type_oid, typmod = basetype, typmod if typmod >= 0 else domain_typmod

    columns = []
    for name, type_name, type_oid, typmod, collation in pg.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, a.atttypmod, co.collname "
            "FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation "
            "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", (oid,)).fetchall():
        base, typtype, elem, mod = resolve(type_oid, typmod)
        element = element_typtype = None
        if elem is not None:
            element, element_typtype, _, _ = resolve(elem, -1)
        length = mod - 4 if base == "bpchar" and mod > 4 else None
        precision = mod if base in ("time", "timestamp", "timetz", "timestamptz") and mod >= 0 else None
        collation = db_collation if collation == "default" else collation
        columns.append(canon.classify(name, type_name, base, typtype, element, element_typtype,
                                      length, collation, precision))
    key = [r[0] for r in pg.execute(
        "SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(n, pos) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n "
        "WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.pos", (oid,)).fetchall()]
    return columns, key


def compare_table(pg, reader: SqlReader, ref: TableRef, point: ConsistentPoint, *, chunk_rows: int = CHUNK_ROWS,
                  first_n: int = FIRST_N, time_precision_mode: str = "adaptive_time_microseconds",
                  log: Callable[[str], None] = lambda _m: None) -> TableResult:
    """Compare one table (Postgres through ``pg``, inside the snapshot transaction of ``point``)."""
    t0 = time.monotonic()
    result = TableResult(ref, point.lsn_text, chunk_rows=chunk_rows)
    try:
        _compare(pg, reader, ref, point, result, chunk_rows, first_n, time_precision_mode, log)
    except ReconcileError as exc:
        result.problem, result.passed = str(exc), False
    result.seconds = time.monotonic() - t0
    return result


def _compare(pg, reader: SqlReader, ref: TableRef, point: ConsistentPoint, result: TableResult, chunk_rows: int,
             first_n: int, time_precision_mode: str, log: Callable[[str], None]) -> None:
    from psycopg import sql

    dialect = canon.DIALECTS[reader.dialect]
    found = pg_columns(pg, ref.schema, ref.table)
    landed = reader.columns(ref.warehouse_table)
    if found is None:
        raise ReconcileError(f"{ref.qualified} does not exist in Postgres")
    columns, key_names = found
    if not key_names:
        raise ReconcileError(f"{ref.qualified} has no primary key: rows cannot be matched by key")

    def ident(name: str) -> str:
        return sql.Identifier(name).as_string(pg).replace("%", "%%")

    relation = f"{ident(ref.schema)}.{ident(ref.table)}"
    estimate, stored = pg.execute("SELECT reltuples, pg_table_size(oid) FROM pg_class WHERE oid = %s::regclass",
                                  (relation,)).fetchone()
    if estimate > 0:  # canonical text runs up to about 3x the stored size (numbers, times as text; no compression)
        chunk_rows = min(chunk_rows, max(1000, CHUNK_BYTES // (3 * int(stored / estimate) + 1)))
    result.chunk_rows = chunk_rows
    by_name = {c.name: c for c in columns}
    key = [by_name[k] for k in key_names]
    compared = [c for c in columns if canon.renderable(reader.dialect, c)]
    result.columns_compared = [c.name for c in compared]
    result.columns_not_compared = {
        c.name: c.reason or f"{c.type_name}: the {reader.dialect} warehouse cannot render Postgres' text of it"
        for c in columns if c not in compared}
    for c in key:
        if c not in compared:
            raise ReconcileError(f"primary key column {c.name} ({c.type_name}) has no canonical form: "
                                 f"{ref.qualified} cannot be compared by key")
    pg_side = _Side(relation, [], [], [], [], canon.POSTGRES)
    for c in key:
        text = canon.postgres_text(c, ident(c.name))
        native = landed is not None and canon.native_order(reader.dialect, c, landed.get(c.name))
        collate = "" if c.bytewise or c.base not in canon.COLLATABLE else ' COLLATE "C"'
        # qualified: a bare name in ORDER BY would mean the select list's text of the key, not the column
        pg_side.key_refs.append(f"{relation}.{ident(c.name)}{collate}" if native else f"({text}) COLLATE \"C\"")
        pg_side.key_params.append(f"%s::{c.type_name}" if native else "%s::text")
        pg_side.key_texts.append(text)
    # a numeric landed as a decimal type holds NULL where Postgres has NaN
    pg_side.column_texts = [canon.postgres_text(c, ident(c.name), no_nan=landed is not None and canon.native_order(
        reader.dialect, c, landed.get(c.name))) for c in compared]
    order = ", ".join(pg_side.key_refs)

    if landed is None:  # the whole table is missing from the warehouse
        result.postgres_rows = pg.execute(f"SELECT count(*) FROM {relation}").fetchone()[0]
        keys = [tuple(r) for r in pg.execute(f"SELECT {', '.join(pg_side.key_texts)} FROM {relation} "
                                             f"ORDER BY {order} LIMIT {int(first_n)}").fetchall()]
        result.keys_compared = result.differing[MISSING] = result.postgres_rows
        result.first_differences = [KeyDifference(dict(zip(key_names, k, strict=True)), MISSING) for k in keys]
        result.passed = result.postgres_rows == 0
        if not result.passed:
            result.problem = (f"{ref.warehouse_table} does not exist in the warehouse while {ref.qualified} holds "
                              f"{result.postgres_rows} rows")
        return

    result.columns_missing_in_warehouse = [c.name for c in compared if c.name not in landed]
    for c in key:
        if c.name not in landed:
            raise ReconcileError(f"primary key column {c.name} is missing from warehouse table {ref.warehouse_table}")
    q = reader.quote
    wh_side = _Side(reader.relation(ref.warehouse_table), [], [], [], [], dialect)
    for c in key:
        text = canon.warehouse_text(reader.dialect, c, landed[c.name], q(c.name))
        native = canon.native_order(reader.dialect, c, landed[c.name])
        wh_side.key_refs.append(q(c.name) if native else f"({text})")
        wh_side.key_params.append(f"CAST(? AS {landed[c.name]})" if native else f"CAST(? AS {dialect.text_type})")
        wh_side.key_texts.append(text)
    wh_side.column_texts = [canon.warehouse_text(reader.dialect, c, landed.get(c.name), q(c.name)) for c in compared]
    result.warehouse_rows = reader.fetch(f"SELECT count(*) FROM {wh_side.relation}", [])[0][0]

    units = {c.name: _time_unit_ns(c, time_precision_mode) for c in key}
    unseen = _Unseen(reader, ref.warehouse_table, point, key, units)
    unseen.refresh()
    sort_key = _sort_key(key)
    kept: list[_Found] = []
    overflow: dict[str, int] = {}
    seen_keys = 0

    def wh_aggregate(lo, hi):
        where, params = wh_side.range(lo, hi)
        return reader.fetch(wh_side.aggregate_sql(where), params)[0]

    def pg_boundary(lo):
        where, params = pg_side.range(lo, None)
        row = pg.execute(f"SELECT {', '.join(pg_side.key_texts)} FROM {relation} WHERE {where} ORDER BY {order} "
                         f"OFFSET {int(chunk_rows) - 1} LIMIT 1", params).fetchone()
        return tuple(row) if row is not None else None

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconcile") as pool:
        lo, hi = None, pg_boundary(None)
        while True:
            future = pool.submit(wh_aggregate, lo, hi)
            where, params = pg_side.range(lo, hi)
            pg_count, pg_digest = pg.execute(pg_side.aggregate_sql(where), params).fetchone()
            next_hi = pg_boundary(hi) if hi is not None else None
            wh_count, wh_digest = future.result()
            result.chunks += 1
            result.postgres_rows += pg_count
            if (pg_count, pg_digest) == (wh_count, wh_digest):
                seen_keys += pg_count
            else:
                result.chunks_differing += 1
                seen_keys += _drill(pg, reader, pg_side, wh_side, lo, hi, unseen, result, kept, overflow, sort_key,
                                    key_names)
            if hi is None:
                break
            lo, hi = hi, next_hi
    null_keys = reader.fetch(f"SELECT count(*) FROM {wh_side.relation} WHERE "
                             + " OR ".join(f"{q(c.name)} IS NULL" for c in key), [])[0][0]
    if null_keys:  # outside every key range: no chunk saw them
        raise ReconcileError(f"{null_keys} rows of warehouse table {ref.warehouse_table} have a NULL primary key")
    # changes landed while the chunks were read: leave their keys out too
    unseen.refresh()
    final = [d for d in kept if not unseen.covers(d.key_tuple)] if kept else []
    result.changed_during_check += len(kept) - len(final)
    result.differing = dict.fromkeys(result.differing, 0)
    for d in final:
        result.differing[d.kind] += 1
    for kind, n in overflow.items():
        result.differing[kind] += n
    result.keys_compared = seen_keys - result.changed_during_check
    result.first_differences = [d.public for d in final[:first_n]]
    _explain_values(pg, reader, pg_side, wh_side, compared, result, final[:first_n])
    result.passed = result.keys_differing == 0
    log(f"{ref.qualified}: {result.description} ({result.chunks} chunks, {result.chunks_differing} read key by key)")


@dataclass(frozen=True)
class _Found:
    key_tuple: tuple
    kind: str
    key_names: tuple[str, ...]

    @property
    def public(self) -> KeyDifference:
        return KeyDifference(dict(zip(self.key_names, self.key_tuple, strict=True)), self.kind)


def _drill(pg, reader: SqlReader, pg_side: _Side, wh_side: _Side, lo, hi, unseen: _Unseen, result: TableResult,
           kept: list, overflow: dict, sort_key, key_names: list[str]) -> int:
    """Compare one chunk key by key; returns the number of distinct keys seen in it."""
    n = len(key_names)
    where, params = pg_side.range(lo, hi)
    pg_rows = {tuple(r[:n]): r[n] for r in pg.execute(pg_side.rows_sql(where), params).fetchall()}
    where, params = wh_side.range(lo, hi)
    wh_rows: dict[tuple, str] = {}
    duplicated: set[tuple] = set()
    for r in reader.fetch(wh_side.rows_sql(where), params):
        k = tuple(r[:n])
        if k in wh_rows:
            duplicated.add(k)
        wh_rows[k] = r[n]
    keys = pg_rows.keys() | wh_rows.keys()
    found = []
    for k in keys:
        if k in duplicated:
            kind = DUPLICATE
        elif k not in wh_rows:
            kind = MISSING
        elif k not in pg_rows:
            kind = EXTRA
        elif pg_rows[k] != wh_rows[k]:
            kind = VALUES
        else:
            continue
        if unseen.covers(k):
            result.changed_during_check += 1
            continue
        found.append(_Found(k, kind, tuple(key_names)))
    for f in sorted(found, key=lambda f: sort_key(f.key_tuple)):
        if len(kept) < KEEP_DIFFERING:
            kept.append(f)
        else:
            overflow[f.kind] = overflow.get(f.kind, 0) + 1
    return len(keys)


def _explain_values(pg, reader: SqlReader, pg_side: _Side, wh_side: _Side, compared: list[canon.PgColumn],
                    result: TableResult, shown: list[_Found]) -> None:
    """Name the columns that differ, for the listed keys whose values differ (their full canonical texts)."""
    wanted = [f.key_tuple for f in shown if f.kind == VALUES]
    if not wanted:
        return
    n = len(wanted[0])
    where, params = pg_side.keys_in(wanted)
    texts = ", ".join(pg_side.column_texts)
    pg_rows = {tuple(r[:n]): r[n:] for r in pg.execute(
        f"SELECT {', '.join(pg_side.key_texts)}, {texts} FROM {pg_side.relation} WHERE {where}", params).fetchall()}
    where, params = wh_side.keys_in(wanted)
    texts = ", ".join(wh_side.column_texts)
    wh_rows = {tuple(r[:n]): r[n:] for r in reader.fetch(
        f"SELECT {', '.join(wh_side.key_texts)}, {texts} FROM {wh_side.relation} WHERE {where}", params)}
    by_key = {tuple(d.key.values()): i for i, d in enumerate(result.first_differences)}
    for k in wanted:
        a, b = pg_rows.get(k), wh_rows.get(k)
        if a is None or b is None or k not in by_key:
            continue
        cols = tuple(c.name for c, x, y in zip(compared, a, b, strict=True) if x != y)
        i = by_key[k]
        result.first_differences[i] = KeyDifference(result.first_differences[i].key, VALUES, cols)


class _Unseen:
    """Keys with a changelog event the snapshot does not see (see the module doc), as canonical key tuples."""

    def __init__(self, reader: SqlReader, table: str, point: ConsistentPoint, key: list[canon.PgColumn],
                 units: dict[str, int]) -> None:
        self.reader, self.table, self.point, self.key, self.units = reader, table, point, key, units
        self.keys: set[tuple] = set()
        self.truncated = False

    def refresh(self) -> None:
        if self.reader.columns(self.table + "__changelog") is None:
            return
        d = canon.DIALECTS[self.reader.dialect]
        rows = self.reader.fetch(f"SELECT DISTINCT {d.json_text('key')}, op FROM {self.reader.changelog(self.table)} "
                                 f"WHERE {self.point.unseen_sql(self.reader.dialect)}", [])
        for key_json, op in rows:
            if op == "t" or key_json is None:
                self.truncated = True
                continue
            wire = json.loads(key_json)
            self.keys.add(tuple(canon.wire_key_text(c, wire.get(c.name), time_unit_ns=self.units[c.name])
                                for c in self.key))

    def covers(self, key: tuple) -> bool:
        return self.truncated or key in self.keys


def _time_unit_ns(col: canon.PgColumn, mode: str) -> int:
    """Nanoseconds per wire unit of a time or timestamp key column under ``time.precision.mode``."""
    if col.base == "date" or col.kind not in ("time", "timestamp"):
        return 1000
    if mode == "connect":
        return 1_000_000
    if mode in ("nanoseconds",):
        return 1
    precision = 6 if col.precision is None else col.precision
    if mode == "adaptive_time_microseconds" and col.kind == "time":
        return 1000
    return 1_000_000 if precision <= 3 else 1000


def _sort_key(key: list[canon.PgColumn]):
    """Python order of canonical key tuples close to the tables' (numbers as numbers, the rest bytewise)."""
    def one(col: canon.PgColumn, text):
        if text is None:
            return (0, 0)
        if col.kind == "integer":
            return (1, int(text))
        if col.kind == "numeric":
            try:
                value = Decimal(text)
                if value.is_finite():
                    return (1, value)
            except InvalidOperation:
                pass
        return (2, str(text).encode())

    return lambda k: tuple(one(c, t) for c, t in zip(key, k, strict=True))


# --- all tables at one point ------------------------------------------------------------------------------


def reconcile(connect: Callable[[], Any], open_reader: Callable[[], AbstractContextManager[SqlReader]],
              tables: Sequence[TableRef], *, slot: str | None, land: Callable[[], int] | None = None,
              chunk_rows: int = CHUNK_ROWS, first_n: int = FIRST_N, catch_up_timeout_s: float = CATCH_UP_TIMEOUT_S,
              time_precision_mode: str = "adaptive_time_microseconds",
              after_point: Callable[[ConsistentPoint], None] | None = None,
              log: Callable[[str], None] = lambda _m: None) -> tuple[ConsistentPoint, int, list[TableResult]]:
    """Compare every table of ``tables`` with the warehouse at one consistent point.

    ``connect``: a new psycopg connection (autocommit) to the source database as a role that may read the
    tables and emit logical messages; ``open_reader``: a read session on the warehouse; ``slot``: the
    connector's replication slot (None: no wait, e.g. a benchmark whose warehouse side is loaded directly);
    ``land``: lands what Kafka holds and returns the events landed (None: nothing to land);
    ``after_point`` (tests): called once the snapshot is taken, before the catch-up.
    Returns the point, the events landed, and one result per table. Raises :class:`NotCaughtUp`.
    """
    with connect() as pg:
        point = open_snapshot(pg, slot)
        log(f"consistent point: LSN {point.lsn_text}, snapshot {point.xmin}:{point.xmax}:{len(point.xip)} in progress")
        if after_point is not None:
            after_point(point)
        if slot is not None:
            with connect() as admin:
                admin.autocommit = True
                waited = wait_for_slot(admin, slot, point.lsn, catch_up_timeout_s)
            log(f"replication slot {slot} confirmed LSN {point.lsn_text} after {waited:.1f}s")
        landed = land() if land is not None else 0
        results = []
        with open_reader() as reader:
            for ref in tables:
                results.append(compare_table(pg, reader, ref, point, chunk_rows=chunk_rows, first_n=first_n,
                                             time_precision_mode=time_precision_mode, log=log))
        pg.rollback()
    return point, landed, results
