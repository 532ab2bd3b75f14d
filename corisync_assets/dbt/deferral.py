"""Which dbt tests a build must leave out because another model they read has never been built.

dbt's indirect selection (``eager``, see resource.py) runs every test that touches a selected model,
including a relationships or singular test whose *other* parent is not in the build. When that parent has
never been built (a fresh warehouse where automation builds the first models before the rest exist), the
test fails with "Table ... does not exist": a red run for nothing wrong in the data. Such tests are left out
of the build (``--exclude``) and show as skipped checks; they run in the first build in which all their
parents exist. A test whose other parent was built before runs as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dagster import AssetKey

BUILT_RESOURCE_TYPES = ("model", "snapshot", "seed")


def tests_to_defer(
    manifest: Mapping[str, Any],
    key_of: Callable[[Mapping[str, Any]], AssetKey],
    selected: Iterable[AssetKey],
    built: Iterable[AssetKey],
) -> list[str]:
    """Names of the tests touching a selected node that read a node neither selected nor built before."""
    selected, built = set(selected), set(built)
    nodes = manifest.get("nodes", {})
    deferred = []
    for test in nodes.values():
        if test.get("resource_type") != "test":
            continue
        parents = [nodes[u] for u in test.get("depends_on", {}).get("nodes", [])
                   if u in nodes and nodes[u].get("resource_type") in BUILT_RESOURCE_TYPES]
        keys = {key_of(p) for p in parents}
        if keys & selected and any(k not in selected and k not in built for k in keys):
            deferred.append(test["name"])
    return sorted(deferred)
