"""A mart's page in the Dagster UI shows its data, not only the graph: after a real dbt build of the mart
(over the fixture warehouse of ``built``) recorded in the webserver's own instance, headless Chromium opens
the asset's page; its DOM shows the row count, the column schema and preview rows whose values are read
here from the warehouse with plain SQL. Screenshot: artifacts/ui/mart_preview.png."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from corisync_assets.dbt.assets import AUTOMATION_CONDITION_TAG
from corisync_assets.environment import warehouse_resource
from tests.ui.conftest import ARTIFACTS, Webserver, dom_and_screenshot
from tests.ui.test_asset_graph import CHROMIUM_FLAGS, CHROMIUM_TIMEOUT_S

pytestmark = pytest.mark.timeout(600)

MART = dg.AssetKey(["marts", "mart_course_completion"])


def test_a_marts_page_shows_its_row_count_schema_and_preview(built, webserver: Webserver, chromium: Path) -> None:
    from corisync_assets.dbt import corisync_dbt_assets, dbt_resource

    instance = dg.DagsterInstance.from_config(str(webserver.home))
    result = dg.materialize(  # as automation runs it (no in-process adapter: faster); previews all the same
        [corisync_dbt_assets], selection=[MART], instance=instance, tags={AUTOMATION_CONDITION_TAG: "true"},
        resources={"dbt": dbt_resource(built.settings), "warehouse": warehouse_resource(built.settings)})
    assert result.success

    con = duckdb.connect(str(built.path), read_only=True)
    try:
        count = con.execute(f"select count(*) from marts.{MART.path[-1]}").fetchall()[0][0]
        columns = [r[0] for r in con.execute(f"describe marts.{MART.path[-1]}").fetchall()]
        titles = {r[0] for r in con.execute(f"select course_title from marts.{MART.path[-1]}").fetchall()}
    finally:
        con.close()

    url = f"{webserver.url}/assets/{'/'.join(MART.path)}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dom = dom_and_screenshot(chromium, CHROMIUM_FLAGS, url, ARTIFACTS / "mart_preview.png", CHROMIUM_TIMEOUT_S)
    (ARTIFACTS / "mart_preview.html").write_text(dom)
    assert (ARTIFACTS / "mart_preview.png").stat().st_size > 20_000

    assert "Something went wrong" not in dom
    assert f">{count}<" in dom or f"{count:,}" in dom, f"row count {count} not on the page ({url})"
    missing = [c for c in columns if c not in dom]
    assert not missing, f"columns not shown on {url}: {missing}"
    shown = {t for t in titles if t in dom}
    assert shown, f"no preview row (course titles {sorted(titles)[:5]}...) on {url}"
