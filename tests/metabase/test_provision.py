"""The provisioning job (python -m corisync_assets.metabase apply) against an in-process Metabase API double
(fake_metabase.py), since Metabase cannot run here: the exact requests of a first run on a fresh instance,
idempotence, UI edits reported and left alone (unless --force), file changes applied to exactly what they
touch, configuration errors before any request, and no secret in the output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from corisync_assets.metabase.__main__ import main
from corisync_assets.metabase.config import CONTENT_DIR
from corisync_assets.metabase.content import load_content, render_sql

from .fake_metabase import SETUP_TOKEN, FakeMetabase

PROJECT = "corisync-test-project"
DATASET = "corisync_marts_test"
ADMIN_EMAIL = "admin@corisync.example"
ADMIN_PASSWORD = "Adm1n-p4ss-never-printed"
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC-secret\\n-----END PRIVATE KEY-----\\n"
CONTENT = load_content(CONTENT_DIR)
QUESTIONS = sorted(CONTENT.questions)  # applied in file-name order
DASHBOARDS = sorted(CONTENT.dashboards)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "metabase-sa.json"
    path.write_text(json.dumps({"type": "service_account", "project_id": PROJECT, "private_key": PRIVATE_KEY,
                                "client_email": "corisync-metabase@example.iam.gserviceaccount.com"}))
    return path


@pytest.fixture
def env(key_file: Path) -> dict[str, str]:
    return {
        "METABASE_URL": "http://metabase:3000",
        "METABASE_ADMIN_EMAIL": ADMIN_EMAIL,
        "METABASE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "METABASE_BQ_CREDENTIALS_FILE": str(key_file),
        "CORISYNC_GCP_PROJECT": PROJECT,
        "CORISYNC_BQ_MARTS_DATASET": DATASET,
        "UNRELATED_SECRET": "not read",
    }


class Run:
    """One invocation of the job against the double; keeps what it printed and the requests it sent."""

    def __init__(self, fake: FakeMetabase, env: dict[str, str], *args: str) -> None:
        self.lines: list[str] = []
        start = len(fake.requests)
        self.code = main(["apply", *args], environ=env, transport=fake.transport, out=self.lines.append,
                         wait_s=5, poll_s=0)
        self.requests = fake.requests[start:]
        self.output = "\n".join(self.lines)

    def calls(self) -> list[tuple[str, str]]:
        return [r.call for r in self.requests]

    def writes(self) -> list[tuple[str, str]]:
        return [r.call for r in self.requests if r.method != "GET"]

    def bodies(self, method: str, path: str) -> list:
        return [r.body for r in self.requests if r.call == (method, path)]


def _assert_no_secret(run: Run, key_file: Path) -> None:
    for secret in (ADMIN_PASSWORD, key_file.read_text(), "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC-secret", "session-"):
        assert secret not in run.output, f"secret printed: {secret[:12]}..."


@pytest.fixture
def provisioned(env, key_file) -> tuple[FakeMetabase, Run]:
    fake = FakeMetabase()
    first = Run(fake, env)
    assert first.code == 0, first.output
    return fake, first


# --- the first run on a fresh instance ---------------------------------------------------------------------
def test_first_apply_on_a_fresh_instance_sends_exactly_these_requests(provisioned, key_file) -> None:
    fake, run = provisioned
    db_id, coll_id = 1, 2
    card_ids = {key: 3 + n for n, key in enumerate(QUESTIONS)}
    dash_ids = {key: 3 + len(QUESTIONS) + n for n, key in enumerate(DASHBOARDS)}
    expected = [
        ("GET", "/api/health"),
        ("GET", "/api/session/properties"),
        ("POST", "/api/setup"),
        ("GET", "/api/database"),
        ("POST", "/api/database"),
        ("GET", "/api/collection"),
        ("POST", "/api/collection"),
        ("GET", f"/api/collection/{coll_id}/items"),
        *[("POST", "/api/card")] * len(QUESTIONS),
    ]
    for key in DASHBOARDS:
        expected += [("POST", "/api/dashboard"), ("PUT", f"/api/dashboard/{dash_ids[key]}")]
    assert run.calls() == expected

    # first-time setup with the setup token and the admin from the environment; every later call logged in
    setup = run.bodies("POST", "/api/setup")[0]
    assert setup["token"] == SETUP_TOKEN
    assert setup["user"]["email"] == ADMIN_EMAIL and setup["user"]["password"] == ADMIN_PASSWORD
    assert setup["prefs"]["site_name"]
    assert all(r.session for r in run.requests[3:])
    assert run.requests[7].params == [("models", "card"), ("models", "dashboard")]

    # the BigQuery connection, its settings resolved from the environment, the key read from the file
    database = run.bodies("POST", "/api/database")[0]
    assert database == {"name": CONTENT.database.name, "engine": "bigquery-cloud-sdk", "is_full_sync": True,
                        "details": {"project-id": PROJECT, "service-account-json": key_file.read_text(),
                                    "dataset-filters-type": "inclusion", "dataset-filters-patterns": DATASET}}
    assert run.bodies("POST", "/api/collection")[0]["name"] == CONTENT.collection.name

    # the questions: native BigQuery SQL over project.dataset, in the collection, on the database
    cards = run.bodies("POST", "/api/card")
    assert [c["name"] for c in cards] == [CONTENT.questions[k].name for k in QUESTIONS]
    for key, card in zip(QUESTIONS, cards, strict=True):
        q = CONTENT.questions[key]
        sql = card["dataset_query"]["native"]["query"]
        assert sql == render_sql(q.sql, f"{PROJECT}.{DATASET}")
        assert f"`{PROJECT}.{DATASET}.{q.marts[0]}`" in sql and "{{" not in sql
        assert card["dataset_query"] == {"type": "native", "database": db_id,
                                         "native": {"query": sql, "template-tags": {}}}
        assert card["collection_id"] == coll_id
        assert card["display"] == q.display and card["visualization_settings"] == q.visualization_settings
        assert card["description"].startswith(q.description.strip())
        assert card["description"].splitlines()[-1].startswith("corisync:sha256:")

    # the dashboards: created, then their cards placed on the grid with the new card ids
    for key in DASHBOARDS:
        spec = CONTENT.dashboards[key]
        put = run.bodies("PUT", f"/api/dashboard/{dash_ids[key]}")[0]
        assert put["description"].splitlines()[-1].startswith("corisync:sha256:")
        assert [(dc["card_id"], dc["row"], dc["col"], dc["size_x"], dc["size_y"]) for dc in put["dashcards"]] == [
            (card_ids[c.question], c.row, c.col, c.size_x, c.size_y) for c in spec.cards]
        assert all(dc["id"] < 0 for dc in put["dashcards"])
        assert fake.dashboards[dash_ids[key]]["collection_id"] == coll_id

    assert "instance: first-time setup done" in run.output
    assert run.lines[-1] == f"done: {2 + len(QUESTIONS) + len(DASHBOARDS)} created, 0 updated, 0 unchanged"
    _assert_no_secret(run, key_file)


def test_second_apply_changes_nothing(provisioned, env, key_file) -> None:
    fake, _ = provisioned
    before = (json.dumps(fake.cards, sort_keys=True), json.dumps(fake.dashboards, sort_keys=True))
    run = Run(fake, env)
    assert run.code == 0, run.output
    # reads only; the one POST is the login (a session, not a change)
    assert run.writes() == [("POST", "/api/session")]
    assert ("POST", "/api/setup") not in run.calls()
    assert before == (json.dumps(fake.cards, sort_keys=True), json.dumps(fake.dashboards, sort_keys=True))
    total = 2 + len(QUESTIONS) + len(DASHBOARDS)
    assert run.lines[-1] == f"done: 0 created, 0 updated, {total} unchanged"
    _assert_no_secret(run, key_file)


# --- UI edits --------------------------------------------------------------------------------------------
def test_a_question_changed_in_the_ui_is_reported_not_overwritten(provisioned, env, key_file) -> None:
    fake, _ = provisioned
    name = CONTENT.questions["weekly_active_learners"].name
    card_id = fake.card_named(name)["id"]
    edited = "select week_start, active_learners from `x.y.mart_active_learners_weekly` -- edited in the UI"
    fake.ui_edit_card(name, query=edited)

    run = Run(fake, env)
    assert run.code == 0, run.output
    assert f"question changed in the UI: {name}; not overwritten, run with --force to replace" in run.lines
    assert run.writes() == [("POST", "/api/session")]
    assert fake.cards[card_id]["dataset_query"]["native"]["query"] == edited
    assert "1 changed in the UI (left alone)" in run.lines[-1]

    forced = Run(fake, env, "--force")
    assert forced.code == 0, forced.output
    assert forced.writes() == [("POST", "/api/session"), ("PUT", f"/api/card/{card_id}")]
    assert f"question {name}: replaced (--force)" in forced.lines
    restored = fake.cards[card_id]["dataset_query"]["native"]["query"]
    assert restored == CONTENT.questions["weekly_active_learners"].render(f"{PROJECT}.{DATASET}")

    assert Run(fake, env).writes() == [("POST", "/api/session")]


def test_ui_changes_to_names_settings_and_dashboards_are_detected(provisioned, env) -> None:
    fake, _ = provisioned
    q = CONTENT.questions["course_completion_rate"]
    fake.ui_edit_card(q.name, visualization_settings={**q.visualization_settings, "graph.show_values": True})
    fake.ui_move_dashcard(CONTENT.dashboards["training_attendance"].name, 1, row=20)
    run = Run(fake, env)
    assert run.writes() == [("POST", "/api/session")]
    assert f"question changed in the UI: {q.name}; not overwritten, run with --force to replace" in run.lines
    dash = CONTENT.dashboards["training_attendance"].name
    assert f"dashboard changed in the UI: {dash}; not overwritten, run with --force to replace" in run.lines

    forced = Run(fake, env, "--force")
    dash_id = fake.dashboard_named(dash)["id"]
    card_id = fake.card_named(q.name)["id"]
    assert sorted(forced.writes()) == sorted([("POST", "/api/session"), ("PUT", f"/api/card/{card_id}"),
                                              ("PUT", f"/api/dashboard/{dash_id}")])
    put = forced.bodies("PUT", f"/api/dashboard/{dash_id}")[0]
    assert all(dc["id"] > 0 for dc in put["dashcards"]), "live dashcards keep their ids"
    assert Run(fake, env).writes() == [("POST", "/api/session")]


def test_a_question_with_the_name_but_no_fingerprint_is_left_alone(provisioned, env) -> None:
    fake, _ = provisioned
    name = CONTENT.questions["revenue_by_category"].name
    fake.ui_edit_card(name, description="made by hand")
    run = Run(fake, env)
    assert (f"question changed in the UI: {name}; not overwritten, run with --force to replace"
            " (no corisync fingerprint)") in run.lines
    assert run.writes() == [("POST", "/api/session")]


# --- file changes ----------------------------------------------------------------------------------------
@pytest.fixture
def content_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(CONTENT_DIR, tmp_path / "metabase"))


def test_a_changed_question_file_updates_exactly_that_card(content_copy, env) -> None:
    fake = FakeMetabase()
    assert Run(fake, env, "--content", str(content_copy)).code == 0
    path = content_copy / "questions" / "enrollments_by_month.yml"
    path.write_text(path.read_text().replace("order by enrollment_month", "order by enrollment_month desc"))
    card_id = fake.card_named(CONTENT.questions["enrollments_by_month"].name)["id"]

    plan = Run(fake, env, "--content", str(content_copy), "--dry-run")
    assert plan.writes() == [("POST", "/api/session")]
    assert f"question {CONTENT.questions['enrollments_by_month'].name}: would update" in plan.lines

    run = Run(fake, env, "--content", str(content_copy))
    assert run.code == 0, run.output
    assert run.writes() == [("POST", "/api/session"), ("PUT", f"/api/card/{card_id}")]
    body = run.bodies("PUT", f"/api/card/{card_id}")[0]
    assert body["dataset_query"]["native"]["query"].rstrip().endswith("order by enrollment_month desc")
    assert body["collection_id"] == fake.cards[card_id]["collection_id"]
    assert Run(fake, env, "--content", str(content_copy)).writes() == [("POST", "/api/session")]


def test_a_changed_dashboard_file_updates_that_dashboard_keeping_its_cards(content_copy, env) -> None:
    fake = FakeMetabase()
    assert Run(fake, env, "--content", str(content_copy)).code == 0
    path = content_copy / "dashboards" / "weekly_active_learners.yml"
    path.write_text(path.read_text().replace("size_y: 6}", "size_y: 9}"))
    dash = fake.dashboard_named(CONTENT.dashboards["weekly_active_learners"].name)
    old_dashcards = {dc["id"] for dc in dash["dashcards"]}
    run = Run(fake, env, "--content", str(content_copy))
    assert run.writes() == [("POST", "/api/session"), ("PUT", f"/api/dashboard/{dash['id']}")]
    put = run.bodies("PUT", f"/api/dashboard/{dash['id']}")[0]
    assert {dc["id"] for dc in put["dashcards"]} == old_dashcards
    assert [dc["size_y"] for dc in put["dashcards"]] == [7, 9]


def test_a_new_marts_dataset_updates_every_question(provisioned, env) -> None:
    fake, _ = provisioned
    run = Run(fake, {**env, "CORISYNC_BQ_MARTS_DATASET": "other_marts"})
    assert sorted(run.writes()) == sorted([("POST", "/api/session")] + [
        ("PUT", f"/api/card/{fake.card_named(CONTENT.questions[k].name)['id']}") for k in QUESTIONS])
    # the connection's dataset filter differs too: reported, replaced only with --force
    assert any(line.startswith(f"database {CONTENT.database.name}: differs from the files")
               and "dataset-filters-patterns" in line for line in run.lines)


def test_dry_run_on_a_fresh_instance_writes_nothing(env, key_file) -> None:
    fake = FakeMetabase()
    run = Run(fake, env, "--dry-run")
    assert run.code == 0, run.output
    assert run.calls() == [("GET", "/api/health"), ("GET", "/api/session/properties")]
    assert not fake.users and not fake.cards
    assert f"question {CONTENT.questions[QUESTIONS[0]].name}: would create" in run.lines
    assert run.lines[-1].startswith(f"plan: {3 + len(QUESTIONS) + len(DASHBOARDS)} to create")
    _assert_no_secret(run, key_file)


def test_waits_while_metabase_is_starting(env) -> None:
    fake = FakeMetabase(unhealthy_polls=3)
    run = Run(fake, env)
    assert run.code == 0, run.output
    assert run.calls()[:5] == [("GET", "/api/health")] * 4 + [("GET", "/api/session/properties")]


# --- errors ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("missing", ["METABASE_BQ_CREDENTIALS_FILE", "CORISYNC_GCP_PROJECT", "METABASE_ADMIN_PASSWORD"])
def test_a_missing_variable_fails_before_any_request(env, missing) -> None:
    fake = FakeMetabase()
    run = Run(fake, {k: v for k, v in env.items() if k != missing})
    assert run.code == 1
    assert fake.requests == []
    assert len(run.lines) == 1 and run.lines[0].startswith("error: ") and missing in run.lines[0], run.lines
    if missing == "METABASE_BQ_CREDENTIALS_FILE":
        assert "database.yml" in run.lines[0] and "service-account-json" in run.lines[0]


def test_an_unreadable_credentials_file_fails_before_any_request(env, tmp_path) -> None:
    fake = FakeMetabase()
    run = Run(fake, {**env, "METABASE_BQ_CREDENTIALS_FILE": str(tmp_path / "absent.json")})
    assert run.code == 1 and fake.requests == []
    assert "METABASE_BQ_CREDENTIALS_FILE" in run.output and "absent.json" in run.output


def test_bad_content_fails_naming_the_file(content_copy, env) -> None:
    fake = FakeMetabase()
    path = content_copy / "questions" / "weekly_active_learners.yml"
    path.write_text(path.read_text().replace("display: line", "display: sparkline"))
    run = Run(fake, env, "--content", str(content_copy))
    assert run.code == 1 and fake.requests == []
    assert str(path) in run.output and "display" in run.output

    path.write_text(path.read_text().replace("display: sparkline", "display: line"))
    dash = content_copy / "dashboards" / "course_completion.yml"
    dash.write_text(dash.read_text().replace("question: revenue_by_category", "question: revenue_by_region"))
    run = Run(fake, env, "--content", str(content_copy))
    assert run.code == 1 and fake.requests == []
    assert str(dash) in run.output and "revenue_by_region" in run.output


def test_a_secret_written_into_database_yml_is_refused(content_copy, env) -> None:
    path = content_copy / "database.yml"
    path.write_text(path.read_text().replace("${file:METABASE_BQ_CREDENTIALS_FILE}", "'{\"private_key\": \"x\"}'"))
    run = Run(FakeMetabase(), env, "--content", str(content_copy))
    assert run.code == 1 and "service-account-json looks secret" in run.output


def test_api_errors_are_reported_without_secrets(env, key_file) -> None:
    # a server that echoes the request body back in its error (as validation errors may)
    fake = FakeMetabase()
    fake.fail[("POST", "/api/database")] = (500, f"boom {key_file.read_text()} {ADMIN_PASSWORD}")
    run = Run(fake, env)
    assert run.code == 1
    assert run.lines[-1].startswith("error: POST /api/database: HTTP 500: boom ***")
    _assert_no_secret(run, key_file)


def test_wrong_admin_password_is_an_error(provisioned, env) -> None:
    fake, _ = provisioned
    run = Run(fake, {**env, "METABASE_ADMIN_PASSWORD": "wrong-password-x"})
    assert run.code == 1 and "POST /api/session: HTTP 401" in run.output
    assert "wrong-password-x" not in run.output
