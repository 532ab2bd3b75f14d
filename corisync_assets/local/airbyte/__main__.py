"""``python -m corisync_assets.local.airbyte``: the local Airbyte stand-in (see server.py)."""

from corisync_assets.local.airbyte.server import main

main()
