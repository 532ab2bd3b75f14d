"""The stand-in's destination: a sync's records into the local DuckDB warehouse the way Airbyte's
destinations v2 lay them out, so dbt reads the same tables in both modes.

Table ``raw_airbyte.<prefix><stream>``: ``_airbyte_raw_id`` (uuid text), ``_airbyte_extracted_at`` (the
record's ``emitted_at``), ``_airbyte_meta`` (``{"changes": [...], "sync_id": <job id>}``),
``_airbyte_generation_id``, then one typed column per property of the stream's discovered JSON schema
(``column_type``). Like Airbyte: a value that does not cast to its column's type lands as NULL with a
``{"field", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}`` entry in ``_airbyte_meta.changes``;
a property new in the schema becomes a new column; a column whose property left the schema stays, NULL in
new rows; ``_airbyte_generation_id`` goes up with every full-refresh overwrite.

One transaction for all streams of a sync, under the warehouse's writer slot (the DuckDB file is shared with
dbt and the CDC lander; DuckDB admits one writer process): ``overwrite`` replaces a table's rows atomically
(a failed or cancelled sync leaves the previous ones), ``append_dedup`` upserts by primary key (the latest
record wins: highest cursor, then the last emitted), ``append`` appends. The records come from the job's spool
files (the connector's RECORD lines as they were emitted); DuckDB parses them itself, in one set-based
statement per stream: nothing per row in Python, so a 50,000-row sheet lands in a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corisync_assets.local.airbyte.workspace import DESTINATION_SCHEMA

#: Airbyte's own columns, first in every table
AIRBYTE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_airbyte_raw_id", "VARCHAR NOT NULL"),
    ("_airbyte_extracted_at", "TIMESTAMPTZ NOT NULL"),
    ("_airbyte_meta", "JSON NOT NULL"),
    ("_airbyte_generation_id", "BIGINT"),
)
_AIRBYTE_NAMES = {name for name, _ in AIRBYTE_COLUMNS}
#: largest RECORD line the destination reads (DuckDB's default is 16 MB)
MAX_RECORD_BYTES = 256 * 1024 * 1024
_CHANGE_STRUCT = "STRUCT(field VARCHAR, change VARCHAR, reason VARCHAR)"


class Aborted(Exception):
    """The write was rolled back because the job was cancelled before it committed."""


def column_type(prop: Mapping[str, Any]) -> str:
    """DuckDB type of a JSON-schema property: string -> VARCHAR (format date -> DATE, date-time ->
    TIMESTAMPTZ, time -> TIME/TIMETZ), integer (or number with airbyte_type integer) -> BIGINT, number ->
    DOUBLE, boolean -> BOOLEAN, object/array, unions and untyped -> JSON."""
    if not isinstance(prop, Mapping) or "oneOf" in prop or "anyOf" in prop:
        return "JSON"
    raw = prop.get("type")
    types = [raw] if isinstance(raw, str) else list(raw or [])
    kinds = [t for t in types if t != "null"]
    if len(kinds) != 1:
        return "JSON"
    kind = kinds[0]
    if kind == "string":
        fmt, airbyte_type = prop.get("format"), prop.get("airbyte_type", "")
        if fmt == "date":
            return "DATE"
        if fmt == "date-time":
            return "TIMESTAMPTZ"
        if fmt == "time":
            return "TIMETZ" if airbyte_type == "time_with_timezone" else "TIME"
        return "VARCHAR"
    if kind == "integer" or (kind == "number" and prop.get("airbyte_type") == "integer"):
        return "BIGINT"
    return {"number": "DOUBLE", "boolean": "BOOLEAN"}.get(kind, "JSON")


def typed_columns(json_schema: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(column, DuckDB type) per property of the stream's schema, in the schema's order."""
    props = (json_schema or {}).get("properties") or {}
    return [(name, column_type(prop)) for name, prop in props.items() if name not in _AIRBYTE_NAMES]


@dataclass(frozen=True)
class StreamLoad:
    """One stream of a sync: where its records are and how they land."""

    stream: str
    table: str
    json_schema: Mapping[str, Any]
    destination_sync_mode: str  #: overwrite | append | append_dedup
    spool: Path | None  #: the stream's RECORD messages, one JSON line each; None: no records
    primary_key: tuple[str, ...] = ()
    cursor_field: tuple[str, ...] = ()


@dataclass(frozen=True)
class StreamWritten:
    stream: str
    table: str  #: schema.table
    records: int  #: records of this sync written (after deduplication within the sync)
    rows: int  #: rows in the table after the sync
    nulled: int  #: values of this sync nulled because they did not cast to their column's type


def qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _pointer(name: str) -> str:
    """JSON pointer to a field of the record's data, from the whole RECORD message."""
    return _lit("/record/data/" + name.replace("~", "~0").replace("/", "~1"))


def _source(spool: Path | None) -> str:
    """The spool's lines as JSON values (column ``json``): parsed once per row, by the extraction itself."""
    if spool is None:
        return "(SELECT CAST(NULL AS JSON) AS json WHERE false)"
    return f"read_ndjson_objects({_lit(str(spool))}, maximum_object_size = {MAX_RECORD_BYTES})"


def typed_query(columns: Sequence[tuple[str, str]], source: str, sync_id: int, generation_id: int) -> str:
    """SELECT of the Airbyte columns, the typed columns and ``_ab_n`` (emission order) from the RECORD lines."""
    plain = [(n, t) for n, t in columns if t != "JSON"]
    as_json = [(n, t) for n, t in columns if t == "JSON"]
    # one parse of each line: the plain fields and emitted_at (last) in one list, the JSON fields in another
    raw_list = f"json_extract_string(json, [{''.join(_pointer(n) + ', ' for n, _ in plain)}'/record/emitted_at'])"
    json_list = (f"json_extract(json, [{', '.join(_pointer(n) for n, _ in as_json)}])"
                 if as_json else "CAST(NULL AS JSON[])")
    emitted = f"TRY_CAST(_ab_r[{len(plain) + 1}] AS DOUBLE)"
    typed = []
    changes = []
    for i, (name, sql_type) in enumerate(plain, start=1):
        if sql_type == "VARCHAR":
            typed.append(f"_ab_r[{i}] AS {qi(name)}")
            continue
        typed.append(f"TRY_CAST(_ab_r[{i}] AS {sql_type}) AS {qi(name)}")
        changes.append(f"CASE WHEN _ab_r[{i}] IS NOT NULL AND {qi(name)} IS NULL THEN "
                       f"{{'field': {_lit(name)}, 'change': 'NULLED', 'reason': 'DESTINATION_TYPECAST_ERROR'}} END")
    for i, (name, _) in enumerate(as_json, start=1):
        typed.append(f"CASE WHEN json_type(_ab_j[{i}]) = 'NULL' THEN NULL ELSE _ab_j[{i}] END AS {qi(name)}")
    change_list = (f"list_filter([{', '.join(changes)}], lambda x: x IS NOT NULL)" if changes
                   else f"CAST([] AS {_CHANGE_STRUCT}[])")
    names = "".join(f", {qi(n)}" for n, _ in columns)
    return f"""
        SELECT CAST(gen_random_uuid() AS VARCHAR) AS _airbyte_raw_id,
               coalesce(to_timestamp(_ab_em / 1000.0), now()) AS _airbyte_extracted_at,
               CAST(to_json({{'changes': {change_list}, 'sync_id': {int(sync_id)}}}) AS JSON) AS _airbyte_meta,
               CAST({int(generation_id)} AS BIGINT) AS _airbyte_generation_id{names}, _ab_n
        FROM (SELECT _ab_n, _ab_em{"".join(", " + t for t in typed)}, _ab_r
              FROM (SELECT _ab_n, {emitted} AS _ab_em, _ab_r, _ab_j
                    FROM (SELECT row_number() OVER () AS _ab_n, {raw_list} AS _ab_r, {json_list} AS _ab_j
                          FROM {source})))"""


def _existing_columns(con, schema: str, table: str) -> list[tuple[str, str]]:
    return con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
        "ORDER BY ordinal_position", [schema, table]).fetchall()


def _final_columns(existing: Sequence[tuple[str, str]], wanted: Sequence[tuple[str, str]],
                   keep_existing_types: bool) -> list[tuple[str, str, bool]]:
    """(name, type, in_schema): the table's columns in their order (types from the schema unless
    ``keep_existing_types``), then the schema's new ones; columns that left the schema stay."""
    want = {n.lower(): (n, t) for n, t in wanted}
    out: list[tuple[str, str, bool]] = []
    seen = set()
    for name, sql_type in existing:
        if name in _AIRBYTE_NAMES:
            continue
        hit = want.get(name.lower())
        seen.add(name.lower())
        out.append((name, sql_type if keep_existing_types or hit is None else hit[1], hit is not None))
    out += [(n, t, True) for n, t in wanted if n.lower() not in seen]
    return out


def _ddl(columns: Iterable[tuple[str, str, bool]]) -> str:
    return ", ".join([f"{qi(n)} {t}" for n, t in AIRBYTE_COLUMNS] + [f"{qi(n)} {t}" for n, t, _ in columns])


def _write_stream(con, schema: str, load: StreamLoad, sync_id: int) -> StreamWritten:
    target = f"{qi(schema)}.{qi(load.table)}"
    existing = _existing_columns(con, schema, load.table)
    wanted = typed_columns(load.json_schema)
    overwrite = load.destination_sync_mode == "overwrite"
    dedup = load.destination_sync_mode == "append_dedup" and load.primary_key
    columns = _final_columns(existing, wanted, keep_existing_types=not overwrite)
    previous_gen = (con.execute(f"SELECT max(_airbyte_generation_id) FROM {target}").fetchone()[0]
                    if existing else None)
    if overwrite:
        generation = 0 if previous_gen is None else previous_gen + 1
        con.execute(f"CREATE OR REPLACE TABLE {target} ({_ddl(columns)})")
    else:
        generation = previous_gen or 0
        if not existing:
            con.execute(f"CREATE TABLE {target} ({_ddl(columns)})")
        have = {n.lower() for n, _ in existing}
        for name, sql_type, _ in columns:
            if existing and name.lower() not in have:
                con.execute(f"ALTER TABLE {target} ADD COLUMN {qi(name)} {sql_type}")
    # typed as the table's columns (appends keep a column's type; the schema's type wins on overwrite)
    load_columns = [(n, t) for n, t, in_schema in columns if in_schema]
    query = typed_query(load_columns, _source(load.spool), sync_id, generation)
    names = ", ".join([qi(n) for n, _ in AIRBYTE_COLUMNS] + [qi(n) for n, _ in load_columns])
    if dedup:
        missing = [k for k in (*load.primary_key, *load.cursor_field) if k.lower() not in
                   {n.lower() for n, _ in load_columns}]
        if missing:
            raise ValueError(f"stream {load.stream}: primary key/cursor field {', '.join(missing)} not in its schema")
        order = "".join(f"{qi(c)} DESC NULLS LAST, " for c in load.cursor_field)
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _ab_new AS SELECT * FROM ({query})
            QUALIFY row_number() OVER (PARTITION BY {", ".join(qi(k) for k in load.primary_key)}
                                       ORDER BY {order}_ab_n DESC) = 1""")
        match = " AND ".join(f"t.{qi(k)} IS NOT DISTINCT FROM n.{qi(k)}" for k in load.primary_key)
        con.execute(f"DELETE FROM {target} t USING _ab_new n WHERE {match}")
        written = con.execute(f"INSERT INTO {target} ({names}) SELECT {names} FROM _ab_new").fetchone()[0]
        con.execute("DROP TABLE _ab_new")
    else:
        written = con.execute(f"INSERT INTO {target} ({names}) SELECT {names} FROM ({query})").fetchone()[0]
    rows, nulled = con.execute(
        f"SELECT count(*), coalesce(sum(json_array_length(_airbyte_meta, '$.changes')) FILTER ("
        f"WHERE CAST(_airbyte_meta ->> 'sync_id' AS BIGINT) = {int(sync_id)}), 0) FROM {target}").fetchone()
    return StreamWritten(load.stream, f"{schema}.{load.table}", int(written), int(rows), int(nulled))


def write_streams(warehouse, loads: Sequence[StreamLoad], *, sync_id: int, schema: str = DESTINATION_SCHEMA,
                  abort: Callable[[], bool] | None = None) -> dict[str, StreamWritten]:
    """Write every stream of one sync in one transaction (``warehouse``: a ``DuckDBWarehouse``). ``abort``
    is asked just before the commit: True rolls everything back and raises ``Aborted``."""
    out: dict[str, StreamWritten] = {}
    with warehouse.exclusive(), warehouse.connect() as con:
        con.execute("BEGIN")
        try:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {qi(schema)}")
            for load in loads:
                out[load.stream] = _write_stream(con, schema, load, sync_id)
            if abort is not None and abort():
                raise Aborted("cancelled before the destination committed")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return out


def record_fields(spools: Mapping[str, Path]) -> dict[str, set[str]]:
    """Stream -> the top-level fields its records carry (to notice a schema the discover cache does not
    know); one query over all spool files."""
    import duckdb

    if not spools:
        return {}
    union = " UNION ALL ".join(f"SELECT DISTINCT {_lit(stream)} AS s, unnest(json_keys(json, '/record/data')) AS k "
                               f"FROM {_source(path)}" for stream, path in spools.items())
    out: dict[str, set[str]] = {stream: set() for stream in spools}
    with duckdb.connect() as con:
        for stream, key in con.execute(union).fetchall():
            out[stream].add(key)
    return out
