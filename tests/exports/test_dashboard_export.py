"""``exports/dashboard_json`` over marts built by the real dbt project (fixture ``built``): the document's
figures equal sums computed here with plain SQL over the marts, it follows dashboard/export.schema.json,
and bad states fail with one clear error. GCS cannot be reached from here: the prod store is tested with a
storage-client double (``FakeGcs``) that records uploads."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg
import duckdb
import jsonschema
import pytest

from corisync_assets.environment import warehouse_resource
from corisync_assets.exports.dashboard import (
    SCHEMA_PATH,
    ExportError,
    dashboard_json,
    validate_export,
    write_dashboard_export,
)
from corisync_assets.exports.store import ExportStore
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse
from tests.support.dbt_build import BuiltWarehouse

pytestmark = pytest.mark.timeout(600)


def _query(built: BuiltWarehouse, sql: str) -> list[tuple]:
    con = duckdb.connect(str(built.path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_the_export_holds_the_marts_figures(built: BuiltWarehouse, tmp_path: Path) -> None:
    path = write_dashboard_export(warehouse_resource(built.settings), tmp_path)
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))

    enrolled, started, completed, dropped = _query(
        built, "select sum(enrolled), sum(started), sum(completed), sum(dropped) from marts.mart_enrollment_funnel")[0]
    assert doc["funnel"]["stages"] == [{"stage": "enrolled", "enrollments": enrolled},
                                       {"stage": "started", "enrollments": started},
                                       {"stage": "completed", "enrollments": completed}]
    assert doc["funnel"]["dropped"] == dropped
    assert enrolled > started > completed > 0

    weeks = _query(built, "select strftime(week_start, '%Y-%m-%d'), active_learners, learners_logged_in, "
                          "activity_events from marts.mart_active_learners_weekly order by week_start")
    assert [tuple(w.values()) for w in doc["weekly_actives"]] == weeks and len(weeks) > 1

    attendance = _query(built, "select trainer_name, location, registrations, attended, no_shows "
                               "from marts.mart_training_attendance")
    got = [(a["trainer_name"], a["location"], a["registrations"], a["attended"], a["no_shows"])
           for a in doc["attendance"]]
    assert sorted(got, key=str) == sorted(attendance, key=str) and attendance
    assert [a[2] for a in got] == sorted((a[2] for a in got), reverse=True)  # most registrations first


def test_the_asset_reports_where_and_what(built: BuiltWarehouse, tmp_path: Path) -> None:
    result = dg.materialize([dashboard_json], resources={
        "warehouse": warehouse_resource(built.settings), "exports": ExportStore(uri=str(tmp_path / "out"))})
    meta = result.asset_materializations_for_node("exports__dashboard_json")[0].metadata
    assert meta["location"].value == str(tmp_path / "out" / "dashboard.json")
    assert meta["weeks"].value == _query(built, "select count(*) from marts.mart_active_learners_weekly")[0][0]
    assert json.loads((tmp_path / "out" / "dashboard.json").read_text())["schema_version"] == 1
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["dashboard.json"]  # no temp file left


def test_marts_not_built_yet_fail_with_one_clear_error(tmp_path: Path) -> None:
    duckdb.connect(str(tmp_path / "empty.duckdb")).close()
    with pytest.raises(ExportError, match=r"not built yet: marts\.mart_enrollment_funnel"):
        write_dashboard_export(DuckDBWarehouse(path=str(tmp_path / "empty.duckdb")), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_document_off_the_schema_is_refused(built: BuiltWarehouse, tmp_path: Path) -> None:
    doc = json.loads(write_dashboard_export(warehouse_resource(built.settings), tmp_path).read_text())
    doc["weekly_actives"][0]["active_learners"] = -1
    with pytest.raises(ExportError, match="weekly_actives/0/active_learners"):
        validate_export(doc)
    del doc["attendance"]
    with pytest.raises(ExportError, match="'attendance' is a required property"):
        validate_export(doc)


class FakeGcs:
    """A google.cloud.storage.Client double: records (bucket, blob, data, content type, cache control)."""

    def __init__(self) -> None:
        self.uploads: list[tuple] = []

    def bucket(self, bucket_name: str):
        fake = self

        class Blob:
            def __init__(self, name: str) -> None:
                self.name, self.cache_control = name, None

            def upload_from_string(self, data: bytes, content_type: str, timeout: float) -> None:
                fake.uploads.append((bucket_name, self.name, data, content_type, self.cache_control))

        return type("Bucket", (), {"blob": staticmethod(Blob)})()


@pytest.mark.parametrize(("uri", "blob"), [("gs://corisync-exports/dashboards/", "dashboards/dashboard.json"),
                                           ("gs://corisync-exports", "dashboard.json")])
def test_the_prod_store_uploads_one_object(uri: str, blob: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeGcs()
    monkeypatch.setattr(ExportStore, "_gcs_client", lambda self: fake)
    assert ExportStore(uri=uri).write("dashboard.json", b"{}") == f"gs://corisync-exports/{blob}"
    assert fake.uploads == [("corisync-exports", blob, b"{}", "application/json", "no-cache")]
    with pytest.raises(ValueError, match="names no bucket"):
        ExportStore(uri="gs:///x").write("dashboard.json", b"{}")


def test_automation_exports_once_the_marts_exist_then_on_the_cron_only() -> None:
    """Dagster's own evaluator over the asset with stand-in marts (specs only, materializations reported)."""
    from datetime import UTC, datetime, timedelta

    from corisync_assets.exports.dashboard import MARTS

    defs = dg.Definitions(assets=[dashboard_json, *(dg.AssetSpec(k) for k in MARTS.values())],
                          resources={"warehouse": dg.ResourceDefinition.none_resource(),
                                     "exports": dg.ResourceDefinition.none_resource()})
    instance = dg.DagsterInstance.ephemeral()
    selection = dg.AssetSelection.assets(dashboard_json)
    key = dashboard_json.key

    # Runless events carry the real time: the evaluations before them are placed in the cron window that
    # ended at the last 5-minute tick B <= now, the last one just after now.
    if (datetime.now(UTC).minute % 5, datetime.now(UTC).second) >= (4, 55):  # keep clear of the next tick
        time.sleep(6)
    now = datetime.now(UTC)
    last_tick = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)

    def tick(cursor, at: datetime):
        result = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=cursor,
                                                   evaluation_time=at)
        return result.get_num_requested(key), result.cursor

    requested, cursor = tick(None, last_tick - timedelta(minutes=4))
    assert requested == 0  # no marts yet
    for mart in MARTS.values():
        instance.report_runless_asset_event(dg.AssetMaterialization(mart))
    requested, cursor = tick(cursor, last_tick - timedelta(minutes=3))
    assert requested == 1  # missing, marts built: at once
    instance.report_runless_asset_event(dg.AssetMaterialization(key))
    requested, cursor = tick(cursor, last_tick - timedelta(minutes=2))
    assert requested == 0  # exported
    for mart in MARTS.values():
        instance.report_runless_asset_event(dg.AssetMaterialization(mart))
    requested, cursor = tick(cursor, datetime.now(UTC) + timedelta(seconds=1))
    assert requested == 1  # the tick passed and the marts were updated since
    instance.report_runless_asset_event(dg.AssetMaterialization(key))
    for mart in MARTS.values():
        instance.report_runless_asset_event(dg.AssetMaterialization(mart))
    requested, cursor = tick(cursor, datetime.now(UTC) + timedelta(seconds=2))
    assert requested == 0  # marts updated again, but no cron tick since the last request
