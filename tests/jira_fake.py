"""A local HTTP server speaking the Jira Cloud REST API v3 and the JSM servicedeskapi (the parts the Jira
extractor uses), for tests and the benchmark.

- ``GET /rest/api/3/myself`` (the account's ``timeZone``), ``GET /rest/api/3/status`` (id, name,
  statusCategory);
- ``GET|POST /rest/api/3/search/jql``: ``jql`` of the form ``[(project in (A, B)) AND ]updated >= "YYYY-MM-DD
  HH:MM" ORDER BY updated DESC, key DESC`` (minute precision, read in the account's zone as Jira does;
  anything else answers 400 ``errorMessages`` so a wrong query fails loudly), ``fields``, ``expand=changelog``
  (embedded ``changelog`` {startAt, maxResults, total, histories}, at most ``embedded_limit`` histories),
  ``maxResults`` capped at ``max_page`` (Jira may return fewer than asked), ``nextPageToken`` (here an
  encoded *offset*, the least stable kind of token) absent on the last page, ``isLast``;
- ``GET /rest/api/3/issue/{key}/changelog`` ``startAt``/``maxResults`` → {values, startAt, maxResults, total,
  isLast};
- ``GET /rest/servicedeskapi/request/{key}/sla`` → {values: [{name, completedCycles, ongoingCycle}],
  isLastPage}; 404 for an issue that is not a request;
- basic auth (e-mail + API token), 401 otherwise; scripted faults per request number (429 + Retry-After,
  5xx, sleeps past the client's timeout) and a hook run before a search page is served (to change issues
  while the client pages).

:func:`populate` generates issues whose lifecycle is written twice: as Jira JSON (fields, changelog
histories with status ids, priority names, team names) and as the canonical truth (``fake.truth``,
``fake.expected``); JSM's SLA cycles are computed here, minute by minute, with JSM's own configuration
(:data:`JSM_CALENDARS`, pause statuses), independently of the project's business-time code.
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

# id -> (name, category key, canonical status per config/sources/jira_sample.yaml)
STATUSES = {
    "1": ("Open", "new", "new"),
    "3": ("Work in progress", "indeterminate", "in_progress"),  # by its category (not in the mapping)
    "10010": ("Waiting for customer", "indeterminate", "pending_customer"),
    "10011": ("Pending", "indeterminate", "awaiting_vendor"),
    "10012": ("Escalated", "indeterminate", "in_progress"),  # by its category
    "5": ("Resolved", "done", "resolved"),
    "6": ("Closed", "done", "closed"),
    "10013": ("Canceled", "done", "cancelled"),
}
STATUS_ID = {canon: sid for sid, (_n, _c, canon) in STATUSES.items() if sid not in ("10012",)}
PRIORITIES = {"P1": "Highest", "P2": "High", "P3": "Medium", "P4": "Low"}
PROJECTS = {"ACME": "ACME", "GLOB": "GLOBEX"}  # project key -> client_code (the mapping's client.map)
SERVICES = {"ACME": {"ERP": "ACME-ERP", "Web shop": "ACME-WEB"}, "GLOB": {"CRM": "GLOBEX-CRM"}}
TEAMS = {"Service Desk": "1", "Network": "2", "Carrier-X": "3"}
REQUEST_TYPES = {"incident": "Report a system problem", "request": "Get IT help"}
ISSUE_TYPES = {"incident": "[System] Incident", "request": "[System] Service request"}
TEAM_FIELD, SERVICE_FIELD, REQUEST_TYPE_FIELD = "customfield_10001", "customfield_10050", "customfield_10010"
# JSM's SLA configuration on the fake site: goal minutes and calendar per priority, pausing statuses
JSM_GOALS = {"P1": (240, "24/7"), "P2": (480, "9-5"), "P3": (960, "9-5"), "P4": (1920, "9-5")}
JSM_CALENDARS = {"24/7": None, "9-5": ("Europe/Paris", 9, 17)}  # Mon-Fri 09-17 Paris, no holidays
JSM_PAUSE = {"pending_customer", "awaiting_vendor"}
SLA_RESOLUTION = "Time to resolution"


def jtime(dt: datetime, zone: str = "Europe/Paris") -> str:
    """Jira's timestamp text: ``2026-10-01T10:00:00.000+0200`` (the site's zone)."""
    local = dt.astimezone(ZoneInfo(zone))
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}" + local.strftime("%z")


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass
class Fault:
    status: int = 503
    retry_after: str | None = None
    sleep: float = 0.0
    body: str | None = None


@dataclass
class FakeJira:
    email: str = "svc-slm@example.com"
    api_token: str = "ATATT3xFfGF0-secret-token"
    time_zone: str = "Europe/Paris"
    embedded_limit: int = 100
    max_page: int = 50
    issues: dict[str, dict] = field(default_factory=dict)  # key -> issue JSON (fields + histories)
    slas: dict[str, list[dict]] = field(default_factory=dict)  # key -> servicedeskapi SLA values
    truth: dict[str, list[tuple[str, str, str | None, str | None]]] = field(default_factory=dict)
    expected: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> canonical ticket columns
    faults: dict[int, Fault] = field(default_factory=dict)
    before_search: object = None  # callable(params, request_number) before a search page is served
    log: list[tuple[str, dict[str, str], int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""
        self._next_id = 10000

    def __enter__(self) -> FakeJira:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real site
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                fake._handle(self, None)

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                fake._handle(self, json.loads(self.rfile.read(n) or b"{}"))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def requests(self) -> int:
        return len(self.log)

    # -- protocol ----------------------------------------------------------------------------------
    def _send(self, h, status: int, body, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json;charset=UTF-8")
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _authorised(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.email and pw == self.api_token

    def _handle(self, h, body: dict | None) -> None:
        parts = urlsplit(h.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if body:  # POST search/jql: the same parameters in a JSON body
            params.update({k: ",".join(v) if isinstance(v, list) else str(v) for k, v in body.items()})
        with self._lock:
            n = len(self.log) + 1
            fault = self.faults.get(n)
            self.log.append((parts.path, params, 0))
        status = self._serve(h, parts.path, params, n, fault)
        with self._lock:
            self.log[n - 1] = (parts.path, params, status)

    def _serve(self, h, path: str, params: dict[str, str], n: int, fault: Fault | None) -> int:
        if not self._authorised(h.headers.get("Authorization")):
            self._send(h, 401, {"errorMessages": ["Client must be authenticated to access this resource."]})
            return 401
        if fault:
            if fault.sleep:
                time.sleep(fault.sleep)
            if fault.body is not None:
                self._send(h, fault.status, fault.body.encode())
                return fault.status
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._send(h, fault.status, {"errorMessages": [f"scripted fault {fault.status}"]}, headers)
            return fault.status
        try:
            status, body = self._route(path, params, n)
        except ValueError as exc:
            status, body = 400, {"errorMessages": [str(exc)], "errors": {}}
        self._send(h, status, body)
        return status

    def _route(self, path: str, params: dict[str, str], n: int) -> tuple[int, object]:
        if path == "/rest/api/3/myself":
            return 200, {"accountId": "5b10ac8d82e05b22cc7d4ef5", "emailAddress": self.email,
                         "timeZone": self.time_zone, "active": True}  # fmt: skip
        if path == "/rest/api/3/status":
            return 200, [
                {"id": sid, "name": name, "statusCategory": {"key": cat, "name": cat.title()}}
                for sid, (name, cat, _c) in STATUSES.items()
            ]
        if path == "/rest/api/3/search/jql":
            if callable(self.before_search):
                self.before_search(params, n)
            return 200, self._search(params)
        m = re.fullmatch(r"/rest/api/3/issue/([A-Z]+-\d+)/changelog", path)
        if m:
            with self._lock:
                issue = self.issues.get(m.group(1))
                if issue is None:
                    return 404, {
                        "errorMessages": ["Issue does not exist or you do not have permission to see it."]
                    }
                hist = list(issue["histories"])
            start, size = int(params.get("startAt", 0)), min(int(params.get("maxResults", 100)), 100)
            values = hist[start : start + size]
            last = start + len(values) >= len(hist)
            return 200, {"self": f"{self.url}{path}", "maxResults": size, "startAt": start,
                         "total": len(hist), "isLast": last, "values": values}  # fmt: skip
        m = re.fullmatch(r"/rest/servicedeskapi/request/([A-Z]+-\d+)/sla", path)
        if m:
            if m.group(1) not in self.slas:
                return 404, {"errorMessage": "The request could not be found.", "i18nErrorMessage": {}}
            values = self.slas[m.group(1)]
            return 200, {"size": len(values), "start": 0, "limit": 50, "isLastPage": True, "values": values}
        return 404, {"errorMessages": [f"no such resource {path}"]}

    _JQL = re.compile(
        r'^(?:\(project in \(([A-Z, ]+)\)\) AND )?updated >= "(\d{4}-\d\d-\d\d \d\d:\d\d)"'
        r" ORDER BY updated DESC, key DESC$"
    )

    def _search(self, params: dict[str, str]) -> dict:
        m = self._JQL.match(params.get("jql", ""))
        if not m:
            raise ValueError(f"Error in the JQL Query: unsupported by the fake: {params.get('jql')!r}")
        projects = {p.strip() for p in m.group(1).split(",")} if m.group(1) else None
        lower = datetime.strptime(m.group(2), "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(self.time_zone))
        with self._lock:
            rows = [
                i for i in self.issues.values()
                if datetime.fromisoformat(i["fields"]["updated"]) >= lower
                and (projects is None or i["key"].split("-")[0] in projects)
            ]  # fmt: skip
            rows.sort(key=lambda i: (datetime.fromisoformat(i["fields"]["updated"]), i["key"]), reverse=True)
            offset = (
                int(base64.urlsafe_b64decode(params["nextPageToken"]).decode())
                if params.get("nextPageToken")
                else 0
            )
            size = min(int(params.get("maxResults", 50)), self.max_page)
            page = rows[offset : offset + size]
            wanted = [f for f in params.get("fields", "").split(",") if f]
            expand = "changelog" in params.get("expand", "")
            issues = [self._render(i, wanted, expand) for i in page]
        body: dict = {"issues": issues, "isLast": offset + size >= len(rows)}
        if not body["isLast"]:
            body["nextPageToken"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
        return body

    def _render(self, issue: dict, wanted: list[str], expand: bool) -> dict:
        out = {"expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
               "id": issue["id"], "self": f"{self.url}/rest/api/3/issue/{issue['id']}", "key": issue["key"],
               "fields": {f: issue["fields"].get(f) for f in wanted}}  # fmt: skip
        if expand:
            hist = issue["histories"]
            out["changelog"] = {"startAt": 0, "maxResults": self.embedded_limit, "total": len(hist),
                                "histories": hist[: self.embedded_limit]}  # fmt: skip
        return out

    # -- data ----------------------------------------------------------------------------------------
    def add_issue(self, key: str, fields: dict) -> dict:
        with self._lock:
            self._next_id += 1
            issue = {"id": str(self._next_id), "key": key, "fields": fields, "histories": []}
            self.issues[key] = issue
            return issue

    def history(self, key: str, at: datetime, items: list[dict]) -> None:
        """One changelog entry (several items change together) and the issue's fields moved along."""
        with self._lock:
            issue = self.issues[key]
            hid = str(20000 + sum(len(i["histories"]) for i in self.issues.values()) + len(self.log))
            issue["histories"].append({
                "id": hid,
                "author": {"accountId": "5b10a2844c20165700ede21g", "displayName": "Agent"},
                "created": jtime(at, self.time_zone),
                "items": items,
            })  # fmt: skip
            f = issue["fields"]
            for it in items:
                if it["fieldId"] == "status":
                    name, cat, _c = STATUSES[it["to"]]
                    f["status"] = {"id": it["to"], "name": name, "statusCategory": {"key": cat}}
                    if cat == "done" and it["to"] != "6":
                        f["resolutiondate"] = jtime(at, self.time_zone)
                    elif cat != "done":
                        f["resolutiondate"] = None
                elif it["fieldId"] == "priority":
                    f["priority"] = {"id": it["to"], "name": it["toString"]}
                elif it["fieldId"] == TEAM_FIELD:
                    f[TEAM_FIELD] = {"id": it["to"], "name": it["toString"], "title": it["toString"]}
            f["updated"] = jtime(at, self.time_zone)


def status_item(old: str, new: str) -> dict:
    return {"field": "status", "fieldtype": "jira", "fieldId": "status", "from": STATUS_ID[old],
            "fromString": STATUSES[STATUS_ID[old]][0], "to": STATUS_ID[new],
            "toString": STATUSES[STATUS_ID[new]][0]}  # fmt: skip


def team_item(old: str | None, new: str) -> dict:
    return {"field": "Team", "fieldtype": "custom", "fieldId": TEAM_FIELD, "from": TEAMS.get(old or ""),
            "fromString": old, "to": TEAMS[new], "toString": new}  # fmt: skip


def priority_item(old: str, new: str) -> dict:
    return {"field": "priority", "fieldtype": "jira", "fieldId": "priority", "from": old[1],
            "fromString": PRIORITIES[old], "to": new[1], "toString": PRIORITIES[new]}  # fmt: skip


# -- generated lifecycles ------------------------------------------------------------------------------
@dataclass
class Life:
    """One issue's generated lifecycle, kept for the truth and JSM's SLA."""

    key: str
    opened: datetime
    steps: list[tuple[datetime, list[tuple[str, str | None, str]]]]  # (at, [(field, old, new)])


def _jsm_open(cal: str, minute: datetime) -> bool:
    spec = JSM_CALENDARS[cal]
    if spec is None:
        return True
    zone, h0, h1 = spec
    local = minute.astimezone(ZoneInfo(zone))
    return local.weekday() < 5 and h0 <= local.hour < h1


def jsm_cycles(life: Life, priority: str) -> list[dict]:
    """JSM's "Time to resolution" as the fake site computes it: a cycle runs from creation (or a reopen) to
    the next move into Resolved/Closed/Canceled; minutes in JSM_PAUSE statuses or outside the calendar do
    not count; breached when elapsed > goal. Minute by minute (the generator's times are whole minutes)."""
    goal, cal = JSM_GOALS[priority]
    status_at: list[tuple[datetime, str]] = [(life.opened, "new")]
    for at, changes in life.steps:
        for fld, _old, new in changes:
            if fld == "status":
                status_at.append((at, new))
    cycles, start, elapsed, breach = [], life.opened, 0, None
    running = True
    for (t0, st), nxt in zip(status_at, [*status_at[1:], (None, None)], strict=True):
        t1 = nxt[0]
        if st in ("resolved", "closed", "cancelled"):
            if running:
                cycles.append(_cycle(start, t0, elapsed, goal, breach, False))
                running = False
            continue
        if not running:
            start, elapsed, breach, running = t0, 0, None, True
        if t1 is None:
            break
        if st not in JSM_PAUSE:
            m = t0
            while m < t1:
                if _jsm_open(cal, m):
                    elapsed += 1
                    if elapsed == goal + 1 and breach is None:
                        breach = m
                m += timedelta(minutes=1)
    out = {"id": "1", "name": SLA_RESOLUTION, "completedCycles": cycles[:], "_links": {}}
    if running:
        out["ongoingCycle"] = {
            "startTime": _t(start), "breached": elapsed > goal, "paused": status_at[-1][1] in JSM_PAUSE,
            "withinCalendarHours": True, "goalDuration": _d(goal), "elapsedTime": _d(elapsed),
            "remainingTime": _d(goal - elapsed),
        }  # fmt: skip
    return [out]


def _t(dt: datetime) -> dict:
    return {"iso8601": jtime(dt), "jira": jtime(dt), "friendly": dt.strftime("%d/%b/%y %I:%M %p"),
            "epochMillis": int(dt.timestamp() * 1000)}  # fmt: skip


def _d(minutes: int) -> dict:
    return {"millis": minutes * 60000, "friendly": f"{minutes // 60}h {minutes % 60}m"}


def _cycle(start, stop, elapsed, goal, breach, ongoing) -> dict:
    c = {"startTime": _t(start), "stopTime": _t(stop), "breached": elapsed > goal, "goalDuration": _d(goal),
         "elapsedTime": _d(elapsed), "remainingTime": _d(goal - elapsed)}  # fmt: skip
    if breach is not None:
        c["breachTime"] = _t(breach)
    return c


def populate(fake: FakeJira, n: int, start: datetime, seed: int = 7, sla: bool = True) -> list[Life]:
    """``n`` issues opened from ``start`` on (whole minutes), with their lifecycles, truth and JSM SLA."""
    rnd = random.Random(seed)
    lives = []
    for k in range(n):
        project = "ACME" if k % 3 else "GLOB"
        key = f"{project}-{k + 1}"
        service = rnd.choice(sorted(SERVICES[project]))
        kind = "incident" if rnd.random() < 0.75 else "request"
        prio = rnd.choice(["P1", "P2", "P2", "P3", "P3", "P4"])
        opened = start + timedelta(minutes=rnd.randint(0, 60 * 24 * 20))
        team = "Service Desk"
        fields = {
            "summary": f"generated issue {k}",
            "project": {"id": str(10000 + len(project)), "key": project, "name": f"{project} support"},
            "issuetype": {"id": "10004" if kind == "incident" else "10005", "name": ISSUE_TYPES[kind]},
            REQUEST_TYPE_FIELD: {
                "_links": {},
                "requestType": {"id": "1", "name": REQUEST_TYPES[kind]},
                "currentStatus": {"status": "Open"},
            },
            SERVICE_FIELD: {"self": "", "value": service, "id": "100"},
            TEAM_FIELD: {"id": TEAMS[team], "name": team, "title": team},
            "priority": {"id": prio[1], "name": PRIORITIES[prio]},
            "status": {"id": "1", "name": "Open", "statusCategory": {"key": "new"}},
            "created": jtime(opened, fake.time_zone),
            "updated": jtime(opened, fake.time_zone),
            "resolutiondate": None,
            "assignee": None,
        }
        fake.add_issue(key, fields)
        steps: list[tuple[datetime, list[tuple[str, str | None, str]]]] = []
        t, st = opened, "new"

        def step(minutes: int, *changes: tuple[str, str | None, str], steps=steps) -> None:
            nonlocal t
            t = t + timedelta(minutes=minutes)
            steps.append((t, list(changes)))

        step(rnd.randint(2, 90), ("status", "new", "in_progress"))
        st = "in_progress"
        if rnd.random() < 0.3:
            step(rnd.randint(10, 300), ("status", st, "pending_customer"))
            step(rnd.randint(30, 1500), ("status", "pending_customer", "in_progress"))
        if rnd.random() < 0.35:
            step(rnd.randint(10, 200), ("assignment_group", team, "Network"))
            team = "Network"
            if rnd.random() < 0.4:
                step(
                    rnd.randint(10, 200),
                    ("assignment_group", team, "Carrier-X"),
                    ("status", st, "awaiting_vendor"),
                )
                team = "Carrier-X"
                step(
                    rnd.randint(60, 900),
                    ("assignment_group", team, "Network"),
                    ("status", "awaiting_vendor", st),
                )
                team = "Network"
        if rnd.random() < 0.15:
            newp = "P1" if prio != "P1" else "P2"
            step(rnd.randint(5, 120), ("priority", prio, newp))
            prio = newp
        if rnd.random() < 0.1:  # many small hand-offs: a long changelog (embedded one truncated)
            for _ in range(rnd.randint(6, 12)):
                other = "Service Desk" if team != "Service Desk" else "Network"
                step(rnd.randint(5, 60), ("assignment_group", team, other))
                team = other
        end = rnd.random()
        if end < 0.85:
            step(rnd.randint(30, 2400), ("status", st, "resolved"))
            st = "resolved"
            if rnd.random() < 0.1:  # reopened, then resolved again
                step(rnd.randint(30, 600), ("status", "resolved", "in_progress"))
                step(rnd.randint(30, 600), ("status", "in_progress", "resolved"))
            if rnd.random() < 0.5:
                step(rnd.randint(60, 4000), ("status", "resolved", "closed"))
                st = "closed"
        elif end < 0.9:
            step(rnd.randint(30, 600), ("status", st, "cancelled"))
            st = "cancelled"
        life = Life(key, opened, steps)
        lives.append(life)
        for at, changes in steps:
            items = []
            for fld, old, new in changes:
                if fld == "status":
                    items.append(status_item(old, new))
                elif fld == "priority":
                    items.append(priority_item(old, new))
                else:
                    items.append(team_item(old, new))
            fake.history(key, at, items)
        _truth(fake, life, project, service, kind)
        if sla and kind == "incident":
            fake.slas[key] = jsm_cycles(life, prio)  # JSM matches the goal on the current priority
    return lives


def _truth(fake: FakeJira, life: Life, project: str, service: str, kind: str) -> None:
    issue = fake.issues[life.key]
    f = issue["fields"]
    prio_now = PRIORITIES_INV[f["priority"]["name"]]
    ev = [
        (iso(life.opened), "status", None, "new"),
        (iso(life.opened), "assignment_group", None, "Service Desk"),
    ]
    for at, changes in life.steps:
        for fld, old, new in changes:
            ev.append((iso(at), fld, old, new))
    fake.truth[life.key] = ev
    statuses = [(e[0], e[3]) for e in ev if e[1] == "status"]
    final = statuses[-1][1]
    done = [t for t, s in statuses if s in ("resolved", "cancelled")]  # Jira's resolutiondate
    fake.expected[life.key] = {
        "ticket_id": life.key,
        "client_code": PROJECTS[project],
        "service_code": SERVICES[project][service],
        "ticket_type": kind,
        "priority": prio_now,
        "status": final,
        "assignment_group": f[TEAM_FIELD]["name"],
        "opened_at": iso(life.opened),
        "first_response_at": next(t for t, s in statuses if s != "new"),
        "resolved_at": done[-1] if final in ("resolved", "closed", "cancelled") and done else "",
        "closed_at": statuses[-1][0] if final == "closed" else "",
        "updated_at": iso(datetime.fromisoformat(f["updated"])),
    }


PRIORITIES_INV = {v: k for k, v in PRIORITIES.items()}


def change(
    fake: FakeJira, key: str, at: datetime, status: str | None = None, team: str | None = None
) -> None:
    """A later change of a generated issue (status and/or team), the truth updated along."""
    f = fake.issues[key]["fields"]
    if status == STATUSES[f["status"]["id"]][2] or team == f[TEAM_FIELD]["name"]:
        raise ValueError(f"{key}: not a change")
    items, canon = [], []
    if status:
        old = STATUSES[f["status"]["id"]][2]
        items.append(status_item(old, status))
        canon.append((iso(at), "status", old, status))
    if team:
        old_t = f[TEAM_FIELD]["name"]
        items.append(team_item(old_t, team))
        canon.append((iso(at), "assignment_group", old_t, team))
    fake.history(key, at, items)
    fake.truth[key].extend(canon)
    exp = fake.expected[key]
    exp["updated_at"] = iso(at)
    if status:
        exp["status"] = status
    if team:
        exp["assignment_group"] = team


def holiday_free(d: date) -> bool:  # documentation helper for tests: JSM's 9-5 calendar has no holidays
    return d.weekday() < 5
