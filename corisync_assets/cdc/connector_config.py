"""The Debezium connector config file, read once for every consumer of it.

One file (Kafka Connect JSON, ``{"name": ..., "config": {...}}``) drives both the local embedded Debezium
runner and the production Debezium Connect deployment, and the Dagster code derives one asset per captured
table from it. This module only reads and validates (no local-stack imports), so asset definitions can use
it. ``${env:VAR}`` placeholders are resolved lazily per value: listing the tables never needs a password.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from corisync_assets.environment import _FIELDS, ConfigError, Settings

_PLACEHOLDER = re.compile(r"\$\{env:([^}]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def substitute(value: str, environ: Mapping[str, str], *, key: str = "?") -> str:
    """Replace every ``${env:VAR}`` in ``value``; ConfigError naming VAR (and the key) if it is unset."""

    def repl(match: re.Match[str]) -> str:
        var = match.group(1)
        if not var or environ.get(var) is None:
            raise ConfigError(f"connector config key {key!r} needs environment variable {var or '<empty>'} "
                              "which is not set")
        return environ[var]

    return _PLACEHOLDER.sub(repl, value)


def parse_table_list(value: str) -> tuple[tuple[str, str], ...]:
    """``"public.users, public.courses"`` -> ``(("public", "users"), ...)``; only plain identifiers."""
    tables: list[tuple[str, str]] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        parts = entry.split(".")
        if len(parts) != 2:
            raise ConfigError(f"table.include.list entry {entry!r} is not of the form <schema>.<table>")
        schema, table = parts
        for kind, name in (("schema", schema), ("table", table)):
            if not _IDENTIFIER.match(name):
                raise ConfigError(
                    f"table.include.list entry {entry!r}: {kind} name {name!r} is not a valid SQL identifier "
                    "(letters, digits, underscore; not starting with a digit)"
                )
        if (schema, table) in tables:
            raise ConfigError(f"table.include.list lists {entry!r} twice")
        tables.append((schema, table))
    if not tables:
        raise ConfigError("table.include.list is empty")
    return tuple(tables)


def settings_environ(s: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default os.environ) plus every CORISYNC_* variable the settings resolved, defaults included.

    The connector config names variables such as ``${env:CORISYNC_PG_PORT}``; a value left at its default in
    ``Settings`` must still resolve, and an explicitly set variable wins.
    """
    out = {var: str(getattr(s, field)) for field, var in _FIELDS.items() if getattr(s, field) is not None}
    out.update(os.environ if environ is None else environ)
    return out


@dataclass(frozen=True)
class ConnectorConfig:
    """A validated connector config; ``raw`` keeps the placeholders, ``resolved()`` substitutes them."""

    path: Path
    name: str
    raw: dict[str, str]
    environ: Mapping[str, str] = field(repr=False)
    topic_prefix: str
    tables: tuple[tuple[str, str], ...]

    def get(self, key: str, default: str | None = None) -> str | None:
        """One config value with its placeholders resolved."""
        if key not in self.raw:
            return default
        return substitute(self.raw[key], self.environ, key=key)

    def resolved(self) -> dict[str, str]:
        """The whole config with every placeholder resolved (ConfigError names the first unset variable)."""
        return {key: substitute(value, self.environ, key=key) for key, value in self.raw.items()}

    def topic_for(self, schema: str, table: str) -> str:
        return f"{self.topic_prefix}.{schema}.{table}"

    @property
    def topics(self) -> list[str]:
        return [self.topic_for(schema, table) for schema, table in self.tables]

    @property
    def transaction_topic(self) -> str | None:
        """Debezium's transaction metadata topic (BEGIN/END per source transaction), if enabled."""
        if (self.get("provide.transaction.metadata") or "false").lower() != "true":
            return None
        return f"{self.topic_prefix}.{self.get('topic.transaction', 'transaction')}"

    @property
    def signal_table(self) -> tuple[str, str] | None:
        """Debezium's signalling table (``schema``, ``table``) when the source signal channel is on."""
        collection = self.get("signal.data.collection")
        channels = {c.strip() for c in (self.get("signal.enabled.channels") or "source").split(",")}
        if not collection or "source" not in channels:
            return None
        schema, _, table = collection.rpartition(".")
        return schema, table

    @property
    def notification_topic(self) -> str | None:
        """Topic of Debezium's notifications (the ``sink`` channel), which carry snapshot progress."""
        channels = {c.strip() for c in (self.get("notification.enabled.channels") or "").split(",")}
        return self.get("notification.sink.topic.name") if "sink" in channels else None

    @property
    def collections(self) -> dict[str, str]:
        """Data topic -> Debezium data collection (``schema.table``, as transaction END events name it)."""
        return {self.topic_for(schema, table): f"{schema}.{table}" for schema, table in self.tables}


def load_connector_config(
    path: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> ConnectorConfig:
    """Read and validate the connector config.

    Defaults: path ``settings().connector_config``; placeholders resolved from ``settings_environ(settings())``.
    """
    if path is None or environ is None:
        from corisync_assets.environment import settings

        path = settings().connector_config if path is None else path
        env: Mapping[str, str] = settings_environ(settings()) if environ is None else environ
    else:
        env = environ
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"connector config {path} does not exist (CORISYNC_CONNECTOR_CONFIG)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"connector config {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict) or not doc.get("name"):
        raise ConfigError(f"connector config {path} must be an object with 'name' and 'config' keys")
    raw: dict[str, str] = {}
    for key, value in doc["config"].items():
        if not isinstance(value, str | int | float | bool):
            raise ConfigError(f"connector config key {key!r} must be a string, not {type(value).__name__}")
        raw[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
    name = substitute(str(doc["name"]), env, key="name")
    for required in ("topic.prefix", "table.include.list"):
        if not raw.get(required):
            raise ConfigError(f"connector config {path} has no {required!r}")
    prefix = substitute(raw["topic.prefix"], env, key="topic.prefix")
    tables = parse_table_list(substitute(raw["table.include.list"], env, key="table.include.list"))
    return ConnectorConfig(path=path, name=name, raw=raw, environ=env, topic_prefix=prefix, tables=tables)
