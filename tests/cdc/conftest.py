"""Fixtures of the CDC tests on the real stack."""

from __future__ import annotations

import pytest

from tests.support.pipeline import Pipeline


@pytest.fixture
def pipe(stack, tmp_path):
    """Raw CDC assets into a fresh warehouse file, with their own consumer group, after a baseline run that
    lands whatever the topics hold now (so tests do not depend on each other's order)."""
    p = Pipeline(stack, tmp_path / "warehouse.duckdb")
    p.materialize()
    return p
