"""The environment the Metabase provisioning job reads, in one place.

Every name is declared in ``corisync_assets.environment.ENV_VARS``. The content files may reference only
declared variables (``${NAME}``, ``${file:NAME}``); they are resolved from the snapshot taken here.
Tested against an API double (tests/metabase), as Metabase cannot run on the development machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from corisync_assets.environment import ENV_VARS, PROJECT_ROOT

#: The folder of the content files (database.yml, collection.yml, questions/, dashboards/).
CONTENT_DIR = PROJECT_ROOT / "metabase"
DEFAULTS = {"METABASE_URL": "http://localhost:3001", "CORISYNC_BQ_MARTS_DATASET": "corisync_marts"}


class ConfigError(ValueError):
    """A setting or a content file is missing or malformed; the message names it (never a secret value)."""


@dataclass(frozen=True)
class MetabaseConfig:
    url: str
    admin_email: str
    admin_password: str = field(repr=False)
    gcp_project: str
    marts_dataset: str
    #: The declared variables as they were at load time (for ${...} references in content files).
    environ: Mapping[str, str] = field(repr=False, default_factory=dict)

    @property
    def marts(self) -> str:
        """The marts dataset as BigQuery names it: ``project.dataset``."""
        return f"{self.gcp_project}.{self.marts_dataset}"


def load_config(environ: Mapping[str, str] | None = None) -> MetabaseConfig:
    """Read the job's settings; raise ConfigError naming every missing variable."""
    env = os.environ if environ is None else environ
    declared = {name: env[name] for name in ENV_VARS if env.get(name, "") != ""}
    for name, default in DEFAULTS.items():  # the content files see the same defaults as the job
        declared.setdefault(name, default)
    missing = [name for name in ("METABASE_ADMIN_EMAIL", "METABASE_ADMIN_PASSWORD", "CORISYNC_GCP_PROJECT")
               if name not in declared]
    if missing:
        raise ConfigError(f"set {', '.join(missing)} (see docker/.env.example)")
    return MetabaseConfig(
        url=declared["METABASE_URL"].rstrip("/"),
        admin_email=declared["METABASE_ADMIN_EMAIL"],
        admin_password=declared["METABASE_ADMIN_PASSWORD"],
        gcp_project=declared["CORISYNC_GCP_PROJECT"],
        marts_dataset=declared["CORISYNC_BQ_MARTS_DATASET"],
        environ=declared,
    )


def content_dir(path: str | Path | None = None) -> Path:
    return Path(path) if path else CONTENT_DIR
