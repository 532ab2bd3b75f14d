"""When the dbt manifest is re-parsed (corisync_assets.dbt_manifest): exactly when its inputs changed, and a parse
started early (as the code location does before its imports) is the one the load waits for."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from corisync_assets.dbt_manifest import DBT_PROJECT_DIR, ensure_current, is_current, start_early, target_path
from corisync_assets.environment import Settings

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    return copy


def test_an_early_parse_is_awaited_and_later_loads_do_not_parse(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Settings(home=tmp_path)
    target = target_path(s)
    assert start_early(s, project) is True  # returns at once, dbt parse runs in its own process
    assert not is_current(project, target, s)
    ensure_current(project, target, s)  # waits for that parse, does not start another
    assert is_current(project, target, s)
    manifest = json.loads((project / target / "manifest.json").read_text())
    assert manifest["metadata"]["adapter_type"] == "duckdb"

    def no_parse(*args, **kwargs):
        raise AssertionError(f"parsed a current manifest: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_parse)
    assert start_early(s, project) is False
    ensure_current(project, target, s)


def test_any_source_change_or_other_settings_make_the_manifest_stale(project: Path, tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    target = target_path(s)
    ensure_current(project, target, s)
    assert is_current(project, target, s)

    extra = project / "models" / "marts" / "extra.sql"
    extra.write_text("select 1 as one\n")  # an added model
    assert not is_current(project, target, s)
    extra.unlink()  # back to the parsed sources: current again, nothing to parse
    assert is_current(project, target, s)

    model = project / "models" / "marts" / "dim_users.sql"
    text = model.read_text()
    model.unlink()  # a deleted model leaves no newer file behind, and still makes it stale
    assert not is_current(project, target, s)
    model.write_text(text)  # the same text again, but written now: stale (dbt decides what changed)
    assert not is_current(project, target, s)

    ensure_current(project, target, s)
    assert is_current(project, target, s)
    assert not is_current(project, target, Settings(home=tmp_path, bq_marts_dataset="other"))
