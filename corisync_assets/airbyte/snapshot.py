"""Refresh the repo's Airbyte workspace snapshot (``workspace_snapshot.json``) from a running Airbyte.

    python -m corisync_assets.airbyte.snapshot     # reads CORISYNC_AIRBYTE_* like the code location

The code location falls back to this snapshot when Airbyte cannot be reached at load (see ``workspace.py``). It is
taken from the local stack's stand-in (``corisync stack up``), whose ids are stable; a test keeps it equal to what
the stand-in serves.
"""

from __future__ import annotations

from dagster_shared.serdes import serialize_value

from corisync_assets.airbyte.workspace import SNAPSHOT, CorisyncAirbyteWorkspace, airbyte_workspace
from corisync_assets.environment import settings


def main() -> None:
    workspace = airbyte_workspace(settings())
    with workspace.process_config_and_initialize_cm() as live:
        # the base class's fetch: a failure must surface here, not fall back to the old snapshot
        data = super(CorisyncAirbyteWorkspace, live).fetch_airbyte_workspace_data()
    SNAPSHOT.write_text(serialize_value(data) + "\n")
    print(f"{SNAPSHOT}: {len(data.connections_by_id)} connections")


if __name__ == "__main__":
    main()
