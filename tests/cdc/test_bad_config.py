"""Bad configuration fails with one clear message, and nothing already landed changes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from corisync_assets.cdc.connector_config import load_connector_config
from corisync_assets.cdc.landing import land_table
from corisync_assets.environment import PROJECT_ROOT, ConfigError
from corisync_assets.resources.kafka import BrokerUnreachable, KafkaResource
from corisync_assets.resources.warehouse.duckdb import DuckDBWarehouse

CONNECTOR = PROJECT_ROOT / "docker" / "debezium" / "tc4a-postgres.json"


def connector_with_tables(tmp_path, tables: str):
    doc = json.loads(CONNECTOR.read_text())
    doc["config"]["table.include.list"] = tables
    path = tmp_path / "connector.json"
    path.write_text(json.dumps(doc))
    return path


def test_table_name_that_is_not_an_identifier(tmp_path):
    path = connector_with_tables(tmp_path, "public.users,public.users;drop")
    with pytest.raises(ConfigError) as err:
        load_connector_config(path, environ={})
    message = str(err.value)
    assert "'users;drop'" in message and "not a valid SQL identifier" in message
    assert "\n" not in message


def test_definitions_refuse_a_bad_table_name(tmp_path):
    """Loading the code location with the bad config fails with the same one-line message."""
    path = connector_with_tables(tmp_path, "public.1users")
    env = {**os.environ, "CORISYNC_CONNECTOR_CONFIG": str(path), "CORISYNC_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", "import corisync_assets.definitions"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert proc.returncode != 0
    assert "ConfigError: table.include.list entry 'public.1users'" in proc.stderr


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_broker_unreachable(tmp_path):
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    kafka = KafkaResource(bootstrap_servers=f"127.0.0.1:{closed_port()}", consumer_group="nobody")
    with pytest.raises(BrokerUnreachable) as err:
        land_table(kafka, wh, "users", "tc4a.public.users")
    assert str(err.value).startswith(f"Kafka broker unreachable at {kafka.bootstrap_servers}")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "wh.duckdb").exists()  # failed before touching the warehouse


@pytest.mark.stack
def test_unknown_table_in_connector_config_fails_stack_up(stack, tmp_path):
    path = connector_with_tables(tmp_path, "public.users,public.no_such_table")
    env = {**os.environ, "CORISYNC_CONNECTOR_CONFIG": str(path)}
    proc = subprocess.run([sys.executable, "-m", "corisync_assets.local.cli", "stack", "up"], env=env,
                          capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert errors == [f"corisync: debezium: connector config {path} captures public.no_such_table, which is not "
                      f"a table in database {stack.pg_database}"]
