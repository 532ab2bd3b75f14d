"""What the UI tests check, as pure functions returning the problems found (empty list: all good).

Kept apart from the tests that fetch the data (webserver, Chromium) so tests/ui/test_checks.py can show
that each check fails on a graph or a page with the defect it looks for.

``nodes``: the GraphQL ``assetNodes`` answer keyed by asset key path tuple.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SOURCE_PREFIX = "tc4a_postgres"
RAW_PREFIX = "raw_cdc"
DBT_LAYERS = ("staging", "marts", "reporting", "snapshots")

Key = tuple[str, ...]
Nodes = Mapping[Key, Mapping[str, Any]]

#: Text of Dagster's error states (error boundary, failed GraphQL queries, location load errors).
ERROR_TEXT = re.compile(
    r"\bError\b|Something went wrong|Unable to load|Failed to load|Could not load|PythonError|An unexpected error"
)
#: The name label of an asset node in the lineage graph (detailed and minimal renderings).
ASSET_NAME = re.compile(r'<div class="AssetNode_assetName[^"]*"[^>]*>([^<]+)</div>')
PAGE_TITLE = "Global asset lineage"


def show(key: Key) -> str:
    return "/".join(key)


def nodes_by_key(asset_nodes: Iterable[Mapping[str, Any]]) -> dict[Key, Mapping[str, Any]]:
    return {tuple(n["assetKey"]["path"]): n for n in asset_nodes}


def dependencies(nodes: Nodes) -> dict[Key, set[Key]]:
    return {key: {tuple(d["path"]) for d in node["dependencyKeys"]} for key, node in nodes.items()}


def _children(deps: Mapping[Key, set[Key]]) -> dict[Key, set[Key]]:
    children: dict[Key, set[Key]] = {key: set() for key in deps}
    for key, parents in deps.items():
        for parent in parents:
            children.setdefault(parent, set()).add(key)
    return children


def _reachable(start: Iterable[Key], children: Mapping[Key, set[Key]]) -> set[Key]:
    seen: set[Key] = set()
    todo = list(start)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def chain_problems(nodes: Nodes, tables: Sequence[tuple[str, str]]) -> list[str]:
    """Per captured table: tc4a_postgres/<schema>/<table> -> raw_cdc/<table> -> staging -> mart(s)."""
    if not tables:
        return ["the connector config captures no table"]
    deps = dependencies(nodes)
    children = _children(deps)
    problems: list[str] = []
    for schema, table in tables:
        source, raw = (SOURCE_PREFIX, schema, table), (RAW_PREFIX, table)
        if source not in nodes:
            problems.append(f"{schema}.{table}: no asset {show(source)}")
        elif raw not in nodes:
            problems.append(f"{schema}.{table}: no asset {show(raw)}")
        elif source not in deps[raw]:
            problems.append(f"{show(raw)} does not depend on {show(source)} (depends on {sorted(deps[raw])})")
        else:
            staging = {k for k in children.get(raw, ()) if k[0] == "staging"}
            marts = {k for k in _reachable(staging, children) if k[0] == "marts"}
            if not staging:
                problems.append(f"no staging model depends on {show(raw)} (children: {sorted(children[raw])})")
            elif not marts:
                problems.append(f"{schema}.{table}: no mart downstream of {sorted(show(k) for k in staging)}")
    return problems


def dangling_problems(nodes: Nodes) -> list[str]:
    """Dependencies on keys that are no asset node, and auto-created stub nodes (undefined upstream keys)."""
    problems = sorted(
        f"{show(key)} depends on {show(dep)}, which is no asset node"
        for key, parents in dependencies(nodes).items()
        for dep in parents
        if dep not in nodes
    )
    problems += sorted(f"{show(k)} is an auto-created stub asset node" for k, n in nodes.items()
                       if n.get("isAutoCreatedStub"))
    return problems


def dbt_models(manifest: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Models and snapshots of the project (not of installed packages), by name."""
    project = manifest["metadata"].get("project_name")
    found = [
        n for n in manifest["nodes"].values()
        if n["resource_type"] in ("model", "snapshot") and (project is None or n["package_name"] == project)
    ]
    by_name = {n["name"]: n for n in found}
    if len(by_name) != len(found):
        raise AssertionError("two dbt models/snapshots share a name")
    return by_name


def with_raw_sql(description: str, node: Mapping[str, Any]) -> str:
    """dagster-dbt's default asset description: the dbt description followed by the model's raw SQL."""
    code = textwrap.indent(node.get("raw_code") or node.get("raw_sql") or "", "    ")
    return f"{description}\n\n#### Raw SQL:\n```sql\n{code}\n```"


def description_problems(nodes: Nodes, manifest: Mapping[str, Any]) -> list[str]:
    """Each dbt model/snapshot is exactly one dbt asset, described by its dbt description.

    dagster-dbt may append the model's raw SQL (a ``#### Raw SQL:`` block); any other text, or
    dagster-dbt's ``dbt model <name>`` fallback for a model without a description, is a problem.
    """
    models = dbt_models(manifest)
    if not models:
        return ["the dbt manifest has no models"]
    dbt_assets = [k for k, n in nodes.items() if "dbt" in n["kinds"]]
    problems = [
        f"dbt asset {show(k)} is no model/snapshot of the manifest (or not in {DBT_LAYERS})"
        for k in sorted(dbt_assets) if k[-1] not in models or k[0] not in DBT_LAYERS
    ]
    for name, model in sorted(models.items()):
        kind = model["resource_type"]
        keys = [k for k in dbt_assets if k[-1] == name]
        if len(keys) != 1:
            problems.append(f"dbt {kind} {name}: {len(keys)} dbt assets {[show(k) for k in keys]}, expected 1")
            continue
        dbt_description = model.get("description") or ""
        if not dbt_description.strip():
            problems.append(f"dbt {kind} {name} has no description in the dbt project")
            continue
        shown = nodes[keys[0]]["description"]
        if shown not in (dbt_description, with_raw_sql(dbt_description, model)):
            problems.append(f"{show(keys[0])}: asset description {(shown or '')[:200]!r} is not the dbt "
                            f"description {dbt_description!r}")
    return problems


def visible_text(dom: str) -> str:
    text = re.sub(r"<(style|script|noscript)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    text = re.sub(r"<[^>]+>", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def label_matches(label: str, name: str) -> bool:
    """A node label is the asset name, or the name middle-truncated with an ellipsis."""
    if label == name:
        return True
    head, sep, tail = label.partition("…")
    return bool(sep) and len(head) + len(tail) < len(name) and name.startswith(head) and name.endswith(tail)


def page_problems(dom: str, nodes: Nodes) -> list[str]:
    """The lineage page (a DOM dump): rendered, no error text, one drawn node per asset node, no other."""
    text = visible_text(dom)
    if PAGE_TITLE not in text:
        return [f"not the lineage page ({PAGE_TITLE!r} missing); page text: {text[:1500]!r}"]
    problems = [f"the page shows error text {e!r}" for e in sorted({m.group(0) for m in ERROR_TEXT.finditer(text)})]
    labels = ASSET_NAME.findall(dom)
    if not labels:
        return [*problems, f"no asset nodes drawn (groups collapsed or graph not rendered); text: {text[:1500]!r}"]
    unused = Counter(labels)
    missing: list[str] = []
    for key in sorted(nodes, key=lambda k: (-len(k[-1]), k)):  # long names first: they own truncated labels
        name = key[-1]
        match = name if unused[name] > 0 else next(
            (label for label, count in unused.items() if count > 0 and label_matches(label, name)), None
        )
        if match is None:
            missing.append(show(key))
        else:
            unused[match] -= 1
    if missing:
        problems.append(f"asset nodes not drawn: {missing} (drawn labels: {sorted(labels)})")
    extra = sorted((+unused).elements())
    if extra:
        problems.append(f"nodes drawn that are no asset node of the API: {extra}")
    return problems
