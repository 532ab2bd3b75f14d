"""The project's own Postgres cluster (tc4a operational DB + Dagster instance storage), never the system one.

Data lives in ``<home>/pg``; the cluster listens on ``settings().pg_port`` and a private unix socket, runs
with ``wal_level=logical`` plus docker/postgres/postgresql.conf, and uses docker/postgres/pg_hba.conf, so
local behaves like the compose service. First start creates the roles and databases, runs
docker/postgres/initdb/*.sql and writes generated passwords to ``<home>/secrets.env`` (mode 600) and a
``dagster.yaml`` using Postgres storage. As root, initdb/pg_ctl/psql run as the ``postgres`` OS user.
The same file holds the web collector's local write key (``CORISYNC_COLLECTOR_WRITE_KEYS``, one source
``tc4a-web``), generated on the first ``stack up``; unlike the passwords, an environment value wins over it.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from corisync_assets.environment import PROJECT_ROOT, Settings, exported, local_secrets_file
from corisync_assets.local.procs import StackError, port_bindable, port_open, tail

DOCKER_PG = PROJECT_ROOT / "docker" / "postgres"
DAGSTER_DB = "dagster"
DAGSTER_USER = "dagster"
SECRET_VARS = ("CORISYNC_PG_PASSWORD", "CORISYNC_PG_CDC_PASSWORD", "DAGSTER_PG_PASSWORD",
               "CORISYNC_COLLECTOR_WRITE_KEYS")
WRITE_KEYS_VAR = "CORISYNC_COLLECTOR_WRITE_KEYS"
#: the local Airbyte stand-in's application credentials (generated on its first start)
AIRBYTE_CLIENT_VARS = ("CORISYNC_AIRBYTE_CLIENT_ID", "CORISYNC_AIRBYTE_CLIENT_SECRET")
#: generated into the file, but a value already in the environment wins (unlike the role passwords)
ENV_WINS_VARS = (WRITE_KEYS_VAR, *AIRBYTE_CLIENT_VARS)
#: the local collector's one source
WEB_SOURCE = "tc4a-web"


def _as_root() -> bool:
    return os.geteuid() == 0


def superuser() -> str:
    """Role initdb creates; peer auth on the socket maps the OS user running the server to it."""
    return "postgres" if _as_root() else getpass.getuser()


def bin_dir() -> Path:
    """Directory of initdb/pg_ctl/psql: $CORISYNC_PG_BIN, the newest /usr/lib/postgresql/*/bin, or PATH."""
    override = os.environ.get("CORISYNC_PG_BIN")
    candidates = [Path(override)] if override else []
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _version_key(p.parent.name))
    candidates += list(reversed(versions))
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)
    for cand in candidates:
        if (cand / "initdb").exists() and (cand / "pg_ctl").exists():
            return cand
    raise StackError("postgres: binaries missing (no initdb/pg_ctl under /usr/lib/postgresql/*/bin or on PATH)")


def _version_key(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in name.split("."))
    except ValueError:
        return (0,)


@dataclass(frozen=True)
class PgPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "log" / "postgres.log"

    @property
    def bootstrapped(self) -> Path:
        """Written after roles, databases and schema exist: a half-initialised cluster is redone."""
        return self.root / "bootstrapped"


def paths(s: Settings) -> PgPaths:
    return PgPaths(s.home / "pg")


def _run(argv: list[str], *, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    tool = Path(argv[0]).name
    if _as_root():
        argv = ["runuser", "-u", "postgres", "--", *argv]
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, cwd="/")
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise StackError(f"postgres: {tool} failed: {msg[-1] if msg else proc.returncode}")
    return proc


def _chown(path: Path) -> None:
    if _as_root():
        shutil.chown(path, "postgres", "postgres")


def _make_traversable(home: Path) -> None:
    """The postgres OS user must reach <home>/pg: home gets o+rx, every parent must already have o+x."""
    home.mkdir(parents=True, exist_ok=True)
    if not _as_root():
        return
    home.chmod(home.stat().st_mode | 0o055)
    for parent in home.parents:
        if not parent.stat().st_mode & 0o001:
            raise StackError(f"postgres: the postgres OS user cannot traverse {parent} (needs o+x)")


def is_running(s: Settings) -> bool:
    p = paths(s)
    if not (p.data / "PG_VERSION").exists():
        return False
    return _run([str(bin_dir() / "pg_ctl"), "status", "-D", str(p.data)], check=False).returncode == 0


def psql(s: Settings, sql: str, *, db: str = "postgres") -> str:
    """Run SQL (from stdin, so secrets never reach argv) as the superuser over the private socket."""
    p = paths(s)
    proc = _run(
        [str(bin_dir() / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(p.socket_dir),
         "-p", str(s.pg_port), "-U", superuser(), "-d", db, "-f", "-"],
        input=sql,
    )
    return proc.stdout


def _initdb(s: Settings) -> None:
    p = paths(s)
    if p.root.exists():
        shutil.rmtree(p.root)
    for d in (p.root, p.socket_dir, p.log.parent):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700 if d != p.root else 0o755)
        _chown(d)
    _run([str(bin_dir() / "initdb"), "-D", str(p.data), "-U", superuser(), "-E", "UTF8", "--locale=C.UTF-8",
          "--auth-local=peer", "--auth-host=scram-sha-256"])
    with open(p.data / "postgresql.conf", "a") as conf:
        conf.write("\n# corisync: logical replication settings of docker/postgres/postgresql.conf\n"
                   "include 'corisync_replication.conf'\n")


def _sync_config(s: Settings) -> None:
    """Copy the repo's replication settings and pg_hba into the data dir (re-read on every start)."""
    p = paths(s)
    for src, dst in ((DOCKER_PG / "postgresql.conf", p.data / "corisync_replication.conf"),
                     (DOCKER_PG / "pg_hba.conf", p.data / "pg_hba.conf")):
        dst.write_text(src.read_text())
        dst.chmod(0o600)
        _chown(dst)


def start(s: Settings) -> str:
    """Start (and on first run initialise) the cluster; returns 'started' or 'running'."""
    p = paths(s)
    pg_bin = bin_dir()
    _make_traversable(s.home)
    if (p.data / "PG_VERSION").exists() and is_running(s):
        if not _bootstrapped_current(p):
            bootstrap(s)
        return "running"
    if port_open(s.pg_host, s.pg_port) or not port_bindable(s.pg_host, s.pg_port):
        raise StackError(f"postgres: port {s.pg_port} on {s.pg_host} is taken by another process")
    fresh = not p.bootstrapped.exists()
    if fresh:
        _initdb(s)
    _sync_config(s)
    p.socket_dir.mkdir(exist_ok=True)
    _chown(p.socket_dir)
    opts = (f"-c port={s.pg_port} -c listen_addresses={s.pg_host} -c unix_socket_directories={p.socket_dir} "
            f"-c wal_level=logical")
    proc = _run([str(pg_bin / "pg_ctl"), "start", "-D", str(p.data), "-l", str(p.log), "-w", "-t", "60",
                 "-o", opts], check=False)
    if proc.returncode != 0:
        raise StackError(f"postgres: did not start: {tail(p.log, 2) or proc.stderr.strip()}")
    if not _bootstrapped_current(p):  # fresh, or set up by an older version (e.g. without the signal table)
        bootstrap(s)
    return "started"


def stop(s: Settings) -> bool:
    """``pg_ctl stop -m fast`` if our cluster runs; True if it was running."""
    p = paths(s)
    if not (p.data / "PG_VERSION").exists() or not is_running(s):
        return False
    _run([str(bin_dir() / "pg_ctl"), "stop", "-D", str(p.data), "-m", "fast", "-w", "-t", "60"])
    return True


# --- secrets and first-start bootstrap ---------------------------------------------------------------------


def read_secrets(home: Path) -> dict[str, str]:
    path = local_secrets_file(home)
    out: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip():
                out[name.strip()] = value.strip()
    return out


def _generate(var: str) -> str:
    if var == WRITE_KEYS_VAR:
        return f"{WEB_SOURCE}={secrets.token_urlsafe(24)}"
    if var == "CORISYNC_AIRBYTE_CLIENT_ID":  # Airbyte's client ids are UUIDs
        return str(uuid.uuid4())
    return secrets.token_urlsafe(24)


def ensure_secrets(home: Path, names: tuple[str, ...] = SECRET_VARS) -> dict[str, str]:
    """Secrets ``names`` (default all): kept from secrets.env, else made and written there.

    The role passwords are taken from the environment when set there first, else generated, and exported
    into ``os.environ`` so this process (and its children) see the values the cluster uses. The collector's
    write keys and the Airbyte stand-in's client id/secret (``ENV_WINS_VARS``) are always generated into the
    file, and the environment wins: exported only if unset.
    """
    current = read_secrets(home)
    changed = False
    for var in names:
        if not current.get(var):
            current[var] = (None if var in ENV_WINS_VARS else os.environ.get(var)) or _generate(var)
            changed = True
    path = local_secrets_file(home)
    if changed or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(f"{k}={v}\n" for k, v in current.items()))
    path.chmod(0o600)
    for var in names:
        if var in ENV_WINS_VARS:
            if not os.environ.get(var):
                os.environ[var] = current[var]
        else:
            os.environ[var] = current[var]
    return current


def _q(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def bootstrap(s: Settings) -> None:
    """Roles, databases, tc4a schema and replication setup (idempotent), then the Dagster instance config."""
    secrets_ = ensure_secrets(s.home)
    app, cdc = s.pg_user, s.pg_cdc_user
    psql(s, f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {_lit(app)}) THEN CREATE ROLE {_q(app)} LOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {_lit(DAGSTER_USER)}) THEN
    CREATE ROLE {_q(DAGSTER_USER)} LOGIN;
  END IF;
END $$;
ALTER ROLE {_q(app)} PASSWORD {_lit(secrets_["CORISYNC_PG_PASSWORD"])};
ALTER ROLE {_q(DAGSTER_USER)} PASSWORD {_lit(secrets_["DAGSTER_PG_PASSWORD"])};
""")
    existing = set(psql(s, "SELECT datname FROM pg_database;").split())
    if s.pg_database not in existing:
        psql(s, f"CREATE DATABASE {_q(s.pg_database)} OWNER {_q(app)};")
    if DAGSTER_DB not in existing:
        psql(s, f"CREATE DATABASE {_q(DAGSTER_DB)} OWNER {_q(DAGSTER_USER)};")
    for sql_file in sorted((DOCKER_PG / "initdb").glob("*.sql")):
        psql(s, sql_file.read_text(), db=s.pg_database)
    # The schema files ran as superuser: hand the tables to the application owner, and make sure tables the
    # owner creates later stay readable by the CDC role.
    psql(s, f"""
DO $$ DECLARE t record; BEGIN
  FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tableowner <> {_lit(app)} LOOP
    EXECUTE format('ALTER TABLE public.%I OWNER TO %I', t.tablename, {_lit(app)});
  END LOOP;
END $$;
ALTER DEFAULT PRIVILEGES FOR ROLE {_q(app)} IN SCHEMA public GRANT SELECT ON TABLES TO {_q(cdc)};
GRANT SELECT ON ALL TABLES IN SCHEMA public TO {_q(cdc)};
ALTER ROLE {_q(cdc)} PASSWORD {_lit(secrets_["CORISYNC_PG_CDC_PASSWORD"])};
GRANT USAGE ON SCHEMA corisync TO {_q(cdc)};
GRANT SELECT, INSERT ON corisync.debezium_signal TO {_q(cdc)};
""", db=s.pg_database)
    write_dagster_yaml(s)
    paths(s).bootstrapped.write_text(BOOTSTRAP_VERSION)


#: what ``bootstrapped`` holds once :func:`bootstrap` ran; a new value re-runs it (idempotent) on older clusters
BOOTSTRAP_VERSION = "ok 2 (signal table)\n"


def _bootstrapped_current(p: PgPaths) -> bool:
    return p.bootstrapped.exists() and p.bootstrapped.read_text() == BOOTSTRAP_VERSION


# --- Dagster instance ---------------------------------------------------------------------------------------

DAGSTER_YAML = """\
# Written by `corisync stack up`: Dagster instance storage in the local stack's Postgres.
storage:
  postgres:
    postgres_db:
      # psycopg2: SQLAlchemy 2.1 defaults postgresql:// to psycopg 3, whose server-side binding
      # breaks dagster-postgres' NOTIFY statements
      scheme: postgresql+psycopg2
      hostname: {env: DAGSTER_PG_HOST}
      username: {env: DAGSTER_PG_USER}
      password: {env: DAGSTER_PG_PASSWORD}
      db_name: {env: DAGSTER_PG_DB}
      port: {env: DAGSTER_PG_PORT}
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
concurrency:
  runs:
    # dbt builds, freshness-check runs and the odd raw catch-up run side by side (the lander lands outside
    # runs; DuckDB writers queue on the warehouse's writer slot, not here)
    max_concurrent_runs: 3
  pools:
    # one run at a time per pool (the web Spark assets' `web_spark`): a second request waits in the queue,
    # then finds nothing left to read, instead of racing the first over the same offsets and lake days
    granularity: run
    default_limit: 1
telemetry:
  enabled: false
"""


def dagster_home(s: Settings) -> Path:
    return s.home / "dagster_home"


def write_dagster_yaml(s: Settings) -> Path:
    home = dagster_home(s)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    path.write_text(DAGSTER_YAML)
    return path


def ensure_pool_limits(s: Settings) -> list[str]:
    """The platform's Dagster pools configured in the dev instance before Dagster starts
    (``web.assets.ensure_pool_limits`` says why); returns the pools it configured."""
    from dagster import DagsterInstance

    from corisync_assets.web.assets import ensure_pool_limits as configure

    with exported(dagster_env(s)), DagsterInstance.from_config(str(dagster_home(s))) as instance:
        return configure(instance)  # dagster.yaml reads the storage's settings from the environment


def dagster_env(s: Settings) -> dict[str, str]:
    """Variables to export for ``dagster dev`` / tests: DAGSTER_HOME and DAGSTER_PG_* (incl. the password)."""
    password = read_secrets(s.home).get("DAGSTER_PG_PASSWORD") or os.environ.get("DAGSTER_PG_PASSWORD", "")
    return {
        "DAGSTER_HOME": str(dagster_home(s)),
        "DAGSTER_PG_HOST": s.pg_host,
        "DAGSTER_PG_PORT": str(s.pg_port),
        "DAGSTER_PG_DB": DAGSTER_DB,
        "DAGSTER_PG_USER": DAGSTER_USER,
        "DAGSTER_PG_PASSWORD": password,
    }
