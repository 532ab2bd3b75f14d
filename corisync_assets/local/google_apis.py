"""A double of the Google APIs the local Airbyte connectors call: Google cannot be reached from here.

The local stack runs the real PyPI connectors (``airbyte-source-google-sheets``,
``airbyte-source-google-analytics-data-api``; ``corisync_assets/local/airbyte/launch.py``) with only their
base URLs pointed at this app. It serves the subsets of the APIs those connectors call, with Google's
response shapes, from fixtures kept in the repo:

* OAuth token endpoint (``POST /oauth2/token``, ``/oauth2/v4/token``): a service account's JWT-bearer
  assertion (well-formed RS256 JWT with ``iss``, ``scope`` and an unexpired ``exp``; the signature is not
  checked: the double does not know the account's public key) or an OAuth client's refresh token. Issues
  opaque bearer tokens bound to the requested scopes; every API call below needs one (401 otherwise, 403 if
  the token lacks the API's read scope).
* Sheets API v4, spreadsheet ``SPREADSHEET_ID`` ("tc4a trainings 2026"):
  ``GET /sheets/v4/spreadsheets/{id}`` (``includeGridData``, ``ranges``: sheet properties and grid data
  with typed cells: ``userEnteredValue``/``effectiveValue``/``formattedValue``) and
  ``GET /sheets/v4/spreadsheets/{id}/values:batchGet`` (``ranges``, ``majorDimension``; formatted values:
  trailing empty cells and rows left out, empty rows inside the range as ``[]``, like Google).
  The workbook is a folder with one CSV per tab (``<tab>.csv``, header row first, cells as the sheet shows
  them; tabs in file-name order). Grids have at least Google's default 1000 rows x 26 columns.
  It is ``fixtures/training_workbook`` unless ``google_app(workbook_dir=...)`` or the environment variable
  ``CORISYNC_GOOGLE_WORKBOOK_DIR`` (read only here; tests and the 50k-row benchmark point it at a generated
  workbook) says otherwise. Files are re-read when they change, like a sheet a trainer keeps editing.
* GA4 Data API v1beta, property ``GA4_PROPERTY_ID``: ``GET /analyticsdata/v1beta/properties/{id}/metadata``
  and ``POST /analyticsdata/v1beta/properties/{id}:runReport`` over ``fixtures/ga4_course_pages.csv``
  (date, pagePath, sessions, screenPageViews, totalUsers; one row per page and day). Reports may ask for
  the dimensions date, pagePath, pagePathPlusQueryString (= pagePath), hostName and the three metrics; rows
  are summed over the dimensions a report leaves out (a real GA4 deduplicates totalUsers; the double cannot),
  filtered to the one date range, sorted by dimension values, paged with ``limit``/``offset``. Other
  dimensions and metrics answer 400 INVALID_ARGUMENT, naming them: the double serves the ``course_pages``
  report, not GA4.

Errors use Google's JSON error body (``{"error": {"code", "message", "status"}}``).
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import secrets
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse

FIXTURES_DIR = Path(__file__).parent / "fixtures"
WORKBOOK_DIR_VAR = "CORISYNC_GOOGLE_WORKBOOK_DIR"
SPREADSHEET_ID = "1tc4aTrainings2026-local-workbook-0001"
SPREADSHEET_TITLE = "tc4a trainings 2026"
GA4_PROPERTY_ID = "412345678"
GA4_FIXTURE = "ga4_course_pages.csv"
SHEETS_SCOPES = ("https://www.googleapis.com/auth/spreadsheets.readonly",
                 "https://www.googleapis.com/auth/spreadsheets", "https://www.googleapis.com/auth/drive.readonly")
GA4_SCOPES = ("https://www.googleapis.com/auth/analytics.readonly", "https://www.googleapis.com/auth/analytics")
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_ROWS, DEFAULT_COLUMNS = 1000, 26
TOKEN_TTL_S = 3599
GA4_DIMENSIONS = {"date": "Date", "pagePath": "Page path", "pagePathPlusQueryString": "Page path + query string",
                  "hostName": "Hostname"}
GA4_METRICS = {"sessions": ("Sessions", "TYPE_INTEGER"), "screenPageViews": ("Views", "TYPE_INTEGER"),
               "totalUsers": ("Total users", "TYPE_INTEGER")}
GA4_HOST = "tc4a.example"
GA4_MAX_LIMIT = 250_000


class ApiError(Exception):
    def __init__(self, code: int, status: str, message: str):
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


# --- the workbook ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tab:
    title: str
    sheet_id: int
    index: int
    rows: list[list[str]]  #: as the CSV holds them, header row first

    @property
    def row_count(self) -> int:
        return max(DEFAULT_ROWS, len(self.rows))

    @property
    def column_count(self) -> int:
        return max(DEFAULT_COLUMNS, max((len(r) for r in self.rows), default=0))

    def properties(self) -> dict[str, Any]:
        return {"sheetId": self.sheet_id, "title": self.title, "index": self.index, "sheetType": "GRID",
                "gridProperties": {"rowCount": self.row_count, "columnCount": self.column_count,
                                   "frozenRowCount": 1}}


class Workbook:
    """The CSV folder, re-read when a file changes (mtime or size)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[tuple[int, int], list[list[str]]]] = {}

    def tabs(self) -> list[Tab]:
        files = sorted(self.folder.glob("*.csv"))
        if not files:
            raise ApiError(404, "NOT_FOUND", "Requested entity was not found.")
        return [Tab(f.stem, 0 if i == 0 else zlib.crc32(f.stem.encode()) % 2**31, i, self._rows(f))
                for i, f in enumerate(files)]

    def tab(self, title: str) -> Tab:
        for t in self.tabs():
            if t.title == title:
                return t
        raise ApiError(400, "INVALID_ARGUMENT", f"Unable to parse range: {_quote(title)}")

    def _rows(self, path: Path) -> list[list[str]]:
        st = path.stat()
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._cache.get(path)
            if hit and hit[0] == key:
                return hit[1]
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        with self._lock:
            self._cache[path] = (key, rows)
        return rows


# --- A1 ranges ---------------------------------------------------------------------------------------------

_A1 = re.compile(r"^(?P<c1>[A-Za-z]*)(?P<r1>\d*)(?::(?P<c2>[A-Za-z]*)(?P<r2>\d*))?$")


def _col_index(letters: str) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n - 1


def _col_letters(index: int) -> str:
    out, n = "", index + 1
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out


def _quote(title: str) -> str:
    return title if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", title) else "'" + title.replace("'", "''") + "'"


@dataclass(frozen=True)
class Range:
    tab: Tab
    row0: int  #: 0-based, inclusive
    row1: int  #: 0-based, exclusive
    col0: int
    col1: int

    def a1(self) -> str:
        return (f"{_quote(self.tab.title)}!{_col_letters(self.col0)}{self.row0 + 1}:"
                f"{_col_letters(self.col1 - 1)}{self.row1}")

    def cells(self) -> list[list[str]]:
        """The range's cells, rows and cells after the last non-empty one left out, like Google."""
        out = [[c for c in row[self.col0:self.col1]] for row in self.tab.rows[self.row0:self.row1]]
        out = [_rstrip(row) for row in out]
        while out and not out[-1]:
            out.pop()
        return out


def _rstrip(row: list[str]) -> list[str]:
    end = len(row)
    while end and row[end - 1] == "":
        end -= 1
    return row[:end]


def parse_range(book: Workbook, spec: str) -> Range:
    """``tab``, ``tab!1:1``, ``'a tab'!A2:F1002``, ``tab!A:C``; clipped to the grid, 400 beyond it."""
    title, cells = (spec.rpartition("!")[0], spec.rpartition("!")[2]) if "!" in spec else (spec, "")
    if title.startswith("'") and title.endswith("'") and len(title) >= 2:
        title = title[1:-1].replace("''", "'")
    tab = book.tab(title)
    row0, row1, col0, col1 = 0, tab.row_count, 0, tab.column_count
    if cells:
        m = _A1.match(cells)
        if not m or not any(m.groupdict(default="").values()):
            raise ApiError(400, "INVALID_ARGUMENT", f"Unable to parse range: {spec}")
        c1, r1, c2, r2 = (m.group(g) or "" for g in ("c1", "r1", "c2", "r2"))
        if m.group("c2") is None and m.group("r2") is None:  # a single cell or a single row/column
            c2, r2 = c1, r1
        if c1:
            col0 = _col_index(c1)
        if r1:
            row0 = int(r1) - 1
        if c2:
            col1 = _col_index(c2) + 1
        if r2:
            row1 = int(r2)
        if row0 >= tab.row_count or col0 >= tab.column_count:
            raise ApiError(400, "INVALID_ARGUMENT",
                           f"Range ({_quote(tab.title)}!{cells}) exceeds grid limits. Max rows: {tab.row_count}, "
                           f"max columns: {tab.column_count}")
        row1, col1 = min(row1, tab.row_count), min(col1, tab.column_count)
    return Range(tab, row0, row1, col0, col1)


# --- typed cells for grid data -----------------------------------------------------------------------------

_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_SHEETS_EPOCH = date(1899, 12, 30)


def grid_cell(shown: str) -> dict[str, Any]:
    """A cell of grid data as Google returns it for what the sheet shows: numbers and dd/mm/yyyy dates (the
    workbook's en_GB locale) are numbers underneath, the rest strings; an empty cell is ``{}``."""
    if shown == "":
        return {}
    value: dict[str, Any] = {"stringValue": shown}
    fmt: dict[str, Any] = {}
    if _NUMBER.match(shown.strip()):
        number = float(shown)
        value = {"numberValue": int(number) if number.is_integer() else number}
    elif m := _DATE.match(shown.strip()):
        try:
            serial = (date(int(m[3]), int(m[2]), int(m[1])) - _SHEETS_EPOCH).days
        except ValueError:
            pass  # 31/02/2026 stays text, as in a sheet
        else:
            value = {"numberValue": serial}
            fmt = {"numberFormat": {"type": "DATE", "pattern": "dd/mm/yyyy"}}
    cell: dict[str, Any] = {"userEnteredValue": value, "effectiveValue": value, "formattedValue": shown}
    if fmt:
        cell["userEnteredFormat"] = fmt
        cell["effectiveFormat"] = fmt
    return cell


def grid_data(r: Range) -> dict[str, Any]:
    cells = r.cells()
    data: dict[str, Any] = {}
    if r.row0:
        data["startRow"] = r.row0
    if r.col0:
        data["startColumn"] = r.col0
    if cells:
        data["rowData"] = [{"values": [grid_cell(c) for c in row]} if row else {} for row in cells]
    data["rowMetadata"] = [{"pixelSize": 21} for _ in range(r.row1 - r.row0)]
    data["columnMetadata"] = [{"pixelSize": 100} for _ in range(r.col1 - r.col0)]
    return data


# --- GA4 ---------------------------------------------------------------------------------------------------


def ga4_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _ga4_date(value: str, today: date) -> date:
    if value == "today":
        return today
    if value == "yesterday":
        return today - timedelta(days=1)
    if m := re.fullmatch(r"(\d+)daysAgo", value):
        return today - timedelta(days=int(m[1]))
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "INVALID_ARGUMENT", f"Invalid date: {value!r}. Dates must be YYYY-MM-DD, today, "
                                                "yesterday or NdaysAgo.") from None


def run_report(rows: list[dict[str, str]], body: dict[str, Any], offset_param: str | None,
               today: date) -> dict[str, Any]:
    dims = [d.get("name", "") for d in body.get("dimensions", [])]
    mets = [m.get("name", "") for m in body.get("metrics", [])]
    if not mets:
        raise ApiError(400, "INVALID_ARGUMENT", "At least one metric is required.")
    unknown = [f"dimension {d}" for d in dims if d not in GA4_DIMENSIONS]
    unknown += [f"metric {m}" for m in mets if m not in GA4_METRICS]
    if unknown:
        raise ApiError(400, "INVALID_ARGUMENT",
                       f"Did you mean {'/'.join(GA4_DIMENSIONS)} or {'/'.join(GA4_METRICS)}? "
                       f"Field {', '.join(unknown)} is not served by the local GA4 double "
                       "(corisync_assets/local/google_apis.py).")
    for key in ("dimensionFilter", "metricFilter", "cohortSpec", "comparisons"):
        if body.get(key):
            raise ApiError(400, "INVALID_ARGUMENT", f"{key} is not served by the local GA4 double.")
    ranges = body.get("dateRanges") or []
    if len(ranges) != 1:
        raise ApiError(400, "INVALID_ARGUMENT", "The local GA4 double serves exactly one dateRange per report.")
    start = _ga4_date(str(ranges[0].get("startDate", "")), today)
    end = _ga4_date(str(ranges[0].get("endDate", "")), today)
    if end < start:
        raise ApiError(400, "INVALID_ARGUMENT", "The dateRange's endDate must not be before its startDate.")
    totals: dict[tuple[str, ...], list[int]] = {}
    for row in rows:
        day = date.fromisoformat(row["date"])
        if not start <= day <= end:
            continue
        values = {"date": day.strftime("%Y%m%d"), "pagePath": row["pagePath"],
                  "pagePathPlusQueryString": row["pagePath"], "hostName": GA4_HOST}
        key = tuple(values[d] for d in dims)
        acc = totals.setdefault(key, [0] * len(mets))
        for i, m in enumerate(mets):
            acc[i] += int(row[m])
    keys = sorted(totals)
    try:
        limit = int(body.get("limit") or 10000)
        offset = int(offset_param if offset_param not in (None, "") else body.get("offset") or 0)
    except (TypeError, ValueError):
        raise ApiError(400, "INVALID_ARGUMENT", "limit and offset must be integers.") from None
    if not 0 < limit <= GA4_MAX_LIMIT or offset < 0:
        raise ApiError(400, "INVALID_ARGUMENT", f"limit must be in 1..{GA4_MAX_LIMIT} and offset >= 0.")
    page = keys[offset:offset + limit]
    out: dict[str, Any] = {
        "dimensionHeaders": [{"name": d} for d in dims],
        "metricHeaders": [{"name": m, "type": GA4_METRICS[m][1]} for m in mets],
    }
    if page:
        out["rows"] = [{"dimensionValues": [{"value": v} for v in k],
                        "metricValues": [{"value": str(n)} for n in totals[k]]} for k in page]
        out["rowCount"] = len(keys)
    out["metadata"] = {"currencyCode": "EUR", "timeZone": "Europe/Berlin"}
    if body.get("returnPropertyQuota"):
        out["propertyQuota"] = {
            "tokensPerDay": {"consumed": 10, "remaining": 199_990},
            "tokensPerHour": {"consumed": 10, "remaining": 39_990},
            "concurrentRequests": {"consumed": 0, "remaining": 10},
            "serverErrorsPerProjectPerHour": {"consumed": 0, "remaining": 10},
            "potentiallyThresholdedRequestsPerHour": {"consumed": 0, "remaining": 120},
            "tokensPerProjectPerHour": {"consumed": 10, "remaining": 13_990},
        }
    out["kind"] = "analyticsData#runReport"
    return out


def ga4_metadata(property_id: str) -> dict[str, Any]:
    return {
        "name": f"properties/{property_id}/metadata",
        "dimensions": [{"apiName": k, "uiName": ui, "description": ui, "category": "Page / screen"
                        if k != "date" else "Time"} for k, ui in GA4_DIMENSIONS.items()],
        "metrics": [{"apiName": k, "uiName": ui, "description": ui, "type": t, "category": "Session"
                     if k == "sessions" else "Page / screen" if k == "screenPageViews" else "User"}
                    for k, (ui, t) in GA4_METRICS.items()],
    }


# --- OAuth -------------------------------------------------------------------------------------------------


def _b64json(part: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def grant_scopes(form: dict[str, str], now: float) -> tuple[str, ...]:
    """The scopes a token request may have, or an ``ApiError`` as Google's token endpoint words it."""
    grant = form.get("grant_type", "")
    if grant == JWT_BEARER:
        parts = form.get("assertion", "").split(".")
        try:
            header, claims = _b64json(parts[0]), _b64json(parts[1])
        except Exception:
            raise ApiError(400, "invalid_grant", "Invalid JWT: malformed assertion.") from None
        if len(parts) != 3 or header.get("alg") != "RS256" or not parts[2]:
            raise ApiError(400, "invalid_grant", "Invalid JWT Signature.")
        for claim in ("iss", "scope", "exp"):
            if not claims.get(claim):
                raise ApiError(400, "invalid_grant", f"Invalid JWT: missing claim {claim}.")
        if float(claims["exp"]) < now:
            raise ApiError(400, "invalid_grant", "Invalid JWT: Token must be a short-lived token and in a "
                                                 "reasonable timeframe.")
        return tuple(str(claims["scope"]).split())
    if grant == "refresh_token":
        missing = [k for k in ("client_id", "client_secret", "refresh_token") if not form.get(k)]
        if missing:
            raise ApiError(400, "invalid_request", f"Missing required parameter: {missing[0]}")
        return SHEETS_SCOPES + GA4_SCOPES  # the scopes the user consented to
    raise ApiError(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")


# --- the app -----------------------------------------------------------------------------------------------


def google_app(fixtures_dir: Path | None = None, workbook_dir: Path | None = None) -> Starlette:
    """The double as a Starlette app; routes are relative (another app mounts it, e.g. under ``/google``)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    fixtures = Path(fixtures_dir) if fixtures_dir else FIXTURES_DIR
    env_dir = os.environ.get(WORKBOOK_DIR_VAR)
    book = Workbook(Path(workbook_dir) if workbook_dir else Path(env_dir) if env_dir
                    else fixtures / "training_workbook")
    tokens: dict[str, tuple[float, tuple[str, ...]]] = {}
    tokens_lock = threading.Lock()

    def error(exc: ApiError) -> JSONResponse:
        if exc.code == 400 and exc.status.islower():  # the token endpoint's OAuth error body
            return JSONResponse({"error": exc.status, "error_description": exc.message}, status_code=400)
        return JSONResponse({"error": {"code": exc.code, "message": exc.message, "status": exc.status}},
                            status_code=exc.code)

    def authorize(request: Request, scopes: tuple[str, ...]) -> None:
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        with tokens_lock:
            grant = tokens.get(token)
        if not grant or grant[0] < time.time():
            raise ApiError(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth "
                                                   "2 access token, login cookie or other valid authentication "
                                                   "credential.")
        if not set(grant[1]) & set(scopes):
            raise ApiError(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.")

    async def token(request: Request) -> JSONResponse:
        # application/x-www-form-urlencoded, parsed here (Starlette's form parser needs python-multipart)
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode(), keep_blank_values=True).items()}
        try:
            scopes = grant_scopes(form, time.time())
        except ApiError as exc:
            return error(exc)
        value = "ya29.local-" + secrets.token_urlsafe(24)
        with tokens_lock:
            tokens[value] = (time.time() + TOKEN_TTL_S, scopes)
        return JSONResponse({"access_token": value, "expires_in": TOKEN_TTL_S, "token_type": "Bearer",
                             "scope": " ".join(scopes)})

    def spreadsheet(request: Request) -> JSONResponse:
        try:
            authorize(request, SHEETS_SCOPES)
            sid = request.path_params["spreadsheet_id"]
            if sid != SPREADSHEET_ID:
                raise ApiError(404, "NOT_FOUND", "Requested entity was not found.")
            grid = request.query_params.get("includeGridData", "false").lower() == "true"
            specs = request.query_params.getlist("ranges")
            if specs:
                by_tab: dict[str, tuple[Tab, list[Range]]] = {}
                for spec in specs:
                    r = parse_range(book, spec)
                    by_tab.setdefault(r.tab.title, (r.tab, []))[1].append(r)
                sheets = [{"properties": t.properties(), **({"data": [grid_data(r) for r in rs]} if grid else {})}
                          for t, rs in sorted(by_tab.values(), key=lambda item: item[0].index)]
            else:
                sheets = [{"properties": t.properties(),
                           **({"data": [grid_data(parse_range(book, t.title))]} if grid else {})}
                          for t in book.tabs()]
            return JSONResponse({
                "spreadsheetId": sid,
                "properties": {"title": SPREADSHEET_TITLE, "locale": "en_GB", "autoRecalc": "ON_CHANGE",
                               "timeZone": "Europe/Berlin"},
                "sheets": sheets,
                "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{sid}/edit",
            })
        except ApiError as exc:
            return error(exc)

    def batch_get(request: Request) -> JSONResponse:
        try:
            authorize(request, SHEETS_SCOPES)
            sid = request.path_params["spreadsheet_id"]
            if sid != SPREADSHEET_ID:
                raise ApiError(404, "NOT_FOUND", "Requested entity was not found.")
            major = request.query_params.get("majorDimension", "ROWS")
            render = request.query_params.get("valueRenderOption", "FORMATTED_VALUE")
            if major not in ("ROWS", "COLUMNS", "DIMENSION_UNSPECIFIED"):
                raise ApiError(400, "INVALID_ARGUMENT", f"Invalid value at 'major_dimension' ({major})")
            if render != "FORMATTED_VALUE":
                raise ApiError(400, "INVALID_ARGUMENT", f"valueRenderOption {render} is not served by the local "
                                                        "Sheets double (FORMATTED_VALUE only).")
            value_ranges = []
            for spec in request.query_params.getlist("ranges"):
                r = parse_range(book, spec)
                vr: dict[str, Any] = {"range": r.a1(), "majorDimension": "COLUMNS" if major == "COLUMNS"
                                      else "ROWS"}
                cells = r.cells()
                if major == "COLUMNS" and cells:
                    width = max(len(row) for row in cells)
                    cells = [_rstrip([row[c] if c < len(row) else "" for row in cells]) for c in range(width)]
                if cells:
                    vr["values"] = cells
                value_ranges.append(vr)
            return JSONResponse({"spreadsheetId": sid, "valueRanges": value_ranges})
        except ApiError as exc:
            return error(exc)

    def _property(request: Request) -> str:
        authorize(request, GA4_SCOPES)
        pid = request.path_params["property_id"]
        if pid != GA4_PROPERTY_ID:
            raise ApiError(403, "PERMISSION_DENIED", "User does not have sufficient permissions for this property. "
                                                     "To learn more about Property ID, see "
                                                     "https://developers.google.com/analytics/devguides/reporting/"
                                                     "data/v1/property-id.")
        return pid

    def metadata(request: Request) -> JSONResponse:
        try:
            return JSONResponse(ga4_metadata(_property(request)))
        except ApiError as exc:
            return error(exc)

    async def report(request: Request) -> JSONResponse:
        try:
            _property(request)
            try:
                body = await request.json()
            except ValueError:
                raise ApiError(400, "INVALID_ARGUMENT", "Invalid JSON payload received.") from None
            rows = ga4_rows(fixtures / GA4_FIXTURE)
            return JSONResponse(run_report(rows, body, request.query_params.get("offset"),
                                           datetime.now().date()))
        except ApiError as exc:
            return error(exc)

    return Starlette(routes=[
        Route("/oauth2/token", token, methods=["POST"]),
        Route("/oauth2/v4/token", token, methods=["POST"]),
        Route("/sheets/v4/spreadsheets/{spreadsheet_id}/values:batchGet", batch_get, methods=["GET"]),
        Route("/sheets/v4/spreadsheets/{spreadsheet_id}", spreadsheet, methods=["GET"]),
        Route("/analyticsdata/v1beta/properties/{property_id}/metadata", metadata, methods=["GET"]),
        Route("/analyticsdata/v1beta/properties/{property_id}:runReport", report, methods=["POST"]),
    ])
