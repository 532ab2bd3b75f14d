"""Exports of the marts for consumers outside the warehouse (the D3 page in dashboard/)."""

from corisync_assets.exports.dashboard import (
    dashboard_json,
    exports_automation_sensor,
    exports_definitions,
    write_dashboard_export,
)

__all__ = ["dashboard_json", "exports_automation_sensor", "exports_definitions", "write_dashboard_export"]
