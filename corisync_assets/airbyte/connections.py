"""The two Airbyte connections CoriSync syncs, declared once.

This is the contract between the parts of the Airbyte path:
* the Dagster assets (``corisync_assets/airbyte/assets.py``) key each stream as ``airbyte/<connection>/<stream>``;
* the local Airbyte stand-in (``corisync_assets/local/airbyte/``) serves these connections and runs their
  connectors, and writes each stream to ``<schema>.<prefix><stream>``;
* the Terraform (``terraform/airbyte/``) declares the same connections for a real Airbyte (a test compares).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SyncMode = Literal["full_refresh_overwrite", "incremental_append_dedup"]


@dataclass(frozen=True)
class Stream:
    name: str
    sync_mode: SyncMode = "full_refresh_overwrite"
    cursor_field: tuple[str, ...] = ()
    primary_key: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Connection:
    name: str  #: Airbyte connection name, and the middle part of the asset keys
    source_type: Literal["google-sheets", "google-analytics-data-api"]
    prefix: str  #: Airbyte's stream prefix: the destination table is <prefix><stream>
    streams: tuple[Stream, ...]
    cron: str  #: the Dagster schedule of this connection's sync
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def table(self, stream: str) -> str:
        return f"{self.prefix}{stream}"


TRAINING_SHEETS = Connection(
    name="training_sheets",
    source_type="google-sheets",
    prefix="sheets_",
    streams=(Stream("trainings"), Stream("attendance_spring"), Stream("attendance_autumn")),
    cron="0 * * * *",  # hourly
    description="The trainers' workbook: in-person trainings and who attended (one tab per term).",
)

GA4_WEB = Connection(
    name="ga4_web",
    source_type="google-analytics-data-api",
    prefix="ga4_",
    streams=(Stream("course_pages", sync_mode="incremental_append_dedup", cursor_field=("date",),
                    primary_key=(("property_id",), ("date",), ("pagePath",))),),
    cron="15 3 * * *",  # daily
    description="GA4 sessions and page views per page and day (custom report course_pages).",
)

CONNECTIONS: tuple[Connection, ...] = (TRAINING_SHEETS, GA4_WEB)


def connection(name: str) -> Connection:
    for c in CONNECTIONS:
        if c.name == name:
            return c
    raise KeyError(f"no Airbyte connection named {name!r}; known: {', '.join(c.name for c in CONNECTIONS)}")
