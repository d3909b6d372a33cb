"""Local servers speaking the survey tools' protocols (the parts the connectors use), for tests and
benchmarks.

:class:`FakeLimeSurvey`: LimeSurvey RemoteControl 2, JSON-RPC over HTTP POST at
``/index.php/admin/remotecontrol``: ``get_session_key`` (bad credentials answer ``{"status": "Invalid user
name or password"}`` with ``error: null``, as LimeSurvey does), ``release_session_key``,
``export_responses`` (base64 JSON document ``{"responses": [{"<id>": {...}}]}``; ``sCompletionStatus``,
``iFromResponseID``/``iToResponseID``, ``aFields``; ``{"status": "No Data"}`` when nothing matches) and
``list_participants`` (offset paging ordered by tid, ``aAttributes``). Session keys can be expired.

:class:`FakeTypeform`: ``GET /forms/{id}/responses`` with a bearer token: ``since``/``until`` (inclusive, on
``submitted_at``; a response without one, when partial responses are asked for, on ``landed_at``),
``page_size``, ``before`` (a token: the page after it in newest-first order), ``response_type``; body
``{"total_items", "page_count", "items"}``; 401 for a wrong token.

Both: scripted faults per request number (status, Retry-After, a sleep past the client's timeout, a garbled
body) and a ``before_answer(method_or_path, params, n)`` hook to change the data while the client pages.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Fault:
    status: int = 503
    retry_after: str | None = None
    sleep: float = 0.0  # sleep before answering (past the client's timeout: a timeout)
    body: str | None = None  # raw body instead of the answer (garbled 200)


class _Server:
    """The HTTP plumbing both fakes share."""

    faults: dict[int, Fault]
    log: list

    def _start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                fake._dispatch(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                fake._dispatch(self, "POST")

        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _fault(self, h: BaseHTTPRequestHandler, n: int) -> bool:
        fault = self.faults.get(n)
        if fault is None:
            return False
        if fault.sleep:
            time.sleep(fault.sleep)
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
        body = (fault.body if fault.body is not None else json.dumps({"error": "scripted"})).encode()
        self._send(h, fault.status, body, headers)
        return True


# -- LimeSurvey ------------------------------------------------------------------------------------------


@dataclass
class FakeLimeSurvey(_Server):
    user: str = "slm_reader"
    password: str = "s3cret"
    survey_id: int = 482915
    responses: dict[int, dict] = field(default_factory=dict)  # id -> record (LimeSurvey columns, strings)
    participants: list[dict] = field(default_factory=list)  # tid order: tid, token, sent, completed, ...
    wrapped: bool = True  # LimeSurvey 3-5 document shape {"responses": [{"<id>": {...}}]}
    faults: dict[int, Fault] = field(default_factory=dict)
    log: list[tuple[str, list, int]] = field(default_factory=list)  # (method, params, request number)
    before_answer: object = None
    sessions: set[str] = field(default_factory=set)

    def __enter__(self) -> FakeLimeSurvey:
        self._start()
        self.url = f"{self.base}/index.php/admin/remotecontrol"
        return self

    def __exit__(self, *exc) -> None:
        self._stop()

    def calls(self, method: str) -> int:
        return sum(1 for m, _p, _n in self.log if m == method)

    def expire_sessions(self) -> None:
        self.sessions.clear()

    def _dispatch(self, h: BaseHTTPRequestHandler, verb: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        if verb != "POST" or urlsplit(h.path).path != "/index.php/admin/remotecontrol":
            self._send(h, 404, b'{"error": "not found"}')
            return
        try:
            req = json.loads(raw)
            method, params, rid = req["method"], list(req.get("params") or []), req.get("id")
        except (ValueError, KeyError, TypeError):
            self._send(h, 200, json.dumps({"id": None, "result": None, "error": "Invalid request"}).encode())
            return
        with self._lock:
            self.log.append((method, params, len(self.log) + 1))
            n = len(self.log)
        if self._fault(h, n):
            return
        if callable(self.before_answer):
            self.before_answer(method, params, n)
        with self._lock:
            result = self._call(method, params)
        self._send(h, 200, json.dumps({"id": rid, "result": result, "error": None}).encode())

    def _call(self, method: str, p: list):
        if method == "get_session_key":
            if p[:2] != [self.user, self.password]:
                return {"status": "Invalid user name or password"}
            key = uuid.uuid4().hex
            self.sessions.add(key)
            return key
        if method == "release_session_key":
            self.sessions.discard(p[0] if p else None)
            return "OK"
        if not p or p[0] not in self.sessions:
            return {"status": "Invalid session key"}
        if int(p[1]) != self.survey_id:
            return {"status": "Error: Invalid survey ID"}
        if method == "export_responses":
            return self._export(p)
        if method == "list_participants":
            return self._participants(p)
        return {"status": f"Error: unknown method {method}"}

    def _export(self, p: list):
        p = p + [None] * (10 - len(p))
        _key, _sid, doc_type, _lang, status, heading, _rtype, from_id, to_id, fields = p[:10]
        if doc_type != "json" or heading not in (None, "code"):
            return {"status": f"unsupported by the fake: {doc_type}/{heading}"}
        rows = []
        for rid in sorted(self.responses):
            rec = self.responses[rid]
            if from_id is not None and rid < int(from_id) or to_id is not None and rid > int(to_id):
                continue
            done = bool(rec.get("submitdate"))
            if status == "complete" and not done or status == "incomplete" and done:
                continue
            out = {k: v for k, v in rec.items() if not fields or k in fields}
            rows.append({str(rid): out} if self.wrapped else out)
        if not rows:
            return {"status": "No Data"}
        return base64.b64encode(json.dumps({"responses": rows}).encode()).decode()

    def _participants(self, p: list):
        p = p + [None] * (7 - len(p))
        _key, _sid, start, limit, unused, attributes, _conds = p[:7]
        rows = [x for x in self.participants if not unused or x.get("completed", "N") == "N"]
        page = rows[int(start or 0) : int(start or 0) + int(limit or 10)]
        if not page:
            return {"status": "No survey participants found."}
        out = []
        for x in page:
            item = {
                "tid": x["tid"],
                "token": x["token"],
                "participant_info": {k: x.get(k, "") for k in ("firstname", "lastname", "email")},
            }
            for a in attributes or []:
                if a in x and a not in ("tid", "token", "firstname", "lastname", "email"):
                    item[a] = x[a]
            out.append(item)
        return out


# -- Typeform --------------------------------------------------------------------------------------------


@dataclass
class FakeTypeform(_Server):
    token: str = "tfp_s3cret"
    form_id: str = "aFt3rT1k"
    items: list[dict] = field(default_factory=list)  # Typeform response objects
    faults: dict[int, Fault] = field(default_factory=dict)
    log: list[tuple[str, dict, int]] = field(default_factory=list)
    before_answer: object = None
    bad_items: list = field(default_factory=list)  # raw items appended to the first page (malformed records)

    def __enter__(self) -> FakeTypeform:
        self._start()
        self.url = self.base
        return self

    def __exit__(self, *exc) -> None:
        self._stop()

    @property
    def requests(self) -> int:
        return len(self.log)

    def _dispatch(self, h: BaseHTTPRequestHandler, verb: str) -> None:
        parts = urlsplit(h.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with self._lock:
            self.log.append((parts.path, params, len(self.log) + 1))
            n = len(self.log)
        if self._fault(h, n):
            return
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            body = {"code": "AUTHENTICATION_FAILED", "description": "Authentication credentials not found"}
            self._send(h, 401, json.dumps(body).encode())
            return
        if verb != "GET" or parts.path != f"/forms/{self.form_id}/responses":
            self._send(h, 404, b'{"code": "FORM_NOT_FOUND"}')
            return
        if callable(self.before_answer):
            self.before_answer(parts.path, params, n)
        with self._lock:
            body = self._responses(params)
        self._send(h, 200, json.dumps(body).encode())

    @staticmethod
    def _at(item: dict, partial: bool) -> str | None:
        return item.get("submitted_at") or (item.get("landed_at") if partial else None)

    def _responses(self, q: dict[str, str]) -> dict:
        kinds = set((q.get("response_type") or "completed").split(","))
        partial = bool(kinds & {"partial", "started"})
        size = min(int(q.get("page_size", 25)), 1000)
        since, until = q.get("since"), q.get("until")
        rows = []
        for it in self.items:
            done = bool(it.get("submitted_at"))
            if not done and not partial or done and "completed" not in kinds:
                continue
            at = (self._at(it, partial) or "")[:19]  # to the second, as the API compares
            if since and at < since or until and at > until:
                continue
            rows.append(it)
        rows.sort(key=lambda it: (self._at(it, partial), it["token"]), reverse=True)
        total = len(rows)
        if q.get("before"):
            tokens = [r["token"] for r in rows]
            rows = rows[tokens.index(q["before"]) + 1 :] if q["before"] in tokens else []
        page = rows[:size]
        if self.bad_items and not q.get("before"):
            page = [*page[: max(0, size - len(self.bad_items))], *self.bad_items]
        return {"total_items": total, "page_count": max(1, math.ceil(total / size)), "items": page}
