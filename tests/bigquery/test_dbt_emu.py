"""dbt's `emu` target against the BigQuery emulator, compared with the DuckDB (`local`) target.

BigQuery cannot run here; the `bqemulator` emulator stands in for it. The raw layers of the dbt tests
(tests/dbt/fixture_warehouse.py, a simulated tc4a platform) are built in DuckDB, copied table by table into
the emulator (same columns, BigQuery types, JSON as JSON): raw CDC and web into the raw dataset, the Airbyte
tables into the dataset of Airbyte's BigQuery destination. Then `dbt build` runs once per target on the same
input and every mart must hold the same rows, and so must the staging of the trainers' sheet and of GA4 (the
models that parse what people type, where the two dialects differ most).

The emulator lacks `DATE_TRUNC(date, ISOWEEK)`; the BigQuery macro for the ISO week start uses an
equivalent that both accept, so every mart builds on both targets and no gap is tolerated.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
import pytest

from corisync_assets.environment import PROJECT_ROOT
from corisync_assets.resources.warehouse.bigquery import BigQueryWarehouse
from tests.dbt.fixture_warehouse import build_warehouse

DBT = Path(PROJECT_ROOT / ".venv" / "bin" / "dbt")
EMULATOR_GAPS: set[str] = set()  # nodes the emulator cannot build (none at the moment)
AIRBYTE_STAGING = ("stg_sheet_trainings", "stg_sheet_attendance", "stg_ga4_course_pages")


def bq_type(duck_type: str) -> str:
    t = duck_type.upper()
    if t.startswith("DECIMAL"):
        return "NUMERIC"
    return {"BIGINT": "INT64", "INTEGER": "INT64", "SMALLINT": "INT64", "VARCHAR": "STRING", "JSON": "JSON",
            "TIMESTAMP WITH TIME ZONE": "TIMESTAMP", "BOOLEAN": "BOOL", "DOUBLE": "FLOAT64", "DATE": "DATE"}[t]


def copy_raw_layer(duck_path: Path, wh: BigQueryWarehouse, airbyte: BigQueryWarehouse) -> None:
    from google.cloud import bigquery

    # both raw layers of the platform (CDC and web) land in BigQuery's one raw dataset; Airbyte's destination
    # writes its own dataset
    datasets = {"raw_cdc": wh, "raw_web": wh, "raw_airbyte": airbyte}
    con = duckdb.connect(str(duck_path), read_only=True)
    try:
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables"
                             " WHERE table_schema IN ('raw_cdc', 'raw_web', 'raw_airbyte') ORDER BY 1, 2").fetchall()
        for raw_schema, table in tables:
            cols = con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema"
                               " = ? AND table_name = ? ORDER BY ordinal_position", [raw_schema, table]).fetchall()
            schema = [bigquery.SchemaField(n, bq_type(t)) for n, t in cols]
            json_cols = {n for n, t in cols if t.upper() == "JSON"}
            cur = con.execute(f'SELECT * FROM {raw_schema}."{table}"')
            names = [d[0] for d in cur.description]
            lines = [orjson.dumps({n: orjson.loads(v) if n in json_cols and isinstance(v, str) else v
                                   for n, v in zip(names, row, strict=True)}, default=str)
                     for row in cur.fetchall()]
            target = datasets[raw_schema]
            ref = target._ref(table)
            target.client().create_table(bigquery.Table(ref, schema=schema))
            config = bigquery.LoadJobConfig(schema=schema, source_format="NEWLINE_DELIMITED_JSON")
            target.client().load_table_from_file(io.BytesIO(b"\n".join(lines)), ref, job_config=config).result()
    finally:
        con.close()


def dbt_build(target: str, env: dict[str, str], tmp: Path) -> dict[str, str]:
    """Run `dbt build --target <target>`; returns {node name: status}."""
    target_path = tmp / f"target-{target}"
    proc = subprocess.run(
        [str(DBT), "build", "--target", target, "--profiles-dir", ".", "--target-path", str(target_path),
         "--log-path", str(tmp / f"logs-{target}")],
        cwd=PROJECT_ROOT / "dbt_project", env={**os.environ, **env, "CORISYNC_DBT_TARGET": target},
        capture_output=True, text=True, timeout=600,
    )
    results = target_path / "run_results.json"
    assert results.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return {r["unique_id"].split(".")[-1] if r["unique_id"].startswith("model.") else r["unique_id"]: r["status"]
            for r in json.loads(results.read_text())["results"]}


def norm(value):
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | Decimal):
        return round(float(value), 6)
    if isinstance(value, datetime):  # DuckDB's epoch_ms() is a naive UTC timestamp, BigQuery's is aware
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return str(value)


def canonical(rows) -> list[tuple]:
    return sorted((tuple(norm(v) for v in r) for r in rows), key=repr)


@pytest.mark.slow
def test_dbt_emu_target_matches_duckdb(bq_emulator, tmp_path: Path) -> None:
    duck_path = tmp_path / "warehouse.duckdb"
    build_warehouse(duck_path)
    raw = BigQueryWarehouse(project=bq_emulator.project, dataset="dbt_raw", emulator_host=bq_emulator.host)
    raw.create_dataset()
    airbyte = BigQueryWarehouse(project=bq_emulator.project, dataset="dbt_airbyte", emulator_host=bq_emulator.host)
    airbyte.create_dataset()
    copy_raw_layer(duck_path, raw, airbyte)
    emu = dbt_build("emu", {"BIGQUERY_EMULATOR_HOST": bq_emulator.host, "CORISYNC_GCP_PROJECT": raw.project,
                            "CORISYNC_BQ_RAW_DATASET": "dbt_raw", "CORISYNC_BQ_STAGING_DATASET": "dbt_staging",
                            "CORISYNC_BQ_MARTS_DATASET": "dbt_marts", "CORISYNC_BQ_AIRBYTE_DATASET": "dbt_airbyte"},
                   tmp_path)
    local = dbt_build("local", {"CORISYNC_DUCKDB_PATH": str(duck_path)}, tmp_path)
    assert set(local.values()) <= {"success", "pass"}, local
    failed = {k for k, v in emu.items() if v in ("error", "fail")}
    assert failed <= EMULATOR_GAPS, failed
    con = duckdb.connect(str(duck_path), read_only=True)
    try:
        marts = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables"
                                           " WHERE table_schema = 'marts' ORDER BY 1").fetchall()]
        assert len(marts) >= 7
        compared = []
        for mart in marts:
            if mart in failed:
                continue
            expected = canonical(con.execute(f'SELECT * FROM marts."{mart}"').fetchall())
            actual = canonical(tuple(r.values()) for r in raw.client().query(
                f"SELECT * FROM `{raw.project}.dbt_marts.{mart}`").result())
            assert actual == expected, mart
            compared.append(mart)
        assert {"mart_training_attendance_reconciliation", "mart_ga4_course_pages"} <= set(compared)
        for model in AIRBYTE_STAGING:
            expected = canonical(con.execute(f'SELECT * FROM staging."{model}"').fetchall())
            actual = canonical(tuple(r.values()) for r in raw.client().query(
                f"SELECT * FROM `{raw.project}.dbt_staging.{model}`").result())
            assert len(expected) > 5 and actual == expected, model
    finally:
        con.close()
    views = {}
    for table in raw.client().list_tables(f"{raw.project}.dbt_marts"):
        if table.table_id.startswith("rpt_"):
            views[table.table_id] = raw.client().get_table(table.reference)
    assert sorted(views) == sorted(m for m in marts if m.startswith("rpt_")) and len(views) == 4
    assert {v.table_type for v in views.values()} == {"VIEW"}
    # persist_docs: the descriptions Looker Studio shows are those of dbt_project/models/reporting/_reporting.yml
    import yaml

    docs = yaml.safe_load((PROJECT_ROOT / "dbt_project" / "models" / "reporting" / "_reporting.yml").read_text())
    for model in docs["models"]:
        view = views[model["name"]]
        assert view.description == model["description"], model["name"]
        assert {f.name: f.description for f in view.schema} == {
            c["name"]: c["description"] for c in model["columns"]}, model["name"]
    # the dashboard export and the catalog previews read BigQuery without a query job (tables.get and
    # tabledata.list) and give what they give on DuckDB
    from corisync_assets.exports.dashboard import MARTS, build_dashboard_export
    from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse

    names = {part: key.path[-1] for part, key in MARTS.items()}
    on_bq = raw.read_tables([("dbt_marts", n) for n in names.values()])
    on_duck = DuckDBWarehouse(path=str(duck_path)).read_tables(
        [("marts", n) for n in [*names.values(), "mart_course_completion"]])
    exports = [build_dashboard_export({p: tables[(ds, n)] for p, n in names.items()}, kind)
               for tables, ds, kind in ((on_bq, "dbt_marts", "bigquery"), (on_duck, "marts", "duckdb"))]
    for doc in exports:
        doc.pop("generated_at"), doc.pop("warehouse")
        for row in doc["attendance"]:
            row["attendance_rate"] = None if row["attendance_rate"] is None else round(row["attendance_rate"], 6)
    assert exports[0] == exports[1]
    preview = raw.read_tables([("dbt_marts", "mart_course_completion"), ("dbt_marts", "rpt_course_completion"),
                               ("dbt_marts", "no_such_table")], limit=3)
    assert list(preview) == [("dbt_marts", "mart_course_completion")]  # views and missing tables: none
    table = preview[("dbt_marts", "mart_course_completion")]
    assert len(table.rows) == 3 and table.row_count == on_duck[("marts", "mart_course_completion")].row_count
    assert [c for c, _ in table.columns] == [c for c, _ in on_duck[("marts", "mart_course_completion")].columns]
    # what a dbt build's metadata is read with (corisync_assets/dbt/warehouse_adapter.py): columns from
    # tables.get, the row count from a query job, a relation written as dbt's BigQuery adapter writes it
    from corisync_assets.dbt.warehouse_adapter import WarehouseAdapter

    adapter = WarehouseAdapter(raw)
    relation = adapter.Relation.create(database=raw.project, schema="dbt_marts", identifier="mart_course_completion")
    assert str(relation) == f"`{raw.project}`.`dbt_marts`.`mart_course_completion`"
    on_duck_completion = on_duck[("marts", "mart_course_completion")]
    assert [c.name for c in adapter.get_columns_in_relation(relation)] == [c for c, _ in on_duck_completion.columns]
    assert adapter.execute(f"SELECT count(*) FROM {relation}", fetch=True)[1][0][0] == on_duck_completion.row_count
    assert adapter.get_columns_in_relation(adapter.Relation.create(
        database=raw.project, schema="dbt_marts", identifier="no_such_table")) == []
    adapter.cleanup_connections()
    print(f"marts equal on emu and local: {compared}; not built on the emulator: {sorted(failed)}; "
          f"views with persisted descriptions: {sorted(views)}")
