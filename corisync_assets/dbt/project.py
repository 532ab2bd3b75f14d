"""The dbt project as Dagster sees it, and its manifest.

Manifest per target in ``dbt_project/target/<target>/manifest.json`` (a manifest is target-specific:
relation names, the adapter type used for column lineage, source datasets).

* ``dagster dev``: re-parsed on every load (``DbtProject.prepare_if_dev``).
* Any other load from the source tree (tests, ``dagster definitions validate``, a clean checkout): parsed
  at import time if the manifest is missing or older than the dbt sources, or was parsed with other
  settings. ``dbt parse`` needs no database connection on any target.
* Production image: ``python -m corisync_assets.dbt package`` (or
  ``dagster-dbt project prepare-and-package --file corisync_assets/dbt/project.py`` with the prod
  environment set) copies the project with its parsed manifest to corisync_assets/dbt/dbt-project/,
  which ships inside the package and is used as is, never re-parsed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

from dagster._utils import run_with_concurrent_update_guard
from dagster_dbt import DbtProject
from dagster_dbt.dbt_project import using_dagster_dev

from corisync_assets.dbt.resource import DBT_PROJECT_DIR, dbt_env, dbt_executable
from corisync_assets.environment import Settings, settings

log = logging.getLogger(__name__)

#: Where the packaged (prod) copy of the dbt project lives inside the Python package (git-ignored).
PACKAGED_PROJECT_DIR = Path(__file__).resolve().parent / "dbt-project"
_STAMP = "corisync_parse_inputs.json"
_SOURCE_GLOBS = (
    "dbt_project.yml",
    "profiles.yml",
    "models/**/*",
    "macros/**/*",
    "snapshots/**/*",
    "tests/**/*",
    "seeds/**/*",
    "analyses/**/*",
)


def _parse_inputs(s: Settings) -> dict[str, str]:
    env = dbt_env(s)
    env.pop("CORISYNC_DUCKDB_PATH")  # not part of the manifest (DuckDB relation names use the file stem)
    env["duckdb_catalog"] = s.warehouse_path.stem
    return env


def _newest_source_mtime(project_dir: Path) -> float:
    return max(
        (p.stat().st_mtime for g in _SOURCE_GLOBS for p in project_dir.glob(g) if p.is_file()),
        default=0.0,
    )


def _is_current(project: DbtProject, s: Settings) -> bool:
    manifest, stamp = project.manifest_path, project.manifest_path.parent / _STAMP
    if not (manifest.exists() and stamp.exists()):
        return False
    try:
        if json.loads(stamp.read_text()) != _parse_inputs(s):
            return False
    except ValueError:
        return False
    return manifest.stat().st_mtime >= _newest_source_mtime(Path(project.project_dir))


def _parse(project: DbtProject, s: Settings) -> None:
    # dbt itself rather than DbtCliResource.cli: that also runs `dbt --version` and builds an in-process
    # adapter, doubling the time of a parse.
    args = [
        dbt_executable(),
        "parse",
        "--quiet",
        "--target",
        s.effective_dbt_target,
        "--target-path",
        os.fspath(project.target_path),
        "--profiles-dir",
        os.fspath(project.profiles_dir),
    ]
    env = {**os.environ, **dbt_env(s), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    proc = subprocess.run(args, cwd=project.project_dir, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dbt parse failed ({' '.join(args)}):\n{proc.stdout}{proc.stderr}")
    (project.manifest_path.parent / _STAMP).write_text(json.dumps(_parse_inputs(s), sort_keys=True))


def prepare(project: DbtProject, s: Settings) -> Path:
    """Run ``dbt parse`` for ``project`` now (guarded against concurrent loads); return the manifest."""
    project.manifest_path.parent.mkdir(parents=True, exist_ok=True)
    run_with_concurrent_update_guard(project.manifest_path, _parse, project=project, s=s)
    if not _is_current(project, s):  # another process held the lock and parsed something else
        _parse(project, s)
    return project.manifest_path


def _is_packaged(project: DbtProject) -> bool:
    return Path(project.project_dir).resolve() == PACKAGED_PROJECT_DIR.resolve()


_projects: dict[str, DbtProject] = {}


def dbt_project_for(s: Settings) -> DbtProject:
    """The DbtProject for these settings' dbt target, its manifest prepared (see module docstring)."""
    key = s.model_dump_json()
    if key in _projects:
        return _projects[key]
    target = s.effective_dbt_target
    target_path = Path("target") / target
    packaged = PACKAGED_PROJECT_DIR / target_path / "manifest.json"
    project = DbtProject(
        project_dir=DBT_PROJECT_DIR,
        target_path=target_path,
        target=target,
        # a package made for another target is ignored (and dagster dev always uses the source tree)
        packaged_project_dir=PACKAGED_PROJECT_DIR if packaged.exists() else None,
    )
    if not _is_packaged(project) and (using_dagster_dev() or not _is_current(project, s)):
        prepare(project, s)
    _projects[key] = project
    return project


#: The project for the process settings (prepared at import); also the ``--file`` target of
#: ``dagster-dbt project prepare-and-package``.
corisync_dbt_project: DbtProject = dbt_project_for(settings())
