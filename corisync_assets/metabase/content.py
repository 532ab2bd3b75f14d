"""The Metabase content kept in the repository (metabase/): models, loading and validation.

    metabase/database.yml        the BigQuery connection; secrets and settings as ${NAME} / ${file:NAME}
    metabase/collection.yml      the collection everything below is saved in
    metabase/questions/*.yml     native BigQuery SQL questions reading the marts as {{ marts }}.mart_x
    metabase/dashboards/*.yml    dashboards placing questions (by file name) on Metabase's 24-column grid

A bad file fails with a ContentError naming the file. ``${NAME}`` is replaced by the variable's value and
``${file:NAME}`` by the contents of the file the variable names (the service-account key): such values are
secrets, never compared with what Metabase returns (it redacts them) and never printed. Tested against an
API double and the real marts (tests/metabase), as Metabase cannot run on the development machine.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from corisync_assets.environment import ENV_VARS

from .config import ConfigError

GRID_WIDTH = 24  # Metabase's dashboard grid
FINGERPRINT = re.compile(r"\s*corisync:sha256:([0-9a-f]{64})\s*$")
_REFERENCE = re.compile(r"\$\{(file:)?([A-Za-z_][A-Za-z0-9_]*)\}")
_MARTS = re.compile(r"\{\{\s*marts\s*\}\}\.([A-Za-z_][A-Za-z0-9_]*)")
_TEMPLATE_TAG = re.compile(r"\{\{.*?\}\}|\[\[")
_SECRET_KEY = re.compile(r"(password|secret|token|json|key)", re.I)

Display = Literal["table", "bar", "row", "line", "area", "combo", "pie", "scalar", "funnel", "pivot", "progress"]


class ContentError(ConfigError):
    """A content file is malformed or refers to something missing; the message starts with the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSpec(_Strict):
    name: str
    engine: str
    details: dict[str, Any]


class ResolvedDatabase(_Strict):
    name: str
    engine: str
    details: dict[str, Any] = Field(repr=False)
    secret_keys: frozenset[str]

    @property
    def public_details(self) -> dict[str, Any]:
        """The details that may be shown and compared (secrets left out)."""
        return {k: v for k, v in self.details.items() if k not in self.secret_keys}

    @property
    def secret_values(self) -> list[str]:
        return [str(self.details[k]) for k in self.secret_keys]


class CollectionSpec(_Strict):
    name: str
    description: str = ""


class QuestionSpec(_Strict):
    key: str  # the file name without .yml; dashboards refer to questions by it
    name: str
    description: str = ""
    display: Display
    visualization_settings: dict[str, Any] = Field(default_factory=dict)
    sql: str

    @property
    def marts(self) -> list[str]:
        """The mart relations the SQL reads (``{{ marts }}.<name>``)."""
        return sorted(set(_MARTS.findall(self.sql)))

    def render(self, marts: str) -> str:
        """The SQL for BigQuery, each ``{{ marts }}.mart_x`` as the quoted path `` `<marts>.mart_x` ``."""
        return render_sql(self.sql, marts)


class DashCardSpec(_Strict):
    question: str
    row: int = Field(ge=0)
    col: int = Field(ge=0, lt=GRID_WIDTH)
    size_x: int = Field(ge=1, le=GRID_WIDTH)
    size_y: int = Field(ge=1)

    @model_validator(mode="after")
    def _fits(self) -> DashCardSpec:
        if self.col + self.size_x > GRID_WIDTH:
            raise ValueError(f"card {self.question!r} is wider than the {GRID_WIDTH}-column grid")
        return self


class DashboardSpec(_Strict):
    key: str
    name: str
    description: str = ""
    cards: list[DashCardSpec] = Field(min_length=1)


class Content(_Strict):
    root: Path
    database: DatabaseSpec
    collection: CollectionSpec
    questions: dict[str, QuestionSpec]
    dashboards: dict[str, DashboardSpec]

    def resolve_database(self, environ: Mapping[str, str]) -> ResolvedDatabase:
        """database.yml with its ${...} references filled in from ``environ`` (declared variables only)."""
        where = self.root / "database.yml"
        details: dict[str, Any] = {}
        secret: set[str] = set()
        for key, raw in self.database.details.items():
            if not isinstance(raw, str):
                details[key] = raw
                continue
            refs = _REFERENCE.findall(raw)
            if any(is_file for is_file, _ in refs):
                secret.add(key)
                if _REFERENCE.fullmatch(raw) is None:
                    raise ContentError(f"{where}: details.{key}: a ${{file:...}} reference must be the whole value")
            details[key] = _REFERENCE.sub(lambda m, key=key: _lookup(where, key, m, environ), raw)
        return ResolvedDatabase(name=self.database.name, engine=self.database.engine, details=details,
                                secret_keys=frozenset(secret))


def render_sql(sql: str, marts: str) -> str:
    return _MARTS.sub(lambda m: f"`{marts}.{m.group(1)}`", sql)


def _lookup(where: Path, key: str, match: re.Match[str], environ: Mapping[str, str]) -> str:
    is_file, name = match.group(1), match.group(2)
    value = environ.get(name, "")
    if not value:
        raise ContentError(f"{where}: details.{key}: environment variable {name} is not set")
    if not is_file:
        return value
    path = Path(value)
    try:
        return path.read_text()
    except OSError as exc:
        raise ContentError(f"{where}: details.{key}: cannot read the file {name} names ({path}): "
                           f"{exc.strerror or exc}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ContentError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ContentError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ContentError(f"{path}: expected a mapping at the top level")
    return doc


def _model(cls: type[BaseModel], path: Path, **extra: Any) -> Any:
    try:
        return cls(**_read_yaml(path), **extra)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<file>'}: {e['msg']}" for e in exc.errors())
        raise ContentError(f"{path}: {problems}") from None
    except TypeError as exc:  # e.g. a `key:` written in the file
        raise ContentError(f"{path}: {exc}") from None


def _check_database(path: Path, spec: DatabaseSpec) -> None:
    for key, raw in spec.details.items():
        refs = _REFERENCE.findall(raw) if isinstance(raw, str) else []
        for _is_file, name in refs:
            if name not in ENV_VARS:
                raise ContentError(f"{path}: details.{key}: {name} is not declared in "
                                   "corisync_assets.environment.ENV_VARS")
        if _SECRET_KEY.search(key) and not (isinstance(raw, str) and _REFERENCE.fullmatch(raw)):
            raise ContentError(f"{path}: details.{key} looks secret: give it as ${{NAME}} or ${{file:NAME}}, "
                               "never as a value in the file")


def _check_question(path: Path, q: QuestionSpec) -> None:
    if not q.marts:
        raise ContentError(f"{path}: sql reads no mart: refer to the marts as {{{{ marts }}}}.<mart name>")
    leftover = _TEMPLATE_TAG.search(_MARTS.sub("", q.sql))
    if leftover:
        raise ContentError(f"{path}: sql: only {{{{ marts }}}}.<name> may be templated, found {leftover.group(0)!r}")


def _check_dashboard(path: Path, d: DashboardSpec, questions: Mapping[str, QuestionSpec]) -> None:
    taken: dict[tuple[int, int], str] = {}
    for card in d.cards:
        if card.question not in questions:
            raise ContentError(f"{path}: card {card.question!r}: no such question (questions/{card.question}.yml)")
        for r in range(card.row, card.row + card.size_y):
            for c in range(card.col, card.col + card.size_x):
                if (r, c) in taken:
                    raise ContentError(f"{path}: cards {taken[(r, c)]!r} and {card.question!r} overlap")
                taken[(r, c)] = card.question


def load_content(root: str | Path) -> Content:
    """Load and validate every content file under ``root``; raise ContentError naming the bad file."""
    root = Path(root)
    if not (root / "database.yml").is_file():
        raise ContentError(f"{root / 'database.yml'}: missing (is {root} the metabase/ content folder?)")
    database = _model(DatabaseSpec, root / "database.yml")
    _check_database(root / "database.yml", database)
    collection = _model(CollectionSpec, root / "collection.yml")
    questions: dict[str, QuestionSpec] = {}
    names: dict[str, Path] = {}
    for path in sorted((root / "questions").glob("*.yml")):
        q = _model(QuestionSpec, path, key=path.stem)
        _check_question(path, q)
        if q.name in names:
            raise ContentError(f"{path}: name {q.name!r} is also used by {names[q.name]}")
        names[q.name] = path
        questions[q.key] = q
    dashboards: dict[str, DashboardSpec] = {}
    names = {}
    for path in sorted((root / "dashboards").glob("*.yml")):
        d = _model(DashboardSpec, path, key=path.stem)
        _check_dashboard(path, d, questions)
        if d.name in names:
            raise ContentError(f"{path}: name {d.name!r} is also used by {names[d.name]}")
        names[d.name] = path
        dashboards[d.key] = d
    if not questions:
        raise ContentError(f"{root / 'questions'}: no question files")
    return Content(root=root, database=database, collection=collection, questions=questions,
                   dashboards=dashboards)


# --- fingerprints: what was applied, kept at the end of the description ---------------------------------
def fingerprint(managed: Mapping[str, Any]) -> str:
    blob = json.dumps(managed, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def split_description(description: str | None) -> tuple[str, str | None]:
    """(the human part, the stored fingerprint or None)."""
    text = description or ""
    match = FINGERPRINT.search(text)
    if not match:
        return text, None
    return text[: match.start()].rstrip(), match.group(1)


def with_fingerprint(description: str, digest: str) -> str:
    line = f"corisync:sha256:{digest}"
    return f"{description.rstrip()}\n\n{line}" if description.strip() else line
