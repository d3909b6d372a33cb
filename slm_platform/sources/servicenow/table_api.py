"""Incremental extract of ServiceNow incidents and their history through the Table API → a canonical drop.

``GET /api/now/table/incident`` with an encoded query on ``sys_updated_on`` (``> since``, ``<= until``,
ordered by ``sys_updated_on`` then ``sys_id``), paged with ``sysparm_limit``/``sysparm_offset``; for each
page, the ``sys_audit`` rows of those incidents (``documentkeyIN…``, fields state, hold_reason,
assignment_group, priority, created ``<= until``) give the history. Group names of audited sys_ids come
from ``sys_user_group``. Output: ``tickets.csv`` and ``ticket_events.csv``, written page by page (memory
does not depend on the extract's size) into ``out_dir`` and moved into place only when complete.

Watermark: the next run's ``since`` is this run's ``until`` (``ExtractResult.watermark``). The window is
half-open, ``(since, until]``: a record whose ``sys_updated_on`` equals ``until`` belongs to this run and not
the next, so ties at the boundary are neither lost nor fetched twice. ``until`` must be in the past (the
end of the DAG's data interval): a record updated later gets a later ``sys_updated_on`` and falls in the
next window. If records leave the window while we page (updated meanwhile), ``X-Total-Count`` shrinks and
the offset steps back by as much, de-duplicating on ``sys_id``: no record is skipped.

Every incident's full history is re-read when it changes, so its events in the drop are complete and
reloading them is idempotent.
"""

from __future__ import annotations

import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import requests

from slm_platform.sources.http_auth import Auth, connection_base_url, connection_extra
from slm_platform.sources.http_retry import Backoff, RetryLater, get_with_retries
from slm_platform.sources.servicenow import mapping

AUDITED_FIELDS = ("state", "hold_reason", "assignment_group", "priority")


class ServiceNowError(RuntimeError):
    """The instance could not be read (message says which request and why)."""


class ServiceNowAuthError(ServiceNowError):
    """401/403: wrong credentials or missing roles."""


def auth_from_connection(conn: Any) -> Auth:
    """Auth from an Airflow ``Connection`` (or anything with login/password/extra).

    ``extra`` ``{"oauth_token": "…"}`` selects a bearer token; otherwise login + password (basic).
    """
    extra = connection_extra(conn)
    if extra.get("oauth_token"):
        return Auth.bearer(extra["oauth_token"])
    if not getattr(conn, "login", None):
        raise ServiceNowAuthError("ServiceNow connection has neither a login nor extra.oauth_token")
    return Auth.basic(conn.login, conn.password or "")


def base_url_from_connection(conn: Any) -> str:
    """``https://<host>`` from a connection whose host is ``instance.service-now.com`` or a full URL."""
    url = connection_base_url(conn)
    if not url:
        raise ServiceNowError("ServiceNow connection has no host")
    return url


@dataclass
class FieldMapping:
    """Which incident fields give client_code and service_code, and how their display values map.

    A display value missing from the map falls back to the default, or to the display value itself (the
    loader then quarantines tickets of an unknown client/service, with the value in the reason).
    """

    client_field: str = "company"
    client_map: dict[str, str] = field(default_factory=dict)
    default_client: str | None = None
    service_fields: tuple[str, ...] = ("business_service", "cmdb_ci")
    service_map: dict[str, str] = field(default_factory=dict)
    default_service: str | None = None

    def client(self, display: str | None) -> str | None:
        if display and display in self.client_map:
            return self.client_map[display]
        return self.default_client or display or None

    def service(self, displays: list[str | None]) -> str | None:
        for d in displays:
            if d and d in self.service_map:
                return self.service_map[d]
        return self.default_service or next((d for d in displays if d), None)


@dataclass
class ExtractResult:
    out_dir: Path
    since: datetime | None
    until: datetime
    watermark: datetime  # the next run's ``since``
    incidents: int = 0
    events: int = 0
    audit_rows: int = 0
    requests: int = 0
    retries: dict[str, int] = field(default_factory=dict)  # cause ("429", "5xx", "timeout") -> count
    window_shrinks: int = 0  # times records left the window while paging (offset stepped back)
    seconds: float = 0.0


class _Api:
    def __init__(
        self,
        base_url: str,
        auth: Auth,
        timeout: float,
        max_retries: int,
        backoff_base: float,
        backoff_cap: float,
        sleep: Callable[[float], None],
        result: ExtractResult,
        retry_budget: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", **auth.headers()})
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff, self.sleep = Backoff(backoff_base, backoff_cap), sleep
        self.res = result
        self.retry_budget, self.clock = retry_budget, clock

    def get(
        self, table: str, params: dict[str, Any]
    ) -> tuple[list[dict], requests.structures.CaseInsensitiveDict]:
        url = f"{self.base}/api/now/table/{table}"
        return get_with_retries(
            self.session,
            url,
            params,
            lambda resp: _answer(resp, url),
            what=f"GET {url}",
            error=ServiceNowError,
            timeout=self.timeout,
            timeout_label=str(self.timeout),
            max_retries=self.max_retries,
            backoff=self.backoff,
            sleep=self.sleep,
            counts=self.res,
            budget=self.retry_budget,
            clock=self.clock,
        )

    def pages(self, table: str, query: str, fields: list[str], page_size: int, **extra) -> Iterator[dict]:
        """Every record of ``query``, paged by offset, robust to records leaving the result set meanwhile."""
        window = page_size * 4
        recent: deque[str] = deque(maxlen=window)
        recent_set: set[str] = set()
        offset, total = 0, None
        while True:
            params = {
                "sysparm_query": query,
                "sysparm_fields": ",".join(fields),
                "sysparm_limit": page_size,
                "sysparm_offset": offset,
                "sysparm_exclude_reference_link": "true",
                **extra,
            }
            rows, headers = self.get(table, params)
            count = headers.get("X-Total-Count")
            now_total = int(count) if count is not None and count.isdigit() else None
            if total is not None and now_total is not None and now_total < total:
                shrink = total - now_total
                if shrink > window - page_size:
                    raise ServiceNowError(
                        f"{table}: {shrink} records left the extract window while paging (instance busy "
                        f"or 'until' in the future); rerun the extract"
                    )
                self.res.window_shrinks += 1
                offset, total = max(0, offset - shrink), now_total
                continue
            total = now_total if now_total is not None else total
            for row in rows:
                key = _value(row.get("sys_id")) or ""
                if key in recent_set:
                    continue
                if len(recent) == window:
                    recent_set.discard(recent[0])
                recent.append(key)
                recent_set.add(key)
                yield row
            if len(rows) < page_size:
                return
            offset += len(rows)


def _answer(
    resp: requests.Response, url: str
) -> tuple[list[dict], requests.structures.CaseInsensitiveDict] | RetryLater:
    if resp.status_code == 200:
        # A proxy's garbled page or a body without ``result`` is a failed answer, not an empty (last) page:
        # read as one it would end the paging early and silently. Both are retried.
        try:
            body = resp.json()
        except ValueError:
            return RetryLater("bad_json", f"HTTP 200 but the answer is not JSON: {resp.text[:200]!r}")
        if not isinstance(body, dict) or not isinstance(body.get("result"), list):
            return RetryLater("no_result", f"HTTP 200 without a result list: {str(body)[:200]!r}")
        return body["result"], resp.headers
    detail = _error_message(resp)
    if resp.status_code in (401, 403):
        raise ServiceNowAuthError(
            f"ServiceNow refused the credentials for GET {url} (HTTP {resp.status_code}: {detail}); "
            f"check the connection's login/password or OAuth token and the account's roles"
        )
    last = f"HTTP {resp.status_code}: {detail}"
    if resp.status_code == 429:
        return RetryLater("429", last, _retry_after(resp.headers.get("Retry-After")))
    if resp.status_code >= 500:
        return RetryLater("5xx", last)
    raise ServiceNowError(f"GET {url} failed: {last}")


def _error_message(resp: requests.Response) -> str:
    try:
        body = resp.json()
        err = (body.get("error") if isinstance(body, dict) else None) or {}
        if not isinstance(err, dict):
            return str(err)[:200]
        return " - ".join(x for x in (err.get("message"), err.get("detail")) if x) or resp.reason
    except ValueError:
        return resp.reason or resp.text[:200]


def _retry_after(value: str | None) -> float:
    if not value:
        return 1.0
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return 1.0


def _value(cell: Any) -> str | None:
    """``value`` of a ``sysparm_display_value=all`` cell (or the plain cell); empty → None."""
    v = cell.get("value") if isinstance(cell, dict) else cell
    return v if v not in (None, "") else None


def _display(cell: Any) -> str | None:
    v = cell.get("display_value") if isinstance(cell, dict) else cell
    return v if v not in (None, "") else None


class _Extractor:
    def __init__(self, api: _Api, until_q: str, fmap: FieldMapping, page_size: int, audit_batch: int):
        self.api, self.until_q, self.fmap = api, until_q, fmap
        self.page_size, self.audit_batch = page_size, audit_batch
        self.groups: dict[str, str] = {}  # sys_user_group sys_id -> name (bounded by the number of groups)

    def group_names(self, ids: set[str]) -> None:
        missing = sorted(i for i in ids if i and i not in self.groups)
        for k in range(0, len(missing), self.audit_batch):
            chunk = missing[k : k + self.audit_batch]
            q = f"sys_idIN{','.join(chunk)}"
            for row in self.api.pages("sys_user_group", q, ["sys_id", "name"], self.page_size):
                self.groups[row["sys_id"]] = row["name"]
            for i in chunk:
                self.groups.setdefault(i, i)  # a deleted group: keep its sys_id rather than lose the change

    def audits(self, sys_ids: list[str]) -> dict[str, list[dict]]:
        by_doc: dict[str, list[dict]] = {i: [] for i in sys_ids}
        for k in range(0, len(sys_ids), self.audit_batch):
            chunk = sys_ids[k : k + self.audit_batch]
            q = (
                f"tablename=incident^documentkeyIN{','.join(chunk)}^fieldnameIN{','.join(AUDITED_FIELDS)}"
                f"^sys_created_on<={self.until_q}^ORDERBYdocumentkey^ORDERBYsys_created_on"
                f"^ORDERBYrecord_checkpoint"
            )
            fields = [
                "sys_id",
                "documentkey",
                "fieldname",
                "oldvalue",
                "newvalue",
                "sys_created_on",
                "record_checkpoint",
            ]
            for row in self.api.pages("sys_audit", q, fields, self.page_size):
                by_doc.setdefault(row["documentkey"], []).append(row)
                self.api.res.audit_rows += 1
        return by_doc

    def write_page(self, incidents: list[dict], out: mapping.DropWriter) -> None:
        ids = [_value(i["sys_id"]) for i in incidents]
        audits = self.audits([i for i in ids if i])
        for inc in incidents:
            grp = inc.get("assignment_group")
            if _value(grp) and _display(grp):
                self.groups[_value(grp)] = _display(grp)
        wanted = {
            v
            for rows in audits.values()
            for r in rows
            if r["fieldname"] == "assignment_group"
            for v in (r.get("oldvalue"), r.get("newvalue"))
            if v
        }
        self.group_names(wanted)
        for inc in incidents:
            self.write_incident(inc, audits.get(_value(inc["sys_id"]) or "", []), out)

    def write_incident(self, inc: dict, audit: list[dict], out: mapping.DropWriter) -> None:
        number = _value(inc["number"])
        opened = mapping.api_timestamp(_value(inc.get("opened_at")))
        current = {f: _value(inc.get(f)) for f in AUDITED_FIELDS}
        audit = sorted(audit, key=lambda r: (r["sys_created_on"], int(r.get("record_checkpoint") or 0)))
        # Values before the first audited change: that change's old value, else today's value.
        values = dict(current)
        for f in AUDITED_FIELDS:
            first = next((r for r in audit if r["fieldname"] == f), None)
            if first is not None:
                values[f] = first.get("oldvalue") or None

        def group(v: str | None) -> str | None:
            return self.groups.get(v, v) if v else None

        times = [mapping.api_timestamp(r["sys_created_on"]) for r in audit]
        start = min(t for t in (opened, *times[:1]) if t) if (opened or times) else None
        events: list[tuple[str, str, str | None, str | None]] = []
        status = mapping.status_from_code(values["state"], values["hold_reason"])
        if start and status:
            events.append((start, "status", None, status))
        if start and values["assignment_group"]:
            events.append((start, "assignment_group", None, group(values["assignment_group"])))
        i = 0
        while i < len(audit):  # one step per audit timestamp: state + hold_reason change together
            at = times[i]
            before = dict(values)
            while i < len(audit) and times[i] == at:
                values[audit[i]["fieldname"]] = audit[i].get("newvalue") or None
                i += 1
            s_old = mapping.status_from_code(before["state"], before["hold_reason"])
            s_new = mapping.status_from_code(values["state"], values["hold_reason"])
            if s_old != s_new:
                events.append((at, "status", s_old, s_new))
            if before["assignment_group"] != values["assignment_group"]:
                events.append(
                    (
                        at,
                        "assignment_group",
                        group(before["assignment_group"]),
                        group(values["assignment_group"]),
                    )
                )
            p_old, p_new = mapping.priority(before["priority"]), mapping.priority(values["priority"])
            if p_old != p_new and p_old is not None:  # the insert's audit row is not a change of priority
                events.append((at, "priority", p_old, p_new))
        events, _ = mapping.collapse_events(events)
        response = mapping.first_response(opened, [(e[0], e[2], e[3]) for e in events if e[1] == "status"])
        out.ticket(
            {
                "ticket_id": number,
                "client_code": self.fmap.client(_display(inc.get(self.fmap.client_field))),
                "service_code": self.fmap.service([_display(inc.get(f)) for f in self.fmap.service_fields]),
                "ticket_type": "incident",
                "priority": mapping.priority(current["priority"]),
                "opened_at": opened,
                "first_response_at": response,
                "resolved_at": mapping.api_timestamp(_value(inc.get("resolved_at"))),
                "closed_at": mapping.api_timestamp(_value(inc.get("closed_at"))),
                "status": mapping.status_from_code(current["state"], current["hold_reason"]),
                "assignment_group": _display(inc.get("assignment_group")),
                "category": _value(inc.get("category")),
                # accepted by Major Incident Management; otherwise unknown (left empty, as before)
                "is_major": True if _value(inc.get("major_incident_state")) == "accepted" else None,
                "updated_at": mapping.api_timestamp(_value(inc.get("sys_updated_on"))),
            }
        )
        for occurred_at, fld, old, new in events:
            out.event(number, occurred_at, fld, old, new)
        self.api.res.events += len(events)
        self.api.res.incidents += 1


def extract_incidents(
    base_url: str,
    auth: Auth,
    since: datetime | None,
    until: datetime,
    out_dir: Path | str,
    page_size: int = 500,
    timeout: float = 60.0,
    max_retries: int = 5,
    fields: FieldMapping | None = None,
    audit_batch: int = 100,
    backoff_base: float = 1.0,
    backoff_cap: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    retry_budget: float = 600.0,
    clock: Callable[[], float] = time.monotonic,
) -> ExtractResult:
    """Extract incidents updated in ``(since, until]`` and their history into a canonical drop in ``out_dir``.

    ``since=None`` extracts everything up to ``until``. Raises :class:`ServiceNowAuthError` on 401/403 and
    :class:`ServiceNowError` when a request still fails after ``max_retries`` retries (429 waits
    ``Retry-After``; 5xx, timeouts, resets, garbled or ``result``-less 200s back off exponentially; no wait
    exceeds ``backoff_cap``) or when its retries would take more than ``retry_budget`` seconds. A failed
    extract leaves nothing in ``out_dir`` (the files are written aside and moved in when complete).
    """
    t0 = time.monotonic()
    out_dir = Path(out_dir)
    if page_size < 1 or max_retries < 0:
        raise ValueError("page_size must be >= 1 and max_retries >= 0")
    until_q = mapping.api_query_time(until)
    conds = [f"sys_updated_on>{mapping.api_query_time(since)}"] if since is not None else []
    query = "^".join([*conds, f"sys_updated_on<={until_q}", "ORDERBYsys_updated_on", "ORDERBYsys_id"])
    fmap = fields or FieldMapping()
    res = ExtractResult(out_dir=out_dir, since=since, until=until, watermark=until)
    api = _Api(
        base_url, auth, timeout, max_retries, backoff_base, backoff_cap, sleep, res, retry_budget, clock
    )
    ext = _Extractor(api, until_q, fmap, page_size, audit_batch)
    inc_fields = sorted(
        {
            "sys_id",
            "number",
            *AUDITED_FIELDS,
            "opened_at",
            "resolved_at",
            "closed_at",
            "sys_updated_on",
            "category",
            # Major Incident Management (absent without the plugin: an unknown field is left out, not refused)
            "major_incident_state",
            fmap.client_field,
            *fmap.service_fields,
        }
    )
    partial = out_dir / ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with mapping.DropWriter(partial) as out:
            page: list[dict] = []
            for inc in api.pages("incident", query, inc_fields, page_size, sysparm_display_value="all"):
                page.append(inc)
                if len(page) == page_size:
                    ext.write_page(page, out)
                    page = []
            if page:
                ext.write_page(page, out)
        for f in partial.iterdir():
            f.replace(out_dir / f.name)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        api.session.close()
    res.seconds = round(time.monotonic() - t0, 3)
    return res
