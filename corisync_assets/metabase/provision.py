"""Plan and apply the content of metabase/ to a Metabase instance, idempotently.

Objects are found by name: the database among all databases, the collection among the top-level ones,
questions and dashboards among the items of that collection. What is missing is created; what the files
changed is updated; what matches is left alone, so a second run sends no write request.

UI edits are detected with a fingerprint: every question and dashboard the job writes carries, as the
last line of its description, ``corisync:sha256:<hex>``, the digest of its managed fields as applied
(name, description, display, visualization settings, SQL, database, collection; for a dashboard its cards
and their places). If the live object no longer hashes to its stored fingerprint, someone changed it in
the UI: it is reported ("changed in the UI: <name>; not overwritten, run with --force to replace") and
left alone unless ``force``. An object with the name but no fingerprint is treated the same way. The
database connection has no fingerprint (Metabase redacts its secret); if its non-secret settings differ
from database.yml it is reported and replaced only with ``force``.

Tested against an API double that records every request (tests/metabase/test_provision.py), as Metabase
cannot run on the development machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .client import MetabaseClient
from .config import MetabaseConfig
from .content import (
    Content,
    DashboardSpec,
    QuestionSpec,
    ResolvedDatabase,
    fingerprint,
    split_description,
    with_fingerprint,
)

UI_CHANGED = "changed in the UI: {name}; not overwritten, run with --force to replace"


@dataclass
class Action:
    kind: str  # database | collection | question | dashboard
    name: str
    status: str  # create | update | unchanged | ui-changed | forced | differs | ambiguous
    note: str = ""

    def line(self, dry_run: bool) -> str:
        if self.status == "ui-changed":
            return f"{self.kind} {UI_CHANGED.format(name=self.name)}{self.note}"
        if self.status == "differs":
            return (f"{self.kind} {self.name}: differs from the files{self.note}; not overwritten, "
                    "run with --force to replace")
        if self.status == "ambiguous":
            return f"{self.kind} {self.name}: {self.note}; not touched"
        verb = {
            "create": ("would create", "created"),
            "update": ("would update", "updated"),
            "forced": ("would replace (--force)", "replaced (--force)"),
            "unchanged": ("unchanged", "unchanged"),
        }[self.status][0 if dry_run else 1]
        return f"{self.kind} {self.name}: {verb}{self.note}"


@dataclass
class Report:
    dry_run: bool
    actions: list[Action] = field(default_factory=list)

    def add(self, kind: str, name: str, status: str, note: str = "") -> None:
        self.actions.append(Action(kind, name, status, note))

    def count(self, status: str) -> int:
        return sum(a.status == status for a in self.actions)

    @property
    def ui_changed(self) -> list[str]:
        return [a.name for a in self.actions if a.status == "ui-changed"]

    def lines(self) -> list[str]:
        out = [a.line(self.dry_run) for a in self.actions]
        summary = ", ".join(f"{self.count(s)} {label}" for s, label in (
            ("create", "to create" if self.dry_run else "created"),
            ("update", "to update" if self.dry_run else "updated"),
            ("forced", "to replace" if self.dry_run else "replaced"),
            ("unchanged", "unchanged"),
            ("ui-changed", "changed in the UI (left alone)"),
            ("differs", "differing (left alone)"),
            ("ambiguous", "ambiguous (left alone)"),
        ) if self.count(s) or s in ("create", "update", "unchanged"))
        out.append(("plan: " if self.dry_run else "done: ") + summary)
        return out


def _card_managed(q: QuestionSpec, sql: str, database_id: int | None, collection_id: int | None) -> dict[str, Any]:
    return {
        "name": q.name,
        "description": q.description.strip(),
        "display": q.display,
        "visualization_settings": q.visualization_settings,
        "query": sql,
        "database_id": database_id,
        "collection_id": collection_id,
    }


def _live_card_managed(card: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    description, stored = split_description(card.get("description"))
    dq = card.get("dataset_query") or {}
    query = (dq.get("native") or {}).get("query")
    if query is None and dq.get("stages"):  # MBQL 5 shape (Metabase 0.57+)
        query = (dq["stages"][0] or {}).get("native")
    managed = {
        "name": card.get("name"),
        "description": description.strip(),
        "display": card.get("display"),
        "visualization_settings": card.get("visualization_settings") or {},
        "query": query,
        "database_id": dq.get("database"),
        "collection_id": card.get("collection_id"),
    }
    return managed, stored


def _dashboard_managed(d: DashboardSpec, card_ids: dict[str, int | None], collection_id: int | None) -> dict:
    cards = sorted([card_ids.get(c.question), c.row, c.col, c.size_x, c.size_y] for c in d.cards)
    return {"name": d.name, "description": d.description.strip(), "collection_id": collection_id, "cards": cards}


def _live_dashboard_managed(dash: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    description, stored = split_description(dash.get("description"))
    dashcards = dash.get("dashcards") or dash.get("ordered_cards") or []
    cards = sorted([dc.get("card_id"), dc.get("row"), dc.get("col"), dc.get("size_x"), dc.get("size_y")]
                   for dc in dashcards)
    managed = {"name": dash.get("name"), "description": description.strip(),
               "collection_id": dash.get("collection_id"), "cards": cards}
    return managed, stored


def _decide(desired: str, live: str, stored: str | None, force: bool) -> str:
    """create/update/unchanged/ui-changed/forced for an existing object, from three digests."""
    if stored is not None and live == stored:
        return "unchanged" if stored == desired else "update"
    if live == desired:
        return "update"  # matches the files already; only the fingerprint is refreshed
    return "forced" if force else "ui-changed"


def _listing(answer: Any) -> list[dict[str, Any]]:
    """Metabase answers lists either bare or as {"data": [...]} (e.g. /api/database, collection items)."""
    if isinstance(answer, dict):
        answer = answer.get("data", [])
    return [x for x in answer or [] if isinstance(x, dict)]


class Provisioner:
    def __init__(self, client: MetabaseClient, content: Content, config: MetabaseConfig, *,
                 force: bool = False, dry_run: bool = False, fresh: bool = False) -> None:
        self.client = client
        self.fresh = fresh  # dry run on an instance not set up yet: nothing to read, everything to create
        self.content = content
        self.config = config
        self.force = force
        self.dry_run = dry_run
        self.report = Report(dry_run=dry_run)

    def apply(self, database: ResolvedDatabase) -> Report:
        db_id = self._database(database)
        collection_id = self._collection()
        items: dict[tuple[str, str], list[int]] = {}
        if collection_id is not None:
            answer = self.client.get(f"/api/collection/{collection_id}/items",
                                     params=[("models", "card"), ("models", "dashboard")])
            for item in _listing(answer):
                items.setdefault((item.get("model"), item.get("name")), []).append(item["id"])
        card_ids = self._questions(db_id, collection_id, items)
        self._dashboards(collection_id, card_ids, items)
        return self.report

    def _list(self, path: str) -> list[dict[str, Any]]:
        return [] if self.fresh else _listing(self.client.get(path))

    # --- database ----------------------------------------------------------------------------------------
    def _database(self, db: ResolvedDatabase) -> int | None:
        live = [d for d in self._list("/api/database") if d.get("name") == db.name]
        body = {"name": db.name, "engine": db.engine, "details": db.details, "is_full_sync": True}
        if not live:
            self.report.add("database", db.name, "create")
            return None if self.dry_run else self.client.post("/api/database", body)["id"]
        if len(live) > 1:
            self.report.add("database", db.name, "ambiguous", f"{len(live)} databases have this name")
            return min(d["id"] for d in live)
        current = live[0]
        live_details = current.get("details") or {}
        differing = sorted(k for k, v in db.public_details.items() if k in live_details and live_details[k] != v)
        if current.get("engine") != db.engine:
            differing.insert(0, "engine")
        if not differing:
            self.report.add("database", db.name, "unchanged")
        elif self.force:
            self.report.add("database", db.name, "forced", f" ({', '.join(differing)})")
            if not self.dry_run:
                self.client.put(f"/api/database/{current['id']}", body)
        else:
            self.report.add("database", db.name, "differs", f" ({', '.join(differing)})")
        return current["id"]

    # --- collection --------------------------------------------------------------------------------------
    def _collection(self) -> int | None:
        spec = self.content.collection
        live = [c for c in self._list("/api/collection")
                if c.get("name") == spec.name and isinstance(c.get("id"), int) and not c.get("archived")
                and c.get("personal_owner_id") is None and c.get("location", "/") == "/"]
        if not live:
            self.report.add("collection", spec.name, "create")
            if self.dry_run:
                return None
            body = {"name": spec.name, "description": spec.description.strip() or None, "parent_id": None}
            return self.client.post("/api/collection", body)["id"]
        current = min(live, key=lambda c: c["id"])
        if (current.get("description") or "").strip() != spec.description.strip():
            self.report.add("collection", spec.name, "update")
            if not self.dry_run:
                self.client.put(f"/api/collection/{current['id']}", {"description": spec.description.strip()})
        else:
            self.report.add("collection", spec.name, "unchanged")
        return current["id"]

    # --- questions ---------------------------------------------------------------------------------------
    def _questions(self, db_id: int | None, collection_id: int | None,
                   items: dict[tuple[str, str], list[int]]) -> dict[str, int | None]:
        card_ids: dict[str, int | None] = {}
        for key, q in self.content.questions.items():
            sql = q.render(self.config.marts)
            desired = _card_managed(q, sql, db_id, collection_id)
            digest = fingerprint(desired)
            body = {
                "name": q.name,
                "description": with_fingerprint(q.description.strip(), digest),
                "display": q.display,
                "visualization_settings": q.visualization_settings,
                "collection_id": collection_id,
                "dataset_query": {"type": "native", "native": {"query": sql, "template-tags": {}},
                                  "database": db_id},
            }
            ids = items.get(("card", q.name), [])
            if not ids:
                self.report.add("question", q.name, "create")
                created = None if self.dry_run else self.client.post("/api/card", {**body, "type": "question"})
                card_ids[key] = created["id"] if created else None
                continue
            card_ids[key] = min(ids)
            if len(ids) > 1:
                self.report.add("question", q.name, "ambiguous", f"{len(ids)} questions have this name")
                continue
            live, stored = _live_card_managed(self.client.get(f"/api/card/{ids[0]}"))
            status = _decide(digest, fingerprint(live), stored, self.force)
            self.report.add("question", q.name, status, " (no corisync fingerprint)"
                            if status in ("ui-changed", "forced") and stored is None else "")
            if status in ("update", "forced") and not self.dry_run:
                self.client.put(f"/api/card/{ids[0]}", body)
        return card_ids

    # --- dashboards --------------------------------------------------------------------------------------
    def _dashboards(self, collection_id: int | None, card_ids: dict[str, int | None],
                    items: dict[tuple[str, str], list[int]]) -> None:
        for d in self.content.dashboards.values():
            desired = _dashboard_managed(d, card_ids, collection_id)
            digest = fingerprint(desired)
            description = with_fingerprint(d.description.strip(), digest)
            ids = items.get(("dashboard", d.name), [])
            if not ids:
                self.report.add("dashboard", d.name, "create")
                if not self.dry_run:
                    created = self.client.post("/api/dashboard", {"name": d.name, "collection_id": collection_id,
                                                                  "description": d.description.strip() or None})
                    self.client.put(f"/api/dashboard/{created['id']}",
                                    {"description": description, "dashcards": self._dashcards(d, card_ids, [])})
                continue
            if len(ids) > 1:
                self.report.add("dashboard", d.name, "ambiguous", f"{len(ids)} dashboards have this name")
                continue
            dash = self.client.get(f"/api/dashboard/{ids[0]}")
            live, stored = _live_dashboard_managed(dash)
            status = _decide(digest, fingerprint(live), stored, self.force)
            self.report.add("dashboard", d.name, status, " (no corisync fingerprint)"
                            if status in ("ui-changed", "forced") and stored is None else "")
            if status in ("update", "forced") and not self.dry_run:
                existing = dash.get("dashcards") or dash.get("ordered_cards") or []
                self.client.put(f"/api/dashboard/{ids[0]}", {
                    "name": d.name, "description": description, "collection_id": collection_id,
                    "dashcards": self._dashcards(d, card_ids, existing),
                })

    @staticmethod
    def _dashcards(d: DashboardSpec, card_ids: dict[str, int | None], existing: list[dict]) -> list[dict]:
        """The dashboard's cards for ``PUT /api/dashboard/:id``: a live dashcard showing the same question
        keeps its id, new ones get negative ids (Metabase creates those and deletes the ones left out)."""
        reusable: dict[Any, list[int]] = {}
        for dc in existing:
            reusable.setdefault(dc.get("card_id"), []).append(dc["id"])
        out = []
        for n, c in enumerate(d.cards, start=1):
            card_id = card_ids[c.question]
            ids = reusable.get(card_id) or []
            out.append({
                "id": ids.pop(0) if ids else -n,
                "card_id": card_id,
                "row": c.row, "col": c.col, "size_x": c.size_x, "size_y": c.size_y,
                "parameter_mappings": [], "visualization_settings": {}, "series": [],
            })
        return out


def provision(client: MetabaseClient, content: Content, config: MetabaseConfig, database: ResolvedDatabase, *,
              force: bool = False, dry_run: bool = False, wait_s: float = 600.0, poll_s: float = 5.0) -> Report:
    """Wait for Metabase, log in (first-time setup on a fresh instance), then plan and apply."""
    client.wait_until_healthy(timeout_s=wait_s, interval_s=poll_s)
    if dry_run and client.needs_setup():
        provisioner = Provisioner(client, content, config, force=force, dry_run=True, fresh=True)
        provisioner.report.add("instance", f"first-time setup (admin {config.admin_email})", "create")
        return provisioner.apply(database)
    client.login(config.admin_email, config.admin_password)
    return Provisioner(client, content, config, force=force, dry_run=dry_run).apply(database)
