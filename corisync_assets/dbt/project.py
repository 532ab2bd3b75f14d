"""The dbt project as Dagster sees it, and its manifest.

Manifest per target in ``dbt_project/target/<target>/manifest.json`` (a manifest is target-specific:
relation names, the adapter type used for column lineage, source datasets).

* Any load from the source tree (``dagster dev``, tests, ``dagster definitions validate``, a clean checkout):
  parsed at load time if the manifest is missing, was parsed from other dbt sources (a model, macro, test or
  snapshot edited, added or removed since) or with other settings; otherwise used as is. So ``dagster dev``
  picks up every dbt edit at the next load, without paying a parse in every load (each run worker is one).
  ``dbt parse`` needs no database connection on any target. The code location starts a needed parse first
  thing, in its own process, so that it overlaps the code location's imports (``corisync_assets.dbt_manifest``).
* Production image: ``python -m corisync_assets.dbt package`` (or
  ``dagster-dbt project prepare-and-package --file corisync_assets/dbt/project.py`` with the prod
  environment set) copies the project with its parsed manifest to corisync_assets/dbt/dbt-project/,
  which ships inside the package and is used as is, never re-parsed (``dagster dev`` uses the source tree).
"""

from __future__ import annotations

from pathlib import Path

from dagster_dbt import DbtProject

from corisync_assets.dbt_manifest import (
    DBT_PROJECT_DIR,
    PACKAGED_PROJECT_DIR,
    ensure_current,
    is_current,
    packaged_manifest,
    parse_now,
    target_path,
    uses_packaged_project,
)
from corisync_assets.environment import Settings, settings


def _is_current(project: DbtProject, s: Settings) -> bool:
    return is_current(Path(project.project_dir), project.target_path, s)


def prepare(project: DbtProject, s: Settings) -> Path:
    """Run ``dbt parse`` for ``project`` now (guarded against concurrent loads); return the manifest."""
    return parse_now(Path(project.project_dir), project.target_path, s)


_projects: dict[str, DbtProject] = {}


def dbt_project_for(s: Settings) -> DbtProject:
    """The DbtProject for these settings' dbt target, its manifest current (see module docstring)."""
    key = s.model_dump_json()
    if key in _projects:
        return _projects[key]
    target = s.effective_dbt_target
    project = DbtProject(
        project_dir=DBT_PROJECT_DIR,
        target_path=target_path(s),
        target=target,
        # a package made for another target is ignored (and dagster dev always uses the source tree)
        packaged_project_dir=PACKAGED_PROJECT_DIR if packaged_manifest(s).exists() else None,
    )
    if not uses_packaged_project(s):
        ensure_current(Path(project.project_dir), project.target_path, s)
    _projects[key] = project
    return project


#: The project for the process settings (prepared at import); also the ``--file`` target of
#: ``dagster-dbt project prepare-and-package``.
corisync_dbt_project: DbtProject = dbt_project_for(settings())

__all__ = ["DBT_PROJECT_DIR", "PACKAGED_PROJECT_DIR", "corisync_dbt_project", "dbt_project_for", "prepare"]
