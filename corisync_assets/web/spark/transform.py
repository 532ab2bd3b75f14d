"""Pure transforms of the web job (DataFrame in, DataFrame out; no Kafka, no lake): parse/validate,
dedupe, sessionize, sessions, page_daily, and the date arithmetic of "which partitions does a batch touch".

Working frame ("work rows"): the events table's columns, except that the client's session id is kept
as ``client_session_id`` (``session_id`` of the table = client's value, else the derived session's id), plus
``event_date`` and ``origin`` (0: already in the lake, 1: from this batch).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

EVENT_TYPES = ("page_view", "course_page_view", "video_progress", "quiz_submission", "search", "login")
PAGE_TYPES = ("page_view", "course_page_view")
SUPPORTED_SCHEMA_VERSIONS = (1,)
SESSION_GAP_S = 30 * 60  # a gap of MORE than this starts a new session
LATE_AFTER_S = 60 * 60  # received_at - occurred_at above this: is_late
MICROS = 1_000_000
LAKE_ORIGIN, BATCH_ORIGIN = 0, 1

#: the collector's JSON (``properties`` kept as JSON text: Spark renders a nested object as its text)
VALUE_SCHEMA = StructType([
    StructField("event_id", StringType()), StructField("event_type", StringType()),
    StructField("schema_version", IntegerType()), StructField("anonymous_id", StringType()),
    StructField("user_id", LongType()), StructField("session_id", StringType()),
    StructField("occurred_at", StringType()), StructField("received_at", StringType()),
    StructField("page_url", StringType()), StructField("page_path", StringType()),
    StructField("referrer", StringType()), StructField("user_agent", StringType()),
    StructField("course_id", LongType()), StructField("properties", StringType()),
    StructField("source", StringType()), StructField("_corrupt_record", StringType()),
])

EVENTS_SCHEMA = StructType([
    StructField("event_id", StringType()), StructField("event_type", StringType()),
    StructField("schema_version", IntegerType()), StructField("anonymous_id", StringType()),
    StructField("user_id", LongType()), StructField("session_id", StringType()),
    StructField("occurred_at", TimestampType()), StructField("received_at", TimestampType()),
    StructField("page_url", StringType()), StructField("page_path", StringType()),
    StructField("referrer", StringType()), StructField("user_agent", StringType()),
    StructField("course_id", LongType()), StructField("properties", StringType()),
    StructField("source", StringType()), StructField("kafka_partition", IntegerType()),
    StructField("kafka_offset", LongType()), StructField("is_late", BooleanType()),
    StructField("event_date", DateType()),
])
SESSIONS_SCHEMA = StructType([
    StructField("session_id", StringType()), StructField("anonymous_id", StringType()),
    StructField("user_id", LongType()), StructField("session_start", TimestampType()),
    StructField("session_end", TimestampType()), StructField("event_count", LongType()),
    StructField("page_count", LongType()), StructField("entry_page", StringType()),
    StructField("exit_page", StringType()), StructField("duration_s", DoubleType()),
    StructField("session_date", DateType()),
])
PAGE_DAILY_SCHEMA = StructType([
    StructField("page_path", StringType()), StructField("course_id", LongType()),
    StructField("page_views", LongType()), StructField("visitors", LongType()),
    StructField("sessions", LongType()), StructField("day", DateType()),
])
#: columns of the events table, in order (partition column last)
EVENT_COLUMNS = [f.name for f in EVENTS_SCHEMA.fields]
WORK_COLUMNS = [("client_session_id" if c == "session_id" else c) for c in EVENT_COLUMNS] + [
    "origin", "stored_session_id"]


def _blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")


def parse(raw: DataFrame) -> DataFrame:
    """Kafka rows (``value``, ``partition``, ``offset``) -> work rows plus ``invalid_reason`` (null: valid).

    A message is invalid (kept, with its first reason) when the value is missing or not UTF-8, is not a
    JSON object of the contract's types, lacks event_id / event_type / schema_version / anonymous_id, has an
    unknown event_type or schema_version, a timestamp that does not parse, or properties that are not an
    object. Timestamps: ISO-8601 (``...Z`` or an offset; without one: UTC).
    """
    j = F.from_json(F.col("value"), VALUE_SCHEMA, {"mode": "PERMISSIVE",
                                                    "columnNameOfCorruptRecord": "_corrupt_record"})
    df = raw.select(F.col("partition").alias("kafka_partition"), F.col("offset").alias("kafka_offset"),
                    F.col("value"), j.alias("j"))
    occurred = F.try_to_timestamp(F.col("j.occurred_at"))
    received = F.try_to_timestamp(F.col("j.received_at"))
    props = F.trim(F.col("j.properties"))
    etype = F.col("j.event_type")
    version = F.col("j.schema_version")
    reason = F.coalesce(
        F.when(F.col("value").isNull(), F.lit("value is null or not UTF-8")),
        F.when(F.col("j").isNull() | F.col("j._corrupt_record").isNotNull(),
               F.lit("not a JSON object of the event contract (malformed JSON or a field of the wrong type)")),
        F.when(_blank(F.col("j.event_id")), F.lit("missing event_id")),
        F.when(etype.isNull(), F.lit("missing event_type")),
        F.when(~etype.isin(*EVENT_TYPES), F.concat(F.lit("unknown event_type '"), etype, F.lit("'"))),
        F.when(version.isNull(), F.lit("missing schema_version")),
        F.when(~version.isin(*SUPPORTED_SCHEMA_VERSIONS),
               F.concat(F.lit("unsupported schema_version "), version.cast("string"))),
        F.when(_blank(F.col("j.anonymous_id")), F.lit("missing anonymous_id")),
        F.when(F.col("j.occurred_at").isNull(), F.lit("missing occurred_at")),
        F.when(occurred.isNull(), F.concat(F.lit("occurred_at is not a timestamp: '"), F.col("j.occurred_at"),
                                           F.lit("'"))),
        F.when(F.col("j.received_at").isNull(), F.lit("missing received_at")),
        F.when(received.isNull(), F.concat(F.lit("received_at is not a timestamp: '"), F.col("j.received_at"),
                                           F.lit("'"))),
        F.when(props.isNotNull() & ~props.startswith("{"), F.lit("properties is not a JSON object")),
    )
    session = F.col("j.session_id")
    return df.select(
        F.col("j.event_id").alias("event_id"), etype.alias("event_type"), version.alias("schema_version"),
        F.col("j.anonymous_id").alias("anonymous_id"), F.col("j.user_id").alias("user_id"),
        F.when(~_blank(session), session).alias("client_session_id"),
        occurred.alias("occurred_at"), received.alias("received_at"),
        *[F.col(f"j.{c}").alias(c) for c in ("page_url", "page_path", "referrer", "user_agent", "course_id")],
        F.coalesce(props, F.lit("{}")).alias("properties"), F.col("j.source").alias("source"),
        F.col("kafka_partition").cast("int"), F.col("kafka_offset").cast("long"),
        ((F.unix_micros(received) - F.unix_micros(occurred)) > LATE_AFTER_S * MICROS).alias("is_late"),
        F.when(reason.isNull(), F.to_date(occurred)).alias("event_date"), F.lit(BATCH_ORIGIN).alias("origin"),
        F.lit(None).cast("string").alias("stored_session_id"), reason.alias("invalid_reason"),
    )


def valid(parsed: DataFrame) -> DataFrame:
    return parsed.filter(F.col("invalid_reason").isNull()).select(*WORK_COLUMNS)


DEDUPE_KEYS = ["origin", "kafka_partition", "kafka_offset"]


def dedupe_plan(events: DataFrame, pinned: Column | None = None) -> DataFrame:
    """Narrow rows (one per row of `events`, work rows of any origin) saying what dedupe keeps and counts:

    * ``loser``: not the kept copy of its event_id. Kept: a `pinned` row (a lake copy that must stay where it
      is), else the earliest received_at; on a tie the lake's copy, then the lowest (kafka_partition, offset);
    * ``first_in_batch``: the first batch copy of its event_id (same order), ``in_lake``: the event_id has a
      copy in the lake; ``is_late``; ``out_of_order`` (batch rows: occurred_at earlier than that of an
      earlier-offset batch event of the same visitor).
    Only these narrow columns are shuffled."""
    pinned = F.lit(False) if pinned is None else pinned
    order = [F.col("received_at").asc_nulls_last(), F.col("origin").asc(),
             F.col("kafka_partition").asc_nulls_last(), F.col("kafka_offset").asc_nulls_last()]
    by_id = Window.partitionBy("event_id")
    before = (Window.partitionBy("anonymous_id", "origin").orderBy("kafka_partition", "kafka_offset")
              .rowsBetween(Window.unboundedPreceding, -1))
    keys = events.select("event_id", "anonymous_id", "occurred_at", "received_at", "is_late", *DEDUPE_KEYS,
                         pinned.alias("pinned"))
    return keys.select(
        "event_id", *DEDUPE_KEYS, "is_late",
        (F.row_number().over(by_id.orderBy(F.col("pinned").desc(), *order)) > 1).alias("loser"),
        ((F.col("origin") == BATCH_ORIGIN)
         & (F.row_number().over(Window.partitionBy("event_id", "origin").orderBy(*order)) == 1))
        .alias("first_in_batch"),
        (F.max(F.when(F.col("origin") == LAKE_ORIGIN, 1).otherwise(0)).over(by_id) == 1).alias("in_lake"),
        F.coalesce(F.col("occurred_at") < F.max("occurred_at").over(before), F.lit(False)).alias("out_of_order"))


def dedupe_counts(plan: DataFrame) -> DataFrame:
    """One row from `dedupe_plan`: batch (rows), batch_ids (distinct), in_lake (batch ids the lake has),
    new (batch ids it has not), late / out_of_order (among the new), losers (copies dedupe removes)."""
    first, new = F.col("first_in_batch"), F.col("first_in_batch") & ~F.col("in_lake")
    return plan.agg(F.count(F.when(F.col("origin") == BATCH_ORIGIN, 1)).alias("batch"),
                    F.count(F.when(first, 1)).alias("batch_ids"),
                    F.count(F.when(first & F.col("in_lake"), 1)).alias("in_lake"),
                    F.count(F.when(new, 1)).alias("new"),
                    F.count(F.when(new & F.col("is_late"), 1)).alias("late"),
                    F.count(F.when(new & F.col("out_of_order"), 1)).alias("out_of_order"),
                    F.count(F.when(F.col("loser"), 1)).alias("losers"))


def dedupe_losers(events: DataFrame, pinned: Column | None = None) -> DataFrame:
    """The copies (origin, kafka_partition, kafka_offset) `dedupe` removes (see dedupe_plan)."""
    return dedupe_plan(events, pinned).filter(F.col("loser")).select(*DEDUPE_KEYS)


def dedupe(events: DataFrame, losers: DataFrame | None = None) -> DataFrame:
    """One row per event_id (see dedupe_plan): the losing copies, usually few, removed with an anti join on
    their keys, so the wide rows are not shuffled. Rows need kafka_partition and kafka_offset."""
    losers = dedupe_losers(events) if losers is None else losers
    return events.join(losers, DEDUPE_KEYS, "left_anti")


def out_of_order(events: DataFrame) -> DataFrame:
    """(event_id, out_of_order) of batch rows: out_of_order when occurred_at is earlier than that of an
    earlier-offset event of the same visitor."""
    before = (Window.partitionBy("anonymous_id").orderBy("kafka_partition", "kafka_offset")
              .rowsBetween(Window.unboundedPreceding, -1))
    return (events.select("event_id", "anonymous_id", "kafka_partition", "kafka_offset", "occurred_at")
            .select("event_id", F.coalesce(F.col("occurred_at") < F.max("occurred_at").over(before), F.lit(False))
                    .alias("out_of_order")))


def session_id_of(anonymous_id: Column, session_start: Column) -> Column:
    """Deterministic session id: first 32 hex chars of sha256(anonymous_id + '|' + start in epoch micros)."""
    return F.substring(F.sha2(F.concat(anonymous_id, F.lit("|"), F.unix_micros(session_start).cast("string")),
                              256), 1, 32)


def sessionize(events: DataFrame, gap_s: int = SESSION_GAP_S) -> DataFrame:
    """Adds ``session_start`` and ``derived_session_id``: per anonymous_id, events ordered by
    (occurred_at, event_id); a gap of more than `gap_s` seconds to the previous event starts a session."""
    order = Window.partitionBy("anonymous_id").orderBy("occurred_at", "event_id")
    running = order.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    micros = F.unix_micros(F.col("occurred_at"))
    prev = F.lag(micros).over(order)
    starts = prev.isNull() | ((micros - prev) > gap_s * MICROS)
    return (events.withColumn("_start", F.when(starts, F.col("occurred_at")))
            .withColumn("session_start", F.max("_start").over(running)).drop("_start")
            .withColumn("derived_session_id", session_id_of(F.col("anonymous_id"), F.col("session_start"))))


def stitch_map(identities: DataFrame) -> DataFrame:
    """(anonymous_id, user_id): the user_id of the visitor's most recent event (by occurred_at, then
    event_id) that carries one. `identities`: anonymous_id, user_id, occurred_at, event_id."""
    return (identities.filter(F.col("user_id").isNotNull()).groupBy("anonymous_id")
            .agg(F.max_by("user_id", F.struct("occurred_at", "event_id")).alias("user_id")))


def build_sessions(sessionized: DataFrame, stitch: DataFrame) -> DataFrame:
    """Sessions table rows (SESSIONS_SCHEMA) of sessionized events; user_id from the stitch map."""
    order = F.struct("occurred_at", "event_id")
    sessions = (sessionized.groupBy(F.col("derived_session_id").alias("session_id"), "anonymous_id",
                                    "session_start")
                .agg(F.max("occurred_at").alias("session_end"), F.count(F.lit(1)).alias("event_count"),
                     F.count(F.when(F.col("event_type").isin(*PAGE_TYPES), 1)).alias("page_count"),
                     F.min_by("page_path", order).alias("entry_page"),
                     F.max_by("page_path", order).alias("exit_page")))
    return (sessions.join(stitch, "anonymous_id", "left")
            .select("session_id", "anonymous_id", F.col("user_id").cast("long"), "session_start", "session_end",
                    F.col("event_count").cast("long"), F.col("page_count").cast("long"), "entry_page",
                    "exit_page",
                    ((F.unix_micros("session_end") - F.unix_micros("session_start")) / MICROS).cast("double")
                    .alias("duration_s"),
                    F.to_date("session_start").alias("session_date")))


def page_daily(sessionized: DataFrame) -> DataFrame:
    """Per (day of occurred_at, page_path, course_id): page views (page_view + course_page_view), distinct
    visitors, distinct (derived) sessions.

    Aggregated in levels (per session, per visitor, per page) instead of with two count-distincts: a session
    belongs to one visitor, and the first two levels need no shuffle on rows partitioned by visitor (as
    sessionize leaves them)."""
    page = [F.col("event_date").alias("day"), "page_path", "course_id"]
    views = F.count(F.when(F.col("event_type").isin(*PAGE_TYPES), 1))
    per_session = sessionized.groupBy(*page, "anonymous_id", "derived_session_id").agg(views.alias("views"))
    per_visitor = per_session.groupBy("day", "page_path", "course_id", "anonymous_id").agg(
        F.sum("views").alias("views"), F.count(F.lit(1)).alias("sessions"))
    return (per_visitor.groupBy("day", "page_path", "course_id")
            .agg(F.sum("views").cast("long").alias("page_views"), F.count(F.lit(1)).cast("long").alias("visitors"),
                 F.sum("sessions").cast("long").alias("sessions"))
            .select("page_path", "course_id", "page_views", "visitors", "sessions", "day"))


def event_rows(sessionized: DataFrame) -> DataFrame:
    """Events table rows (EVENTS_SCHEMA): session_id = the client's, else the derived session's."""
    return sessionized.select(*[
        F.coalesce("client_session_id", "derived_session_id").alias("session_id") if c == "session_id"
        else F.col(c) for c in EVENT_COLUMNS])


def lake_work_rows(stored: DataFrame, window_events: DataFrame) -> DataFrame:
    """Events read from the lake (EVENTS_SCHEMA) -> work rows (``stored_session_id``: the stored value).

    The table does not say whether a session_id came from the client: a stored id is taken as derived (and
    recomputed) when it is the derived id of a session starting at one of the visitor's event times in
    `window_events` (anonymous_id, occurred_at); otherwise it is the client's and kept."""
    candidates = (window_events.select("anonymous_id", session_id_of(F.col("anonymous_id"), F.col("occurred_at"))
                                       .alias("session_id")).distinct().withColumn("_derived", F.lit(True)))
    return (stored.join(candidates, ["anonymous_id", "session_id"], "left")
            .withColumn("client_session_id", F.when(F.col("_derived").isNull(), F.col("session_id")))
            .withColumn("origin", F.lit(LAKE_ORIGIN)).withColumn("stored_session_id", F.col("session_id"))
            .select(*WORK_COLUMNS))


def batch_stats(parsed: DataFrame, gap_s: int = SESSION_GAP_S) -> DataFrame:
    """Per (kafka_partition, event_date) of parsed rows (event_date null: the invalid ones): ``messages``,
    ``invalid``, and ``late_night`` (a valid event within `gap_s` of the next midnight: it can join, and pull
    back, a session that starts the next day)."""
    to_midnight = F.unix_micros(F.to_timestamp(F.date_add("event_date", 1))) - F.unix_micros("occurred_at")
    return parsed.groupBy("kafka_partition", "event_date").agg(
        F.count(F.lit(1)).alias("messages"), F.count("invalid_reason").alias("invalid"),
        F.coalesce(F.min(F.when(F.col("invalid_reason").isNull(), to_midnight)) <= gap_s * MICROS, F.lit(False))
        .alias("late_night"))


# -- which partitions a batch touches (plain Python over the few dates involved) -------------------------

def parse_dates(values: Iterable[str | date]) -> set[date]:
    return {v if isinstance(v, date) else date.fromisoformat(str(v)) for v in values}


def iso(dates: Iterable[date]) -> list[str]:
    return [d.isoformat() for d in sorted(set(dates))]


def session_dates(event_dates: Iterable[date], late_night: Iterable[date] = ()) -> set[date]:
    """Session dates whose sessions new events on `event_dates` can change: those dates and the day
    before (a session started then can run past midnight into them); plus the day after each date in
    `late_night` (a new event within the gap of midnight can join, and pull back, a session starting then)."""
    dates = set(event_dates)
    return dates | {d - timedelta(days=1) for d in dates} | {d + timedelta(days=1) for d in late_night}


def window_dates(dates: Iterable[date]) -> set[date]:
    """The event dates to sessionize so that sessions starting on `dates` (and events on them) come out
    right: each date with the day before and after."""
    return {d + timedelta(days=k) for d in dates for k in (-1, 0, 1)}
