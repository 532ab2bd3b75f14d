"""A small httpx client for Metabase's REST API (v0.56): waiting for the instance, logging in, JSON calls.

Authentication: on a fresh instance (``GET /api/session/properties`` has a ``setup-token`` and no user
yet) the first admin is created with ``POST /api/setup``; otherwise ``POST /api/session`` logs in. The
session id travels in the ``X-Metabase-Session`` header. Only the wait for ``/api/health`` is retried
(tenacity), as Metabase takes minutes to start; every other call fails at once with a MetabaseError whose
message never holds a secret. Tested against an API double (tests/metabase/test_provision.py), as Metabase
cannot run on the development machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
from tenacity import RetryError, retry, retry_if_result, stop_after_delay, wait_fixed

TIMEOUT = httpx.Timeout(20.0, connect=5.0)
SESSION_HEADER = "X-Metabase-Session"


class MetabaseError(RuntimeError):
    """A call to Metabase failed; the message names the call (secrets redacted)."""


class MetabaseClient:
    def __init__(self, url: str, *, secrets: Iterable[str] = (), transport: httpx.BaseTransport | None = None,
                 timeout: httpx.Timeout = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self._secrets = [s for s in secrets if s]
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport,
                                  headers={"Accept": "application/json"})
        self.first_time_setup = False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MetabaseClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # --- waiting and logging in ------------------------------------------------------------------------
    def wait_until_healthy(self, timeout_s: float = 600.0, interval_s: float = 5.0) -> None:
        """Poll ``GET /api/health`` until it answers ``{"status": "ok"}`` (Metabase migrates on first start)."""

        @retry(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(timeout_s), wait=wait_fixed(interval_s))
        def healthy() -> bool:
            try:
                response = self._http.get("/api/health")
            except httpx.TransportError:
                return False
            try:
                return response.status_code == 200 and response.json().get("status") == "ok"
            except ValueError:
                return False

        try:
            healthy()
        except RetryError:
            raise MetabaseError(f"{self.url}/api/health did not answer ok within {timeout_s:.0f} s") from None

    def _setup_token(self) -> str | None:
        """The setup token while the instance has no user yet, else None."""
        props = self.get("/api/session/properties") or {}
        token = props.get("setup-token") or props.get("setup_token")
        return token if token and not props.get("has-user-setup") else None

    def needs_setup(self) -> bool:
        return self._setup_token() is not None

    def login(self, email: str, password: str, *, site_name: str = "CoriSync") -> None:
        """Create the first admin on a fresh instance, else log in; keep the session for later calls."""
        self._secrets.append(password)
        token = self._setup_token()
        if token:
            body = {
                "token": token,
                "user": {"email": email, "password": password, "first_name": "CoriSync", "last_name": "Admin"},
                "prefs": {"site_name": site_name},
            }
            session = self.post("/api/setup", body)
            self.first_time_setup = True
        else:
            session = self.post("/api/session", {"username": email, "password": password})
        session_id = session.get("id") if isinstance(session, dict) else None
        if not session_id:
            raise MetabaseError("Metabase answered the login without a session id")
        self._secrets.append(str(session_id))
        self._http.headers[SESSION_HEADER] = str(session_id)

    # --- JSON calls ------------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, json: Any = None, params: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise MetabaseError(f"{method} {path}: {self.redact(str(exc)) or type(exc).__name__}") from None
        if response.status_code >= 400:
            body = self.redact(response.text.strip())[:300]
            raise MetabaseError(f"{method} {path}: HTTP {response.status_code}: {body}")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise MetabaseError(f"{method} {path}: the answer is not JSON") from None

    def get(self, path: str, params: Any = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json=body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body)
