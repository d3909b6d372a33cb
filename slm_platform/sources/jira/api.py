"""Incremental extract of Jira (Service Management) issues, their changelog and JSM's SLA cycles → a drop.

Requests (Jira Cloud REST API v3, JSM servicedeskapi), all GET so they share ``http_retry``:

- ``/rest/api/3/myself`` once: the account's time zone, in which Jira reads JQL date literals;
- ``/rest/api/3/status`` once: status id → name and status category (changelog items carry status ids);
- ``/rest/api/3/search/jql`` (the enhanced search; the old ``/search`` with startAt is deprecated) with
  ``jql``, ``fields``, ``expand=changelog``, ``maxResults``, paged by ``nextPageToken`` until a page comes
  without one (``isLast``); the server may return fewer issues than ``maxResults``;
- ``/rest/api/3/issue/{key}/changelog?startAt=&maxResults=`` when an issue's embedded changelog is
  truncated (``total`` > histories), until ``isLast``;
- ``/rest/servicedeskapi/request/{key}/sla`` (when the mapping names JSM SLAs): JSM's own cycles (goal,
  elapsed, breached, paused), written beside the drop (``<out>.jsm/jsm_sla.csv``) for the comparison with
  ours; 404 = the issue is not a service request.

Window: ``(since, until]`` of the issue's ``updated`` (millisecond precision). JQL compares dates to the
minute in the account's zone, so the query asks from ``since`` floored to the minute (an hour earlier on
an ambiguous DST wall time) and the exact bounds are applied to ``fields.updated`` here: ties at the
watermark belong to the earlier window only. The query is ``ORDER BY updated DESC, key DESC`` with no
upper bound: an issue updated while we page moves to the *front* of the result, so whatever the paging
token encodes (a position or a cursor) no unchanged issue shifts past us; the moved issue is seen twice
(de-duplicated on its id) or not at all in this run, and then its new ``updated`` (> until) puts it in the
next window. Each issue's whole changelog is re-read when it changes, so reloading its events is idempotent.
"""

from __future__ import annotations

import csv
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests

from slm_platform.sources.http_auth import Auth, connection_base_url, connection_extra
from slm_platform.sources.http_retry import Backoff, RetryLater, get_with_retries
from slm_platform.sources.jira.mapping import JiraMapping
from slm_platform.sources.servicenow.mapping import DropWriter, collapse_events, first_response

SLA_COLUMNS = (
    "ticket_id",
    "sla_name",
    "metric",
    "cycle",
    "start_time",
    "stop_time",
    "breach_time",
    "breached",
    "goal_minutes",
    "elapsed_minutes",
    "paused",
    "ongoing",
)


class JiraError(RuntimeError):
    """The site could not be read (message says which request and why)."""


class JiraAuthError(JiraError):
    """401/403: wrong e-mail / API token, or the account cannot browse the projects."""


def auth_from_connection(conn: Any) -> Auth:
    """Connection ``slm_jira``: login = the account's e-mail, password = its API token (basic auth, as Jira
    Cloud wants); extra ``{"bearer_token": …}`` selects a bearer token (OAuth 2.0, Data Center PAT)."""
    extra = connection_extra(conn)
    if extra.get("bearer_token"):
        return Auth.bearer(extra["bearer_token"])
    if not getattr(conn, "login", None) or not getattr(conn, "password", None):
        raise JiraAuthError(
            "Jira connection needs login (e-mail) and password (API token), or extra.bearer_token"
        )
    return Auth.basic(conn.login, conn.password)


def base_url_from_connection(conn: Any) -> str:
    """``https://<site>.atlassian.net`` from a host with or without scheme (and an optional port)."""
    url = connection_base_url(conn)
    if not url:
        raise JiraError("Jira connection has no host")
    return url


@dataclass
class ExtractResult:
    out_dir: Path
    since: datetime | None
    until: datetime
    watermark: datetime  # the next run's ``since``
    issues: int = 0
    events: int = 0
    histories: int = 0
    changelog_requests: int = 0
    sla_cycles: int = 0
    outside_window: int = 0  # issues the minute-precision query returned outside (since, until]
    duplicates: int = 0  # issues seen twice (moved to the front while paging)
    merged_events: int = 0
    requests: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    sla_file: Path | None = None


def jira_time(value: str | None) -> datetime | None:
    """``2026-09-01T10:00:00.000+0200`` → aware datetime (None if empty; ValueError if garbled)."""
    if not value:
        return None
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"{value!r} has no offset")
    return dt


def iso(dt: datetime) -> str:
    """Canonical UTC text, milliseconds kept (Jira's precision): text order is time order."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def jql_time(dt: datetime, zone: ZoneInfo) -> str:
    """The JQL literal (minute precision, the account's zone) at or before ``dt``."""
    local = dt.astimezone(zone).replace(second=0, microsecond=0)
    naive = local.replace(tzinfo=None)
    # a wall time that is ambiguous (fall back) or skipped: Jira may read it as the other instant
    back = naive.replace(tzinfo=zone, fold=1).astimezone(UTC).replace(tzinfo=None)
    fwd = naive.replace(tzinfo=zone, fold=0).astimezone(UTC).replace(tzinfo=None)
    if back != fwd:
        local = (dt - timedelta(hours=1)).astimezone(zone).replace(second=0, microsecond=0)
    return local.strftime("%Y-%m-%d %H:%M")


def _text(v: Any) -> str | None:
    """A field value as the text mappings use: request type name, option value, project key, name."""
    if v in (None, "", []):
        return None
    if isinstance(v, list):
        return _text(v[0])
    if isinstance(v, dict):
        if isinstance(v.get("requestType"), dict):
            return _text(v["requestType"].get("name"))
        for k in ("value", "key", "name", "displayName", "title"):
            if v.get(k) not in (None, ""):
                return str(v[k])
        return None
    return str(v)


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


def _error_message(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.reason or resp.text[:200]
    if isinstance(body, dict):
        errors = body.get("errors") or {}
        msgs = [*(body.get("errorMessages") or []), *(f"{k}: {v}" for k, v in errors.items())]
        if body.get("message"):
            msgs.append(str(body["message"]))
        return "; ".join(str(m) for m in msgs)[:300] or resp.reason
    return str(body)[:200]


class _Api:
    def __init__(self, base_url: str, auth: Auth, res: ExtractResult, **kw):
        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", **auth.headers()})
        self.res = res
        self.kw = kw

    def get(self, path: str, params: dict[str, Any], missing_ok: bool = False) -> Any:
        url = f"{self.base}{path}"

        def answer(resp: requests.Response) -> Any:
            if resp.status_code == 200:
                try:
                    return resp.json()
                except ValueError:
                    return RetryLater("bad_json", f"HTTP 200 but the answer is not JSON: {resp.text[:200]!r}")
            if resp.status_code in (401, 403):
                raise JiraAuthError(
                    f"Jira refused the credentials for GET {url} (HTTP {resp.status_code}: "
                    f"{_error_message(resp)}); check the connection's e-mail and API token and the account's "
                    f"project permissions"
                )
            if resp.status_code == 404 and missing_ok:
                return None
            last = f"HTTP {resp.status_code}: {_error_message(resp)}"
            if resp.status_code == 429:
                return RetryLater("429", last, _retry_after(resp.headers.get("Retry-After")))
            if resp.status_code >= 500:
                return RetryLater("5xx", last)
            raise JiraError(f"GET {url} failed: {last}")

        return get_with_retries(
            self.session,
            url,
            params,
            answer,
            what=f"GET {url}",
            error=JiraError,
            counts=self.res,
            **self.kw,
        )

    def search(self, jql: str, fields: list[str], page_size: int) -> Iterator[dict]:
        token = None
        while True:
            params = {"jql": jql, "fields": ",".join(fields), "expand": "changelog", "maxResults": page_size}
            if token:
                params["nextPageToken"] = token
            body = self.get("/rest/api/3/search/jql", params)
            if not isinstance(body, dict) or not isinstance(body.get("issues"), list):
                raise JiraError(f"search/jql answered without an issues list: {str(body)[:200]!r}")
            yield from body["issues"]
            token = body.get("nextPageToken")
            if not token or body.get("isLast") is True:
                return

    def changelog(self, key: str, page_size: int = 100) -> list[dict]:
        out: list[dict] = []
        start = 0
        while True:
            body = self.get(f"/rest/api/3/issue/{key}/changelog", {"startAt": start, "maxResults": page_size})
            self.res.changelog_requests += 1
            values = body.get("values") or []
            out.extend(values)
            start += len(values)
            total = body.get("total")
            if body.get("isLast") is True or not values or (total is not None and start >= total):
                return out

    def sla(self, key: str) -> list[dict] | None:
        out: list[dict] = []
        start = 0
        while True:
            body = self.get(f"/rest/servicedeskapi/request/{key}/sla", {"start": start, "limit": 50}, True)
            if body is None:
                return None
            values = body.get("values") or []
            out.extend(values)
            start += len(values)
            if body.get("isLastPage", True) or not values:
                return out


@dataclass
class _Issue:
    key: str
    fields: dict
    histories: list[dict]


class _Writer:
    def __init__(self, mapping: JiraMapping, statuses: dict[str, tuple[str, str | None]], until: datetime):
        self.m, self.statuses, self.until = mapping, statuses, until

    def status(self, sid: str | None, name: str | None) -> str | None:
        if sid and sid in self.statuses:
            n, cat = self.statuses[sid]
            return self.m.status(n, cat)
        return self.m.status(name)

    def write(self, issue: _Issue, out: DropWriter, res: ExtractResult) -> None:
        f, m = issue.fields, self.m
        try:
            created = jira_time(f.get("created"))
        except ValueError:
            created = None
        st = f.get("status") or {}
        current = {
            "status": self.status(str(st.get("id") or ""), st.get("name")),
            "priority": m.priority(_text(f.get("priority"))),
            "group": m.group(
                _text(f.get(m.team_field)) if m.team_field else None,
                (f.get("assignee") or {}).get("displayName"),
                (f.get("assignee") or {}).get("accountId"),
            ),
        }
        # (at, history id, what, from, to)
        changes: list[tuple[datetime, int, str, str | None, str | None]] = []
        for h in issue.histories:
            try:
                at = jira_time(h.get("created"))
            except ValueError:
                continue
            if at is None or at > self.until:
                continue
            hid = int(h["id"]) if str(h.get("id", "")).isdigit() else 0
            for it in h.get("items") or []:
                fid = it.get("fieldId") or it.get("field")
                if fid == "status":
                    changes.append(
                        (
                            at,
                            hid,
                            "status",
                            self.status(it.get("from"), it.get("fromString")),
                            self.status(it.get("to"), it.get("toString")),
                        )
                    )
                elif fid == "priority":
                    old, new = m.priority(it.get("fromString")), m.priority(it.get("toString"))
                    changes.append((at, hid, "priority", old, new))
                elif m.team_field and fid == m.team_field:
                    old = it.get("fromString") or m.default_group
                    new = it.get("toString") or m.default_group
                    changes.append((at, hid, "group", old, new))
                elif not m.team_field and fid == "assignee":
                    old = m.group(None, it.get("fromString"), it.get("from"))
                    new = m.group(None, it.get("toString"), it.get("to"))
                    changes.append((at, hid, "group", old, new))
        changes.sort(key=lambda c: (c[0], c[1]))
        values = dict(current)
        for what in ("status", "priority", "group"):
            first = next((c for c in changes if c[2] == what), None)
            if first is not None:
                values[what] = first[3]
        events: list[tuple[str, str, str | None, str | None]] = []
        if created is not None:
            start = iso(min([created, *(c[0] for c in changes[:1])]))
            if values["status"]:
                events.append((start, "status", None, values["status"]))
            if values["group"]:
                events.append((start, "assignment_group", None, values["group"]))
            canonical = {"status": "status", "priority": "priority", "group": "assignment_group"}
            for at, _hid, what, old, new in changes:
                if old != new and not (what == "priority" and old is None):
                    events.append((iso(at), canonical[what], old, new))
            events, merged = collapse_events(events)
            res.merged_events += merged
        opened = iso(created) if created else (f.get("created") or None)  # garbled: the loader says why
        status_events = [(e[0], e[2], e[3]) for e in events if e[1] == "status"]
        try:
            resolved = jira_time(f.get("resolutiondate"))
        except ValueError:
            resolved = None
        moves = [e for e in status_events if e[2] in ("resolved", "closed")]
        closed_at = next((e[0] for e in reversed(status_events) if e[2] == "closed"), None)
        if current["status"] != "closed":
            closed_at = None
        resolved_at = iso(resolved) if resolved else None
        if resolved_at is None and current["status"] in ("resolved", "closed") and moves:
            resolved_at = moves[-1][0]
        major = _text(f.get(m.major_field)) if m.major_field else None
        rt = _text(f.get(m.request_type_field)) if m.request_type_field else None
        try:
            updated = iso(jira_time(f.get("updated")))
        except (ValueError, TypeError):
            updated = f.get("updated")
        out.ticket(
            {
                "ticket_id": issue.key,
                "client_code": m.client.code(_text(f.get(m.client.field))),
                "service_code": m.service.code(_text(f.get(m.service.field))) if m.service else None,
                "ticket_type": m.ticket_type(rt, _text(f.get("issuetype"))),
                "priority": current["priority"],
                "opened_at": opened,
                "first_response_at": first_response(opened if created else None, status_events),
                "resolved_at": resolved_at,
                "closed_at": closed_at,
                "status": current["status"],
                "assignment_group": current["group"],
                "is_major": (major in m.major_values if m.major_values else True) if major else None,
                "category": _text(f.get(m.category_field)) if m.category_field else None,
                "updated_at": updated,
            }
        )
        for occurred_at, fld, old, new in events:
            out.event(issue.key, occurred_at, fld, old, new)
        res.events += len(events)
        res.issues += 1


def _sla_rows(key: str, slas: list[dict], names: dict[str, str]) -> Iterator[list[str]]:
    metric_of = {v: k for k, v in names.items()}

    def t(x: Any) -> str:
        if isinstance(x, dict) and x.get("epochMillis") is not None:
            return iso(datetime.fromtimestamp(int(x["epochMillis"]) / 1000, UTC))
        return ""

    def minutes(x: Any) -> str:
        if isinstance(x, dict) and x.get("millis") is not None:
            return f"{int(x['millis']) / 60000:g}"
        return ""

    for s in slas:
        name = s.get("name")
        if name not in metric_of:
            continue
        cycles = [(c, False) for c in s.get("completedCycles") or []]
        if s.get("ongoingCycle"):
            cycles.append((s["ongoingCycle"], True))
        for n, (c, ongoing) in enumerate(cycles, 1):
            yield [
                key,
                name,
                metric_of[name],
                str(n),
                t(c.get("startTime")),
                t(c.get("stopTime")),
                t(c.get("breachTime")),
                "true" if c.get("breached") else "false",
                minutes(c.get("goalDuration")),
                minutes(c.get("elapsedTime")),
                "true" if c.get("paused") else "false",
                "true" if ongoing else "false",
            ]


def extract_issues(
    base_url: str,
    auth: Auth,
    mapping: JiraMapping,
    since: datetime | None,
    until: datetime,
    out_dir: Path | str,
    *,
    page_size: int | None = None,
    with_sla: bool | None = None,
    timeout: float = 60.0,
    max_retries: int = 5,
    backoff_base: float = 1.0,
    backoff_cap: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    retry_budget: float | None = 600.0,
    clock: Callable[[], float] = time.monotonic,
) -> ExtractResult:
    """Extract the issues updated in ``(since, until]`` with their full history into a canonical drop in
    ``out_dir`` (``tickets.csv``, ``ticket_events.csv``) and JSM's SLA cycles into ``<out_dir>.jsm/``.

    ``since=None`` extracts everything up to ``until``. Raises :class:`JiraAuthError` on 401/403 (the
    message never holds the token) and :class:`JiraError` when a request still fails after ``max_retries``
    retries (429 waits Retry-After, 5xx/timeouts/resets back off; no wait beyond ``backoff_cap``) or its
    retries would pass ``retry_budget`` seconds. A failed extract leaves nothing in ``out_dir``.
    """
    t0 = time.monotonic()
    for name, dt in (("since", since), ("until", until)):
        if dt is not None and dt.tzinfo is None:
            raise ValueError(f"{name} {dt!r} has no time zone")
    out_dir = Path(out_dir)
    page_size = page_size or mapping.page_size
    with_sla = bool(mapping.sla_names) if with_sla is None else with_sla
    res = ExtractResult(out_dir=out_dir, since=since, until=until, watermark=until)
    api = _Api(
        base_url,
        auth,
        res,
        timeout=timeout,
        timeout_label=f"{timeout:g}",
        max_retries=max_retries,
        backoff=Backoff(backoff_base, backoff_cap),
        sleep=sleep,
        budget=retry_budget,
        clock=clock,
    )
    partial = out_dir / ".partial"
    sla_dir = out_dir.with_name(out_dir.name + ".jsm")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        me = api.get("/rest/api/3/myself", {})
        try:
            zone = ZoneInfo((me or {}).get("timeZone") or "UTC")
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise JiraError(f"the account's time zone {me.get('timeZone')!r} is unknown") from exc
        statuses = {
            str(s.get("id")): (s.get("name"), (s.get("statusCategory") or {}).get("key"))
            for s in api.get("/rest/api/3/status", {}) or []
        }
        lower = jql_time(since, zone) if since is not None else "1970-01-01 00:00"
        scope = f"({mapping.jql}) AND " if mapping.jql else ""
        jql = f'{scope}updated >= "{lower}" ORDER BY updated DESC, key DESC'
        writer = _Writer(mapping, statuses, until)
        seen: set[str] = set()
        with DropWriter(partial) as out:
            partial.joinpath("jsm_sla.csv").unlink(missing_ok=True)
            sla_fh = open(partial / "jsm_sla.part", "w", newline="", encoding="utf-8") if with_sla else None
            sla_w = csv.writer(sla_fh, lineterminator="\n") if sla_fh else None
            if sla_w:
                sla_w.writerow(SLA_COLUMNS)
            try:
                for raw in api.search(jql, mapping.fields(), page_size):
                    key, fields = raw.get("key"), raw.get("fields") or {}
                    ident = str(raw.get("id") or key)
                    if ident in seen:
                        res.duplicates += 1
                        continue
                    seen.add(ident)
                    try:
                        updated = jira_time(fields.get("updated"))
                    except ValueError:
                        updated = None
                    if updated is not None and not ((since is None or updated > since) and updated <= until):
                        res.outside_window += 1
                        continue
                    if not key:
                        continue  # an issue without a key cannot be a ticket (nothing to quarantine it by)
                    log = raw.get("changelog") or {}
                    histories = log.get("histories") or []
                    if (log.get("total") or 0) > len(histories) or "histories" not in log:
                        histories = api.changelog(key)
                    res.histories += len(histories)
                    writer.write(_Issue(key, fields, histories), out, res)
                    if sla_w:
                        slas = api.sla(key)
                        for row in _sla_rows(key, slas or [], mapping.sla_names):
                            sla_w.writerow(row)
                            res.sla_cycles += 1
            finally:
                if sla_fh:
                    sla_fh.close()
        if with_sla:
            sla_dir.mkdir(parents=True, exist_ok=True)
            (partial / "jsm_sla.part").replace(sla_dir / "jsm_sla.csv")
            res.sla_file = sla_dir / "jsm_sla.csv"
        for f in partial.iterdir():
            f.replace(out_dir / f.name)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        api.session.close()
    res.seconds = round(time.monotonic() - t0, 3)
    return res
