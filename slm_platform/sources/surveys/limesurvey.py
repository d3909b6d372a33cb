"""LimeSurvey RemoteControl 2 (JSON-RPC over HTTP POST) → the responses of a window → a canonical drop.

Calls (``application/helpers/remotecontrol/remotecontrol_handle.php``; errors come back as a *result*
``{"status": "…"}`` with ``error: null``):

1. ``get_session_key(username, password)``; ``{"status": "Invalid user name or password"}`` is an auth
   error. A call answered ``{"status": "Invalid session key"}`` (expired) gets a new key, once.
2. ``export_responses(key, survey_id, "json", null, "all", "code", "short", null, null,
   ["id", "token", "submitdate", "startdate", "datestamp"])``: the id listing (one small record per
   response). RemoteControl has no date filter, so the completed-since filter is applied here on the date
   fields: a response belongs to the window ``(since, until]`` of its last change, ``datestamp`` ("date last
   action": moves when an answer is edited after submission) else ``submitdate`` else ``startdate``, read
   in the mapping's ``timezone`` (LimeSurvey writes server-local times). Half-open: a response changed at
   exactly ``until`` is this run's, not the next one's (ties at the watermark: neither lost nor twice).
3. ``export_responses(key, survey_id, "json", null, "all", "code", "short", from_id, to_id)`` for the
   selected ids, ``page_size`` ids per call (the document is base64 JSON ``{"responses": [{"<id>": {…}}]}``;
   newer versions write the record without the id wrapper: both are read). A response edited between the
   listing and its page is written as it is now (newer), and again by the next window: an upsert.
4. ``list_participants(key, survey_id, start, limit, false, ["sent", "completed", attributes…])`` paged
   by offset (ordered by tid; de-duplicated on tid). An invitation that was sent, is not completed and has
   no response at all is an invitation without an answer; a completed one without a response (an anonymised
   survey's responses carry no token) is counted, not written, so the response rate stays honest.
5. ``release_session_key(key)``, always.

Retries (shared loop, :mod:`slm_platform.sources.http_retry`): 429 (Retry-After), 5xx, timeouts, resets and
non-JSON 200s back off exponentially; an auth failure or an unknown error status fails at once.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests

from slm_platform.sources.http_auth import connection_base_url, connection_extra
from slm_platform.sources.http_retry import Backoff, RetryLater, get_with_retries
from slm_platform.sources.surveys.api import (
    ApiExtractResult,
    ApiSettings,
    PostSession,
    SurveyApiAuthError,
    SurveyApiError,
    write_and_convert,
)
from slm_platform.sources.surveys.export import NAIVE_FORMATS
from slm_platform.sources.surveys.mapping import SurveyMapping

LISTING_FIELDS = ["id", "token", "submitdate", "startdate", "datestamp"]
EMPTY_STATUSES = ("No Data", "No Response found", "No survey participants found", "No Tokens found")
AUTH_STATUSES = ("Invalid user name or password", "No permission", "Permission denied")


class _Expired(Exception):
    pass


def credentials_from_connection(conn: Any) -> tuple[str, str, str | None]:
    """(user, password, url) of an Airflow connection: login/password; host = the RemoteControl URL."""
    if not getattr(conn, "login", None):
        raise SurveyApiAuthError("LimeSurvey connection has no login (the RemoteControl user)")
    base = connection_base_url(conn)
    url = connection_extra(conn).get("url") or None
    if base and not url:
        url = base if "remotecontrol" in base else f"{base}/index.php/admin/remotecontrol"
    return conn.login, conn.password or "", url


class _Rpc:
    def __init__(
        self, url: str, timeout: float, max_retries: int, backoff: Backoff, sleep, res, budget, clock
    ):
        self.url = url
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", "Content-Type": "application/json"})
        self.post = PostSession(self.session)
        self.timeout, self.max_retries, self.backoff, self.sleep = timeout, max_retries, backoff, sleep
        self.res, self.budget, self.clock = res, budget, clock
        self.ids = itertools.count(1)

    def call(self, method: str, *params: Any) -> Any:
        body = {"method": method, "params": list(params), "id": next(self.ids)}
        shown = method  # never the params: they hold the password or the session key
        return get_with_retries(
            self.post,  # type: ignore[arg-type]
            self.url,
            body,
            lambda resp: _answer(resp, shown),
            what=f"LimeSurvey {method} at {self.url}",
            error=SurveyApiError,
            timeout=self.timeout,
            max_retries=self.max_retries,
            backoff=self.backoff,
            sleep=self.sleep,
            counts=self.res,
            budget=self.budget,
            clock=self.clock,
        )


def _answer(resp: requests.Response, method: str) -> Any:
    if resp.status_code in (401, 403):
        raise SurveyApiAuthError(
            f"LimeSurvey refused {method} (HTTP {resp.status_code}); check the RemoteControl user's rights"
            " and that RemoteControl (JSON-RPC) is enabled in Global settings > Interfaces"
        )
    if resp.status_code == 429:
        ra = resp.headers.get("Retry-After")
        return RetryLater("429", "HTTP 429", float(ra) if ra and ra.replace(".", "", 1).isdigit() else None)
    if resp.status_code >= 500:
        return RetryLater("5xx", f"HTTP {resp.status_code}: {resp.text[:200]!r}")
    if resp.status_code != 200:
        raise SurveyApiError(f"LimeSurvey {method} failed: HTTP {resp.status_code}: {resp.text[:200]!r}")
    try:
        body = resp.json()
    except ValueError:
        return RetryLater("bad_json", f"HTTP 200 but the answer is not JSON: {resp.text[:200]!r}")
    if not isinstance(body, dict) or "result" not in body:
        return RetryLater("no_result", f"HTTP 200 without a JSON-RPC result: {str(body)[:200]!r}")
    if body.get("error"):
        raise SurveyApiError(f"LimeSurvey {method} failed: {body['error']}")
    return body["result"]


def _status(result: Any) -> str | None:
    return str(result.get("status")) if isinstance(result, dict) and "status" in result else None


class _Client:
    def __init__(self, rpc: _Rpc, user: str, password: str, res: ApiExtractResult):
        self.rpc, self.user, self.password, self.res = rpc, user, password, res
        self.key: str | None = None

    def login(self) -> None:
        got = self.rpc.call("get_session_key", self.user, self.password)
        status = _status(got)
        if status is not None or not isinstance(got, str):
            raise SurveyApiAuthError(
                f"LimeSurvey refused the credentials of user {self.user!r}: {status or got!r}; check the "
                "connection's login and password"
            )
        self.key = got

    def call(self, method: str, *params: Any) -> Any:
        """A session call; an expired key is renewed once. Empty statuses → None; others raise."""
        for attempt in range(2):
            got = self.rpc.call(method, self.key, *params)
            status = _status(got)
            if status is None:
                return got
            if status.lower().startswith("invalid session key") and attempt == 0:
                self.res.session_renewals += 1
                self.login()
                continue
            if any(status.startswith(s) for s in EMPTY_STATUSES):
                return None
            if any(status.startswith(s) for s in AUTH_STATUSES):
                raise SurveyApiAuthError(
                    f"LimeSurvey {method}: {status} (check the user's survey permissions)"
                )
            raise SurveyApiError(f"LimeSurvey {method} failed: {status}")
        raise SurveyApiError(f"LimeSurvey {method}: the session key was refused twice")

    def release(self) -> None:
        if self.key:
            try:
                self.rpc.call("release_session_key", self.key)
            except SurveyApiError:
                pass  # the key expires by itself; the extract's outcome does not depend on it
            self.key = None


def decode_document(payload: Any, what: str) -> list[Any]:
    """The records of an ``export_responses`` JSON document (base64)."""
    if not isinstance(payload, str):
        raise SurveyApiError(f"{what}: expected a base64 document, got {str(payload)[:200]!r}")
    try:
        doc = json.loads(base64.b64decode(payload, validate=False).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise SurveyApiError(f"{what}: the document is not base64 JSON: {exc}") from exc
    items = doc.get("responses") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise SurveyApiError(f"{what}: the document has no responses list")
    out = []
    for item in items:
        if isinstance(item, dict) and len(item) == 1:
            (inner,) = item.values()
            if isinstance(inner, dict):
                item = inner  # {"17": {...}}: LimeSurvey 3-5's wrapper keyed by response id
        out.append(item)
    return out


def _when(value: Any, zone: ZoneInfo | None) -> datetime | None:
    text = str(value or "").strip()
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        t = None
        for fmt in NAIVE_FORMATS:
            try:
                t = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if t is None:
        return None
    if t.tzinfo is None:
        if zone is None:
            return None
        t = t.replace(tzinfo=zone)
    return t


def changed_at(rec: dict, zone: ZoneInfo | None) -> datetime | None:
    """The response's last change: datestamp, else submitdate, else startdate (None: unreadable)."""
    for f in ("datestamp", "submitdate", "startdate"):
        if str(rec.get(f) or "").strip():
            return _when(rec.get(f), zone)
    return None


def extract_responses(
    url: str,
    user: str,
    password: str,
    mapping: SurveyMapping,
    settings: ApiSettings,
    since: datetime | None,
    until: datetime,
    out_dir: Path | str,
    staging: Path | str,
    *,
    timeout: float = 60.0,
    max_retries: int = 5,
    backoff_base: float = 1.0,
    backoff_cap: float = 60.0,
    retry_budget: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ApiExtractResult:
    """Responses changed in ``(since, until]`` (``since=None``: all up to ``until``) and the unanswered
    invitations → ``out_dir/surveys.csv``. The pulled records are kept in ``staging`` (the quarantine's
    export_location points into them). A failed extract leaves nothing in ``out_dir``."""
    t0 = time.monotonic()
    out_dir, staging = Path(out_dir), Path(staging)
    res = ApiExtractResult("limesurvey", mapping.source, out_dir, since, until, until)
    zone = ZoneInfo(mapping.timezone) if mapping.timezone else None
    rpc = _Rpc(url, timeout, max_retries, Backoff(backoff_base, backoff_cap), sleep, res, retry_budget, clock)
    client = _Client(rpc, user, password, res)
    sid = int(settings.survey_id) if settings.survey_id.isdigit() else settings.survey_id
    try:
        client.login()
        what = f"export_responses of survey {settings.survey_id}"
        listing_doc = client.call(
            "export_responses", sid, "json", None, "all", "code", "short", None, None, LISTING_FIELDS
        )
        listing = decode_document(listing_doc, what) if listing_doc is not None else []
        res.responses_listed = len(listing)
        tokens_with_response: set[str] = set()
        selected: list[int] = []
        unreadable: list[dict] = []
        for rec in listing:
            if not isinstance(rec, dict):
                res.malformed.append(f"listing item {rec!r}: not an object")
                continue
            if str(rec.get("token") or "").strip():
                tokens_with_response.add(str(rec["token"]).strip())
            rid = str(rec.get("id") or "").strip()
            at = changed_at(rec, zone)
            if not rid.isdigit():
                res.malformed.append(f"listing item {rec!r}: no numeric response id")
                unreadable.append(rec)
                continue
            if at is None:
                # no readable date: cannot be placed in a window; written (the loader quarantines it with
                # the reason) only by a full extract, so an hourly run does not re-quarantine it every hour
                res.malformed.append(f"response {rid}: no readable datestamp/submitdate/startdate")
                if since is None:
                    selected.append(int(rid))
                continue
            if (since is None or at > since) and at <= until:
                selected.append(int(rid))
            else:
                res.responses_outside_window += 1
        selected.sort()
        wanted = set(selected)
        records: dict[int, dict] = {}
        for k in range(0, len(selected), settings.page_size):
            chunk = selected[k : k + settings.page_size]
            doc = client.call(
                "export_responses", sid, "json", None, "all", "code", "short", chunk[0], chunk[-1]
            )
            for rec in decode_document(doc, what) if doc is not None else []:
                rid = str(rec.get("id") or "").strip() if isinstance(rec, dict) else ""
                if rid.isdigit() and int(rid) in wanted:
                    records[int(rid)] = rec  # a later page's copy of the same id replaces the earlier
        responses = [records[i] for i in selected if i in records] + [
            {k: v for k, v in rec.items() if k in LISTING_FIELDS} for rec in unreadable if since is None
        ]
        res.responses_in_window = len(responses)
        invitations = None
        if mapping.invitations is not None:
            invitations = _participants(
                client, sid, mapping, settings.page_size, tokens_with_response, responses, res
            )
        write_and_convert(mapping, responses, invitations, out_dir, staging, res)
    finally:
        client.release()
        rpc.session.close()
    res.seconds = round(time.monotonic() - t0, 3)
    return res


def _participants(
    client: _Client,
    sid: Any,
    mapping: SurveyMapping,
    page_size: int,
    tokens_with_response: set[str],
    responses: list[dict],
    res: ApiExtractResult,
) -> list[dict]:
    inv = mapping.invitations
    assert inv is not None
    attributes = sorted({inv.sent_at, "completed", *inv.attributes.values()} - {"tid", "token"})
    in_window = {str(r.get("token") or "").strip() for r in responses if isinstance(r, dict)}
    seen: set[str] = set()
    out: list[dict] = []
    start = 0
    while True:
        page = client.call("list_participants", sid, start, page_size, False, attributes, {})
        if not page:
            break
        if not isinstance(page, list):
            raise SurveyApiError(
                f"list_participants of survey {sid}: expected a list, got {str(page)[:200]!r}"
            )
        for p in page:
            res.invitations_read += 1
            if not isinstance(p, dict):
                res.malformed.append(f"participant {p!r}: not an object")
                continue
            tid = str(p.get("tid"))
            if tid in seen:
                continue
            seen.add(tid)
            token = str(p.get(inv.token) or p.get("token") or "").strip()
            flat = {k: v for k, v in p.items() if k != "participant_info"}
            if token in in_window:
                out.append(flat)  # joined to its response (sent_at, attributes)
            elif token in tokens_with_response:
                continue  # answered in another window: its row is the response's
            elif str(p.get("completed") or "N").strip() in ("", "N"):
                out.append(flat)  # sent (else the converter counts it as never sent) and not answered
        if len(page) < page_size:
            break
        start += len(page)
    return out
