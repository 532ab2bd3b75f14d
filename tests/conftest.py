"""Shared fixtures. ``stack``: the local stack (Postgres, broker, Debezium, web collector, Airbyte stand-in) on
test ports in a temp home.

Ports differ from a developer's stack (25432/29092/28080/28001) so both can run side by side; override with
CORISYNC_TEST_PG_PORT / CORISYNC_TEST_KAFKA_PORT / CORISYNC_TEST_COLLECTOR_PORT / CORISYNC_TEST_AIRBYTE_PORT.
The session's environment is pointed at the test stack before anything reads ``settings()``, so every test sees
it through ``corisync_assets.environment.settings()``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corisync_assets.environment import Settings

SECRET_VARS = ("CORISYNC_PG_PASSWORD", "CORISYNC_PG_CDC_PASSWORD", "DAGSTER_PG_PASSWORD",
               "CORISYNC_COLLECTOR_WRITE_KEYS", "CORISYNC_AIRBYTE_CLIENT_ID", "CORISYNC_AIRBYTE_CLIENT_SECRET",
               # not a secret, but a developer's Airbyte must not be what the session's stack talks to
               "CORISYNC_AIRBYTE_URL")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns xdist_group markers into scheduling groups
def pytest_collection_modifyitems(config, items):
    """Tests marked ``pollutes_topics`` run after all others: the session's stack is shared, and a message
    such a test leaves on a CDC topic (a poison message cannot be removed from Kafka) would land in every
    later test that reads the topic from the start, and fail its ``no_dead_letters`` check.

    Under pytest-xdist (``make test`` runs two workers, ``--dist loadgroup``) every test that uses the stack
    (or is marked ``stack``: it starts its own on nearby ports) goes to one worker, in this order, so the
    session starts one stack; any other test goes with its module (module fixtures start once)."""
    items.sort(key=lambda item: item.get_closest_marker("pollutes_topics") is not None)
    for item in items:
        on_stack = "stack" in item.fixturenames or item.get_closest_marker("stack") is not None
        group = "stack" if on_stack else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def stack() -> Iterator[Settings]:
    """Bring the local stack up once per session (temp CORISYNC_HOME); yields the Settings; tears it down."""
    from corisync_assets import environment
    from corisync_assets.local import stack as local_stack

    home = Path(tempfile.mkdtemp(prefix="corisync-test-", dir="/tmp"))
    home.chmod(0o755)  # the postgres OS user must traverse it
    overrides = {
        "CORISYNC_ENV": "local",
        "CORISYNC_HOME": str(home),
        "CORISYNC_PG_HOST": "127.0.0.1",
        "CORISYNC_PG_PORT": os.environ.get("CORISYNC_TEST_PG_PORT", "25433"),
        "CORISYNC_KAFKA_BOOTSTRAP": "127.0.0.1:" + os.environ.get("CORISYNC_TEST_KAFKA_PORT", "29093"),
        "CORISYNC_COLLECTOR_PORT": os.environ.get("CORISYNC_TEST_COLLECTOR_PORT", "28081"),
        "CORISYNC_AIRBYTE_PORT": os.environ.get("CORISYNC_TEST_AIRBYTE_PORT", "28901"),
    }
    # held for the whole session: environment.exported's lock would keep every other thread's overlay out
    # (the dbt resource in a test's thread); a developer's secrets must not leak into the test cluster
    try:
        with environment.overlaid({**overrides, **dict.fromkeys(SECRET_VARS)}):
            environment.settings.cache_clear()
            s = environment.settings()
            try:
                local_stack.up(s, out=lambda _line: None)
                environment.settings.cache_clear()  # now with the generated passwords
                yield environment.settings()
            finally:
                local_stack.down(environment.settings(), out=lambda _line: None)
    finally:
        environment.settings.cache_clear()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory):
    """One full build of the dbt assets through Dagster over a fixture raw CDC warehouse (DuckDB in tmp);
    see tests/support/dbt_build.py."""
    from tests.support.dbt_build import build_dbt

    return build_dbt(tmp_path_factory)
