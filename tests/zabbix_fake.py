"""A local server speaking Zabbix's JSON-RPC API (the methods the connector uses), for tests and benchmarks.

POST ``/api_jsonrpc.php`` with ``{"jsonrpc": "2.0", "method", "params", "id"}``. ``apiinfo.version``
(refused with an ``auth``, as Zabbix does); ``user.login`` (``username``/``password``; wrong ones answer
-32602 "Incorrect user name or password or account is temporarily blocked.") and ``user.logout``; every other
method needs the token or session: in ``Authorization: Bearer`` when the fake's version is 6.4 or later, else
in the body's ``auth`` (else -32602 "Not authorised."). ``hostgroup.get`` (filter name, selectHosts),
``event.get`` (source, object, value, objectids, eventids, time_from/time_till inclusive, eventid_from,
sortfield eventid ASC, limit, selectHosts, selectTags), ``maintenance.get`` (timeperiods; groups under
``groups`` before 6.2, ``hostgroups`` from 6.2), ``item.get`` (host, filter key_), ``history.get`` (itemids,
time_from/time_till, sort clock, limit), ``sla.getsli`` (one period per calendar month, the one holding
``period_to`` included, ``sli`` -1 for periods before the service's ``created_at`` (as 6.0.14);
SLI computed from the fake's problems as Zabbix does: excluded downtimes out, maintenance ignored).

Faults scripted per request number (HTTP status, Retry-After, a sleep, a raw body, a JSON-RPC error) and a
``before_answer(method, params, n)`` hook to change the data while the client pages.
"""

from __future__ import annotations

import calendar
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Fault:
    status: int = 503
    retry_after: str | None = None
    sleep: float = 0.0
    body: str | None = None
    rpc_error: dict | None = None  # a JSON-RPC error answered with HTTP 200


@dataclass
class FakeZabbix:
    version: str = "7.0.5"
    token: str = "tok-secret-123"
    users: dict[str, str] = field(default_factory=lambda: {"Admin": "zabbix"})
    groups: dict[str, list[str]] = field(default_factory=dict)  # group name -> hostids
    hosts: dict[str, str] = field(default_factory=dict)  # hostid -> host
    events: list[dict] = field(default_factory=list)  # as Zabbix stores them (value, r_eventid, ...)
    maintenances: list[dict] = field(default_factory=list)
    items: list[dict] = field(default_factory=list)  # {itemid, host, key_, value_type}
    history: dict[str, list[dict]] = field(default_factory=dict)  # itemid -> [{clock, ns, value}]
    sla_services: dict[str, dict] = field(default_factory=dict)  # serviceid -> {hosts, min_severity}
    sla_excluded: list[dict] = field(default_factory=list)  # {name, period_from, period_to}
    faults: dict[int, Fault] = field(default_factory=dict)
    before_answer: object = None
    log: list = field(default_factory=list)  # (method, params, headers)

    def __post_init__(self) -> None:
        self.sessions: set[str] = set()
        self._lock = threading.Lock()
        self._next_event = 1

    # -- data helpers
    def add_problem(
        self,
        hostid: str,
        clock: int,
        end: int | None,
        severity: int = 4,
        name: str = "down",
        tags: dict[str, str] | None = None,
        triggerid: str | None = None,
    ) -> str:
        """A problem event (and its recovery at ``end`` if given); returns the problem's eventid."""
        trig = triggerid or f"t{hostid}"
        pid = str(self._next_event)
        self._next_event += 1
        ev = {
            "eventid": pid,
            "source": "0",
            "object": "0",
            "objectid": trig,
            "clock": str(clock),
            "ns": "0",
            "value": "1",
            "severity": str(severity),
            "name": name,
            "r_eventid": "0",
            "_hostid": hostid,
            "_tags": [{"tag": k, "value": v} for k, v in (tags or {}).items()],
        }
        self.events.append(ev)
        if end is not None:
            self.recover(pid, end)
        return pid

    def recover(self, problem_id: str, clock: int) -> str:
        p = next(e for e in self.events if e["eventid"] == problem_id)
        rid = str(self._next_event)
        self._next_event += 1
        self.events.append(
            {
                "eventid": rid,
                "source": "0",
                "object": "0",
                "objectid": p["objectid"],
                "clock": str(clock),
                "ns": "0",
                "value": "0",
                "severity": "0",
                "name": p["name"],
                "r_eventid": "0",
                "_hostid": p["_hostid"],
                "_tags": p["_tags"],
            }
        )
        p["r_eventid"] = rid
        return rid

    # -- server
    def __enter__(self) -> FakeZabbix:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                status, body, headers = fake._handle(raw, dict(self.headers))
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api_jsonrpc.php"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def _v(self) -> tuple[int, int]:
        a, b = self.version.split(".")[:2]
        return int(a), int(b)

    def _handle(self, raw: bytes, headers: dict) -> tuple[int, bytes, dict]:
        with self._lock:
            n = len(self.log) + 1
            try:
                req = json.loads(raw)
            except ValueError:
                return 200, _err(None, -32700, "Parse error.", "Invalid JSON."), {}
            method, params, rid = req.get("method"), req.get("params"), req.get("id")
            self.log.append((method, params, {**headers, "X-Body-Auth": "auth" in req}))
            fault = self.faults.get(n)
            hook = self.before_answer
        if fault:
            time.sleep(fault.sleep)
            if fault.rpc_error:
                return 200, json.dumps({"jsonrpc": "2.0", "error": fault.rpc_error, "id": rid}).encode(), {}
            if fault.body is not None or fault.status != 200:
                h = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return fault.status, (fault.body or "<html>busy</html>").encode(), h
        if callable(hook):
            hook(method, params, n)
        with self._lock:
            try:
                result = self._dispatch(method, params or {}, req, headers)
            except _RpcError as e:
                return 200, _err(rid, e.code, e.message, e.data), {}
        return 200, json.dumps({"jsonrpc": "2.0", "result": result, "id": rid}).encode(), {}

    def _authorised(self, req: dict, headers: dict) -> None:
        if self._v >= (6, 4):
            h = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
            cred = h[7:] if h.startswith("Bearer ") else None
            if "auth" in req and self._v >= (7, 2):
                raise _RpcError(
                    -32602, "Invalid params.", 'Invalid parameter "/": unexpected parameter "auth".'
                )
        else:
            cred = req.get("auth")
        if cred != self.token and cred not in self.sessions:
            raise _RpcError(-32602, "Invalid params.", "Not authorised.")

    def _dispatch(self, method: str, p, req: dict, headers: dict):
        if method == "apiinfo.version":
            if "auth" in req and req["auth"] is not None:
                raise _RpcError(
                    -32602,
                    "Invalid params.",
                    'The "apiinfo.version" method must be called without the "auth" parameter.',
                )
            return self.version
        if method == "user.login":
            user = p.get("username", p.get("user"))
            if self.users.get(user) != p.get("password"):
                raise _RpcError(
                    -32602,
                    "Invalid params.",
                    "Incorrect user name or password or account is temporarily blocked.",
                )
            sid = f"sess{len(self.sessions) + 1:028d}"
            self.sessions.add(sid)
            return sid
        self._authorised(req, headers)
        if method == "user.logout":
            return True
        if method == "hostgroup.get":
            names = (p.get("filter") or {}).get("name") or list(self.groups)
            return [
                {
                    "groupid": str(i),
                    "name": g,
                    "hosts": [{"hostid": h, "host": self.hosts.get(h, h)} for h in self.groups[g]],
                }
                for i, g in enumerate(self.groups, 1)
                if g in names
            ]
        if method == "event.get":
            return self._events(p)
        if method == "maintenance.get":
            key = "hostgroups" if self._v >= (6, 2) else "groups"
            want = "selectHostGroups" if self._v >= (6, 2) else "selectGroups"
            if self._v >= (7, 0) and "selectGroups" in p:
                raise _RpcError(
                    -32602, "Invalid params.", 'Invalid parameter "/": unexpected parameter "selectGroups".'
                )
            out = []
            for m in self.maintenances:
                d = {k: v for k, v in m.items() if not k.startswith("_")}
                d["hosts"] = [{"hostid": h, "host": self.hosts.get(h, h)} for h in m.get("_hosts", [])]
                if want in p:
                    d[key] = [{"groupid": "0", "name": g} for g in m.get("_groups", [])]
                out.append(d)
            return out
        if method == "item.get":
            key = (p.get("filter") or {}).get("key_")
            return [
                {k: v for k, v in i.items() if k != "host"}
                for i in self.items
                if i["host"] == p.get("host") and i["key_"] == key
            ]
        if method == "history.get":
            rows = []
            for iid in p.get("itemids") or []:
                rows += [
                    r
                    for r in self.history.get(iid, [])
                    if int(p.get("time_from", 0)) <= int(r["clock"]) <= int(p.get("time_till", 2**31))
                ]
            rows.sort(key=lambda r: (int(r["clock"]), int(r.get("ns", 0))))
            return rows[: int(p["limit"])] if p.get("limit") else rows
        if method == "sla.getsli":
            return self._sli(p)
        raise _RpcError(-32601, "Method not found.", f'Incorrect API "{method.split(".")[0]}".')

    def _events(self, p: dict) -> list[dict]:
        out = []
        values = p.get("value")
        values = (
            None if values is None else {str(v) for v in (values if isinstance(values, list) else [values])}
        )
        for e in self.events:
            if p.get("eventids") is not None and e["eventid"] not in {str(x) for x in p["eventids"]}:
                continue
            if values is not None and e["value"] not in values:
                continue
            if p.get("objectids") is not None and e["objectid"] not in {str(x) for x in p["objectids"]}:
                continue
            if not e.get("_garbled"):  # a record the server returns mangled passes every time filter
                if "time_from" in p and int(e["clock"]) < int(p["time_from"]):
                    continue
                if "time_till" in p and int(e["clock"]) > int(p["time_till"]):
                    continue
            if "eventid_from" in p and int(e["eventid"]) < int(p["eventid_from"]):
                continue
            out.append(e)
        out.sort(key=lambda e: int(e["eventid"]), reverse=p.get("sortorder") == "DESC")
        if p.get("limit"):
            out = out[: int(p["limit"])]
        fields = p.get("output")
        res = []
        for e in out:
            d = {k: v for k, v in e.items() if not k.startswith("_") and (fields == "extend" or k in fields)}
            if "selectHosts" in p:
                d["hosts"] = [{"hostid": e["_hostid"], "host": self.hosts.get(e["_hostid"], e["_hostid"])}]
            if "selectTags" in p:
                d["tags"] = e["_tags"]
            res.append(d)
        return res

    def _sli(self, p: dict) -> dict:
        lo, hi = int(p["period_from"]), int(p["period_to"])
        periods = []
        t = datetime.fromtimestamp(lo, UTC).replace(day=1, hour=0, minute=0, second=0)  # aligned, as Zabbix
        while int(t.timestamp()) <= hi:  # whole months; also the one holding period_to (as 6.0.14 does)
            nxt_month = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=UTC)
            periods.append((int(t.timestamp()), int(nxt_month.timestamp())))
            t = nxt_month
        sids = [str(s) for s in p.get("serviceids") or list(self.sla_services)]
        if any(sid not in self.sla_services for sid in sids):
            raise _RpcError(
                -32602, "Invalid params.", "No permissions to referred object or it does not exist!"
            )
        by_id = {e["eventid"]: e for e in self.events}
        sli = []
        for a, b in periods:
            row = []
            excl = _union(
                (max(a, int(x["period_from"])), min(b, int(x["period_to"])))
                for x in self.sla_excluded
                if int(x["period_to"]) > a and int(x["period_from"]) < b
            )
            for sid in sids:
                svc = self.sla_services[sid]
                if b <= svc.get("created_at", 0):  # no data before the service existed: sli -1 (6.0.14)
                    row.append(
                        {"uptime": 0, "downtime": 0, "sli": -1, "error_budget": 0, "excluded_downtimes": []}
                    )
                    continue
                spans = []
                for e in self.events:
                    if (
                        e["value"] != "1"
                        or e["_hostid"] not in svc["hosts"]
                        or int(e["severity"]) < svc.get("min_severity", 0)
                    ):
                        continue
                    s = int(e["clock"])
                    end = int(by_id[e["r_eventid"]]["clock"]) if e["r_eventid"] != "0" else b
                    if min(end, b) > max(s, a):
                        spans.append((max(s, a), min(end, b)))
                down = _minus(_union(spans), excl)
                downtime = sum(y - x for x, y in down)
                total = (b - a) - sum(y - x for x, y in excl)
                uptime = total - downtime
                row.append(
                    {
                        "uptime": uptime,
                        "downtime": downtime,
                        "sli": uptime / total * 100 if total else 100.0,
                        "error_budget": 0,
                        "excluded_downtimes": [
                            {"name": x["name"], "period_from": x["period_from"], "period_to": x["period_to"]}
                            for x in self.sla_excluded
                            if int(x["period_to"]) > a and int(x["period_from"]) < b
                        ],
                    }
                )
            sli.append(row)
        return {
            "periods": [{"period_from": a, "period_to": b} for a, b in periods],
            "serviceids": sids,
            "sli": sli,
        }


class _RpcError(Exception):
    def __init__(self, code: int, message: str, data: str):
        super().__init__(data)
        self.code, self.message, self.data = code, message, data


def _err(rid, code: int, message: str, data: str) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "error": {"code": code, "message": message, "data": data}, "id": rid}
    ).encode()


def _union(spans) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _minus(spans, cut) -> list[tuple[int, int]]:
    out = []
    for s, e in spans:
        cur = s
        for a, b in cut:
            if b <= cur or a >= e:
                continue
            if a > cur:
                out.append((cur, a))
            cur = max(cur, b)
        if cur < e:
            out.append((cur, e))
    return out


def month_bounds(year: int, month: int) -> tuple[int, int]:
    a = datetime(year, month, 1, tzinfo=UTC)
    return int(a.timestamp()), int(a.timestamp()) + calendar.monthrange(year, month)[1] * 86400
