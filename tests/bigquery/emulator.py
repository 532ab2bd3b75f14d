"""The BigQuery emulator tier: install the emulator into its own venv, start and stop it.

BigQuery itself cannot run here; PyPI's `bqemulator` (REST API of BigQuery over DuckDB, GoogleSQL
translated by SQLGlot) stands in for it. It pins duckdb 1.5.x while the project's venv has duckdb 2.x,
so it lives in its own venv, `.corisync/tools/bqemu` (git-ignored), with:

* numpy (the emulator's built-in UDFs need it but it does not declare it);
* DuckDB's `spatial` extension, which the emulator loads at start (hard requirement) and `avro`
  (optional). DuckDB would download them from its extension site, which is not reachable here; PyPI's
  `duckdb-extension-spatial`/`-avro` wheels carry the signed binaries, and they are linked into the
  extension folder of a private HOME (`<venv>/home/.duckdb/extensions/<version>/<platform>/`) that the
  emulator process runs with, so `INSTALL spatial` finds them and nothing is fetched.

Usage:
    python -m tests.bigquery.emulator install        # idempotent; prints the venv's python
    python -m tests.bigquery.emulator start [--port N] [--project P] [--dataset D ...]
        # runs in the foreground until Ctrl-C; prints BIGQUERY_EMULATOR_HOST=127.0.0.1:N
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("CORISYNC_BQEMU_VENV", ROOT / ".corisync" / "tools" / "bqemu"))
BQEMULATOR_VERSION = "1.4.0"
DUCKDB_VERSION = "1.5.5"
REQUIREMENTS = (
    f"bqemulator=={BQEMULATOR_VERSION}",
    f"duckdb=={DUCKDB_VERSION}",
    "numpy==2.4.6",
    f"duckdb-extension-spatial=={DUCKDB_VERSION}",
    f"duckdb-extension-avro=={DUCKDB_VERSION}",
)
EXTENSIONS = ("spatial", "avro")
DEFAULT_PROJECT = "corisync-emu"


def python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def home(venv: Path = VENV) -> Path:
    """The HOME the emulator runs with (DuckDB looks for installed extensions under it)."""
    return venv / "home"


def _marker(venv: Path) -> Path:
    return venv / ".corisync-requirements"


def installed(venv: Path = VENV) -> bool:
    """True when the venv holds exactly the pinned requirements and the extensions are linked."""
    marker = _marker(venv)
    return python(venv).exists() and marker.exists() and marker.read_text() == "\n".join(REQUIREMENTS)


def _log(msg: str) -> None:
    print(f"bqemu: {msg}", file=sys.stderr)


def install(venv: Path = VENV) -> Path:
    """Create the emulator venv (idempotent: a venv already at the pinned versions is left alone)."""
    if installed(venv):
        return python(venv)
    _log(f"installing {', '.join(REQUIREMENTS)} into {venv}")
    uv = shutil.which("uv")
    base = os.environ.get("CORISYNC_BQEMU_BASE_PYTHON", sys.executable)
    if not python(venv).exists():
        if uv:
            subprocess.run([uv, "venv", "-q", "--python", base, str(venv)], check=True)
        else:
            subprocess.run([base, "-m", "venv", str(venv)], check=True)
    if uv:
        subprocess.run([uv, "pip", "install", "-q", "--python", str(python(venv)), *REQUIREMENTS], check=True)
    else:
        subprocess.run([str(python(venv)), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    _link_extensions(venv)
    _marker(venv).write_text("\n".join(REQUIREMENTS))
    return python(venv)


def _link_extensions(venv: Path) -> None:
    probe = (
        "import duckdb, importlib, pathlib, sys\n"
        "print(duckdb.__version__, duckdb.sql('select platform from pragma_platform()').fetchone()[0])\n"
        "for name in sys.argv[1:]:\n"
        "    pkg = importlib.import_module('duckdb_extension_' + name)\n"
        "    print(next(pathlib.Path(pkg.__file__).parent.glob(f'extensions/*/{name}.duckdb_extension')))\n"
    )
    out = subprocess.run([str(python(venv)), "-c", probe, *EXTENSIONS], check=True, capture_output=True,
                         text=True).stdout.split("\n")
    version, platform = out[0].split()
    target = home(venv) / ".duckdb" / "extensions" / f"v{version}" / platform
    target.mkdir(parents=True, exist_ok=True)
    for source in filter(None, out[1:]):
        link = target / Path(source).name
        link.unlink(missing_ok=True)
        link.symlink_to(source)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: the emulator's gRPC port (Storage Write/Read API) is its REST port + 10, as in its defaults (9050/9060);
#: `BigQueryWarehouse` derives its Storage Write API endpoint from BIGQUERY_EMULATOR_HOST the same way
GRPC_PORT_OFFSET = 10


def _port_pair() -> int:
    """A free REST port whose gRPC companion (port + GRPC_PORT_OFFSET) is free too."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + GRPC_PORT_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports for the BigQuery emulator")


@dataclass
class Emulator:
    """A running emulator process (started by `start`)."""

    process: subprocess.Popen
    host: str  # host:port, the value of BIGQUERY_EMULATOR_HOST
    project: str
    log: Path

    @property
    def grpc_host(self) -> str:
        """host:port of the emulator's gRPC API (Storage Write API)."""
        name, port = self.host.rsplit(":", 1)
        return f"{name}:{int(port) + GRPC_PORT_OFFSET}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start(project: str = DEFAULT_PROJECT, port: int | None = None, log: Path | None = None,
          timeout_s: float = 60.0, venv: Path = VENV) -> Emulator:
    """Start the emulator (ephemeral, REST on 127.0.0.1:port, gRPC on port + 10); wait until ready."""
    if not installed(venv):
        raise RuntimeError(f"the BigQuery emulator is not installed in {venv}: run "
                           "`python -m tests.bigquery.emulator install`")
    port = port or _port_pair()
    log = log or venv / f"emulator-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BQEMU_", "GOOGLE_"))}
    env["HOME"] = str(home(venv))
    cmd = [str(venv / "bin" / "bqemulator"), "start", "--rest-host", "127.0.0.1", "--rest-port", str(port),
           "--grpc-host", "127.0.0.1", "--grpc-port", str(port + GRPC_PORT_OFFSET), "--ephemeral", "--project", project,
           "--log-level", "warning"]
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                   start_new_session=True)
    emu = Emulator(process, f"127.0.0.1:{port}", project, log)
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the BigQuery emulator exited with {process.returncode}; its log ({log}):\n"
                               + log.read_text()[-3000:])
        try:
            with urllib.request.urlopen(f"http://{emu.host}/readyz", timeout=2) as r:
                if r.status == 200:
                    return emu
        except OSError:
            pass
        if time.monotonic() > deadline:
            emu.stop()
            raise RuntimeError(f"the BigQuery emulator did not become ready within {timeout_s:.0f}s; log: {log}")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="create/refresh the emulator venv (idempotent)")
    run = sub.add_parser("start", help="run the emulator in the foreground")
    run.add_argument("--port", type=int, default=9050)
    run.add_argument("--project", default=DEFAULT_PROJECT)
    run.add_argument("--dataset", action="append", default=[], help="dataset to create (repeatable)")
    run.add_argument("--location", default="EU")
    args = parser.parse_args(argv)
    if args.command == "install":
        print(install())
        return 0
    install()
    emu = start(args.project, args.port)
    try:
        if args.dataset:
            sys.path.insert(0, str(ROOT))
            from corisync_assets.resources.warehouse.bigquery import BigQueryWarehouse

            for ds in args.dataset:
                BigQueryWarehouse(project=args.project, dataset=ds, location=args.location,
                                  emulator_host=emu.host).create_dataset()
        print(f"BIGQUERY_EMULATOR_HOST={emu.host}  (project {args.project}; log {emu.log}); Ctrl-C stops it",
              flush=True)
        emu.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
