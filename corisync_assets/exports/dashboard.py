"""``exports/dashboard_json``: the marts the D3 page draws (dashboard/), as one JSON document that follows
dashboard/export.schema.json. Shaped here in Python from the marts' rows (read without a query job), so it
is the same code on DuckDB and BigQuery; validated against the schema before it is written."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    MaterializeResult,
    MetadataValue,
    asset,
)

from corisync_assets.environment import PROJECT_ROOT
from corisync_assets.exports.store import ExportStore
from corisync_assets.resources.warehouse.base import TableRows, Warehouse

SCHEMA_PATH = PROJECT_ROOT / "dashboard" / "export.schema.json"
EXPORT_NAME = "dashboard.json"
MARTS = {
    "funnel": AssetKey(["marts", "mart_enrollment_funnel"]),
    "weekly_actives": AssetKey(["marts", "mart_active_learners_weekly"]),
    "attendance": AssetKey(["marts", "mart_training_attendance"]),
}
#: at most one export per interval, once the marts it reads were updated since the tick
EXPORT_CRON = "*/5 * * * *"


def export_condition() -> AutomationCondition:
    """Every ``EXPORT_CRON`` tick once the marts were updated since; and right away while the export is
    missing (a first ``make dev``), once its marts exist, unless that attempt failed (no retry loop)."""
    first = (AutomationCondition.missing() & ~AutomationCondition.any_deps_missing()
             & ~AutomationCondition.in_progress() & ~AutomationCondition.execution_failed())
    return AutomationCondition.on_cron(EXPORT_CRON) | first.with_label("missing, marts built")


class ExportError(RuntimeError):
    """A mart the export reads is missing, or the export does not follow its schema."""


def build_dashboard_export(tables: dict[str, TableRows], warehouse_kind: str) -> dict[str, Any]:
    """The export document from the three marts' rows (keys of ``MARTS``)."""
    funnel = tables["funnel"].records()
    totals = {k: sum(int(r[k] or 0) for r in funnel) for k in ("enrolled", "started", "completed", "dropped")}
    weeks = sorted(tables["weekly_actives"].records(), key=lambda r: r["week_start"])
    attendance = sorted(tables["attendance"].records(),
                        key=lambda r: (-int(r["registrations"] or 0), r["trainer_name"] or "", r["location"]))
    return {
        "schema_version": 1,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "warehouse": warehouse_kind,
        "funnel": {
            "stages": [{"stage": s, "enrollments": totals[s]} for s in ("enrolled", "started", "completed")],
            "dropped": totals["dropped"],
        },
        "weekly_actives": [{
            "week_start": _day(r["week_start"]),
            "active_learners": int(r["active_learners"]),
            "learners_logged_in": int(r["learners_logged_in"] or 0),
            "activity_events": int(r["activity_events"]),
        } for r in weeks],
        "attendance": [{
            "trainer_name": r["trainer_name"],
            "location": r["location"],
            "trainings_held": int(r["trainings_held"]),
            "registrations": int(r["registrations"]),
            "attended": int(r["attended"]),
            "no_shows": int(r["no_shows"]),
            "attendance_rate": None if r["attendance_rate"] is None else float(r["attendance_rate"]),
        } for r in attendance],
    }


def _day(value: date | datetime | str) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    return value.isoformat() if isinstance(value, date) else str(value)[:10]


@cache
def _validator():
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def validate_export(doc: dict[str, Any]) -> None:
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "(document)"
        raise ExportError(f"dashboard export does not follow {SCHEMA_PATH.name} at {where}: {errors[0].message}"
                          f" ({len(errors)} error(s))")


def mart_relations() -> dict[str, tuple[str, str]]:
    """(schema, name) of the marts the export reads, from the dbt manifest of this target."""
    from corisync_assets.dbt.assets import dbt_relations
    from corisync_assets.dbt.project import corisync_dbt_project

    relations = dbt_relations(json.loads(Path(corisync_dbt_project.manifest_path).read_text()))
    return {part: relations[key] for part, key in MARTS.items()}


def export_dashboard(warehouse: Warehouse, store: ExportStore) -> tuple[str, dict[str, Any]]:
    """Read the marts, shape and validate the export, write it; return (where, document)."""
    relations = mart_relations()
    with warehouse.exclusive():
        read = warehouse.read_tables(list(relations.values()))
    missing = [f"{s}.{n}" for s, n in relations.values() if (s, n) not in read]
    if missing:
        raise ExportError(f"the dashboard export reads marts that are not built yet: {', '.join(missing)}")
    doc = build_dashboard_export({part: read[rel] for part, rel in relations.items()}, warehouse.kind)
    validate_export(doc)
    data = json.dumps(doc, indent=1, default=_json_default).encode()
    return store.write(EXPORT_NAME, data), doc


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_dashboard_export(warehouse: Warehouse, export_dir: Path | str) -> Path:
    """Write ``dashboard.json`` into a local folder (tests, scripts); return its path."""
    return Path(export_dashboard(warehouse, ExportStore(uri=str(export_dir)))[0])


@asset(
    key=["exports", "dashboard_json"],
    deps=list(MARTS.values()),
    group_name="exports",
    kinds={"json"},
    description="The funnel, weekly active learners and training attendance for the D3 page (dashboard/), "
                "as JSON following dashboard/export.schema.json: a local file, or GCS in prod.",
    automation_condition=export_condition(),
)
def dashboard_json(context: AssetExecutionContext, warehouse: Warehouse, exports: ExportStore) -> MaterializeResult:
    where, doc = export_dashboard(warehouse, exports)
    context.log.info(f"dashboard export written to {where}")
    return MaterializeResult(metadata={
        "location": MetadataValue.path(where) if not where.startswith("gs://") else MetadataValue.url(where),
        "funnel_enrolled": MetadataValue.int(doc["funnel"]["stages"][0]["enrollments"]),
        "weeks": MetadataValue.int(len(doc["weekly_actives"])),
        "attendance_rows": MetadataValue.int(len(doc["attendance"])),
        "generated_at": MetadataValue.text(doc["generated_at"]),
    })


exports_automation_sensor = AutomationConditionSensorDefinition(
    "exports_automation_sensor",
    target=[dashboard_json],
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)


def exports_definitions() -> Definitions:
    return Definitions(assets=[dashboard_json], sensors=[exports_automation_sensor])
