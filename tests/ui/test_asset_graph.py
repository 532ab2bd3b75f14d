"""The asset graph as the Dagster webserver serves it: GraphQL API and the rendered lineage page.

* GraphQL: each Postgres table the connector captures reaches marts through raw CDC and staging assets, no
  asset depends on an undefined key, and dbt models carry their dbt descriptions.
* UI: headless Chromium opens the global asset lineage page (all groups expanded), saves a screenshot to
  artifacts/ui/asset_graph.png and, from a DOM dump, checks that every asset node is drawn and no error shows.

The checks themselves are in tests/ui/checks.py.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.ui import checks
from tests.ui.conftest import ARTIFACTS, Webserver, chromium_flags, dom_and_screenshot

pytestmark = pytest.mark.timeout(600)

ASSET_NODES = """
{
  assetNodes {
    assetKey { path }
    description
    dependencyKeys { path }
    groupName
    kinds
    isAutoCreatedStub
  }
}
"""


@pytest.fixture(scope="module")
def asset_nodes(webserver: Webserver) -> checks.Nodes:
    answer = webserver.graphql(ASSET_NODES)["assetNodes"]
    nodes = checks.nodes_by_key(answer)
    assert len(nodes) == len(answer), "assetNodes lists a key twice"
    assert nodes, "the webserver serves no asset nodes"
    return nodes


def test_each_captured_table_reaches_marts(asset_nodes: checks.Nodes) -> None:
    """tc4a_postgres/<schema>/<table> -> raw_cdc/<table> -> staging model(s) -> mart(s), for every table."""
    from corisync_assets.cdc.connector_config import load_connector_config

    problems = checks.chain_problems(asset_nodes, load_connector_config().tables)
    assert not problems, "\n".join(problems)


def test_no_dangling_dependencies(asset_nodes: checks.Nodes) -> None:
    """Every dependency is itself an asset node defined in the code location (no stub source nodes)."""
    problems = checks.dangling_problems(asset_nodes)
    assert not problems, "\n".join(problems)


def test_dbt_descriptions_are_asset_descriptions(webserver: Webserver, asset_nodes: checks.Nodes) -> None:
    """Each dbt model/snapshot is one asset, described by its description in the manifest the server used."""
    from corisync_assets.dbt.project import dbt_project_for
    from corisync_assets.environment import settings

    manifest = json.loads(dbt_project_for(settings()).manifest_path.read_text())
    problems = checks.description_problems(asset_nodes, manifest)
    assert not problems, "\n".join(problems)


# --- the lineage page in headless Chromium ------------------------------------------------------------------

#: Taller than wide because the lineage page zooms the graph to fit the viewport's *width*: with this
#: project's graph a 1000px-high window shows (and, the graph being virtualized, renders) only its middle;
#: with the web groups beside the CDC ones, 1600x2400 left the top and bottom rows out.
WINDOW = (1400, 4800)
CHROMIUM_FLAGS = chromium_flags(WINDOW, virtual_time_ms=20000)
CHROMIUM_TIMEOUT_S = 180


def lineage_url(server: Webserver, groups: Iterable[str]) -> str:
    """The global asset lineage page with every group expanded.

    Groups start collapsed (one box per group, no asset nodes); ``?expanded=`` opens them. Group ids are
    ``global@global:<group>`` unless the UI's per-code-location grouping feature flag is on.
    """
    expanded = ",".join(f"global@global:{g}" for g in sorted(groups))
    return f"{server.url}/asset-groups?expanded={quote(expanded, safe='@:,')}"


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_lineage_page_shows_asset_nodes(webserver: Webserver, chromium: Path, asset_nodes: checks.Nodes) -> None:
    """Screenshot of the lineage page to artifacts/ui/asset_graph.png; its DOM shows every node, no error."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot, dom_file = ARTIFACTS / "asset_graph.png", ARTIFACTS / "asset_graph.html"
    screenshot.unlink(missing_ok=True)
    dom_file.unlink(missing_ok=True)
    url = lineage_url(webserver, {n["groupName"] for n in asset_nodes.values()})

    # The page loads the graph (queries, then a layout in a web worker) in real time, while Chromium's virtual
    # time can run out first: on a busy machine the dump sometimes catches "Loading assets…" (seen in about one
    # run in two with a 20 s budget once the Airbyte group joined the graph). That state is transient: the browser
    # gets a 60 s budget, then a second try with 120 s; what it then shows must pass every check below.
    for flags in (chromium_flags(WINDOW, virtual_time_ms=60000), chromium_flags(WINDOW, virtual_time_ms=120000)):
        dom = dom_and_screenshot(chromium, flags, url, screenshot, CHROMIUM_TIMEOUT_S)
        if "Loading assets" not in dom:
            break
    dom_file.write_text(dom)

    assert screenshot.exists(), "chromium wrote no screenshot"
    assert _png_size(screenshot) == WINDOW, f"screenshot is {_png_size(screenshot)}, expected {WINDOW}"
    problems = checks.page_problems(dom, asset_nodes)
    assert not problems, f"{url} (DOM saved to {dom_file}):\n" + "\n".join(problems)
