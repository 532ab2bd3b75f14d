"""The compose postgres service's first start, replayed on a real PostgreSQL server of this machine:
the same postgresql.conf and pg_hba.conf, the initdb scripts in the entrypoint's order, then logins as
the compose services do (scram over TCP) and Dagster's instance (docker/dagster/dagster.yaml) on it."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from .conftest import DOCKER

PG_DIR = DOCKER / "postgres"
INITDB_DIR = PG_DIR / "initdb"
SECRETS = {
    "CORISYNC_PG_PASSWORD": "app-pw-'quote\"",
    "CORISYNC_PG_CDC_PASSWORD": "cdc-pw-$HOME;--",
    "DAGSTER_PG_PASSWORD": "dagster-pw",
    "MB_DB_PASS": "metabase-pw",
}
ENV = {
    "POSTGRES_USER": "postgres",
    "POSTGRES_DB": "tc4a",
    "CORISYNC_PG_USER": "tc4a_app",
    "CORISYNC_PG_CDC_USER": "corisync_cdc",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USER": "dagster",
    "MB_DB_DBNAME": "metabase",
    "MB_DB_USER": "metabase",
    **SECRETS,
}


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, bin_dir: Path, root: Path, port: int) -> None:
        self.bin, self.root, self.port = bin_dir, root, port
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.env = {**os.environ, **ENV, "PGHOST": str(root), "PGPORT": str(port)}
        self.env.pop("PGPASSWORD", None)

    def run(self, *cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.as_postgres, *cmd], capture_output=True, text=True, timeout=120,
                              env=self.env, input=stdin, cwd=self.root)

    def psql(self, db: str, sql_file: Path) -> None:
        proc = self.run(str(self.bin / "psql"), "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "--username",
                        "postgres", "--dbname", db, "-f", str(sql_file))
        assert proc.returncode == 0, proc.stderr

    def dsn(self, user: str, password: str, db: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={user} password={password} dbname={db} sslmode=disable"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries on this machine (initdb): apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="corisync-pg-"))
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    srv = Server(bin_dir, root, _free_port())
    proc = srv.run(str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "postgres",
                   "--auth-local=peer", "--auth-host=scram-sha-256")
    assert proc.returncode == 0, proc.stderr
    # As the compose service starts it: the shared config files, listening on the network.
    pg = subprocess.Popen(
        [*srv.as_postgres, str(bin_dir / "postgres"), "-D", str(root / "data"),
         "-c", f"config_file={PG_DIR / 'postgresql.conf'}", "-c", f"hba_file={PG_DIR / 'pg_hba.conf'}",
         "-c", "listen_addresses=127.0.0.1", "-c", f"port={srv.port}", "-c", f"unix_socket_directories={root}"],
        stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"), env=srv.env,  # noqa: SIM115
    )
    try:
        for _ in range(100):
            if srv.run(str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(srv.port)).returncode == 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail("postgres did not start: " + (root / "server.log").read_text())
        # docker-entrypoint: create POSTGRES_DB, then run initdb.d in name order against it.
        proc = srv.run(str(bin_dir / "createdb"), "-U", "postgres", "tc4a")
        assert proc.returncode == 0, proc.stderr
        for script in sorted(INITDB_DIR.iterdir()):
            if script.suffix == ".sql":
                srv.psql("tc4a", script)
            elif script.suffix == ".sh":
                assert os.access(script, os.X_OK), f"{script.name} must be executable (the entrypoint runs it)"
                proc = srv.run("bash", str(script))
                assert proc.returncode == 0, proc.stderr
        yield srv
    finally:
        pg.terminate()
        pg.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def test_replication_settings_come_from_the_shared_config(server: Server) -> None:
    with psycopg.connect(server.dsn("tc4a_app", SECRETS["CORISYNC_PG_PASSWORD"], "tc4a")) as conn:
        assert conn.execute("SHOW wal_level").fetchone()[0] == "logical"


def test_app_role_owns_the_operational_tables(server: Server) -> None:
    with psycopg.connect(server.dsn("tc4a_app", SECRETS["CORISYNC_PG_PASSWORD"], "tc4a")) as conn:
        owners = dict(conn.execute("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'"))
        assert set(owners) >= {"users", "courses", "enrollments", "trainings", "training_attendance"}
        assert set(owners.values()) == {"tc4a_app"}
        conn.execute("INSERT INTO users (email, full_name) VALUES ('a@example.org', 'A')")
        # a table the application adds later is readable by the CDC role too
        conn.execute("CREATE TABLE public.later (id int PRIMARY KEY)")
        conn.commit()
    with psycopg.connect(server.dsn("corisync_cdc", SECRETS["CORISYNC_PG_CDC_PASSWORD"], "tc4a")) as conn:
        assert conn.execute("SELECT count(*) FROM public.later").fetchone()[0] == 0


def test_cdc_role_can_replicate_with_its_password(server: Server) -> None:
    dsn = server.dsn("corisync_cdc", SECRETS["CORISYNC_PG_CDC_PASSWORD"], "tc4a")
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT rolreplication FROM pg_roles WHERE rolname = current_user").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM public.users").fetchone()[0] >= 0
        assert conn.execute("SELECT puballtables FROM pg_publication WHERE pubname = 'corisync_pub'").fetchone()[0]
        conn.execute("SELECT pg_create_logical_replication_slot('corisync_test', 'pgoutput')")
        conn.execute("SELECT pg_drop_replication_slot('corisync_test')")
    # a replication connection, as Debezium opens one
    with psycopg.connect(dsn + " replication=database", autocommit=True) as conn:
        assert conn.execute("IDENTIFY_SYSTEM").fetchone()


def test_wrong_password_is_refused(server: Server) -> None:
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.dsn("corisync_cdc", "not-the-password", "tc4a")).close()


def test_dagster_and_metabase_get_their_own_databases(server: Server) -> None:
    for user, password, db in (("dagster", SECRETS["DAGSTER_PG_PASSWORD"], "dagster"),
                               ("metabase", SECRETS["MB_DB_PASS"], "metabase")):
        with psycopg.connect(server.dsn(user, password, db)) as conn:
            conn.execute("CREATE TABLE probe (id int)")
            conn.rollback()
    with pytest.raises(psycopg.OperationalError):  # no access to each other's database
        psycopg.connect(server.dsn("metabase", SECRETS["MB_DB_PASS"], "dagster")).close()


def test_init_script_is_idempotent(server: Server) -> None:
    proc = server.run("bash", str(INITDB_DIR / "03_cdc_role_password.sh"))
    assert proc.returncode == 0, proc.stderr


def test_dagster_instance_runs_on_this_postgres(server: Server, monkeypatch) -> None:
    from dagster import DagsterInstance
    from dagster_docker import DockerRunLauncher

    for name, value in {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(server.port),
                        "DAGSTER_PG_DB": "dagster", "DAGSTER_PG_USER": "dagster",
                        "DAGSTER_PG_PASSWORD": SECRETS["DAGSTER_PG_PASSWORD"],
                        "DAGSTER_CURRENT_IMAGE": "corisync-dagster:latest"}.items():
        monkeypatch.setenv(name, value)
    home = server.root / "dagster_home"
    home.mkdir()
    shutil.copy(DOCKER / "dagster" / "dagster.yaml", home / "dagster.yaml")
    instance = DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.run_launcher, DockerRunLauncher)
        assert instance.get_runs_count() == 0
    finally:
        instance.dispose()
