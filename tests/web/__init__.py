"""Web analytics: event contract, collector, demo traffic, Spark assets and the lake."""
