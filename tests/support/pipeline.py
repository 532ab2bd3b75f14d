"""Drive the raw CDC assets through Dagster's API against the test stack, and compare with Postgres."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from dagster import DagsterInstance, materialize

from corisync_assets.cdc.assets import build_raw_cdc_assets
from corisync_assets.cdc.connector_config import ConnectorConfig, load_connector_config
from corisync_assets.environment import Settings
from corisync_assets.local.demo import connect as pg_connect
from corisync_assets.resources.kafka import KafkaResource
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse

TABLES = ("users", "courses", "enrollments", "trainings", "training_attendance")
PG_TO_DUCKDB = {
    "bigint": "BIGINT", "integer": "INTEGER", "smallint": "SMALLINT", "text": "VARCHAR", "character": "VARCHAR",
    "boolean": "BOOLEAN", "jsonb": "JSON", "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
}


@dataclass
class Pipeline:
    settings: Settings
    warehouse_path: Path
    group: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:8]}")
    instance: DagsterInstance = field(default_factory=DagsterInstance.ephemeral)

    @property
    def connector(self) -> ConnectorConfig:
        return load_connector_config(self.settings.connector_config)

    @property
    def kafka(self) -> KafkaResource:
        return KafkaResource(bootstrap_servers=self.settings.kafka_bootstrap, consumer_group=self.group)

    @property
    def warehouse(self) -> DuckDBWarehouse:
        return DuckDBWarehouse(path=str(self.warehouse_path))

    def topic(self, table: str) -> str:
        return self.connector.topic_for("public", table)

    def materialize(self) -> dict[str, dict]:
        """Materialize every raw CDC asset through Dagster; returns each table's materialization metadata."""
        result = materialize(
            build_raw_cdc_assets(self.connector),
            resources={"kafka": self.kafka, "warehouse": self.warehouse},
            instance=self.instance,
        )
        assert result.success
        out = {}
        for event in result.get_asset_materialization_events():
            mat = event.event_specific_data.materialization
            out[mat.asset_key.path[-1]] = {k: v.value for k, v in mat.metadata.items()}
        #: table -> (check name, passed, metadata) of the run's asset checks
        self.checks = {e.asset_key.path[-1]: (e.check_name, e.passed, {k: v.value for k, v in e.metadata.items()})
                       for e in result.get_asset_check_evaluations()}
        return out

    def materialize_until(self, done, timeout: float = 180.0, what: str = "") -> None:
        """Materialize the raw assets every second until ``done()`` holds (AssertionError after ``timeout``, with
        what there is to go on: see :meth:`diagnosis`)."""
        deadline = time.monotonic() + timeout
        runs: list[dict[str, dict]] = []
        while time.monotonic() < deadline:
            runs.append(self.materialize())
            if done():
                return
            time.sleep(1)
        raise AssertionError(f"the warehouse did not converge in {timeout:.0f}s {what}\n{self.diagnosis(runs)}")

    def diagnosis(self, runs: list[dict[str, dict]], last: int = 5) -> str:
        """The group's position against the end of every topic it reads, and per table what the last runs
        landed, held back for a transaction's END or released without one (a test that does not converge)."""
        from corisync_assets.cdc.assets import routes
        from corisync_assets.cdc.landing import feed_topics

        c = self.connector
        topics = feed_topics(routes(c), c.transaction_topic, c.notification_topic)
        lines = [f"  {t}[{p}]: committed {i.committed}, log [{i.low_watermark}, {i.high_watermark})"
                 for (t, p), i in sorted(self.kafka.lag(topics).items())]
        keys = ("events_landed", "messages_consumed", "events_waiting_for_transaction_end",
                "events_released_without_transaction_end", "consumer_lag_after", "offset_ranges")
        for n, run in enumerate(runs[-last:], start=max(len(runs) - last, 0) + 1):
            for table, meta in sorted(run.items()):
                if meta.get("messages_consumed") or meta.get("consumer_lag_after"):
                    lines.append(f"  run {n} of {len(runs)}, {table}: " + ", ".join(
                        f"{k} {meta[k]}" for k in keys if k in meta))
        return "\n".join(lines)

    def reconcile(self, *tables: str) -> list:
        """Run the reconciliation check's algorithm on these public tables (landing first, as the check does);
        returns each table's result."""
        from corisync_assets.cdc.assets import routes
        from corisync_assets.cdc.landing import land_changes
        from corisync_assets.cdc.reconcile import TableRef, reconcile
        from corisync_assets.resources.warehouse.reader import open_reader

        c = self.connector

        def land() -> int:
            return land_changes(self.kafka, self.warehouse, routes(c), tx_topic=c.transaction_topic,
                                collections=c.collections, notification_topic=c.notification_topic).new_events

        _point, _landed, results = reconcile(
            lambda: pg_connect(self.settings), lambda: open_reader(self.warehouse),
            [TableRef("public", t, t) for t in tables], slot=c.get("slot.name"), land=land)
        return results

    def lag(self) -> dict[str, int]:
        lag = self.kafka.lag([self.topic(t) for t in TABLES])
        totals = dict.fromkeys(TABLES, 0)
        for (topic, _), info in lag.items():
            totals[topic.rsplit(".", 1)[1]] += info.lag
        return totals

    def wait_for_lag(self, expected: dict[str, int], timeout: float = 90.0) -> dict[str, int]:
        """Wait until Debezium has delivered at least `expected` unconsumed events per table."""
        deadline = time.monotonic() + timeout
        lag = {}
        while time.monotonic() < deadline:
            lag = self.lag()
            if all(lag[t] >= n for t, n in expected.items()):
                return lag
            time.sleep(0.3)
        raise AssertionError(f"Debezium did not deliver {expected} within {timeout}s; lag {lag}")


def normalize(value):
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


def pg_rows(conn: psycopg.Connection, table: str) -> tuple[list[str], list[tuple]]:
    cur = conn.execute(f"SELECT * FROM public.{table} ORDER BY 1, 2")
    cols = [d.name for d in cur.description]
    return cols, [tuple(normalize(v) for v in row) for row in cur.fetchall()]


def assert_equal_to_postgres(conn: psycopg.Connection, warehouse: DuckDBWarehouse, table: str) -> int:
    """Row for row and type for type; returns the number of rows compared."""
    cols, expected = pg_rows(conn, table)
    pg_types = dict(conn.execute(
        "SELECT column_name, CASE WHEN data_type = 'numeric' THEN format('DECIMAL(%%s,%%s)', numeric_precision, "
        "numeric_scale) ELSE data_type END FROM information_schema.columns WHERE table_schema = 'public' "
        "AND table_name = %s", (table,)).fetchall())
    with warehouse.connect(read_only=True) as con:
        wh_types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE raw_cdc.{table})").fetchall())
        order = ", ".join(f'"{c}"' for c in cols[:2])
        rows = con.execute(f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM raw_cdc.{table} '
                           f"ORDER BY {order}").fetchall()
    for col in cols:
        want = pg_types[col] if pg_types[col].startswith("DECIMAL") else PG_TO_DUCKDB[pg_types[col]]
        assert wh_types[col] == want, f"{table}.{col}: warehouse type {wh_types[col]}, Postgres {pg_types[col]}"
    actual = [tuple(json.dumps(json.loads(v), sort_keys=True) if wh_types[c] == "JSON" and v is not None else v
                    for c, v in zip(cols, row, strict=True)) for row in rows]
    assert actual == expected, f"{table}: warehouse differs from Postgres"
    return len(expected)
