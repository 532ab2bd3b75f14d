"""Imported first by the code location (``corisync_assets.definitions``), before any heavy import.

A missing or stale dbt manifest starts parsing in its own process right here, so that ``dbt parse`` runs while
the code location imports Dagster, dagster-dbt and dbt-core on the other core, instead of after them;
``corisync_assets.dbt.project`` waits for it. A current (or packaged) manifest: nothing happens. See
``corisync_assets.dbt_manifest``.
"""

from corisync_assets.dbt_manifest import start_early

start_early()
