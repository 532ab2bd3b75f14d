"""The Dockerfile's build steps that need no Docker engine, replayed on a copy of the build context:
the files the image copies exist and are not ignored, and the dbt packaging step (prod manifest into
corisync_assets/dbt/dbt-project) succeeds with the command and environment the Dockerfile uses."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import DOCKER, REPO

DOCKERFILE = DOCKER / "Dockerfile"


def _tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    return [line for line in out.splitlines() if line]


def _in_context(path: str, rules: list[str]) -> bool:
    """dockerignore semantics, as far as this file uses them: last matching rule wins."""
    keep = True
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.rstrip("/") + "/*") or (
            pattern.endswith("/**") and path.startswith(pattern[:-2])
        ):
            keep = negate
    return keep


def _context_rules() -> list[str]:
    lines = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_copied_sources_are_in_the_build_context() -> None:
    rules = _context_rules()
    files = _tracked_files()
    for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE.read_text(), re.M):
        for src in line.split()[:-1]:
            matches = [f for f in files if f == src or f.startswith(src.rstrip("/") + "/")]
            assert matches, f"COPY {src}: no such file in the repository"
            assert any(_in_context(f, rules) for f in matches), f"COPY {src}: excluded by Dockerfile.dockerignore"
    assert not _in_context(".venv/bin/python", rules)
    assert not _in_context("docker/.env", rules)


def test_dbt_packaging_step_of_the_dockerfile(tmp_path: Path) -> None:
    text = DOCKERFILE.read_text()
    step = re.search(r"(CORISYNC_ENV=prod [^\n]*)\\\n\s*(python -m corisync_assets\.dbt package[^\n]*)", text)
    assert step, "the Dockerfile no longer packages the dbt project"
    assignments = dict(a.split("=", 1) for a in step.group(1).split())
    command = step.group(2).split()
    # the build context, as the image has it (no local manifest, no packaged copy)
    ctx = tmp_path / "ctx"
    for rel in _tracked_files():
        if rel.startswith(("corisync_assets/", "dbt_project/")) or rel in ("pyproject.toml", "uv.lock", "README.md"):
            src = REPO / rel
            if src.is_file():
                (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, ctx / rel)
    shutil.rmtree(ctx / "corisync_assets" / "dbt" / "dbt-project", ignore_errors=True)
    shutil.rmtree(ctx / "dbt_project" / "target", ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORISYNC_", "DAGSTER_"))}
    env.update(assignments)
    env.update({"CORISYNC_GCP_PROJECT": "corisync-build-check", "PYTHONPATH": str(ctx), "HOME": str(tmp_path)})
    for arg in ("CORISYNC_BQ_LOCATION", "CORISYNC_BQ_RAW_DATASET", "CORISYNC_BQ_STAGING_DATASET",
                "CORISYNC_BQ_MARTS_DATASET", "CORISYNC_BQ_AIRBYTE_DATASET"):
        env[arg] = re.search(rf"^ARG {arg}=(\S+)$", text, re.M).group(1)
    bin_dir = Path(sys.executable).parent
    assert "PATH=/opt/corisync/.venv/bin:$PATH" in text  # the image puts the venv first on PATH; so do we
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run([str(bin_dir / command[0]), *command[1:]], cwd=ctx, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = ctx / "corisync_assets" / "dbt" / "dbt-project" / "target" / "prod" / "manifest.json"
    assert manifest.is_file(), "no prod manifest in the packaged dbt project"
    assert "corisync-build-check" in manifest.read_text(), "the manifest does not name the build's GCP project"
