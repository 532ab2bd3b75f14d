"""An in-process double of Metabase's REST API (the v0.56 endpoints the provisioning job uses), behind an
httpx.MockTransport: it keeps state (users, sessions, databases, collections, cards, dashboards with ids),
checks authentication and the request bodies' required fields, and records every request."""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

SETUP_TOKEN = "0f6e8b0c-setup-token-of-the-double"
REDACTED = "**MetabasePass**"


@dataclass
class Request:
    method: str
    path: str
    params: list[tuple[str, str]]
    body: Any
    session: str | None

    @property
    def call(self) -> tuple[str, str]:
        return self.method, self.path


@dataclass
class FakeMetabase:
    unhealthy_polls: int = 0  # answer /api/health with 503 this many times first (Metabase starting)
    fail: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)  # (method, path) -> answer
    requests: list[Request] = field(default_factory=list)
    users: dict[str, str] = field(default_factory=dict)
    sessions: set[str] = field(default_factory=set)
    databases: dict[int, dict] = field(default_factory=dict)
    collections: dict[int, dict] = field(default_factory=dict)
    cards: dict[int, dict] = field(default_factory=dict)
    dashboards: dict[int, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._dashcard_ids = itertools.count(101)
        self._session_ids = (f"session-{n}-of-the-double" for n in itertools.count(1))
        self.transport = httpx.MockTransport(self._handle)

    # --- what tests look at ------------------------------------------------------------------------------
    def calls(self) -> list[tuple[str, str]]:
        return [r.call for r in self.requests]

    def writes(self) -> list[tuple[str, str]]:
        return [r.call for r in self.requests if r.method != "GET"]

    def card_named(self, name: str) -> dict:
        return next(c for c in self.cards.values() if c["name"] == name and not c["archived"])

    def dashboard_named(self, name: str) -> dict:
        return next(d for d in self.dashboards.values() if d["name"] == name)

    # --- the UI, acting without the API log --------------------------------------------------------------
    def ui_edit_card(self, name: str, **changes: Any) -> None:
        card = self.card_named(name)
        if "query" in changes:
            card["dataset_query"]["native"]["query"] = changes.pop("query")
        card.update(changes)

    def ui_move_dashcard(self, dashboard: str, index: int, **layout: int) -> None:
        self.dashboard_named(dashboard)["dashcards"][index].update(layout)

    # --- HTTP --------------------------------------------------------------------------------------------
    def _handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        session = request.headers.get("X-Metabase-Session")
        path = request.url.path
        self.requests.append(Request(request.method, path, list(request.url.params.multi_items()), body, session))
        if (request.method, path) in self.fail:
            status, text = self.fail[(request.method, path)]
            return httpx.Response(status, text=text)
        if path == "/api/health":
            if self.unhealthy_polls > 0:
                self.unhealthy_polls -= 1
                return httpx.Response(503, json={"status": "initializing", "progress": 0.5})
            return httpx.Response(200, json={"status": "ok"})
        if path == "/api/session/properties" and request.method == "GET":
            # the token stays readable after setup; has-user-setup tells
            return httpx.Response(200, json={"setup-token": SETUP_TOKEN, "has-user-setup": bool(self.users),
                                             "version": {"tag": "v0.56.9"}})
        if path == "/api/setup" and request.method == "POST":
            return self._setup(body)
        if path == "/api/session" and request.method == "POST":
            if self.users.get(body.get("username")) != body.get("password"):
                return httpx.Response(401, json={"errors": {"password": "did not match stored password"}})
            return self._new_session()
        if session not in self.sessions:
            return httpx.Response(401, text="Unauthenticated")
        for pattern, handler in self._routes():
            match = re.fullmatch(pattern, f"{request.method} {path}")
            if match:
                return handler(body, request.url.params, *map(int, match.groups()))
        return httpx.Response(404, text=f"no route {request.method} {path}")

    def _routes(self):
        return [
            (r"GET /api/database", self._list_databases),
            (r"POST /api/database", self._create_database),
            (r"PUT /api/database/(\d+)", self._update_database),
            (r"GET /api/collection", self._list_collections),
            (r"POST /api/collection", self._create_collection),
            (r"PUT /api/collection/(\d+)", self._update_collection),
            (r"GET /api/collection/(\d+)/items", self._collection_items),
            (r"POST /api/card", self._create_card),
            (r"GET /api/card/(\d+)", self._get_card),
            (r"PUT /api/card/(\d+)", self._update_card),
            (r"POST /api/dashboard", self._create_dashboard),
            (r"GET /api/dashboard/(\d+)", self._get_dashboard),
            (r"PUT /api/dashboard/(\d+)", self._update_dashboard),
        ]

    def _new_session(self) -> httpx.Response:
        session = next(self._session_ids)
        self.sessions.add(session)
        return httpx.Response(200, json={"id": session})

    def _setup(self, body: dict) -> httpx.Response:
        if self.users:
            return httpx.Response(403, text="The /api/setup route can only be used to create the first user")
        if body.get("token") != SETUP_TOKEN:
            return httpx.Response(400, json={"errors": {"token": "Token does not match the setup token."}})
        user = body.get("user") or {}
        if not user.get("email") or not user.get("password") or not (body.get("prefs") or {}).get("site_name"):
            return httpx.Response(400, json={"errors": {"user": "email, password and prefs.site_name required"}})
        self.users[user["email"]] = user["password"]
        return self._new_session()

    @staticmethod
    def _missing(body: dict, *keys: str) -> httpx.Response | None:
        absent = [k for k in keys if k not in (body or {})]
        return httpx.Response(400, json={"errors": {k: "required" for k in absent}}) if absent else None

    # databases: secrets come back redacted, as Metabase does
    def _public_db(self, db: dict) -> dict:
        out = copy.deepcopy(db)
        if "service-account-json" in out["details"]:
            out["details"]["service-account-json"] = REDACTED
        return out

    def _list_databases(self, _body, _params) -> httpx.Response:
        data = [self._public_db(d) for d in self.databases.values()]
        return httpx.Response(200, json={"data": data, "total": len(data)})

    def _create_database(self, body, _params) -> httpx.Response:
        if (bad := self._missing(body, "name", "engine", "details")) is not None:
            return bad
        db_id = next(self._ids)
        self.databases[db_id] = {"id": db_id, "name": body["name"], "engine": body["engine"],
                                 "details": copy.deepcopy(body["details"]), "is_sample": False}
        return httpx.Response(200, json=self._public_db(self.databases[db_id]))

    def _update_database(self, body, _params, db_id) -> httpx.Response:
        self.databases[db_id].update(copy.deepcopy(body))
        return httpx.Response(200, json=self._public_db(self.databases[db_id]))

    def _list_collections(self, _body, _params) -> httpx.Response:
        root = {"id": "root", "name": "Our analytics", "can_write": True}
        return httpx.Response(200, json=[root, *copy.deepcopy(list(self.collections.values()))])

    def _create_collection(self, body, _params) -> httpx.Response:
        if (bad := self._missing(body, "name")) is not None:
            return bad
        coll_id = next(self._ids)
        self.collections[coll_id] = {"id": coll_id, "name": body["name"], "description": body.get("description"),
                                     "location": "/", "archived": False, "personal_owner_id": None}
        return httpx.Response(200, json=self.collections[coll_id])

    def _update_collection(self, body, _params, coll_id) -> httpx.Response:
        self.collections[coll_id].update(body)
        return httpx.Response(200, json=self.collections[coll_id])

    def _collection_items(self, _body, params, coll_id) -> httpx.Response:
        models = params.get_list("models") or ["card", "dashboard"]
        data = []
        if "card" in models:
            data += [{"id": c["id"], "name": c["name"], "model": "card", "description": c["description"]}
                     for c in self.cards.values() if c["collection_id"] == coll_id and not c["archived"]]
        if "dashboard" in models:
            data += [{"id": d["id"], "name": d["name"], "model": "dashboard", "description": d["description"]}
                     for d in self.dashboards.values() if d["collection_id"] == coll_id]
        return httpx.Response(200, json={"data": data, "total": len(data), "models": models})

    def _create_card(self, body, _params) -> httpx.Response:
        if (bad := self._missing(body, "name", "display", "dataset_query", "visualization_settings")) is not None:
            return bad
        query = body["dataset_query"]
        if query.get("type") != "native" or query.get("database") not in self.databases:
            return httpx.Response(400, json={"errors": {"dataset_query": "native query on a known database"}})
        card_id = next(self._ids)
        self.cards[card_id] = {"id": card_id, "archived": False, "type": body.get("type", "question"),
                               "result_metadata": [], "creator_id": 1, **copy.deepcopy(body)}
        return httpx.Response(200, json=self.cards[card_id])

    def _get_card(self, _body, _params, card_id) -> httpx.Response:
        if card_id not in self.cards:
            return httpx.Response(404, text="Not found.")
        return httpx.Response(200, json=self.cards[card_id])

    def _update_card(self, body, _params, card_id) -> httpx.Response:
        self.cards[card_id].update(copy.deepcopy(body))
        return httpx.Response(200, json=self.cards[card_id])

    def _create_dashboard(self, body, _params) -> httpx.Response:
        if (bad := self._missing(body, "name")) is not None:
            return bad
        dash_id = next(self._ids)
        self.dashboards[dash_id] = {"id": dash_id, "name": body["name"], "description": body.get("description"),
                                    "collection_id": body.get("collection_id"), "dashcards": [], "tabs": [],
                                    "parameters": []}
        return httpx.Response(200, json=self.dashboards[dash_id])

    def _get_dashboard(self, _body, _params, dash_id) -> httpx.Response:
        return httpx.Response(200, json=self.dashboards[dash_id])

    def _update_dashboard(self, body, _params, dash_id) -> httpx.Response:
        dash = self.dashboards[dash_id]
        for key in ("name", "description", "collection_id"):
            if key in body:
                dash[key] = body[key]
        if "dashcards" in body:
            existing = {dc["id"] for dc in dash["dashcards"]}
            new = []
            for dc in body["dashcards"]:
                if dc["id"] >= 0 and dc["id"] not in existing:
                    return httpx.Response(404, text=f"dashcard {dc['id']} is not on dashboard {dash_id}")
                if dc["card_id"] not in self.cards:
                    return httpx.Response(400, text=f"card {dc['card_id']} does not exist")
                new.append({**copy.deepcopy(dc), "id": dc["id"] if dc["id"] >= 0 else next(self._dashcard_ids),
                            "dashboard_id": dash_id})
            dash["dashcards"] = new
        return httpx.Response(200, json=dash)
