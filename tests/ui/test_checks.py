"""The checks of tests/ui/checks.py fail on graphs and pages with the defect each looks for (no server needed)."""

from __future__ import annotations

import copy
from typing import Any

from tests.ui import checks

TABLES = (("public", "users"), ("public", "courses"))


def _node(path: str, deps: tuple[str, ...] = (), kinds: tuple[str, ...] = (), description: str | None = None,
          stub: bool = False) -> dict[str, Any]:
    return {
        "assetKey": {"path": path.split("/")},
        "dependencyKeys": [{"path": d.split("/")} for d in deps],
        "kinds": list(kinds),
        "description": description,
        "groupName": path.split("/")[0],
        "isAutoCreatedStub": stub,
    }


def _graph() -> list[dict[str, Any]]:
    return [
        _node("tc4a_postgres/public/users", kinds=("postgres",)),
        _node("tc4a_postgres/public/courses", kinds=("postgres",)),
        _node("raw_cdc/users", ("tc4a_postgres/public/users",)),
        _node("raw_cdc/courses", ("tc4a_postgres/public/courses",)),
        _node("staging/stg_users", ("raw_cdc/users",), ("dbt",), "Users."),
        _node("staging/stg_courses", ("raw_cdc/courses",), ("dbt",), "Courses."),
        _node("marts/fct_a", ("staging/stg_users",), ("dbt",), "A.\n\n#### Raw SQL:\n```sql\n    select 1\n```"),
        _node("marts/dim_b", ("marts/fct_a", "staging/stg_courses"), ("dbt",), "B."),
    ]


def _manifest() -> dict[str, Any]:
    def model(name: str, layer: str, description: str, code: str = "select 1") -> tuple[str, dict[str, Any]]:
        return f"model.p.{name}", {"resource_type": "model", "package_name": "p", "name": name,
                                   "fqn": ["p", layer, name], "description": description, "raw_code": code}

    return {"metadata": {"project_name": "p"}, "nodes": dict([
        model("stg_users", "staging", "Users."),
        model("stg_courses", "staging", "Courses."),
        model("fct_a", "marts", "A."),
        model("dim_b", "marts", "B."),
    ])}


def _nodes(graph: list[dict[str, Any]]) -> checks.Nodes:
    return checks.nodes_by_key(graph)


def test_sound_graph_passes() -> None:
    nodes = _nodes(_graph())
    assert checks.chain_problems(nodes, TABLES) == []
    assert checks.dangling_problems(nodes) == []
    assert checks.description_problems(nodes, _manifest()) == []


def test_chain_breaks_are_reported() -> None:
    graph = _graph()
    assert checks.chain_problems(_nodes(graph), ()) == ["the connector config captures no table"]
    assert "no asset tc4a_postgres/public/orders" in checks.chain_problems(_nodes(graph), [("public", "orders")])[0]

    no_raw = [n for n in graph if n["assetKey"]["path"] != ["raw_cdc", "courses"]]
    assert checks.chain_problems(_nodes(no_raw), TABLES) == ["public.courses: no asset raw_cdc/courses"]

    unlinked = copy.deepcopy(graph)
    unlinked[2]["dependencyKeys"] = []  # raw_cdc/users not fed by its Postgres table
    assert "raw_cdc/users does not depend on" in checks.chain_problems(_nodes(unlinked), TABLES)[0]

    no_staging = copy.deepcopy(graph)
    no_staging[4]["dependencyKeys"] = []  # stg_users no longer reads raw_cdc/users
    assert "no staging model depends on raw_cdc/users" in checks.chain_problems(_nodes(no_staging), TABLES)[0]

    no_mart = [n for n in graph if n["assetKey"]["path"][0] != "marts"]
    assert len(checks.chain_problems(_nodes(no_mart), TABLES)) == 2


def test_dangling_dependency_and_stubs_are_reported() -> None:
    graph = _graph()
    graph[4]["dependencyKeys"].append({"path": ["raw_cdc", "users__changelog"]})
    graph.append(_node("raw_cdc/ghost", stub=True))
    problems = checks.dangling_problems(_nodes(graph))
    assert problems == ["staging/stg_users depends on raw_cdc/users__changelog, which is no asset node",
                        "raw_cdc/ghost is an auto-created stub asset node"]


def test_description_mismatches_are_reported() -> None:
    graph, manifest = _graph(), _manifest()
    graph[4]["description"] = "dbt model stg_users"  # dagster-dbt's fallback
    graph[6]["description"] = "A.\n\n#### Raw SQL:\n```sql\n    select 2\n```"  # another model's SQL
    manifest["nodes"]["model.p.stg_courses"]["description"] = ""
    graph.append(_node("marts/orphan", kinds=("dbt",)))
    problems = checks.description_problems(_nodes(graph), manifest)
    assert len(problems) == 4, problems
    assert "marts/orphan is no model" in problems[0]
    assert "stg_courses has no description" in problems[2]
    assert {"marts/fct_a", "staging/stg_users"} == {p.split(":")[0] for p in (problems[1], problems[3])}

    missing_asset = [n for n in _graph() if n["assetKey"]["path"] != ["marts", "dim_b"]]
    assert checks.description_problems(_nodes(missing_asset), _manifest()) == [
        "dbt model dim_b: 0 dbt assets [], expected 1"
    ]


def _page(*labels: str, extra_text: str = "") -> str:
    nodes = "".join(f'<foreignObject><div class="AssetNode_assetName__x AssetNode_minimalName__y">{label}</div>'
                    "</foreignObject>" for label in labels)
    return (f"<html><head><style>.e{{--error-bg: red}}</style></head><body><h1>{checks.PAGE_TITLE}</h1>"
            f"<div>{extra_text}</div><svg>{nodes}</svg></body></html>")


def test_page_checks() -> None:
    nodes = _nodes(_graph())
    labels = ("users", "courses", "users", "courses", "stg_users", "stg_…rses", "fct_a", "dim_b")
    assert checks.page_problems(_page(*labels), nodes) == []

    assert "not the lineage page" in checks.page_problems("<html><body>404</body></html>", nodes)[0]
    assert checks.page_problems(_page(*labels, extra_text="Something went wrong"), nodes) == [
        "the page shows error text 'Something went wrong'"
    ]
    assert "no asset nodes drawn" in checks.page_problems(_page(), nodes)[0]
    missing = checks.page_problems(_page(*labels[:-1]), nodes)
    assert len(missing) == 1 and missing[0].startswith("asset nodes not drawn: ['marts/dim_b']")
    extra = checks.page_problems(_page(*labels, "stray"), nodes)
    assert extra == ["nodes drawn that are no asset node of the API: ['stray']"]
    # a truncated label must fit the name: "stg_…ers" is not stg_courses
    assert "staging/stg_courses" in checks.page_problems(_page(*labels[:5], "stg_…ers", *labels[6:]), nodes)[0]
