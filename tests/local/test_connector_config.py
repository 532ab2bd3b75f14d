"""The connector config reader: substitution, validation, topic names (no stack needed)."""

from __future__ import annotations

import json

import pytest

from corisync_assets.cdc.connector_config import load_connector_config, settings_environ
from corisync_assets.environment import PROJECT_ROOT, ConfigError, Settings


def write(tmp_path, config: dict, name: str = "tc4a-postgres"):
    path = tmp_path / "connector.json"
    path.write_text(json.dumps({"name": name, "config": config}))
    return path


BASE = {"connector.class": "io.debezium.connector.postgresql.PostgresConnector", "topic.prefix": "tc4a",
        "table.include.list": "public.users, public.courses", "database.password": "${env:PW}",
        "database.port": "${env:PORT}"}


def test_reads_tables_prefix_and_topics(tmp_path):
    cfg = load_connector_config(write(tmp_path, BASE), {"PW": "s3cret", "PORT": "25432"})
    assert cfg.name == "tc4a-postgres"
    assert cfg.topic_prefix == "tc4a"
    assert cfg.tables == (("public", "users"), ("public", "courses"))
    assert cfg.topic_for("public", "users") == "tc4a.public.users"
    assert cfg.topics == ["tc4a.public.users", "tc4a.public.courses"]


def test_substitutes_env_placeholders(tmp_path):
    cfg = load_connector_config(write(tmp_path, {**BASE, "database.hostname": "db-${env:PORT}.local"}),
                                {"PW": "s3cret", "PORT": "6543"})
    resolved = cfg.resolved()
    assert resolved["database.password"] == "s3cret"
    assert resolved["database.hostname"] == "db-6543.local"
    assert cfg.get("database.port") == "6543"
    assert "${env:PW}" in cfg.raw["database.password"]  # raw keeps the placeholder


def test_missing_variable_names_it(tmp_path):
    cfg = load_connector_config(write(tmp_path, BASE), {"PORT": "1"})  # tables need no secret
    with pytest.raises(ConfigError, match=r"PW") as err:
        cfg.resolved()
    assert "database.password" in str(err.value)


@pytest.mark.parametrize("entry", ["public.users-2", "public.1users", "pub lic.users", "public.us\"ers"])
def test_invalid_identifier_is_rejected(tmp_path, entry):
    with pytest.raises(ConfigError, match="not a valid SQL identifier") as err:
        load_connector_config(write(tmp_path, {**BASE, "table.include.list": f"public.users,{entry}"}), {})
    assert entry in str(err.value)


@pytest.mark.parametrize("entry", ["users", "db.public.users", "public.*", "public."])
def test_unknown_table_format_is_rejected(tmp_path, entry):
    with pytest.raises(ConfigError, match=r"<schema>\.<table>|not a valid SQL identifier"):
        load_connector_config(write(tmp_path, {**BASE, "table.include.list": entry}), {})


def test_missing_file_and_bad_json(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_connector_config(tmp_path / "nope.json", {})
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_connector_config(bad, {})


def test_project_config_resolves_with_settings_defaults():
    s = Settings(pg_cdc_password="x")
    cfg = load_connector_config(PROJECT_ROOT / "docker/debezium/tc4a-postgres.json", settings_environ(s, {}))
    resolved = cfg.resolved()
    assert resolved["database.port"] == str(s.pg_port)
    assert resolved["database.hostname"] == s.pg_host
    assert "tc4a.public.training_attendance" in cfg.topics
