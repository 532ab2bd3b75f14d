"""The Dagster webserver for the project, started once per session (fixture ``webserver``).

``dagster-webserver -w workspace.yaml`` on a free local port, with DAGSTER_HOME a temp dir (sqlite storage;
telemetry and the first-visit "join the community" dialog off, so screenshots show the page). The fixture
waits for ``/server_info`` and for the code location to have loaded (a load error fails every test using it,
with the error), and stops the webserver and its code server in teardown. Its output goes to
artifacts/ui/dagster-webserver.log (git-ignored).

``chromium``: the headless browser (Debian package ``chromium``); tests using it are skipped when it is
missing; tests/ui/install_chromium.sh installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import stop_process_group

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "ui"
INSTALL_CHROMIUM = Path(__file__).resolve().parent / "install_chromium.sh"
WEBSERVER_LOG = ARTIFACTS / "dagster-webserver.log"
#: Code location load includes importing dagster-dbt and, if the manifest is stale, `dbt parse`.
LOAD_TIMEOUT_S = float(os.environ.get("CORISYNC_UI_LOAD_TIMEOUT", "240"))

DAGSTER_YAML = """\
telemetry:
  enabled: false
nux:
  enabled: false
"""

LOCATION_STATUSES = """
{
  locationStatusesOrError {
    __typename
    ... on WorkspaceLocationStatusEntries { entries { name loadStatus } }
    ... on PythonError { message }
  }
}
"""

WORKSPACE = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name } }
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message stack }
  }
}
"""


def chromium_flags(window: tuple[int, int], virtual_time_ms: int) -> tuple[str, ...]:
    """Headless Chromium with nothing reaching out (no sync, updates, first-run), a fixed window, and
    ``virtual_time_ms`` of virtual time for the page's scripts before a dump or screenshot."""
    return ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
            f"--window-size={window[0]},{window[1]}", f"--virtual-time-budget={virtual_time_ms}")


def dom_and_screenshot(chromium: Path, flags: tuple[str, ...], url: str, screenshot: Path | None = None,
                       timeout_s: float = 180) -> str:
    """The page's DOM after its scripts ran, and (if asked) its screenshot: two headless Chromiums at once,
    each with its own throwaway profile. A failing browser fails the test with its stderr."""
    with tempfile.TemporaryDirectory(prefix="corisync-ui-chromium-") as tmp:
        modes = ["--dump-dom", *([f"--screenshot={screenshot}"] if screenshot is not None else [])]
        procs = [subprocess.Popen([str(chromium), *flags, f"--user-data-dir={tmp}/{i}", mode, url],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i, mode in enumerate(modes)]
        deadline = time.monotonic() + timeout_s
        try:
            outputs = [proc.communicate(timeout=max(5.0, deadline - time.monotonic())) for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, f"chromium {proc.args[-2]} exited {proc.returncode}:\n{err[-3000:]}"
    return outputs[0][0]


class GraphQLError(AssertionError):
    pass


@dataclass(frozen=True)
class Webserver:
    url: str
    process: subprocess.Popen
    log: Path
    home: Path  #: its DAGSTER_HOME: a test may write runs there (DagsterInstance.from_config) for the UI to show

    def graphql(self, query: str, variables: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        """POST a query to /graphql; the ``data`` of the answer (GraphQLError on transport or query errors)."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise GraphQLError(f"/graphql answered HTTP {exc.code}: {exc.read()[:2000]!r}") from None
        if answer.get("errors"):
            raise GraphQLError(f"/graphql errors: {json.dumps(answer['errors'], indent=1)[:4000]}")
        return answer["data"]

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "<no log>"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float = 5) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read() if response.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def _wait_until_loaded(server: Webserver, deadline: float) -> None:
    """Wait for /server_info, then for every code location to be LOADED; fail with its load error if any."""

    def gone() -> None:
        if server.process.poll() is not None:
            pytest.fail(
                f"dagster-webserver exited with {server.process.returncode} before the code location loaded; "
                f"log tail:\n{server.log_tail()}"
            )

    while _get(f"{server.url}/server_info") is None:
        gone()
        if time.monotonic() > deadline:
            pytest.fail(f"dagster-webserver did not answer /server_info in time; log tail:\n{server.log_tail()}")
        time.sleep(0.5)

    while True:
        gone()
        statuses = server.graphql(LOCATION_STATUSES)["locationStatusesOrError"]
        if statuses["__typename"] != "WorkspaceLocationStatusEntries":
            pytest.fail(f"locationStatusesOrError: {statuses}")
        entries = statuses["entries"]
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"code location not loaded in {LOAD_TIMEOUT_S:.0f}s: {entries}; log:\n{server.log_tail()}")
        time.sleep(0.5)

    workspace = server.graphql(WORKSPACE)["workspaceOrError"]
    if workspace["__typename"] != "Workspace":
        pytest.fail(f"workspaceOrError: {workspace.get('message')}\n{''.join(workspace.get('stack', []))}")
    for entry in workspace["locationEntries"]:
        loaded = entry["locationOrLoadError"] or {}
        if loaded.get("__typename") != "RepositoryLocation":
            pytest.fail(
                f"code location {entry['name']} failed to load: {loaded.get('message')}\n"
                f"{''.join(loaded.get('stack', []))}"
            )


@pytest.fixture(scope="session")
def webserver() -> Iterator[Webserver]:
    """The project's webserver (workspace.yaml), its code location loaded; stopped at session end."""
    from corisync_assets.dbt.project import dbt_project_for
    from corisync_assets.environment import settings

    # Prepare the dbt manifest here, for the settings the webserver will see, so the code server finds it
    # current (and the tests read the manifest the webserver used).
    dbt_project_for(settings())

    webserver_bin = Path(sys.executable).parent / "dagster-webserver"
    if not webserver_bin.exists():
        pytest.fail(f"{webserver_bin} not found (dagster-webserver is a project dependency)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="corisync-ui-dagster-home-"))
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    env.pop("DAGSTER_IS_DEV_CLI", None)
    with WEBSERVER_LOG.open("wb") as log:
        process = subprocess.Popen(
            [str(webserver_bin), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: teardown stops the code server too
        )
    server = Webserver(url=f"http://127.0.0.1:{port}", process=process, log=WEBSERVER_LOG, home=home)
    try:
        _wait_until_loaded(server, deadline=time.monotonic() + LOAD_TIMEOUT_S)
        yield server
    finally:
        stop_process_group(process, term_wait_s=20)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The headless Chromium binary; skip when it is not installed."""
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    pytest.skip(f"chromium is not installed (run `bash {INSTALL_CHROMIUM.relative_to(REPO)}` as root)")
