"""dbt chores with the environment's settings (the lead's ``corisync`` CLI can delegate here).

    python -m corisync_assets.dbt prepare        # dbt parse -> dbt_project/target/<target>/manifest.json, if stale
    python -m corisync_assets.dbt package        # prepare + copy the project for the prod image
    python -m corisync_assets.dbt dbt -- build -s marts   # any dbt command, profile env from settings

Prod image: run ``package`` with the prod environment (CORISYNC_ENV=prod or CORISYNC_DBT_TARGET=prod and
a CORISYNC_GCP_PROJECT, dummy is fine: parsing connects to nothing). The copy lands in
corisync_assets/dbt/dbt-project/ and is used as is at run time.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from corisync_assets.environment import exported, settings


def _prepare(force: bool = False) -> Path:
    """The source tree's manifest for the settings' target: parsed when stale (or ``force``), else left as is."""
    from corisync_assets.dbt_manifest import DBT_PROJECT_DIR, ensure_current, parse_now, target_path

    s = settings()
    # (importing corisync_assets.dbt already made the manifest of the process's settings current)
    manifest = (parse_now if force else ensure_current)(DBT_PROJECT_DIR, target_path(s), s)
    print(f"dbt manifest --target {s.effective_dbt_target}: current -> {manifest}")
    return manifest


def _package() -> Path:
    from corisync_assets.dbt.project import DBT_PROJECT_DIR, PACKAGED_PROJECT_DIR

    manifest = _prepare()
    target_dir = manifest.parent.relative_to(DBT_PROJECT_DIR)

    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).resolve().relative_to(DBT_PROJECT_DIR)
        skipped = {n for n in names if n in {"logs", "dbt_packages", ".user.yml"} or n.endswith(("lock", ".log"))}
        if rel == Path("."):
            return skipped
        if rel == Path("target"):  # only the manifest of the packaged target
            return skipped | {n for n in names if n != target_dir.name}
        return skipped

    if PACKAGED_PROJECT_DIR.exists():
        shutil.rmtree(PACKAGED_PROJECT_DIR)
    shutil.copytree(DBT_PROJECT_DIR, PACKAGED_PROJECT_DIR, ignore=ignore)
    print(f"packaged {DBT_PROJECT_DIR} -> {PACKAGED_PROJECT_DIR}")
    return PACKAGED_PROJECT_DIR


def _dbt(args: list[str]) -> int:
    from corisync_assets.dbt.project import DBT_PROJECT_DIR
    from corisync_assets.dbt.resource import dbt_env, dbt_executable

    s = settings()
    with exported(dbt_env(s)):
        return subprocess.call([dbt_executable(), *args, "--profiles-dir", str(DBT_PROJECT_DIR)], cwd=DBT_PROJECT_DIR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corisync_assets.dbt")
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="parse the dbt project when its manifest (for the current target) is "
                                          "missing or stale; `make install` runs it")
    prep.add_argument("--force", action="store_true", help="parse even when the manifest is current")
    sub.add_parser("package", help="prepare, then copy the project for the production image")
    run = sub.add_parser("dbt", help="run a dbt command with the profile environment from settings")
    run.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    if ns.command == "prepare":
        _prepare(ns.force)
        return 0
    if ns.command == "package":
        _package()
        return 0
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    return _dbt(args)


if __name__ == "__main__":
    sys.exit(main())
