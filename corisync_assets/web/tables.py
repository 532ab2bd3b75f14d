"""The web tables: their columns, partition column and lake folder, declared once.

The Spark job writes them as hive-partitioned Parquet under the lake (``<lake>/<lake_dir>/<partition>=D/``);
the warehouse holds the same columns (raw schema ``raw_web`` in DuckDB, the raw dataset in BigQuery), and
``Warehouse.replace_partitions`` swaps a run's affected date partitions in (one algorithm, rendered per
dialect). dbt's sources over them (``dbt_project/models/staging/web/_web_sources.yml``) have these names.
"""

from __future__ import annotations

from corisync_assets.resources.warehouse.base import PartitionedTable

WEB_EVENTS = PartitionedTable(
    name="web_events", lake_dir="web/events", partition="event_date",
    columns=(
        ("event_id", "string"), ("event_type", "string"), ("schema_version", "int32"),
        ("anonymous_id", "string"), ("user_id", "int64"), ("session_id", "string"),
        ("occurred_at", "timestamp"), ("received_at", "timestamp"), ("page_url", "string"),
        ("page_path", "string"), ("referrer", "string"), ("user_agent", "string"), ("course_id", "int64"),
        ("properties", "string"), ("source", "string"), ("kafka_partition", "int32"),
        ("kafka_offset", "int64"), ("is_late", "bool"), ("event_date", "date"),
    ),
    key=("event_id",),
)
WEB_SESSIONS = PartitionedTable(
    name="web_sessions", lake_dir="web/sessions", partition="session_date",
    columns=(
        ("session_id", "string"), ("anonymous_id", "string"), ("user_id", "int64"),
        ("session_start", "timestamp"), ("session_end", "timestamp"), ("event_count", "int64"),
        ("page_count", "int64"), ("entry_page", "string"), ("exit_page", "string"), ("duration_s", "float64"),
        ("session_date", "date"),
    ),
    key=("session_id",),
)
WEB_PAGE_DAILY = PartitionedTable(
    name="web_page_daily", lake_dir="web/page_daily", partition="day",
    columns=(
        ("page_path", "string"), ("course_id", "int64"), ("page_views", "int64"), ("visitors", "int64"),
        ("sessions", "int64"), ("day", "date"),
    ),
    key=("day", "page_path", "course_id"),
)

#: asset name (``web/<name>``) -> table
WEB_TABLES: dict[str, PartitionedTable] = {"events": WEB_EVENTS, "sessions": WEB_SESSIONS,
                                           "page_daily": WEB_PAGE_DAILY}
