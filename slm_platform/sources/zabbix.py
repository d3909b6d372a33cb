"""Zabbix (JSON-RPC API, ``/api_jsonrpc.php``, 6.0 - 7.x) → canonical outages, maintenance and checks.

Calls (one POST each, ``{"jsonrpc": "2.0", "method", "params", "id"}``):

- ``apiinfo.version`` (no auth): decides how to authenticate and a few parameter names. From 6.4 the token or
  session goes in ``Authorization: Bearer``; before, in the body's ``auth`` (7.2 refuses that field).
  Credentials: an API token (5.4+), or ``user.login(username, password)`` (session, ``user.logout`` at the
  end). An error "Not authorised", "Session terminated", "Incorrect user name or password", "API token
  expired" is :class:`ZabbixAuthError` at once; the message never holds the token or the password.
- ``hostgroup.get`` (``selectHosts``): which hosts each mapped host group holds.
- ``event.get`` (source 0 trigger events, object 0 triggers), paged by ``eventid_from`` ascending (Zabbix has
  no cursor; an eventid is a stable total order, so an event inserted while paging is read once, in its
  place): (1) problems (value 1) whose clock lies in the window ``[start, end)`` (whole seconds,
  ``time_till = end - 1``: windows that touch neither overlap nor leave a gap); (2) recovery events (value
  0) in the window, and the older problems they close (``objectids`` of their triggers, back to
  ``max_outage`` before the window, matched on ``r_eventid``): a problem left open by an earlier run gets its
  end from the run that sees its recovery, written again under the same key (service, started_at): an
  upsert; (3) the clocks of recovery events that lie after the window (a problem of this window already
  recovered when the run reads it). A problem with no recovery is written with an empty ``ended_at``: open,
  it runs to the cut-off (availability.md) until a run writes its end.
- ``maintenance.get`` (``selectTimeperiods``, ``selectHosts``, ``selectHostGroups`` (6.2+) or
  ``selectGroups`` (6.0)): maintenance periods → approved maintenance windows. Supported period kinds:
  one-time (0), daily (2), weekly (3) and monthly by day of month (4 with ``day``) in the configured server
  time zone; monthly by weekday-of-month (4 with ``dayofweek``) is counted as unsupported and logged, never
  guessed. Occurrences overlapping ``[start - maintenance_lookback, end + maintenance_ahead)`` are written
  (key service, starts_at: rewriting one is an upsert).
- ``item.get`` + ``history.get`` (numeric history, paged by clock): checks for a service whose mapping names
  a check item (``icmpping``: 1 up, 0 down; ``web.test.fail``: 0 up, a failed step number down).
- ``sla.getsli`` (6.0+): Zabbix's own SLI per SLA service and period, compared with ours in
  :func:`compare_sla`.

Problems → services by the mapping (``config/sources/zabbix_sample.yaml``): a service takes a problem when one
of its host groups holds one of the problem's hosts, or when every tag of its ``tags`` is on the event. A
problem below ``min_severity`` is not an outage (counted, not written). A problem no service takes, or a
malformed event (no clock, a clock that is not a number), is written with an empty service_code (or the bad
time) and the reason in ``unmapped``: the loader quarantines it with the record. Two problems of a service
starting in the same second are one row (end = the later end, open if either is; source_ref lists both).

Retries: HTTP 429 (Retry-After), 5xx, timeouts, resets, non-JSON answers, and the JSON-RPC errors that are
the database's or the server's passing trouble (-32603, -32500 "SQL statement execution has failed",
"Database error", "Connection to the database") back off exponentially (:mod:`http_retry`); any other
JSON-RPC error fails at once with Zabbix's message and data.
"""

from __future__ import annotations

import calendar
import csv
import itertools
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests
import yaml

from slm_platform.settings import REPO_ROOT
from slm_platform.sources.http_auth import connection_extra
from slm_platform.sources.http_retry import Backoff, RetryLater, get_with_retries
from slm_platform.sources.prometheus import parse_duration

DEFAULT_MAPPING = REPO_ROOT / "config" / "sources" / "zabbix_sample.yaml"
SOURCE = "zabbix"
BACKOFF = Backoff(base=1.0, cap=30.0)
RETRY_BUDGET = 300.0
SEVERITIES = {"not_classified": 0, "information": 1, "warning": 2, "average": 3, "high": 4, "disaster": 5}
OUTAGE_HEADER = (
    "service_code",
    "started_at",
    "ended_at",
    "source_ref",
    "severity",
    "host",
    "problem",
    "unmapped",
)
MAINTENANCE_HEADER = (
    "service_code",
    "starts_at",
    "ends_at",
    "change_ref",
    "approved",
    "maintenance",
    "unmapped",
)
CHECK_HEADER = ("service_code", "checked_at", "status", "latency_ms", "zabbix_item", "unmapped")
EVENT_OUTPUT = ["eventid", "clock", "value", "severity", "name", "objectid", "r_eventid"]
AUTH_MARKERS = (
    "not authorised",
    "not authorized",
    "session terminated",
    "incorrect user name or password",
    "api token expired",
    "login name or password is incorrect",
)
TRANSIENT_MARKERS = ("sql statement execution has failed", "database error", "connection to the database")
CHECK_KINDS = ("icmpping", "web.test.fail")

Log = Callable[[str], None]


class ZabbixError(RuntimeError):
    """Zabbix could not be read (the message names the method and why, never the credentials)."""


class ZabbixAuthError(ZabbixError):
    """Credentials refused or missing."""


class MappingError(ValueError):
    """The mapping file is invalid (the message names the file and the entry)."""


# ---------------------------------------------------------------------------------------------------
# Mapping


@dataclass(frozen=True)
class CheckItem:
    host: str
    key: str
    kind: str  # icmpping | web.test.fail


@dataclass(frozen=True)
class ServiceMap:
    service_code: str
    host_groups: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    check: CheckItem | None = None
    sla_service_id: str | None = None  # the Zabbix service (Services > Services) read by sla.getsli


@dataclass(frozen=True)
class ZabbixMapping:
    services: tuple[ServiceMap, ...]
    min_severity: int = 3
    timezone: str = "UTC"  # the Zabbix server's: recurring maintenance periods are wall-clock times in it
    url: str | None = None
    sla_id: str | None = None
    page_size: int = 1000
    timeout_seconds: float = 30.0
    max_retries: int = 3
    max_outage_seconds: int = 30 * 86400
    maintenance_lookback_seconds: int = 86400
    maintenance_ahead_seconds: int = 7 * 86400
    source_file: str = "<inline>"


def load_mapping(path: Path | str = DEFAULT_MAPPING) -> ZabbixMapping:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from exc
    return mapping_from_dict(doc, str(path))


def mapping_from_dict(doc: object, source: str = "<inline>") -> ZabbixMapping:
    if not isinstance(doc, dict):
        raise MappingError(f"{source}: expected a mapping at the top level")
    known = {
        "url",
        "min_severity",
        "timezone",
        "sla_id",
        "page_size",
        "timeout",
        "retries",
        "max_outage",
        "maintenance_lookback",
        "maintenance_ahead",
        "services",
    }
    unknown = sorted(set(doc) - known)
    if unknown:
        raise MappingError(f"{source}: unknown key(s) {unknown} (known: {sorted(known)})")
    sev = str(doc.get("min_severity", "average")).lower()
    if sev not in SEVERITIES:
        raise MappingError(f"{source}: min_severity {sev!r} is not one of {', '.join(SEVERITIES)}")
    tz = str(doc.get("timezone") or "UTC")
    try:
        ZoneInfo(tz)
    except Exception as exc:
        raise MappingError(f"{source}: timezone {tz!r} is not an IANA zone") from exc
    services = doc.get("services")
    if not isinstance(services, list) or not services:
        raise MappingError(f"{source}: 'services' must be a non-empty list")
    out, seen = [], set()
    for i, e in enumerate(services, start=1):
        where = f"{source}: services[{i}]"
        if not isinstance(e, dict) or not e.get("service_code"):
            raise MappingError(f"{where}: needs service_code and host_groups and/or tags")
        extra = sorted(set(e) - {"service_code", "host_groups", "tags", "check", "sla_service_id"})
        if extra:
            raise MappingError(f"{where}: unknown key(s) {extra}")
        code = str(e["service_code"]).strip()
        if code in seen:
            raise MappingError(f"{where}: service_code {code} appears twice")
        seen.add(code)
        groups = e.get("host_groups") or []
        tags = e.get("tags") or {}
        if not isinstance(groups, list) or not isinstance(tags, dict) or not (groups or tags):
            raise MappingError(f"{where} ({code}): host_groups (a list) and/or tags (tag: value) required")
        check = None
        if e.get("check") is not None:
            c = e["check"]
            if not isinstance(c, dict) or not c.get("host") or not c.get("key"):
                raise MappingError(f"{where} ({code}): check needs host and key (e.g. icmpping)")
            kind = str(c.get("kind") or str(c["key"]).split("[")[0])
            if kind not in CHECK_KINDS:
                raise MappingError(f"{where} ({code}): check kind {kind!r} is not one of {CHECK_KINDS}")
            check = CheckItem(str(c["host"]), str(c["key"]), kind)
        sla = e.get("sla_service_id")
        out.append(
            ServiceMap(
                code,
                tuple(str(g) for g in groups),
                tuple((str(k), str(v)) for k, v in tags.items()),
                check,
                str(sla) if sla is not None else None,
            )
        )
    page_size = doc.get("page_size", 1000)
    if not isinstance(page_size, int) or page_size < 1:
        raise MappingError(f"{source}: page_size must be a whole number >= 1, got {page_size!r}")
    retries = doc.get("retries", 3)
    if not isinstance(retries, int) or retries < 0:
        raise MappingError(f"{source}: retries must be a whole number >= 0, got {retries!r}")

    def dur(key: str, default: str) -> int:
        try:
            return parse_duration(doc.get(key, default), f"{source}: {key}")
        except ValueError as exc:
            raise MappingError(str(exc)) from None

    return ZabbixMapping(
        services=tuple(out),
        min_severity=SEVERITIES[sev],
        timezone=tz,
        url=doc.get("url") or None,
        sla_id=str(doc["sla_id"]) if doc.get("sla_id") is not None else None,
        page_size=page_size,
        timeout_seconds=float(dur("timeout", "30s")),
        max_retries=retries,
        max_outage_seconds=dur("max_outage", "30d"),
        maintenance_lookback_seconds=dur("maintenance_lookback", "1d"),
        maintenance_ahead_seconds=dur("maintenance_ahead", "7d"),
        source_file=source,
    )


# ---------------------------------------------------------------------------------------------------
# Credentials


@dataclass(frozen=True)
class Credentials:
    """An API token, or a user and password for ``user.login``. Secrets never show in repr."""

    token: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)


def credentials_from_connection(conn: Any) -> tuple[Credentials, str | None]:
    """(credentials, API URL) of the Airflow connection ``slm_zabbix``: extra ``api_token`` (or the
    password with no login) = token; else login + password; host = the frontend (``/api_jsonrpc.php``
    added)."""
    extra = connection_extra(conn)
    token = extra.get("api_token") or extra.get("token")
    login = getattr(conn, "login", None)
    if not token and not login and getattr(conn, "password", None):
        token = conn.password
    creds = Credentials(token=str(token)) if token else Credentials(user=login, password=conn.password or "")
    if not token and not login:
        raise ZabbixAuthError("connection slm_zabbix has neither extra.api_token nor a login")
    return creds, api_url(
        getattr(conn, "host", None), getattr(conn, "port", None), getattr(conn, "schema", None)
    )


def credentials_from_env(env: dict[str, str] | None = None) -> Credentials | None:
    env = dict(os.environ) if env is None else env
    if env.get("SLM_ZABBIX_TOKEN"):
        return Credentials(token=env["SLM_ZABBIX_TOKEN"])
    if env.get("SLM_ZABBIX_USER"):
        return Credentials(user=env["SLM_ZABBIX_USER"], password=env.get("SLM_ZABBIX_PASSWORD", ""))
    return None


def api_url(host: str | None, port: int | None = None, scheme: str | None = None) -> str | None:
    host = (host or "").rstrip("/")
    if not host:
        return None
    if "://" not in host:
        host = f"{scheme or 'https'}://{host}"
    s, rest = host.split("://", 1)
    hostpart, _, path = rest.partition("/")
    if port and ":" not in hostpart:
        hostpart = f"{hostpart}:{port}"
    path = path.rstrip("/")
    if not path.endswith("api_jsonrpc.php"):
        path = f"{path}/api_jsonrpc.php".lstrip("/")
    return f"{s}://{hostpart}/{path}"


# ---------------------------------------------------------------------------------------------------
# JSON-RPC


class _Post:
    """``get_with_retries`` calls ``session.get(url, params=, timeout=)``: here a POST of a JSON body."""

    def __init__(self, session: requests.Session):
        self.session = session

    def get(self, url: str, params: dict, timeout: float) -> requests.Response:
        return self.session.post(url, data=json.dumps(params), timeout=timeout)


def _version_tuple(v: str) -> tuple[int, int]:
    parts = (v.split(".") + ["0", "0"])[:2]
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        return (6, 0)


class ZabbixApi:
    def __init__(
        self, url: str, creds: Credentials, mapping: ZabbixMapping, res, sleep, clock=time.monotonic
    ):
        self.url, self.creds, self.res, self.sleep, self.clock = url, creds, res, sleep, clock
        self.session = requests.Session()
        self.session.headers.update({"Content-Type": "application/json-rpc", "Accept": "application/json"})
        self.post = _Post(self.session)
        self.timeout, self.max_retries = mapping.timeout_seconds, mapping.max_retries
        self.ids = itertools.count(1)
        self.version = (0, 0)
        self.auth: str | None = None
        self.session_login = False

    # -- plumbing
    def call(self, method: str, params: Any, *, auth: bool = True) -> Any:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params, "id": next(self.ids)}
        if auth and self.auth and self.version < (6, 4):
            body["auth"] = self.auth
        return get_with_retries(
            self.post,  # type: ignore[arg-type]
            self.url,
            body,
            lambda resp: _answer(resp, method),
            what=f"Zabbix {method} at {self.url}",
            error=ZabbixError,
            timeout=self.timeout,
            max_retries=self.max_retries,
            backoff=BACKOFF,
            sleep=self.sleep,
            counts=self.res,
            budget=RETRY_BUDGET,
            clock=self.clock,
        )

    def open(self) -> None:
        v = self.call("apiinfo.version", {}, auth=False)
        self.version = _version_tuple(str(v))
        self.res.api_version = str(v)
        if self.creds.token:
            self.auth = self.creds.token
        elif self.creds.user:
            key = "username" if self.version >= (5, 4) else "user"
            self.auth = str(
                self.call("user.login", {key: self.creds.user, "password": self.creds.password}, auth=False)
            )
            self.session_login = True
        else:
            raise ZabbixAuthError(
                f"Zabbix at {self.url}: no credentials (an API token, or a user and password)"
            )
        if self.version >= (6, 4):
            self.session.headers["Authorization"] = f"Bearer {self.auth}"

    def close(self) -> None:
        if self.session_login and self.auth:
            try:
                self.call("user.logout", [])
            except ZabbixError:
                pass  # the session expires by itself
        self.session.close()

    # -- paging
    def events(self, params: dict, page_size: int) -> Iterator[dict]:
        """event.get paged by eventid ascending (``eventid_from`` = last + 1)."""
        after = 0
        while True:
            page = self.call(
                "event.get",
                {
                    **params,
                    "eventid_from": str(after + 1),
                    "sortfield": ["eventid"],
                    "sortorder": "ASC",
                    "limit": page_size,
                },
            )
            self.res.pages += 1
            if not isinstance(page, list):
                raise ZabbixError(f"Zabbix event.get: expected a list, got {str(page)[:200]!r}")
            yield from page
            if len(page) < page_size:
                return
            try:
                after = max(int(e["eventid"]) for e in page)
            except (KeyError, TypeError, ValueError) as exc:
                raise ZabbixError(f"Zabbix event.get: a page without usable eventids: {exc}") from None

    def history(
        self, itemid: str, value_type: int, time_from: int, time_till: int, page_size: int
    ) -> Iterator[dict]:
        """history.get paged by clock: the next page starts at the last clock seen; (clock, ns) already
        read are skipped, so values sharing a clock across a page boundary are read once."""
        seen_at: set[tuple[str, str]] = set()
        frm = time_from
        while True:
            page = self.call(
                "history.get",
                {
                    "output": "extend",
                    "history": value_type,
                    "itemids": [itemid],
                    "time_from": frm,
                    "time_till": time_till,
                    "sortfield": "clock",
                    "sortorder": "ASC",
                    "limit": page_size,
                },
            )
            self.res.pages += 1
            fresh = [r for r in page if (str(r.get("clock")), str(r.get("ns", "0"))) not in seen_at]
            for r in fresh:
                seen_at.add((str(r.get("clock")), str(r.get("ns", "0"))))
            yield from fresh
            if len(page) < page_size or not fresh:
                return
            frm = max(int(r["clock"]) for r in page)
            seen_at = {k for k in seen_at if int(k[0]) >= frm}


def _answer(resp: requests.Response, method: str) -> Any:
    if resp.status_code in (401, 403):
        raise ZabbixAuthError(f"Zabbix refused {method} (HTTP {resp.status_code}): check the token or user")
    if resp.status_code == 429:
        ra = resp.headers.get("Retry-After")
        return RetryLater("429", "HTTP 429", min(60.0, float(ra)) if ra and ra.strip().isdigit() else None)
    if resp.status_code >= 500:
        return RetryLater("5xx", f"HTTP {resp.status_code}: {resp.text[:200]!r}")
    if resp.status_code != 200:
        raise ZabbixError(f"Zabbix {method} failed: HTTP {resp.status_code}: {resp.text[:200]!r}")
    try:
        body = resp.json()
    except ValueError:
        return RetryLater("bad_json", f"HTTP 200 but the answer is not JSON: {resp.text[:200]!r}")
    if not isinstance(body, dict) or ("result" not in body and "error" not in body):
        return RetryLater("no_result", f"HTTP 200 without a JSON-RPC result: {str(body)[:200]!r}")
    err = body.get("error")
    if err:
        code = err.get("code") if isinstance(err, dict) else None
        text = (
            f"{err.get('message', '')} {err.get('data', '')}".strip() if isinstance(err, dict) else str(err)
        )
        low = text.lower()
        if any(m in low for m in AUTH_MARKERS):
            raise ZabbixAuthError(
                f"Zabbix refused {method}: {text} (check the token, or the user and password)"
            )
        if code == -32603 or any(m in low for m in TRANSIENT_MARKERS):
            return RetryLater("rpc_transient", f"JSON-RPC error {code}: {text}")
        raise ZabbixError(f"Zabbix {method} failed: JSON-RPC error {code}: {text}")
    return body["result"]


# ---------------------------------------------------------------------------------------------------
# Extract


@dataclass
class ExtractResult:
    out_dir: Path
    start: datetime
    end: datetime
    api_version: str = ""
    problems: int = 0  # problem events read in the window
    below_severity: int = 0
    recoveries: int = 0  # recovery events read in the window
    reopened: int = 0  # older problems whose end this window wrote
    outage_rows: int = 0  # mapped rows written (after merging)
    outage_unmapped: int = 0  # rows written for quarantine
    open_at_end: int = 0
    merged: int = 0
    maintenance_rows: int = 0
    maintenance_unsupported: int = 0
    check_rows: int = 0
    check_bad: int = 0
    unmapped_hosts: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    pages: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def records(self) -> int:
        return self.problems + self.recoveries + self.maintenance_rows + self.check_rows + self.check_bad

    def summary(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("out_dir", "start", "end", "warnings")}
        return {
            **d,
            "out_dir": str(self.out_dir),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }


def _iso(clock: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock))


def _epoch(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError(f"timestamp without time zone: {ts.isoformat()} (give an offset or Z)")
    return int(-(-ts.timestamp() // 1))  # ceil: [start, end) in whole seconds


class _Resolver:
    """Problem → services by host group or tags."""

    def __init__(self, mapping: ZabbixMapping, group_hosts: dict[str, set[str]]):
        self.mapping = mapping
        self.by_host: dict[str, list[str]] = {}
        for s in mapping.services:
            for g in s.host_groups:
                for h in group_hosts.get(g, ()):
                    self.by_host.setdefault(h, []).append(s.service_code)

    def services(self, event: dict) -> list[str]:
        codes: list[str] = []
        for h in event.get("hosts") or []:
            for c in self.by_host.get(str(h.get("hostid")), []):
                if c not in codes:
                    codes.append(c)
        tags = {(str(t.get("tag")), str(t.get("value", ""))) for t in event.get("tags") or []}
        for s in self.mapping.services:
            if s.tags and all(t in tags for t in s.tags) and s.service_code not in codes:
                codes.append(s.service_code)
        return codes


def extract(
    mapping: ZabbixMapping,
    start: datetime,
    end: datetime,
    out_dir: Path | str,
    *,
    url: str | None = None,
    creds: Credentials | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    log: Log | None = None,
    page_size: int | None = None,
) -> ExtractResult:
    """Write ``out_dir/{outages,maintenance,checks}.csv`` for ``[start, end)`` (aside, then moved in place:
    a failed extract leaves no partial drop)."""
    target = url or mapping.url
    if not target:
        raise MappingError(
            f"no Zabbix URL: set url in {mapping.source_file}, the connection slm_zabbix or --url"
        )
    if creds is None:
        raise ZabbixAuthError(
            "no Zabbix credentials: connection slm_zabbix, SLM_ZABBIX_TOKEN or SLM_ZABBIX_USER"
        )
    lo, hi = _epoch(start), _epoch(end)
    if hi <= lo:
        raise ValueError(f"empty window: end {end.isoformat()} is not after start {start.isoformat()}")
    say = log or (lambda _m: None)
    t0 = time.monotonic()
    out_dir = Path(out_dir)
    res = ExtractResult(out_dir=out_dir, start=start, end=end)
    size = page_size or mapping.page_size
    api = ZabbixApi(target, creds, mapping, res, sleep, clock)
    partial = out_dir / ".partial"
    try:
        api.open()
        groups = [g for s in mapping.services for g in s.host_groups]
        group_hosts: dict[str, set[str]] = {}
        host_names: dict[str, str] = {}
        if groups:
            for g in api.call(
                "hostgroup.get",
                {
                    "output": ["groupid", "name"],
                    "filter": {"name": sorted(set(groups))},
                    "selectHosts": ["hostid", "host"],
                },
            ):
                group_hosts[str(g["name"])] = {str(h["hostid"]) for h in g.get("hosts") or []}
                host_names.update({str(h["hostid"]): str(h.get("host")) for h in g.get("hosts") or []})
            for g in sorted(set(groups) - set(group_hosts)):
                res.warnings.append(f"host group {g!r} of {mapping.source_file} does not exist in Zabbix")
        resolver = _Resolver(mapping, group_hosts)
        outages = _outages(api, mapping, resolver, lo, hi, size, res)
        maint = _maintenance(api, mapping, group_hosts, lo, hi, res)
        checks = _checks(api, mapping, lo, hi, size, res)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        _write(partial / "outages.csv", OUTAGE_HEADER, outages)
        _write(partial / "maintenance.csv", MAINTENANCE_HEADER, maint)
        names = ["outages.csv", "maintenance.csv"]
        if any(s.check for s in mapping.services):
            _write(partial / "checks.csv", CHECK_HEADER, checks)
            names.append("checks.csv")
        for n in names:
            (partial / n).replace(out_dir / n)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        api.close()
    res.seconds = round(time.monotonic() - t0, 3)
    for h, n in sorted(res.unmapped_hosts.items()):
        say(
            f"WARNING: {n} problem(s) of host {h} map to no service: quarantined"
            f" (map it in {mapping.source_file})"
        )
    for w in res.warnings:
        say(f"WARNING: {w}")
    return res


def _write(path: Path, header: tuple, rows: Iterable[tuple]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _outages(
    api: ZabbixApi,
    mapping: ZabbixMapping,
    resolver: _Resolver,
    lo: int,
    hi: int,
    size: int,
    res: ExtractResult,
) -> list[tuple]:
    base = {
        "output": EVENT_OUTPUT,
        "source": 0,
        "object": 0,
        "selectHosts": ["hostid", "host"],
        "selectTags": "extend",
    }
    problems = list(api.events({**base, "value": 1, "time_from": lo, "time_till": hi - 1}, size))
    res.problems = len(problems)
    recoveries = {
        str(e["eventid"]): e
        for e in api.events(
            {
                "output": ["eventid", "clock", "objectid"],
                "source": 0,
                "object": 0,
                "value": 0,
                "time_from": lo,
                "time_till": hi - 1,
            },
            size,
        )
    }
    res.recoveries = len(recoveries)
    # older problems closed by a recovery of this window
    older: list[dict] = []
    triggers = sorted({str(r.get("objectid")) for r in recoveries.values()})
    if triggers:
        for e in api.events(
            {
                **base,
                "value": 1,
                "objectids": triggers,
                "time_from": lo - mapping.max_outage_seconds,
                "time_till": lo - 1,
            },
            size,
        ):
            if str(e.get("r_eventid")) in recoveries:
                older.append(e)
    res.reopened = len(older)
    # recovery clocks not read yet (recovered after the window's end)
    wanted = sorted(
        {str(e.get("r_eventid")) for e in problems if str(e.get("r_eventid") or "0") not in ("0", "")}
        - set(recoveries)
    )
    ends = {k: v.get("clock") for k, v in recoveries.items()}
    for i in range(0, len(wanted), size):
        for r in api.call("event.get", {"output": ["eventid", "clock"], "eventids": wanted[i : i + size]}):
            ends[str(r["eventid"])] = r.get("clock")
    rows: dict[tuple[str, str], dict] = {}
    loose: list[tuple] = []
    for e in problems + older:
        try:
            sev = int(e.get("severity", 0))
        except (TypeError, ValueError):
            sev = 0
        if sev < mapping.min_severity:
            res.below_severity += 1
            continue
        hosts = ",".join(str(h.get("host")) for h in e.get("hosts") or [])
        name = str(e.get("name") or "")
        ref = f"zabbix:event:{e.get('eventid')}"
        try:
            started = _iso(int(e["clock"]))
        except (KeyError, TypeError, ValueError):
            loose.append(
                (
                    "",
                    str(e.get("clock") or ""),
                    "",
                    ref,
                    sev,
                    hosts,
                    name,
                    "malformed event: clock is not a Unix time",
                )
            )
            res.outage_unmapped += 1
            continue
        r_id = str(e.get("r_eventid") or "0")
        end_clock = ends.get(r_id) if r_id != "0" else None
        try:
            ended = _iso(int(end_clock)) if end_clock is not None else ""
        except (TypeError, ValueError):
            ended = str(end_clock)  # the loader quarantines it as a bad time
        codes = resolver.services(e)
        if not codes:
            res.outage_unmapped += 1
            for h in hosts.split(",") if hosts else ["(no host)"]:
                res.unmapped_hosts[h] = res.unmapped_hosts.get(h, 0) + 1
            loose.append(
                (
                    "",
                    started,
                    ended,
                    ref,
                    sev,
                    hosts,
                    name,
                    f"no host group or tag of {mapping.source_file} maps this problem to a service",
                )
            )
            continue
        for code in codes:
            key = (code, started)
            if key not in rows:
                rows[key] = {"ended": ended, "ref": ref, "sev": sev, "hosts": hosts, "name": name}
                continue
            kept = rows[key]
            res.merged += 1
            kept["ref"] += f",{ref}"
            kept["sev"] = max(kept["sev"], sev)
            if not ended or not kept["ended"]:
                kept["ended"] = ""
            elif ended > kept["ended"]:
                kept["ended"] = ended
    out = [(c, s, r["ended"], r["ref"], r["sev"], r["hosts"], r["name"], "") for (c, s), r in rows.items()]
    res.outage_rows = len(out)
    res.open_at_end = sum(1 for r in out if not r[2])
    return out + loose


def _occurrences(
    tp: dict, active: tuple[int, int], lo: int, hi: int, tz: ZoneInfo
) -> Iterator[tuple[int, int]] | None:
    """(start, end) epoch seconds of a time period's occurrences overlapping [lo, hi), cut to the
    maintenance's active_since/active_till. None for a kind not supported."""
    kind = int(tp.get("timeperiod_type", 0))
    period = int(tp.get("period", 0))
    a_lo, a_hi = active
    if kind == 0:
        s = int(tp.get("start_date", 0))
        cands: Iterable[int] = [s]
    else:
        if kind == 4 and int(tp.get("dayofweek", 0) or 0):
            return None
        if kind not in (2, 3, 4):
            return None
        every = max(1, int(tp.get("every", 1) or 1))
        start_time = int(tp.get("start_time", 0))
        day0 = datetime.fromtimestamp(max(lo, a_lo) - period - 86400, tz).date()
        last = datetime.fromtimestamp(min(hi, a_hi), tz).date()
        cands = []
        d = day0
        while d <= last:
            ok = False
            if kind == 2:
                ok = (d - datetime.fromtimestamp(a_lo, tz).date()).days % every == 0
            elif kind == 3:
                weeks = (d - datetime.fromtimestamp(a_lo, tz).date()).days // 7
                ok = bool(int(tp.get("dayofweek", 0)) & (1 << d.weekday())) and weeks % every == 0
            else:
                months = int(tp.get("month", 0))
                ok = bool(months & (1 << (d.month - 1))) and d.day == int(tp.get("day", 0) or 0)
            if ok:
                local = datetime(d.year, d.month, d.day, tzinfo=tz) + timedelta(seconds=start_time)
                cands.append(int(local.timestamp()))
            d += timedelta(days=1)
    out = []
    for s in cands:
        b, e = max(s, a_lo), min(s + period, a_hi)
        if e > b and e > lo and b < hi:
            out.append((b, e))
    return iter(out)


def _maintenance(
    api: ZabbixApi,
    mapping: ZabbixMapping,
    group_hosts: dict[str, set[str]],
    lo: int,
    hi: int,
    res: ExtractResult,
) -> list[tuple]:
    sel = "selectHostGroups" if api.version >= (6, 2) else "selectGroups"
    key = "hostgroups" if api.version >= (6, 2) else "groups"
    w_lo, w_hi = lo - mapping.maintenance_lookback_seconds, hi + mapping.maintenance_ahead_seconds
    found = api.call(
        "maintenance.get",
        {
            "output": "extend",
            "selectTimeperiods": "extend",
            "selectHosts": ["hostid", "host"],
            sel: ["groupid", "name"],
        },
    )
    tz = ZoneInfo(mapping.timezone)
    rows: dict[tuple[str, str], tuple] = {}
    for m in found:
        active = (int(m.get("active_since", 0)), int(m.get("active_till", 0) or 2**31))
        if active[1] <= w_lo or active[0] >= w_hi:
            continue
        gnames = {str(g.get("name")) for g in m.get(key) or []}
        hostids = {str(h.get("hostid")) for h in m.get("hosts") or []}
        codes = [
            s.service_code
            for s in mapping.services
            if gnames & set(s.host_groups) or any(hostids & group_hosts.get(g, set()) for g in s.host_groups)
        ]
        if not codes:
            continue  # a maintenance of hosts no service is mapped to: not this source's business
        for tp in m.get("timeperiods") or []:
            occ = _occurrences(tp, active, w_lo, w_hi, tz)
            if occ is None:
                res.maintenance_unsupported += 1
                res.warnings.append(
                    f"maintenance {m.get('maintenanceid')} ({m.get('name')}): time period kind "
                    f"{tp.get('timeperiod_type')} (monthly by weekday) is not supported: not written"
                )
                continue
            for b, e in occ:
                for code in codes:
                    ref = f"zabbix:maintenance:{m.get('maintenanceid')}"
                    rows[(code, _iso(b))] = (
                        code,
                        _iso(b),
                        _iso(e),
                        ref,
                        "true",
                        str(m.get("name") or ""),
                        "",
                    )
    res.maintenance_rows = len(rows)
    return list(rows.values())


def _checks(
    api: ZabbixApi, mapping: ZabbixMapping, lo: int, hi: int, size: int, res: ExtractResult
) -> list[tuple]:
    out: list[tuple] = []
    for s in mapping.services:
        if not s.check:
            continue
        items = api.call(
            "item.get",
            {
                "output": ["itemid", "value_type", "key_"],
                "host": s.check.host,
                "filter": {"key_": s.check.key},
            },
        )
        if not items:
            res.warnings.append(f"{s.service_code}: no item {s.check.key} on host {s.check.host}: no checks")
            continue
        item = items[0]
        label = f"{s.check.host}:{s.check.key}"
        for h in api.history(str(item["itemid"]), int(item.get("value_type", 3)), lo, hi - 1, size):
            try:
                at = _iso(int(h["clock"]))
                v = float(h.get("value"))
            except (KeyError, TypeError, ValueError):
                res.check_bad += 1
                out.append((s.service_code, str(h.get("clock", "")), str(h.get("value", "")), "", label, ""))
                continue
            if s.check.kind == "icmpping":
                status = "up" if v == 1 else "down" if v == 0 else str(h.get("value"))
            else:
                status = "up" if v == 0 else "down" if v > 0 and v == int(v) else str(h.get("value"))
            if status in ("up", "down"):
                res.check_rows += 1
                out.append((s.service_code, at, status, "", "", ""))
            else:
                res.check_bad += 1
                out.append((s.service_code, at, status, "", label, ""))
    return out


# ---------------------------------------------------------------------------------------------------
# Zabbix's own SLA beside ours


def get_sli(
    mapping: ZabbixMapping,
    period_from: datetime,
    period_to: datetime,
    *,
    url: str,
    creds: Credentials,
    sleep=time.sleep,
) -> list[dict]:
    """sla.getsli of the mapping's ``sla_id`` for the services with an ``sla_service_id``: one dict per
    (service, period): service_code, period_from, period_to, uptime, downtime, sli, excluded_downtimes."""
    if not mapping.sla_id:
        raise MappingError(f"{mapping.source_file}: no sla_id: nothing to compare")
    by_id = {s.sla_service_id: s.service_code for s in mapping.services if s.sla_service_id}
    res = ExtractResult(out_dir=Path("."), start=period_from, end=period_to)
    api = ZabbixApi(url, creds, mapping, res, sleep)
    try:
        api.open()
        ans = api.call(
            "sla.getsli",
            {
                "slaid": mapping.sla_id,
                "period_from": _epoch(period_from),
                "period_to": _epoch(period_to),
                "serviceids": sorted(by_id),
            },
        )
    finally:
        api.close()
    out = []
    until = _epoch(period_to)
    for pi, p in enumerate(ans.get("periods") or []):
        if int(p["period_from"]) >= until:
            continue  # Zabbix also returns the period holding period_to (seen on 6.0.14): not asked for
        for si, sid in enumerate(ans.get("serviceids") or []):
            d = ans["sli"][pi][si]
            out.append(
                {
                    "service_code": by_id.get(str(sid), f"zabbix-service-{sid}"),
                    "period_from": int(p["period_from"]),
                    "period_to": int(p["period_to"]),
                    "uptime": int(d.get("uptime", 0)),
                    "downtime": int(d.get("downtime", 0)),
                    "sli": float(d.get("sli", 0)),
                    "excluded_downtimes": d.get("excluded_downtimes") or [],
                }
            )
    return out


def _union(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for b, e in sorted(spans):
        if out and b <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([b, e])
    return [(b, e) for b, e in out]


def _length(spans: list[tuple[int, int]]) -> int:
    return sum(e - b for b, e in spans)


def _minus(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for s, e in a:
        cur = s
        for bs, be in b:
            if be <= cur or bs >= e:
                continue
            if bs > cur:
                out.append((cur, bs))
            cur = max(cur, be)
        if cur < e:
            out.append((cur, e))
    return out


def _clip(spans: Iterable[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    return _union((max(b, lo), min(e, hi)) for b, e in spans if min(e, hi) > max(b, lo))


def compare_sla(
    sli: list[dict],
    drop: Path | str,
    cut_off: int,
    tolerance_pct: float = 0.01,
    window: tuple[int, int] | None = None,
) -> list[dict]:
    """Ours beside Zabbix's, per service and period, from the extracted drop with the availability rule of
    availability.md for a 24x7 objective measured by reported outages: agreed time = period − approved
    maintenance; downtime = agreed ∩ outages (an open one runs to ``cut_off``). Zabbix's: uptime + downtime
    = its scheduled time − its *excluded downtimes*; maintenance does not enter it. Each row says whether
    the figures agree (within ``tolerance_pct`` points) and, when not, why."""
    drop = Path(drop)
    outages: dict[str, list[tuple[int, int]]] = {}
    maint: dict[str, list[tuple[int, int]]] = {}

    def ts(v: str) -> int:
        return int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp())

    with open(drop / "outages.csv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r["service_code"] and r["started_at"]:
                outages.setdefault(r["service_code"], []).append(
                    (ts(r["started_at"]), ts(r["ended_at"]) if r["ended_at"] else cut_off)
                )
    with open(drop / "maintenance.csv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r["service_code"] and r["approved"] == "true":
                maint.setdefault(r["service_code"], []).append((ts(r["starts_at"]), ts(r["ends_at"])))
    out = []
    for z in sli:
        lo, hi, code = z["period_from"], min(z["period_to"], cut_off), z["service_code"]
        m = _clip(maint.get(code, []), lo, hi)
        agreed = _minus([(lo, hi)], m)
        down_all = _clip(outages.get(code, []), lo, hi)
        down = _minus(down_all, m)
        ast = _length(agreed)
        ours = round((ast - _length(down)) / ast * 100, 4) if ast else None
        excl = _clip(((int(x["period_from"]), int(x["period_to"])) for x in z["excluded_downtimes"]), lo, hi)
        reasons = []
        hidden = _length(down_all) - _length(down)
        if hidden:
            reasons.append(
                f"{hidden // 60} min of problems inside approved maintenance:"
                " downtime for Zabbix's SLA, not for ours"
            )
        if _length(m):
            reasons.append(
                f"{_length(m) // 60} min of maintenance: out of our agreed time, counted by Zabbix"
            )
        if _length(excl):
            reasons.append(
                f"{_length(excl) // 60} min of SLA excluded downtimes: out of Zabbix's time, counted by us"
            )
        zsli = round(z["sli"], 4)
        partial = window is not None and (lo < window[0] or hi > window[1])
        if partial:  # ours would miss the outages outside the extracted window
            reasons.insert(0, "the extracted window covers only part of the period: extract whole periods")
        if zsli < 0:  # -1: Zabbix has no data for the period (the service did not exist yet: created_at)
            reasons.insert(0, "Zabbix has no SLI for this period (sli -1: the service was created after it)")
        agree = ours is not None and zsli >= 0 and not partial and abs(ours - zsli) <= tolerance_pct
        out.append(
            {
                "service_code": code,
                "period_from": _iso(lo),
                "period_to": _iso(z["period_to"]),
                "ours_pct": ours,
                "zabbix_pct": zsli,
                "ours_downtime_s": _length(down),
                "zabbix_downtime_s": z["downtime"],
                "agree": agree,
                "why": "; ".join(reasons) if not agree else "",
            }
        )
    return out


def landing_dir(root: Path, start: datetime, end: datetime) -> Path:
    fmt = "%Y-%m-%dT%H%M%SZ"
    return root / f"{start.astimezone(UTC).strftime(fmt)}--{end.astimezone(UTC).strftime(fmt)}"


def month_start(ts: datetime) -> datetime:
    return datetime(ts.year, ts.month, 1, tzinfo=UTC)


def month_end(ts: datetime) -> datetime:
    return month_start(ts) + timedelta(days=calendar.monthrange(ts.year, ts.month)[1])
