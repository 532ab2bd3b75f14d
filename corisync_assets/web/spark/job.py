"""The web events Spark job: Kafka offsets -> validated, deduplicated events, sessions and daily page metrics
as hive-partitioned Parquet in the lake. Run by the Dagster asset through Pipes around ``spark-submit``::

    spark-submit --master local[*] corisync_assets/web/spark/job.py      # extras from Dagster Pipes

Pipes extras: ``bootstrap``, ``kafka_conf`` (extra librdkafka settings; never logged; the SASL password may
also come as $CORISYNC_KAFKA_SASL_PASSWORD), ``topic``, ``offsets`` ({partition: [start, end_exclusive]}),
``lake`` (folder or ``gs://`` URI), optional ``rebuild_dates`` (["YYYY-MM-DD"]: recompute sessions and
page_daily of these dates from the lake alone). The summary (see ``main``) is reported as a custom message.

Without Pipes (benchmarks, by hand)::

    spark-submit corisync_assets/web/spark/job.py --params '{"bootstrap": ..., "topic": ..., ...}'
    python -m corisync_assets.web.spark.job --params-file params.json [--master local[2]]

Idempotent: the affected date partitions are recomputed from the lake plus the batch (dedupe by event_id,
the lake's copy winning ties) and replaced whole, so running the same offsets again changes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

try:
    import corisync_assets  # noqa: F401
except ImportError:  # run as a plain script from a checkout: the package is three levels up
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from corisync_assets.web.spark import transform as T
from corisync_assets.web.spark.kafka_source import NAME as SOURCE_NAME
from corisync_assets.web.spark.kafka_source import PASSWORD_ENV, parse_offsets

EVENTS, SESSIONS, PAGE_DAILY = "events", "sessions", "page_daily"
#: table -> (lake folder, partition column, schema)
TABLES = {
    EVENTS: ("web/events", "event_date", T.EVENTS_SCHEMA),
    SESSIONS: ("web/sessions", "session_date", T.SESSIONS_SCHEMA),
    PAGE_DAILY: ("web/page_daily", "day", T.PAGE_DAILY_SCHEMA),
}
INVALID_REASONS_KEPT = 5

Log = Callable[[str], None]


def _stderr_log() -> Log:
    logger = logging.getLogger("corisync.web.spark")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return logger.info


# -- lake I/O (Hadoop FileSystem: a local folder or gs://) ------------------------------------------------

def _fs_path(spark, path: str):
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath


def _exists(spark, path: str) -> bool:
    fs, hpath = _fs_path(spark, path)
    return bool(fs.exists(hpath))


def _delete(spark, path: str) -> bool:
    fs, hpath = _fs_path(spark, path)
    return bool(fs.exists(hpath)) and bool(fs.delete(hpath, True))


def table_path(lake: str, table: str) -> str:
    return f"{lake.rstrip('/')}/{TABLES[table][0]}"


def read_table(spark, lake: str, table: str, dates: set[date] | None = None):
    """A lake table (empty if it does not exist yet), pruned to the partitions of `dates` if given."""
    from pyspark.sql import functions as F

    _folder, column, schema = TABLES[table]
    path = table_path(lake, table)
    if (dates is not None and not dates) or not _exists(spark, path):
        return empty_frame(spark, schema)
    df = spark.read.schema(schema).parquet(path)
    return df.filter(F.col(column).isin(sorted(dates))) if dates is not None else df


def write_table(spark, lake: str, table: str, df, dates: set[date], log: Log) -> dict[str, int]:
    """Replace the partitions `dates` of `table` with `df` (dynamic partition overwrite; a partition `df`
    has no rows for is deleted). `df` must not depend on the table's files (checkpoint it first).
    Returns the row count per written partition."""
    _folder, column, schema = TABLES[table]
    path = table_path(lake, table)
    counts = {r[0].isoformat(): int(r[1]) for r in df.groupBy(column).count().collect()}
    if counts:
        (df.select(*schema.fieldNames()).write.mode("overwrite")
         .option("partitionOverwriteMode", "dynamic").partitionBy(column).parquet(path))
    emptied = [d for d in sorted(dates) if d.isoformat() not in counts
               and _delete(spark, f"{path}/{column}={d.isoformat()}")]
    log(f"wrote {table}: {sum(counts.values())} rows in {len(counts)} partition(s) {sorted(counts)}"
        + (f"; emptied {T.iso(emptied)}" if emptied else ""))
    return {d: counts.get(d, 0) for d in T.iso(dates)}


# -- parameters -------------------------------------------------------------------------------------------

def source_options(params: dict[str, Any]) -> dict[str, str]:
    """Options of the corisync_kafka source for the job's parameters (secrets included: not for logging)."""
    options = {"bootstrap": str(params["bootstrap"]), "topic": str(params["topic"]),
               "offsets": json.dumps({str(p): list(r) for p, r in parse_offsets(params["offsets"]).items()})}
    for key, value in (params.get("kafka_conf") or {}).items():
        if key != "bootstrap.servers":
            options[f"kafka.{key}"] = str(value)
    if os.environ.get(PASSWORD_ENV) and "kafka.sasl.password" not in options:
        options["kafka.sasl.password"] = os.environ[PASSWORD_ENV]
    return options


def _ranges(params: dict[str, Any]) -> dict[int, tuple[int, int]]:
    return {p: r for p, r in parse_offsets(params.get("offsets") or {}).items() if r[1] > r[0]}


# -- the job ------------------------------------------------------------------------------------------------

def main(params: dict[str, Any], spark=None, log: Log | None = None) -> dict[str, Any]:
    """Run the job over `params` (the Pipes extras); returns the summary:

    ``topic``, ``offsets`` ({partition: [start, end]} consumed), ``messages_per_partition``, ``messages_read``,
    ``invalid`` ({count, reasons: first few "partition P offset O: reason"}), ``duplicates`` (=
    ``duplicates_in_batch`` + ``duplicates_in_lake``), ``late``, ``out_of_order``, ``events_new``,
    ``event_dates`` / ``session_dates`` / ``page_days`` (the rewritten partitions, ISO dates),
    ``rows`` ({table: {date: rows in the written partition}}), ``rebuild_dates``, ``duration_s``.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from corisync_assets.web.spark.session import build_session

    started = time.monotonic()
    log = log or _stderr_log()
    lake = str(params["lake"]).rstrip("/")
    ranges = _ranges(params)
    rebuild = T.parse_dates(params.get("rebuild_dates") or [])
    spark = spark or build_session()
    sc = spark.sparkContext
    summary: dict[str, Any] = {
        "topic": params.get("topic"), "offsets": {str(p): [s, e] for p, (s, e) in sorted(ranges.items())},
        "messages_per_partition": {}, "messages_read": 0, "invalid": {"count": 0, "reasons": []},
        "duplicates": 0, "duplicates_in_batch": 0, "duplicates_in_lake": 0, "late": 0, "out_of_order": 0,
        "events_new": 0, "event_dates": [], "session_dates": [], "page_days": [],
        "rows": {EVENTS: {}, SESSIONS: {}, PAGE_DAILY: {}}, "rebuild_dates": T.iso(rebuild),
    }

    cached: list = []

    def persist(df):
        df = df.persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(df)
        return df

    def checkpoint(df):
        """Materialized now, without lineage: for what is read from the lake that this run overwrites."""
        df = df.localCheckpoint(eager=True)
        cached.append(df)
        return df

    # 1. read the offsets once (the stats build the cache in one job) and validate
    new_dates: set[date] = set()
    late_night: set[date] = set()
    if ranges:
        sc.setJobDescription(f"read {params['topic']} {summary['offsets']}")
        raw = spark.read.format(SOURCE_NAME).options(**source_options({**params, "offsets": ranges})).load()
        parsed = persist(T.parse(raw))
        stats = T.batch_stats(parsed).collect()
        per_partition: dict[str, int] = {}
        for r in stats:
            key = str(r["kafka_partition"])
            per_partition[key] = per_partition.get(key, 0) + int(r["messages"])
            if r["event_date"] is not None:
                new_dates.add(r["event_date"])
                if r["late_night"]:
                    late_night.add(r["event_date"])
        summary["messages_per_partition"] = dict(sorted(per_partition.items(), key=lambda kv: int(kv[0])))
        summary["messages_read"] = sum(per_partition.values())
        invalid = sum(int(r["invalid"]) for r in stats)
        reasons = [] if not invalid else [
            f"partition {r[0]} offset {r[1]}: {r[2]}" for r in
            parsed.filter(F.col("invalid_reason").isNotNull()).orderBy("kafka_partition", "kafka_offset")
            .select("kafka_partition", "kafka_offset", "invalid_reason").limit(INVALID_REASONS_KEPT).collect()]
        summary["invalid"] = {"count": invalid, "reasons": reasons}
        log(f"read {summary['messages_read']} messages from {params['topic']} "
            f"{summary['messages_per_partition']}; {invalid} invalid" + (f" (first: {reasons[0]})" if reasons else ""))
        batch = T.valid(parsed)
    else:
        log("no offsets to read" + (f"; rebuilding {T.iso(rebuild)}" if rebuild else ""))
        batch = _empty_work(spark)
    sdates = T.session_dates(new_dates, late_night) | rebuild
    pdays = new_dates | rebuild
    window = T.window_dates(sdates | pdays)
    if not window:
        _unpersist(cached)
        summary["duration_s"] = round(time.monotonic() - started, 3)
        log("nothing to write")
        return summary

    # 2. the lake's events of the window (checkpointed: this run overwrites some of them) and the batch,
    #    deduplicated together: one narrow query finds the losing copies and the counts
    sc.setJobDescription(f"dedupe against the lake's events of {T.iso(window)}")
    stored_dates = _present(spark, lake, EVENTS, window)
    if stored_dates:
        stored = read_table(spark, lake, EVENTS, stored_dates)
        lake_rows = checkpoint(T.lake_work_rows(stored, stored))
    else:
        lake_rows = _empty_work(spark, T.LAKE_ORIGIN)
    in_new_dates = F.col("event_date").isin(sorted(new_dates)) if new_dates else F.lit(False)
    rows = lake_rows.unionByName(batch)
    # a copy stored on a date the batch does not touch stays there (the batch's copy is the duplicate)
    plan = persist(T.dedupe_plan(rows, pinned=(F.col("origin") == T.LAKE_ORIGIN) & ~in_new_dates))
    c = T.dedupe_counts(plan).first()
    valid_n = summary["messages_read"] - summary["invalid"]["count"]
    summary.update(duplicates_in_batch=int(c["batch"]) - int(c["batch_ids"]), duplicates_in_lake=int(c["in_lake"]),
                   late=int(c["late"]), out_of_order=int(c["out_of_order"]), events_new=int(c["new"]))
    assert int(c["batch"]) == valid_n, (c, valid_n)
    summary["duplicates"] = summary["duplicates_in_batch"] + summary["duplicates_in_lake"]
    log(f"dedupe: {summary['events_new']} new events, {summary['duplicates_in_batch']} duplicates within the "
        f"batch, {summary['duplicates_in_lake']} already in the lake; {summary['late']} late, "
        f"{summary['out_of_order']} out of order; event dates {T.iso(new_dates)}")
    if c["losers"]:
        rows = T.dedupe(rows, plan.filter(F.col("loser")).select(*T.DEDUPE_KEYS))

    # 3. sessionize the window (persisted, not checkpointed: columnar scans; its lineage no longer reads the
    #    lake's files)
    sc.setJobDescription(f"sessionize {T.iso(window)}")
    sessionized = persist(T.sessionize(rows))
    changed: set[date] = set()  # events stored with a derived session id that changed (a late event merged
    if stored_dates:            # or pulled back a session): their dates are rewritten too
        changed = {r[0] for r in sessionized.filter(
            (F.col("origin") == T.LAKE_ORIGIN) & F.col("client_session_id").isNull()
            & (F.col("stored_session_id") != F.col("derived_session_id")) & ~in_new_dates)
            .select("event_date").distinct().collect()}
    edates = new_dates | changed

    # 4. the outputs (independent of the lake's files by now) and their writes; events first: a query on
    #    sessionized alone, it builds the cache the others read (concurrent query stages would each compute it)
    sc.setJobDescription("write events, sessions, page_daily")
    if edates:
        events_out = T.event_rows(sessionized.filter(F.col("event_date").isin(sorted(edates))))
        summary["rows"][EVENTS] = write_table(spark, lake, EVENTS, events_out, edates, log)
    else:
        sessionized.count()
    identity_cols = ["anonymous_id", "user_id", "occurred_at", "event_id"]
    identities = sessionized.filter(F.col("user_id").isNotNull()).select(*identity_cols)
    if _exists(spark, table_path(lake, EVENTS)):  # the visitors' events on other dates (not rewritten now)
        others = read_table(spark, lake, EVENTS).filter(F.col("user_id").isNotNull()
                                                         & ~F.col("event_date").isin(sorted(window)))
        visitors = sessionized.select("anonymous_id").distinct()
        identities = identities.unionByName(others.select(*identity_cols).join(visitors, "anonymous_id",
                                                                                "left_semi"))
    stitch = checkpoint(T.stitch_map(identities))
    # sessions stored with another user_id than the stitched one (a visitor stitched for the first time)
    relabel_dates: set[date] = set()
    if new_dates and _exists(spark, table_path(lake, SESSIONS)):
        restitch = {r[0] for r in read_table(spark, lake, SESSIONS)
                    .join(batch.select("anonymous_id").distinct(), "anonymous_id", "left_semi")
                    .join(stitch.withColumnRenamed("user_id", "stitched"), "anonymous_id")
                    .filter(~F.col("user_id").eqNullSafe(F.col("stitched"))).select("session_date").distinct()
                    .collect()}
        relabel_dates = restitch - sdates
    log(f"sessionized {T.iso(window)}: sessions of {T.iso(sdates)} recomputed"
        + (f", user_id restitched on {T.iso(relabel_dates)}" if relabel_dates else "")
        + (f"; session ids changed on {T.iso(changed)}" if changed else ""))
    sessions_out = T.build_sessions(sessionized, stitch).filter(F.col("session_date").isin(sorted(sdates)))
    if relabel_dates:
        relabeled = checkpoint(read_table(spark, lake, SESSIONS, relabel_dates)
                               .join(stitch.withColumnRenamed("user_id", "stitched"), "anonymous_id", "left")
                               .withColumn("user_id", F.coalesce("stitched", "user_id"))
                               .select(*T.SESSIONS_SCHEMA.fieldNames()))
        sessions_out = sessions_out.unionByName(relabeled)
    summary["rows"][SESSIONS] = write_table(spark, lake, SESSIONS, persist(sessions_out), sdates | relabel_dates,
                                            log)
    if pdays:
        page_out = persist(T.page_daily(sessionized.filter(F.col("event_date").isin(sorted(pdays)))))
        summary["rows"][PAGE_DAILY] = write_table(spark, lake, PAGE_DAILY, page_out, pdays, log)
    summary.update(event_dates=T.iso(edates), session_dates=T.iso(sdates | relabel_dates), page_days=T.iso(pdays))
    _unpersist(cached)
    summary["duration_s"] = round(time.monotonic() - started, 3)
    log(f"done in {summary['duration_s']}s: {summary['events_new']} new events; partitions events "
        f"{summary['event_dates']}, sessions {summary['session_dates']}, page_daily {summary['page_days']}")
    return summary


def _unpersist(frames) -> None:
    for df in frames:
        df.unpersist()


def empty_frame(spark, schema):
    """No rows of `schema`, as a plan Spark's optimizer knows to be empty (so joins and unions with it are
    pruned away; ``createDataFrame([])`` would be an opaque RDD scan)."""
    from pyspark.sql import functions as F

    return spark.range(1).filter(F.lit(False)).select(
        *[F.lit(None).cast(f.dataType).alias(f.name) for f in schema.fields])


def _empty_work(spark, origin: int = 1):
    from pyspark.sql import functions as F

    empty = empty_frame(spark, T.EVENTS_SCHEMA)
    return T.lake_work_rows(empty, empty).withColumn("origin", F.lit(origin))


def _present(spark, lake: str, table: str, dates: set[date]) -> set[date]:
    """The dates among `dates` that have a partition folder in the lake."""
    _folder, column, _schema = TABLES[table]
    base = table_path(lake, table)
    if not _exists(spark, base):
        return set()
    return {d for d in dates if _exists(spark, f"{base}/{column}={d.isoformat()}")}


def run_with_pipes() -> dict[str, Any]:
    """Entry point under Dagster Pipes: extras in, summary out (custom message), stage logs to the run."""
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        summary = main(dict(pipes.extras), log=pipes.log.info)
        pipes.report_custom_message(summary)
        return summary


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", help="the parameters as JSON (same keys as the Pipes extras)")
    parser.add_argument("--params-file", help="a JSON file with the parameters")
    parser.add_argument("--master", help="Spark master (default: $CORISYNC_SPARK_MASTER, spark-submit's, local[*])")
    args = parser.parse_args(argv)
    if "DAGSTER_PIPES_CONTEXT" in os.environ and not (args.params or args.params_file):
        run_with_pipes()
        return 0
    if args.params_file:
        params = json.loads(Path(args.params_file).read_text())
    elif args.params:
        params = json.loads(args.params)
    else:
        parser.error("--params or --params-file is required outside Dagster Pipes")
    from corisync_assets.web.spark.session import build_session

    summary = main(params, spark=build_session(args.master))
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
