"""Airbyte streams as Dagster assets: ``airbyte/<connection>/<stream>``.

Only ``get_asset_spec`` is overridden: the key, the group and a description; dagster-airbyte's own spec keeps
its column schema, table name and connection metadata (which ``sync_and_poll`` needs).
"""

from __future__ import annotations

from dagster import AssetKey, AssetSpec
from dagster_airbyte import AirbyteConnectionTableProps, DagsterAirbyteTranslator

GROUP = "airbyte"


def airbyte_asset_key(connection: str, stream: str) -> AssetKey:
    return AssetKey(["airbyte", connection, stream])


class CorisyncAirbyteTranslator(DagsterAirbyteTranslator):
    def get_asset_spec(self, props: AirbyteConnectionTableProps) -> AssetSpec:
        spec = super().get_asset_spec(props)
        return spec.replace_attributes(
            key=airbyte_asset_key(props.connection_name, props.stream_name),
            group_name=GROUP,
            description=f"Stream `{props.stream_name}` of the Airbyte connection `{props.connection_name}`, "
                        f"landed as `{props.table_name}` by Airbyte's destination.",
        )
