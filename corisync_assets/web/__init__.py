"""Web analytics: the event contract and collector (``POST /v1/batch`` -> Kafka ``web.events``), the Spark
assets over the topic (``web/events``, ``web/sessions``, ``web/page_daily``), and their wiring.

Compose in ``corisync_assets/definitions.py`` with ``web_definitions(settings())``; the lag sensor covers
the web consumer group through ``web_lag_target(settings())``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagster import Definitions

    from corisync_assets.cdc.sensors import LagTarget
    from corisync_assets.environment import Settings


def web_definitions(s: Settings) -> Definitions:
    from dagster import Definitions

    from corisync_assets.web.assets import build_web_assets, topic_spec, web_automation_sensor

    return Definitions(assets=[topic_spec(s.web_topic), build_web_assets(s.web_topic)],
                       sensors=[web_automation_sensor])


def web_lag_target(s: Settings) -> LagTarget:
    from corisync_assets.cdc.sensors import LagTarget
    from corisync_assets.web.assets import WEB_TABLES, web_asset_key

    return LagTarget(name="web", topic=s.web_topic, group=s.web_consumer_group,
                     keys=tuple(web_asset_key(name) for name in WEB_TABLES), observed=web_asset_key("events"))
