"""Debezium-shaped change events (JsonConverter, schemas enabled) for unit tests and the benchmark.

The shape mirrors what the real Postgres connector emits for `public.courses` with the project's connector
config (decimal.handling.mode=string, column.propagate.source.type=.*); the integration tests check the
decoder against the real connector's output, these vectors only make pure tests and benchmarks cheap.
"""

from __future__ import annotations

import orjson

PREFIX = "tc4a"


def _p(pg_type: str, length: int | None = None, scale: int | None = None) -> dict:
    params = {"__debezium.source.column.type": pg_type}
    if length is not None:
        params["__debezium.source.column.length"] = str(length)
    if scale is not None:
        params["__debezium.source.column.scale"] = str(scale)
    return {"parameters": params}


COURSE_FIELDS = [
    {"type": "int64", "optional": False, "field": "course_id", **_p("INT8", 19, 0)},
    {"type": "string", "optional": False, "field": "code", **_p("TEXT", 2147483647, 0)},
    {"type": "string", "optional": False, "field": "title", **_p("TEXT", 2147483647, 0)},
    {"type": "string", "optional": True, "field": "description", **_p("TEXT", 2147483647, 0)},
    {"type": "string", "optional": False, "field": "level", **_p("TEXT", 2147483647, 0)},
    {"type": "string", "optional": False, "field": "price", **_p("NUMERIC", 10, 2)},
    {"type": "boolean", "optional": False, "field": "is_published", **_p("BOOL", 1, 0)},
    {"type": "string", "optional": False, "name": "io.debezium.data.Json", "version": 1, "field": "tags",
     **_p("JSONB", 2147483647, 0)},
    {"type": "int32", "optional": True, "field": "seats", **_p("INT4", 10, 0)},
    {"type": "string", "optional": False, "name": "io.debezium.time.ZonedTimestamp", "version": 1,
     "field": "created_at", **_p("TIMESTAMPTZ", 35, 6)},
]

SOURCE_SCHEMA = {"type": "struct", "optional": False, "name": "io.debezium.connector.postgresql.Source",
                 "field": "source", "fields": [
                     {"type": "string", "optional": False, "field": "version"},
                     {"type": "string", "optional": False, "field": "connector"},
                     {"type": "string", "optional": False, "field": "name"},
                     {"type": "int64", "optional": False, "field": "ts_ms"},
                     {"type": "string", "optional": True, "name": "io.debezium.data.Enum", "field": "snapshot"},
                     {"type": "string", "optional": False, "field": "db"},
                     {"type": "string", "optional": False, "field": "schema"},
                     {"type": "string", "optional": False, "field": "table"},
                     {"type": "int64", "optional": True, "field": "txId"},
                     {"type": "int64", "optional": True, "field": "lsn"}]}


def value_schema(table: str, fields: list[dict]) -> dict:
    row = {"type": "struct", "fields": fields, "optional": True, "name": f"{PREFIX}.public.{table}.Value"}
    return {"type": "struct", "optional": False, "name": f"{PREFIX}.public.{table}.Envelope", "version": 2,
            "fields": [{**row, "field": "before"}, {**row, "field": "after"}, SOURCE_SCHEMA,
                       {"type": "string", "optional": False, "field": "op"},
                       {"type": "int64", "optional": True, "field": "ts_ms"}]}


def key_schema(table: str, pk_fields: list[dict]) -> dict:
    return {"type": "struct", "fields": pk_fields, "optional": False, "name": f"{PREFIX}.public.{table}.Key"}


COURSES_VALUE_SCHEMA = value_schema("courses", COURSE_FIELDS)
COURSES_KEY_SCHEMA = key_schema("courses", [COURSE_FIELDS[0]])


def course_row(course_id: int, version: int = 0) -> dict:
    return {
        "course_id": course_id,
        "code": f"C-{course_id:06d}",
        "title": f"Course {course_id} — “Data” édition v{version}",
        "description": None if course_id % 7 == 0 else "Long text " * (course_id % 5 + 1),
        "level": ("beginner", "intermediate", "advanced")[course_id % 3],
        "price": f"{(course_id * 37 + version) % 100000}.{course_id % 100:02d}",
        "is_published": course_id % 2 == 0,
        "tags": orjson.dumps({"v": version, "t": ["sql", "python"][: course_id % 3]}).decode(),
        "seats": None if course_id % 11 == 0 else 10 + course_id % 40,
        "created_at": f"2026-0{1 + course_id % 9}-1{course_id % 10}T0{course_id % 10}:15:30.{course_id % 1000:06d}Z",
    }


def envelope(op: str, key: int | None, before: dict | None, after: dict | None, lsn: int, txid: int,
             ts_ms: int, snapshot: str = "false", table: str = "courses",
             transaction: str | None = None) -> tuple[bytes | None, bytes]:
    """(key bytes, value bytes) of one event as Debezium's JsonConverter writes them (``transaction``: the
    transaction id Debezium adds with provide.transaction.metadata)."""
    source = {"version": "3.6.3.Final", "connector": "postgresql", "name": PREFIX, "ts_ms": ts_ms,
              "snapshot": snapshot, "db": "tc4a", "schema": "public", "table": table, "txId": txid, "lsn": lsn}
    value = {"schema": COURSES_VALUE_SCHEMA,
             "payload": {"before": before, "after": after, "source": source, "op": op, "ts_ms": ts_ms + 5,
                         "transaction": None if transaction is None else
                         {"id": transaction, "total_order": 1, "data_collection_order": 1}}}
    key_bytes = None
    if key is not None:
        key_bytes = orjson.dumps({"schema": COURSES_KEY_SCHEMA, "payload": {"course_id": key}})
    return key_bytes, orjson.dumps(value)


def change_stream(n: int, *, start_lsn: int = 1_000_000, ids: int | None = None):
    """n events over `ids` courses: first an insert per id, then updates, with every 10th change a delete
    followed by a re-insert. Yields (key, value) pairs; tombstones follow deletes as Debezium emits them."""
    ids = ids or max(n // 4, 1)
    lsn, live, version = start_lsn, {}, {}
    for i in range(n):
        cid = i % ids + 1
        lsn += 16
        ts = 1_764_000_000_000 + i
        if cid not in live:
            row = course_row(cid, version.setdefault(cid, 0))
            live[cid] = row
            yield envelope("c", cid, None, row, lsn, 700 + i, ts)
        elif i % 10 == 9:
            yield envelope("d", cid, live.pop(cid), None, lsn, 700 + i, ts)
            yield course_key(cid), None
        else:
            version[cid] += 1
            row = course_row(cid, version[cid])
            yield envelope("u", cid, live[cid], row, lsn, 700 + i, ts)
            live[cid] = row


def course_key(cid: int) -> bytes:
    return orjson.dumps({"schema": COURSES_KEY_SCHEMA, "payload": {"course_id": cid}})


def expected_state(n: int, *, ids: int | None = None) -> dict[int, dict]:
    """The current state change_stream(n) leaves behind, computed by replaying it in plain Python."""
    state: dict[int, dict] = {}
    for key, value in change_stream(n, ids=ids):
        if value is None:
            continue
        payload = orjson.loads(value)["payload"]
        cid = orjson.loads(key)["payload"]["course_id"]
        if payload["op"] == "d":
            state.pop(cid, None)
        else:
            state[cid] = payload["after"]
    return state


def transaction_event(status: str, tx: str, counts: dict[str, int] | None = None) -> tuple[bytes, bytes]:
    """(key, value) of a BEGIN/END event on Debezium's transaction topic (JsonConverter with schemas)."""
    payload = {"status": status, "id": tx, "ts_ms": 1}
    if status == "END":
        payload["event_count"] = sum((counts or {}).values())
        payload["data_collections"] = [{"data_collection": c, "event_count": n} for c, n in (counts or {}).items()]
    return (orjson.dumps({"schema": {"type": "struct"}, "payload": {"id": tx}}),
            orjson.dumps({"schema": {"type": "struct", "name": "io.debezium.connector.common.TransactionMetadataValue"},
                          "payload": payload}))


def _wide_fields() -> list[dict]:
    """A 40-column table of mixed types (the landing benchmark's wide table): ints, numerics, floats, texts,
    booleans, timestamps with and without zone, dates, jsonb, arrays and uuids."""
    fields = [{"type": "int64", "optional": False, "field": "id", **_p("INT8", 19, 0)}]
    spec = [("int16", None, "INT2", 1), ("int32", None, "INT4", 2), ("int64", None, "INT8", 3),
            ("string", None, "NUMERIC", 4), ("float", None, "FLOAT4", 1), ("double", None, "FLOAT8", 1),
            ("string", None, "TEXT", 8), ("boolean", None, "BOOL", 3),
            ("string", "io.debezium.time.ZonedTimestamp", "TIMESTAMPTZ", 3),
            ("int64", "io.debezium.time.MicroTimestamp", "TIMESTAMP", 3), ("int32", "io.debezium.time.Date", "DATE", 2),
            ("string", "io.debezium.data.Json", "JSONB", 3), ("string", "io.debezium.data.Uuid", "UUID", 2)]
    for ctype, semantic, pg_type, count in spec:
        for i in range(count):
            f = {"type": ctype, "optional": True, "field": f"{pg_type.lower()}_{i}",
                 **_p(pg_type, 12 if pg_type == "NUMERIC" else None, 2 if pg_type == "NUMERIC" else None)}
            if semantic:
                f.update(name=semantic, version=1)
            fields.append(f)
    for i, item in enumerate(("string", "int32", "string")):
        fields.append({"type": "array", "optional": True, "field": f"array_{i}",
                       "items": {"type": item, "optional": True}, **_p("_TEXT" if item == "string" else "_INT4")})
    return fields


WIDE_FIELDS = _wide_fields()
WIDE_VALUE_SCHEMA = value_schema("wide", WIDE_FIELDS)
WIDE_KEY_SCHEMA = key_schema("wide", [WIDE_FIELDS[0]])


def wide_row(row_id: int, version: int) -> dict:
    v = row_id * 31 + version
    row: dict = {"id": row_id}
    for f in WIDE_FIELDS[1:]:
        name, pg_type = f["field"], f["parameters"]["__debezium.source.column.type"]
        row[name] = {
            "INT2": v % 30000, "INT4": v, "INT8": v * 1_000_003, "NUMERIC": f"{v % 100000}.{v % 100:02d}",
            "FLOAT4": v / 7, "FLOAT8": v / 3, "TEXT": f"text {name} {v} with some words, \"quotes\" and ñ",
            "BOOL": v % 2 == 0, "TIMESTAMPTZ": f"2026-11-{v % 28 + 1:02d}T10:{v % 60:02d}:00.123456Z",
            "TIMESTAMP": 1_764_000_000_000_000 + v * 1_000_000, "DATE": 20_000 + v % 3000,
            "JSONB": orjson.dumps({"k": v, "tags": ["a", "b"], "nested": {"x": v % 10}}).decode(),
            "UUID": f"00000000-0000-4000-8000-{v:012d}",
            "_TEXT": ["a", None, f"b,{v}"], "_INT4": [v, None, 3],
        }[pg_type]
    return row


def wide_stream(n: int, *, start_lsn: int = 5_000_000):
    """n change events of the wide table over n // 4 rows (inserts first, then updates), as (key, value)."""
    ids, lsn, version = max(n // 4, 1), start_lsn, {}
    for i in range(n):
        rid = i % ids + 1
        lsn += 16
        before = wide_row(rid, version[rid]) if rid in version else None
        version[rid] = version.get(rid, -1) + 1
        source = {"version": "3.6.3.Final", "connector": "postgresql", "name": PREFIX, "ts_ms": 1_764_000_000_000 + i,
                  "snapshot": "false", "db": "tc4a", "schema": "public", "table": "wide", "txId": 900 + i, "lsn": lsn}
        value = {"schema": WIDE_VALUE_SCHEMA, "payload": {
            "before": before, "after": wide_row(rid, version[rid]), "source": source,
            "op": "c" if before is None else "u", "ts_ms": source["ts_ms"] + 5}}
        yield orjson.dumps({"schema": WIDE_KEY_SCHEMA, "payload": {"id": rid}}), orjson.dumps(value)
