"""The Metabase content agrees with the marts: every question's SQL (BigQuery dialect, transpiled to DuckDB
with sqlglot) runs against the marts built by the real dbt project (the session fixture ``built``), so a
question naming a column or mart that does not exist fails here; every dashboard card refers to a question;
there is one dashboard per mart family. (Metabase itself cannot run here; see test_provision.py.)"""

from __future__ import annotations

import re

import duckdb
import pytest
import sqlglot

from corisync_assets.metabase.config import CONTENT_DIR
from corisync_assets.metabase.content import Content, QuestionSpec, load_content

#: The mart families that get a dashboard. Web engagement will join once web marts exist (none yet).
MART_FAMILIES = ("mart_enrollment_funnel", "mart_course_completion", "mart_active_learners_weekly",
                 "mart_training_attendance")


@pytest.fixture(scope="module")
def content() -> Content:
    return load_content(CONTENT_DIR)


@pytest.fixture(scope="module")
def marts(built):
    """(read-only connection to the built warehouse, the schema the marts landed in)."""
    con = duckdb.connect(str(built.path), read_only=True)
    rows = con.execute("select distinct table_schema from information_schema.tables "
                       "where table_name = 'mart_enrollment_funnel'").fetchall()
    assert len(rows) == 1, f"mart_enrollment_funnel found in schemas {rows}"
    yield con, rows[0][0]
    con.close()


def duckdb_sql(question: QuestionSpec, schema: str) -> str:
    """The question's SQL as Metabase would send it to BigQuery, transpiled to DuckDB over ``schema``."""
    return sqlglot.transpile(question.render(schema), read="bigquery", write="duckdb")[0]


def check_question(question: QuestionSpec, con: duckdb.DuckDBPyConnection, schema: str) -> list[str]:
    """Run the question over the marts; return its column names or fail naming the question and column."""
    where = f"question {question.name!r} (questions/{question.key}.yml)"
    try:
        sql = duckdb_sql(question, schema)
    except sqlglot.errors.ParseError as exc:
        raise AssertionError(f"{where}: not valid BigQuery SQL: {exc}") from None
    try:
        cursor = con.execute(sql)
        cursor.fetchall()
    except duckdb.Error as exc:
        column = re.search(r'column "?([^"\s]+)"? not found|column with name "?([^"\s]+)"? does not exist',
                           str(exc), re.I)
        what = f"column {next(g for g in column.groups() if g)!r} does not exist: " if column else ""
        raise AssertionError(f"{where}: {what}{exc}") from None
    return [d[0] for d in cursor.description]


def test_every_question_runs_against_the_marts(content: Content, marts) -> None:
    con, schema = marts
    for question in content.questions.values():
        columns = check_question(question, con, schema)
        assert columns, question.key
        # the columns the visualization settings name are ones the question returns
        settings = question.visualization_settings
        named = [*settings.get("graph.dimensions", []), *settings.get("graph.metrics", [])]
        named += [settings[k] for k in ("funnel.dimension", "funnel.metric") if k in settings]
        missing = [c for c in named if c not in columns]
        assert not missing, f"{question.key}: visualization_settings name {missing}, the SQL returns {columns}"


def test_a_question_naming_a_missing_column_fails(marts) -> None:
    con, schema = marts
    bad = QuestionSpec(key="bad_question", name="Completion by nothing", display="table",
                       sql="select course_title, completion_ratio from {{ marts }}.mart_course_completion")
    with pytest.raises(AssertionError) as err:
        check_question(bad, con, schema)
    message = str(err.value)
    assert "Completion by nothing" in message and "questions/bad_question.yml" in message
    assert "'completion_ratio' does not exist" in message, message


def test_a_question_naming_a_missing_mart_fails(marts) -> None:
    con, schema = marts
    bad = QuestionSpec(key="web", name="Web sessions", display="table",
                       sql="select * from {{ marts }}.mart_web_sessions")
    with pytest.raises(AssertionError, match=r"Web sessions.*mart_web_sessions"):
        check_question(bad, con, schema)


def test_questions_read_only_built_marts(content: Content, marts) -> None:
    con, schema = marts
    built_tables = {r[0] for r in con.execute(
        "select table_name from information_schema.tables where table_schema = ?", [schema]).fetchall()}
    for question in content.questions.values():
        assert set(question.marts) <= built_tables, (question.key, question.marts)


def test_every_dashboard_card_is_a_question(content: Content) -> None:
    for dashboard in content.dashboards.values():
        for card in dashboard.cards:
            assert card.question in content.questions, (dashboard.key, card.question)


def test_one_dashboard_per_mart_family(content: Content) -> None:
    families: dict[str, list[str]] = {}
    for dashboard in content.dashboards.values():
        marts = {m for card in dashboard.cards for m in content.questions[card.question].marts}
        assert len(marts) == 1, f"dashboard {dashboard.key} mixes marts {sorted(marts)}"
        families.setdefault(marts.pop(), []).append(dashboard.key)
    assert sorted(families) == sorted(MART_FAMILIES), families
    assert all(len(keys) == 1 for keys in families.values()), families
    assert not any("web" in m for m in families), "web marts do not exist yet"
