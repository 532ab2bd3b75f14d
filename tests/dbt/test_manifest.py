"""When the dbt manifest is re-parsed (corisync_assets.dbt_manifest): exactly when its inputs changed, and a parse
started early (as the code location does before its imports) is the one the load waits for."""

from __future__ import annotations

import json
import os
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


def test_a_parse_that_hangs_is_stopped_and_fails_the_load_with_its_lock_released(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dbt that never returns (a stand-in script for the hung parse a worker bug once caused: a real dbt
    cannot be made to hang on purpose) is stopped after the timeout; the error says so, no manifest is stamped
    and the lock is free for the next load."""
    from corisync_assets import dbt_manifest

    pidfile = tmp_path / "hung.pid"
    hung = tmp_path / "hung-dbt"
    hung.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 600\n")
    hung.chmod(0o755)
    monkeypatch.setattr(dbt_manifest, "warm_dbt_executable", lambda: str(hung))
    s = Settings(home=tmp_path)
    target = target_path(s)
    parse = dbt_manifest.start_parse(project, target, s)
    assert parse is not None
    with pytest.raises(RuntimeError, match=r"did not finish within 1s and was stopped"):
        parse.wait(timeout=1)
    assert not parse.running()
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not is_current(project, target, s)
    monkeypatch.undo()
    ensure_current(project, target, s)  # the lock was released: the next load parses at once
    assert is_current(project, target, s)
