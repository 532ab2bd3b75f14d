"""The Airbyte workspace resource, and what the code location does when Airbyte cannot be reached.

The same ``AirbyteWorkspace`` of dagster-airbyte serves both modes: a real Airbyte in prod, the local stack's
stand-in (``corisync_assets/local/airbyte``) locally. Its address and workspace come from the settings, the
client id and secret only as ``EnvVar`` (resolved at run time, never shown in the UI).

Definitions load fetches the workspace (connections, streams, destination). When that fails, the code location
still loads: from the last workspace data fetched on this machine (``<home>/airbyte/workspace-<id>.json``), else
from the snapshot checked into the repo (``workspace_snapshot.json``), with a warning naming the cause. Syncs
then fail at run time with Airbyte's own error, and a reload picks up the live workspace again.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import EnvVar
from dagster_airbyte import AirbyteWorkspace
from dagster_airbyte.translator import AirbyteWorkspaceData
from dagster_shared.serdes import deserialize_value, serialize_value

from corisync_assets.environment import ConfigError, Settings

SNAPSHOT = Path(__file__).with_name("workspace_snapshot.json")
log = logging.getLogger(__name__)


class AirbyteUnreachableWarning(UserWarning):
    """Definitions loaded Airbyte's workspace from a cache or the repo's snapshot."""


class CorisyncAirbyteWorkspace(AirbyteWorkspace):
    """``AirbyteWorkspace`` whose workspace fetch falls back to a cache, then to the repo's snapshot."""

    cache_path: str | None = None

    def fetch_airbyte_workspace_data(self) -> AirbyteWorkspaceData:
        try:
            data = super().fetch_airbyte_workspace_data()
        except Exception as exc:  # any failure to reach or read Airbyte: fall back, loudly
            return self._fallback(exc)
        if self.cache_path:
            try:
                Path(self.cache_path).parent.mkdir(parents=True, exist_ok=True)
                Path(self.cache_path).write_text(serialize_value(data))
            except OSError as exc:  # a read-only home must not stop the code location
                log.warning("Airbyte workspace cache not written to %s: %s", self.cache_path, exc)
        return data

    @contextmanager
    def process_config_and_initialize_cm_cached(self) -> Iterator[AirbyteWorkspace]:
        """dagster-airbyte's once-per-resource initialization for definitions load (its asset specs and
        ``@airbyte_assets`` fetch the workspace through it), without the ephemeral ``DagsterInstance`` that
        Dagster's resource initialization builds when given none: its storage modules and alembic cost ~0.8 s
        of every load here, and the workspace needs nothing from an instance, only its ``EnvVar`` fields
        resolved. Runs initialize the resource the usual way, with the run's instance."""
        if not hasattr(self, "_initialized"):
            resolved = {name: value.get_value() for name in type(self).model_fields
                        if isinstance(value := getattr(self, name), EnvVar)}
            self._initialized = self.model_copy(update=resolved)
        yield self._initialized

    def _fallback(self, exc: Exception) -> AirbyteWorkspaceData:
        cache = Path(self.cache_path) if self.cache_path else None
        source = cache if cache is not None and cache.exists() else SNAPSHOT
        message = (f"Airbyte at {self.rest_api_base_url} could not be read ({type(exc).__name__}: {exc}); "
                   f"the Airbyte assets are loaded from {source}. Syncs will fail until Airbyte answers; "
                   "reload the code location then.")
        warnings.warn(message, AirbyteUnreachableWarning, stacklevel=2)
        log.warning(message)
        return deserialize_value(source.read_text(), AirbyteWorkspaceData)


def airbyte_workspace(s: Settings) -> CorisyncAirbyteWorkspace:
    """The workspace resource for ``s``; the client id and secret stay ``EnvVar``s (resolved when a run or the
    load initializes the resource, never shown in the UI)."""
    base = s.airbyte_base_url
    if (s.airbyte_client_id is None) != (s.airbyte_client_secret is None):
        missing = "CORISYNC_AIRBYTE_CLIENT_SECRET" if s.airbyte_client_secret is None else "CORISYNC_AIRBYTE_CLIENT_ID"
        raise ConfigError(f"{missing} is not set: Airbyte's client id and secret go together (or neither, for an "
                          "Airbyte without authentication)")
    return CorisyncAirbyteWorkspace(
        rest_api_base_url=f"{base}/api/public/v1",
        configuration_api_base_url=f"{base}/api/v1",
        workspace_id=s.airbyte_workspace_id,
        client_id=EnvVar("CORISYNC_AIRBYTE_CLIENT_ID") if s.airbyte_client_id else None,
        client_secret=EnvVar("CORISYNC_AIRBYTE_CLIENT_SECRET") if s.airbyte_client_secret else None,
        cache_path=str(s.home / "airbyte" / f"workspace-{s.airbyte_workspace_id}.json"),
        request_max_retries=1,
        request_retry_delay=0.25,
        request_timeout=10,
        poll_interval=1.0,
    )
