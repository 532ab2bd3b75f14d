"""First run (issue #10, goal 3): the Makefile's bootstrap on a machine with Python 3.11 and nothing else of ours.

The work tree as it is now (tracked files and untracked ones git does not ignore, uncommitted edits included;
no .venv, no .corisync) is copied to a temp dir. A fresh ``python -m venv`` without uv plays the machine's
Python 3.11. ``make install PYTHON=<that python>`` runs with a PATH from which every directory holding a ``uv``
executable has been removed and with a temp HOME (no ~/.local/bin/uv, no user site-packages). It must succeed
the first time, install uv for that Python and leave a project venv that imports the clone's corisync_assets, and
a dbt manifest of the clone's models that the code location's first load uses as is (goal 4: no parse at load).

Only uv's and pip's download caches are shared with the host, so that the sync does not fetch gigabytes again:
they hold packages, not a uv to run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]


def _copy_work_tree(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():  # a tracked file deleted in the work tree is skipped
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _path_without_uv() -> str:
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(d for d in dirs if d and not os.access(os.path.join(d, "uv"), os.X_OK))


def _host_caches() -> dict[str, str]:
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return {
        "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR") or str(cache_home / "uv"),
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR") or str(cache_home / "pip"),
    }


def _base_python311() -> str:
    """A Python 3.11 that is not this test's venv (whose base interpreter may have uv installed: irrelevant,
    the machine's Python is the fresh venv made from it)."""
    base = getattr(sys, "_base_executable", sys.executable)
    if sys.version_info[:2] == (3, 11):
        return base
    found = shutil.which("python3.11")
    if not found:
        pytest.skip("no Python 3.11 on this machine")
    return found


def test_make_install_works_the_first_time_without_uv(tmp_path: Path) -> None:
    if not shutil.which("make") or not shutil.which("git"):
        pytest.skip("needs make and git")
    clone, home, machine = tmp_path / "corisync", tmp_path / "home", tmp_path / "python311"
    clone.mkdir()
    home.mkdir()
    _copy_work_tree(clone)
    assert (clone / "Makefile").read_text() == (REPO / "Makefile").read_text()
    assert not (clone / ".venv").exists() and not (clone / ".corisync").exists()

    subprocess.run([_base_python311(), "-m", "venv", str(machine)], check=True, capture_output=True)
    python = machine / "bin" / "python"
    env = {
        k: v
        for k, v in os.environ.items()
        # nothing of the host's uv, venv, make or Python setup leaks into the "new machine"
        if not k.startswith(("UV_", "MAKE", "PYTHON", "CORISYNC_", "DAGSTER_"))
        and k not in {"VIRTUAL_ENV", "MFLAGS", "PIP_USER", "PIP_TARGET", "PIP_PREFIX"}
    }
    env.update(PATH=_path_without_uv(), HOME=str(home), **_host_caches())
    assert shutil.which("uv", path=env["PATH"]) is None
    assert not (machine / "bin" / "uv").exists()
    assert subprocess.run([python, "-m", "uv", "--version"], env=env, capture_output=True).returncode != 0

    # bytecode compilation (~25 s of 12k files here) is not what this test is about: off
    make_install = ["make", "install", f"PYTHON={python}", "UV_COMPILE_BYTECODE=0"]
    proc = subprocess.run(make_install, cwd=clone, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, f"make install failed the first time:\n{proc.stdout}\n{proc.stderr}"

    # uv was installed for the machine's Python, and linked where every recipe finds it
    installed = subprocess.run([python, "-m", "uv", "--version"], env=env, capture_output=True, text=True)
    assert installed.returncode == 0 and installed.stdout.startswith("uv "), installed.stderr
    link = clone / ".corisync" / "bin" / "uv"
    assert link.is_symlink() and os.access(link, os.X_OK)
    # the project venv imports the clone's package (not this work tree's)
    check = subprocess.run(
        [clone / ".venv" / "bin" / "python", "-c", "import corisync_assets; print(corisync_assets.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert check.returncode == 0, check.stderr
    assert Path(check.stdout.strip()).resolve().is_relative_to(clone.resolve())

    # the dbt manifest was parsed at install, from the clone's models, so the code location's first load does not
    # parse (the manifest file is not rewritten by it)
    manifest = clone / "dbt_project" / "target" / "local" / "manifest.json"
    assert manifest.exists(), "make install left no dbt manifest"
    models = {n["name"] for n in json.loads(manifest.read_text())["nodes"].values() if n["resource_type"] == "model"}
    assert models == {p.stem for p in (clone / "dbt_project" / "models").rglob("*.sql")}
    parsed = manifest.stat().st_mtime_ns
    load = subprocess.run(
        [clone / ".venv" / "bin" / "python", "-c", "import corisync_assets.definitions as d; "
         "print(len(list(d.defs.resolve_all_asset_keys())))"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=300,
    )
    assert load.returncode == 0 and int(load.stdout.split()[-1]) > 0, load.stdout + load.stderr
    assert manifest.stat().st_mtime_ns == parsed, "the first definitions load after make install parsed dbt"

    # and a second run is a no-op that still works
    again = subprocess.run(make_install, cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, f"make install failed the second time:\n{again.stdout}\n{again.stderr}"
    assert "installing uv" not in again.stdout
    assert manifest.stat().st_mtime_ns == parsed, "a second make install parsed dbt again"
