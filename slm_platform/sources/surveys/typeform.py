"""Typeform Responses API → the responses of a window → a canonical drop.

``GET {base}/forms/{form_id}/responses`` with a bearer token (personal access token, ``responses:read``):
``since`` and ``until`` (inclusive, UTC to the second), ``page_size`` (≤ 1000) and ``before`` (the token of
the last response of the previous page: the next, older page). Body ``{"total_items", "page_count",
"items": [...]}``; an item has ``response_id``/``token``, ``landed_at``, ``submitted_at``, ``hidden``,
``calculated.score``, ``variables`` and ``answers`` (a list, one per answered field).

Each item is flattened to one record, the same dotted names as a JSON export (``hidden.client``,
``calculated.score``, ``metadata.platform``), plus ``answers.<field ref>`` = the answer's value (number,
text, email, boolean, date, choice label, choice labels joined with ``|``…) and ``variables.<key>``: the
mapping file names those columns (e.g. ``csat: answers.csat``).

Window ``(since, until]``: Typeform's ``since`` is inclusive, so a response submitted exactly at ``since``
(the previous run's ``until``, which took it) is dropped here: ties at the watermark are loaded once.
Paging goes from the newest response to older ones with ``before``; responses submitted while we page are
newer than the first page and after ``until`` (in the past): the next window's. Items are de-duplicated on
their token. Typeform has no invitation list: with ``api.include_partial`` the started/partial responses
(landed, not submitted) are pulled too (``response_type=started,partial,completed``) and count as
invitations without an answer, windowed on ``landed_at``; when submitted later, the same response id
upserts them. Retries as the other sources (:mod:`slm_platform.sources.http_retry`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import requests

from slm_platform.sources.http_auth import Auth, connection_extra
from slm_platform.sources.http_retry import Backoff, RetryLater, get_with_retries
from slm_platform.sources.surveys.api import (
    ApiExtractResult,
    ApiSettings,
    SurveyApiAuthError,
    SurveyApiError,
    write_and_convert,
)
from slm_platform.sources.surveys.mapping import SurveyMapping

DEFAULT_URL = "https://api.typeform.com"
MAX_PAGE = 1000


def credentials_from_connection(conn: Any) -> tuple[Auth, str | None]:
    """Bearer token = the connection's password (or extra ``token``); host = API base (EU data centre)."""
    extra = connection_extra(conn)
    token = extra.get("token") or getattr(conn, "password", None)
    if not token:
        raise SurveyApiAuthError("Typeform connection has no token (password or extra.token)")
    host = (getattr(conn, "host", None) or "").rstrip("/")
    if host and "://" not in host:
        host = f"https://{host}"
    return Auth.bearer(token), host or None


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _parse(value: Any) -> datetime | None:
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else None


def answer_value(ans: dict) -> Any:
    """The value of one ``answers`` item, by its ``type``."""
    kind = ans.get("type")
    value = ans.get(kind) if kind else None
    if kind == "choice" and isinstance(value, dict):
        return value.get("label", value.get("other"))
    if kind == "choices" and isinstance(value, dict):
        labels = list(value.get("labels") or [])
        if value.get("other"):
            labels.append(value["other"])
        return "|".join(str(x) for x in labels)
    if isinstance(value, dict):  # payment and the like: not a score
        return None
    return value


def flatten(item: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in item.items():
        if key == "answers":
            for ans in value or []:
                if isinstance(ans, dict):
                    fld = ans.get("field") or {}
                    name = fld.get("ref") or fld.get("id")
                    if name:
                        out[f"answers.{name}"] = answer_value(ans)
        elif key == "variables":
            for var in value or []:
                if isinstance(var, dict) and var.get("key"):
                    out[f"variables.{var['key']}"] = var.get(var.get("type") or "", var.get("number"))
        elif isinstance(value, dict):
            for k2, v2 in value.items():
                out[f"{key}.{k2}"] = v2
        else:
            out[key] = value
    return out


def _answer(resp: requests.Response, url: str) -> dict | RetryLater:
    if resp.status_code == 200:
        try:
            body = resp.json()
        except ValueError:
            return RetryLater("bad_json", f"HTTP 200 but the answer is not JSON: {resp.text[:200]!r}")
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            return RetryLater("no_items", f"HTTP 200 without an items list: {str(body)[:200]!r}")
        return body
    detail = resp.text[:200]
    if resp.status_code in (401, 403):
        raise SurveyApiAuthError(
            f"Typeform refused the token for GET {url} (HTTP {resp.status_code}: {detail}); check the "
            "connection's personal access token and its responses:read scope"
        )
    if resp.status_code == 429:
        return RetryLater("429", f"HTTP 429: {detail}", _retry_after(resp.headers.get("Retry-After")))
    if resp.status_code >= 500:
        return RetryLater("5xx", f"HTTP {resp.status_code}: {detail}")
    raise SurveyApiError(f"GET {url} failed: HTTP {resp.status_code}: {detail}")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def extract_responses(
    auth: Auth,
    mapping: SurveyMapping,
    settings: ApiSettings,
    since: datetime | None,
    until: datetime,
    out_dir: Path | str,
    staging: Path | str,
    *,
    url: str | None = None,
    timeout: float = 60.0,
    max_retries: int = 5,
    backoff_base: float = 1.0,
    backoff_cap: float = 60.0,
    retry_budget: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ApiExtractResult:
    """Responses submitted in ``(since, until]`` → ``out_dir/surveys.csv`` (see the module's doc)."""
    t0 = time.monotonic()
    out_dir, staging = Path(out_dir), Path(staging)
    res = ApiExtractResult("typeform", mapping.source, out_dir, since, until, until)
    base = (url or settings.url or DEFAULT_URL).rstrip("/")
    endpoint = f"{base}/forms/{settings.survey_id}/responses"
    session = requests.Session()
    session.headers.update({"Accept": "application/json", **auth.headers()})
    page_size = min(settings.page_size, MAX_PAGE)
    params: dict[str, Any] = {"page_size": page_size, "until": _ts(until)}
    if since is not None:
        params["since"] = _ts(since)
    if settings.include_partial:
        params["response_type"] = "started,partial,completed"
    seen: set[str] = set()
    responses: list[dict] = []
    try:
        before: str | None = None
        while True:
            q = {**params, **({"before": before} if before else {})}
            body = get_with_retries(
                session,
                endpoint,
                q,
                lambda r: _answer(r, endpoint),
                what=f"GET {endpoint}",
                error=SurveyApiError,
                timeout=timeout,
                max_retries=max_retries,
                backoff=Backoff(backoff_base, backoff_cap),
                sleep=sleep,
                counts=res,
                budget=retry_budget,
                clock=clock,
            )
            items = body["items"]
            last_token = None
            for item in items:
                if not isinstance(item, dict):
                    res.malformed.append(f"item {str(item)[:80]!r}: not an object")
                    responses.append({})  # a row without a key: quarantined with the reason
                    continue
                token = str(item.get("token") or item.get("response_id") or "")
                last_token = token or last_token
                res.responses_listed += 1
                if token and token in seen:
                    continue
                seen.add(token)
                at = _parse(item.get("submitted_at")) or (
                    _parse(item.get("landed_at")) if settings.include_partial else None
                )
                if at is None:
                    if since is None or not token:
                        res.malformed.append(f"response {token or '?'}: no readable submitted_at/landed_at")
                        responses.append(flatten(item))
                    continue
                if (since is not None and at <= since) or at > until:
                    res.responses_outside_window += 1  # the tie at since: the previous window's
                    continue
                responses.append(flatten(item))
            if len(items) < page_size or last_token is None:
                break
            if last_token == before:
                raise SurveyApiError(f"GET {endpoint}: before={before} returned the same page again")
            before = last_token
        res.responses_in_window = len(responses)
        write_and_convert(mapping, responses, None, out_dir, staging, res)
    finally:
        session.close()
    res.seconds = round(time.monotonic() - t0, 3)
    return res
