"""A local HTTP server speaking the ServiceNow Table API (the parts the extractor uses), for tests.

``GET /api/now/table/{table}`` with ``sysparm_query`` (``f=v``, ``f!=v``, ``f>v``, ``f>=v``, ``f<v``,
``f<=v``, ``fINa,b``, ``ORDERBYf``, ``ORDERBYDESCf`` joined by ``^``; anything else answers 400 so that a
wrong query fails loudly instead of silently matching everything), ``sysparm_limit``, ``sysparm_offset``,
``sysparm_fields``, ``sysparm_display_value`` (false/true/all), ``X-Total-Count`` and ``Link`` headers,
basic or bearer auth (401 otherwise) and scripted faults per request number (:func:`storm` draws a
seeded schedule of them: 429, 5xx, timeouts, resets, cut, garbled and ``result``-less 200s).

:func:`populate` generates incidents whose lifecycle is written twice: as ServiceNow rows (incident +
sys_audit, codes and sys_ids) and as the canonical truth (``fake.truth``), so that tests compare the
extractor's output with what was generated, not with a re-implementation of the mapping.
"""

from __future__ import annotations

import base64
import json
import random
import re
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

STATE_LABEL = {
    "1": "New",
    "2": "In Progress",
    "3": "On Hold",
    "6": "Resolved",
    "7": "Closed",
    "8": "Canceled",
}
HOLD_LABEL = {"1": "Awaiting Caller", "3": "Awaiting Problem", "4": "Awaiting Vendor", "5": "Awaiting Change"}
PRIORITY_LABEL = {"1": "1 - Critical", "2": "2 - High", "3": "3 - Moderate", "4": "4 - Low"}
CHOICES = {"state": STATE_LABEL, "hold_reason": HOLD_LABEL, "priority": PRIORITY_LABEL}
REFERENCES = {
    "company": "core_company",
    "assignment_group": "sys_user_group",
    "business_service": "cmdb_ci_service",
    "cmdb_ci": "cmdb_ci_service",
}
DATETIMES = {"opened_at", "resolved_at", "closed_at", "sys_updated_on", "sys_created_on"}
# canonical status -> (state, hold_reason): how the generator encodes its truth
ENCODE = {
    "new": ("1", ""),
    "in_progress": ("2", ""),
    "pending_customer": ("3", "1"),
    "awaiting_vendor": ("3", "4"),
    "resolved": ("6", ""),
    "closed": ("7", ""),
    "cancelled": ("8", ""),
}
_COND = re.compile(r"^([a-z_0-9.]+)(IN|>=|<=|!=|>|<|=)(.*)$", re.S)


def sn_time(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sysid() -> str:
    return uuid.uuid4().hex


@dataclass
class Fault:
    status: int = 503
    retry_after: str | None = None
    sleep: float = 0.0  # sleep before answering (past the client's timeout: a timeout)
    body: str | None = None  # the answer's raw body instead of an error object (a garbled or result-less 200)
    reset: bool = False  # close the connection with a TCP reset instead of answering
    truncate: bool = False  # promise a longer body than sent, then reset (a cut answer)


# The faults of a storm (tests/test_fault_storm.py), each as a proxy or a server in trouble answers.
STORM_KINDS: dict[str, Fault] = {
    "429": Fault(429, retry_after="2"),
    "500": Fault(500),
    "502": Fault(502, body="<html><body>502 Bad Gateway</body></html>"),
    "503": Fault(503),
    "timeout": Fault(200, sleep=2.5),
    "reset": Fault(reset=True),
    "truncated": Fault(200, truncate=True),
    "garbled": Fault(200, body='{"result": [{"sys_id": "0f3a'),
    "no_result": Fault(200, body='{"status": "ok"}'),
}


def storm(seed: int, requests: int, rate: float = 0.3, longest_run: int = 3) -> dict[int, Fault]:
    """A seeded fault schedule: about ``rate`` of the request numbers 1..``requests`` fail, in runs of 1 to
    ``longest_run`` consecutive requests (a flapping proxy), each fault of a random kind of STORM_KINDS."""
    rnd = random.Random(seed)
    kinds = sorted(STORM_KINDS)
    plan: dict[int, Fault] = {}
    n = 1
    while n <= requests:
        # a run (m faults on average, then one good answer) starts with probability q: the share of
        # faulted requests is q m / (1 + q m), which is ``rate`` for q = rate / (m (1 - rate))
        mean_run = (1 + longest_run) / 2
        if rnd.random() < rate / (mean_run * (1 - rate)):
            for k in range(rnd.randint(1, longest_run)):
                plan[n + k] = STORM_KINDS[rnd.choice(kinds)]
            n += k + 2  # at least one good answer between runs, so a run's length is what was drawn
        else:
            n += 1
    return plan


@dataclass
class FakeServiceNow:
    user: str = "svc_slm"
    password: str = "s3cret"
    token: str | None = None
    tables: dict[str, list[dict]] = field(default_factory=dict)
    faults: dict[int, Fault] = field(default_factory=dict)  # 1-based request number -> fault
    always: Fault | None = None  # every request fails (persistent outage)
    truth: dict[str, list[tuple[str, str, str | None, str | None]]] = field(default_factory=dict)
    log: list[tuple[str, dict[str, str], int]] = field(default_factory=list)
    before_answer: object = None  # callable(table, params, request_number) run before a query is served

    def __post_init__(self) -> None:
        for t in ("incident", "sys_audit", "sys_user_group", "core_company", "cmdb_ci_service"):
            self.tables.setdefault(t, [])
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- server -------------------------------------------------------------------------------------
    def __enter__(self) -> FakeServiceNow:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                fake._handle(self)

            def finish(self) -> None:
                try:
                    super().finish()
                except OSError:
                    pass  # the connection was reset on purpose (a scripted fault)

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

    def _send(
        self, h: BaseHTTPRequestHandler, status: int, body: dict, headers: dict[str, str] | None = None
    ):
        data = json.dumps(body).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def _authorised(self, header: str | None) -> bool:
        if not header:
            return False
        if header.startswith("Bearer ") and self.token:
            return header[7:] == self.token
        if header.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return user == self.user and pw == self.password
        return False

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with self._lock:
            n = len(self.log) + 1
            fault = self.faults.get(n) or self.always
            self.log.append((parts.path, params, 0))
        status = self._serve(h, parts.path, params, n, fault)
        with self._lock:
            self.log[n - 1] = (parts.path, params, status)

    def _serve(self, h, path: str, params: dict[str, str], n: int, fault: Fault | None) -> int:
        if not self._authorised(h.headers.get("Authorization")):
            self._send(
                h,
                401,
                {
                    "error": {
                        "message": "User Not Authenticated",
                        "detail": "Required to provide Auth information",
                    },
                    "status": "failure",
                },
            )
            return 401
        if fault:
            if fault.sleep:
                time.sleep(fault.sleep)
            if fault.reset or fault.truncate:
                reset_connection(h, b'{"result": [' if fault.truncate else None)
                return 0
            if fault.body is not None:
                send_raw(h, fault.status, fault.body.encode())
                return fault.status
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._send(
                h,
                fault.status,
                {"error": {"message": f"scripted fault {fault.status}"}, "status": "failure"},
                headers,
            )
            return fault.status
        m = re.fullmatch(r"/api/now/table/([a-z_0-9]+)", path)
        if not m or m.group(1) not in self.tables:
            self._send(h, 400, {"error": {"message": "Invalid table"}, "status": "failure"})
            return 400
        table = m.group(1)
        if callable(self.before_answer):
            self.before_answer(table, params, n)
        try:
            rows = self.query(table, params.get("sysparm_query", ""))
        except ValueError as exc:
            self._send(h, 400, {"error": {"message": str(exc)}, "status": "failure"})
            return 400
        total = len(rows)
        limit = int(params.get("sysparm_limit", "10000"))
        offset = int(params.get("sysparm_offset", "0"))
        page = rows[offset : offset + limit]
        wanted = [f for f in params.get("sysparm_fields", "").split(",") if f]
        mode = params.get("sysparm_display_value", "false")
        result = [self._render(table, r, wanted, mode) for r in page]
        links = []
        base = f"{self.url}{path}"
        for rel, off in (
            ("first", 0),
            ("next", offset + limit),
            ("last", max(0, (total - 1) // limit * limit)),
        ):
            if rel == "next" and off >= total:
                continue
            links.append(f'<{base}?{urlencode({**params, "sysparm_offset": off})}>;rel="{rel}"')
        self._send(h, 200, {"result": result}, {"X-Total-Count": str(total), "Link": ",".join(links)})
        return 200

    # -- query engine --------------------------------------------------------------------------------
    def query(self, table: str, q: str) -> list[dict]:
        with self._lock:
            rows = list(self.tables[table])
        order: list[tuple[str, bool]] = []
        for term in [t for t in q.split("^") if t]:
            if term.startswith("ORDERBYDESC"):
                order.append((term[11:], True))
                continue
            if term.startswith("ORDERBY"):
                order.append((term[7:], False))
                continue
            m = _COND.match(term)
            if not m:
                raise ValueError(f"unsupported query term {term!r}")
            f, op, v = m.groups()
            rows = [r for r in rows if _match(str(r.get(f, "")), op, v)]
        for f, desc in reversed(order):
            rows.sort(key=lambda r: _sort_key(r.get(f, "")), reverse=desc)
        return rows

    def _render(self, table: str, row: dict, wanted: list[str], mode: str) -> dict:
        out = {}
        for f in wanted or list(row):
            value = row.get(f, "")
            if mode == "false":
                out[f] = value
                continue
            disp = self._display(f, value)
            out[f] = {"display_value": disp, "value": value} if mode == "all" else disp
        return out

    def _display(self, f: str, value: str) -> str:
        if not value:
            return ""
        if f in CHOICES:
            return CHOICES[f].get(value, value)
        if f in REFERENCES:
            ref = next((r for r in self.tables[REFERENCES[f]] if r["sys_id"] == value), None)
            return ref["name"] if ref else ""
        if f in DATETIMES:  # display values are in the user's zone: here UTC-5, so misuse shows
            t = datetime.strptime(value, "%Y-%m-%d %H:%M:%S") - timedelta(hours=5)
            return t.strftime("%m/%d/%Y %I:%M:%S %p")
        return value

    # -- data ---------------------------------------------------------------------------------------
    def ref(self, table: str, name: str) -> str:
        for r in self.tables[table]:
            if r["name"] == name:
                return r["sys_id"]
        sid = _sysid()
        self.tables[table].append({"sys_id": sid, "name": name})
        return sid

    def incident(self, number: str) -> dict:
        return next(r for r in self.tables["incident"] if r["number"] == number)

    def change(
        self,
        number: str,
        at: datetime,
        status: str | None = None,
        group: str | None = None,
        priority: str | None = None,
    ) -> None:
        """Apply one update at ``at`` as ServiceNow would: fields, sys_audit rows, sys_updated_on."""
        with self._lock:
            self._change(self.incident(number), at, status, group, priority)

    def _change(self, inc: dict, at: datetime, status, group, priority) -> None:
        truth = self.truth.setdefault(inc["number"], [])
        inc["sys_mod_count"] = str(int(inc["sys_mod_count"]) + 1)
        stamp = sn_time(at)

        def audit(fname: str, old: str, new: str) -> None:
            self.tables["sys_audit"].append(
                {
                    "sys_id": _sysid(),
                    "tablename": "incident",
                    "documentkey": inc["sys_id"],
                    "fieldname": fname,
                    "oldvalue": old,
                    "newvalue": new,
                    "sys_created_on": stamp,
                    "record_checkpoint": inc["sys_mod_count"],
                    "user": "agent",
                }
            )
            inc[fname] = new

        if status is not None:
            old_status = self._status(inc)
            state, hold = ENCODE[status]
            if state != inc["state"]:
                audit("state", inc["state"], state)
            if hold != inc["hold_reason"]:
                audit("hold_reason", inc["hold_reason"], hold)
            if status == "resolved":
                inc["resolved_at"] = stamp
            if status == "closed":
                inc["closed_at"] = stamp
            if old_status != status:
                truth.append((iso(at), "status", old_status, status))
        if group is not None:
            old_name = self._name("sys_user_group", inc["assignment_group"])
            audit("assignment_group", inc["assignment_group"], self.ref("sys_user_group", group))
            truth.append((iso(at), "assignment_group", old_name, group))
        if priority is not None:
            truth.append((iso(at), "priority", f"P{inc['priority']}", f"P{priority}"))
            audit("priority", inc["priority"], priority)
        inc["sys_updated_on"] = stamp

    def _status(self, inc: dict) -> str:
        return next(k for k, v in ENCODE.items() if v == (inc["state"], inc["hold_reason"]))

    def _name(self, table: str, sid: str) -> str | None:
        return next((r["name"] for r in self.tables[table] if r["sys_id"] == sid), None)

    def open_incident(
        self,
        number: str,
        at: datetime,
        company: str,
        service: str,
        group: str,
        priority: str,
        insert_audit: bool,
        category: str = "network",
    ) -> dict:
        """A new incident; ``insert_audit`` also writes the insert's audit rows (old value empty)."""
        inc = {
            "sys_id": _sysid(),
            "number": number,
            "state": "1",
            "hold_reason": "",
            "priority": priority,
            "opened_at": sn_time(at),
            "resolved_at": "",
            "closed_at": "",
            "sys_created_on": sn_time(at),
            "sys_updated_on": sn_time(at),
            "sys_mod_count": "0",
            "category": category,
            "company": self.ref("core_company", company),
            "business_service": self.ref("cmdb_ci_service", service),
            "cmdb_ci": "",
            "assignment_group": self.ref("sys_user_group", group),
        }
        with self._lock:
            self.tables["incident"].append(inc)
            if insert_audit:
                for fname in ("state", "assignment_group", "priority"):
                    self.tables["sys_audit"].append(
                        {
                            "sys_id": _sysid(),
                            "tablename": "incident",
                            "documentkey": inc["sys_id"],
                            "fieldname": fname,
                            "oldvalue": "",
                            "newvalue": inc[fname],
                            "sys_created_on": sn_time(at),
                            "record_checkpoint": "0",
                            "user": "caller",
                        }
                    )
            self.truth[number] = [
                (iso(at), "status", None, "new"),
                (iso(at), "assignment_group", None, group),
            ]
        return inc


def send_raw(h: BaseHTTPRequestHandler, status: int, data: bytes) -> None:
    try:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def reset_connection(h: BaseHTTPRequestHandler, partial: bytes | None) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), after the start of an answer if ``partial``."""
    try:
        if partial is not None:
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(partial) + 1000))
            h.end_headers()
            h.wfile.write(partial)
            h.wfile.flush()
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()
    except OSError:
        pass
    h.close_connection = True


def _match(value: str, op: str, v: str) -> bool:
    if op == "IN":
        return value in v.split(",")
    if op == "=":
        return value == v
    if op == "!=":
        return value != v
    if value == "":
        return False  # ServiceNow: an empty field never satisfies a comparison
    return {">": value > v, ">=": value >= v, "<": value < v, "<=": value <= v}[op]


def _sort_key(value: str):
    return (0, int(value)) if value.isdigit() else (1, value)


COMPANIES = {"ACME Europe SA": "ACME", "Globex Corporation": "GLOBEX"}
SERVICES = {"ERP": "ACME-ERP", "Web shop": "ACME-WEB", "CRM": "GLOBEX-CRM"}
SERVICE_COMPANY = {"ERP": "ACME Europe SA", "Web shop": "ACME Europe SA", "CRM": "Globex Corporation"}


def populate(fake: FakeServiceNow, n: int, start: datetime, seed: int = 7) -> None:
    """``n`` incidents opened from ``start``, with lifecycles that exercise every mapped case.

    Updates land on whole minutes, several incidents share update times (ties on sys_updated_on).
    """
    rnd = random.Random(seed)
    for i in range(n):
        opened = start + timedelta(minutes=10 * i + rnd.randrange(0, 5))
        service = rnd.choice(sorted(SERVICES))
        number = f"INC{1000000 + i}"
        prio = rnd.choice("1234")
        fake.open_incident(
            number,
            opened,
            SERVICE_COMPANY[service],
            service,
            "ServiceDesk",
            prio,
            insert_audit=i % 2 == 0,
            category=rnd.choice(["network", "software", "hardware"]),
        )
        t = opened + timedelta(minutes=rnd.randrange(1, 30))
        fake.change(number, t, status="in_progress")
        if rnd.random() < 0.5:
            t += timedelta(minutes=rnd.randrange(1, 60))
            fake.change(number, t, group=rnd.choice(["Network", "Application"]))
        if rnd.random() < 0.3:
            t += timedelta(minutes=rnd.randrange(1, 60))
            fake.change(number, t, status=rnd.choice(["pending_customer", "awaiting_vendor"]))
            t += timedelta(minutes=rnd.randrange(10, 600))
            fake.change(number, t, status="in_progress")
        if rnd.random() < 0.15 and prio != "1":
            t += timedelta(minutes=rnd.randrange(1, 60))
            fake.change(number, t, priority=str(int(prio) - 1))
        if rnd.random() < 0.8:
            t += timedelta(minutes=rnd.randrange(5, 300))
            fake.change(number, t, status="resolved")
            if rnd.random() < 0.6:
                fake.change(number, t + timedelta(days=2), status="closed")
