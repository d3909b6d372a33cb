"""The shared HTTP retry loop (slm_platform.sources.http_retry) on a scripted session: what is retried,
counted, waited for, and the error when no attempt is left. The clients' own tests cover it over real HTTP.
Also the shared credentials (slm_platform.sources.http_auth) both clients send."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import requests

from slm_platform.sources import http_auth, prometheus
from slm_platform.sources.http_retry import Backoff, RetryLater, get_with_retries
from slm_platform.sources.servicenow import table_api


@dataclass
class Counts:
    requests: int = 0
    retries: dict[str, int] = field(default_factory=dict)


class ScriptedSession:
    """Each get() raises or returns the script's next item (a status code becomes a response)."""

    def __init__(self, *script: int | Exception) -> None:
        self.script = list(script)
        self.timeouts: list[float] = []

    def get(self, url: str, params: dict, timeout: float) -> requests.Response:
        self.timeouts.append(timeout)
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        resp = requests.Response()
        resp.status_code = item
        return resp


def _answer(resp: requests.Response) -> str | RetryLater:
    if resp.status_code == 200:
        return "ok"
    if resp.status_code == 429:
        return RetryLater("429", "HTTP 429: slow down", wait=7.0)
    if resp.status_code >= 500:
        return RetryLater("5xx", f"HTTP {resp.status_code}")
    raise ValueError(f"HTTP {resp.status_code}: not retried")


def _get(session: ScriptedSession, counts: Counts, waits: list[float], **kw) -> str:
    args = {"what": "GET /x", "error": RuntimeError, "timeout": 2.5, "max_retries": 4, "backoff": Backoff()}
    return get_with_retries(
        session, "http://h/x", {}, _answer, sleep=waits.append, counts=counts, **{**args, **kw}
    )


def test_retries_timeouts_connection_errors_and_retryable_answers() -> None:
    session = ScriptedSession(requests.Timeout(), requests.ConnectionError("refused"), 503, 429, 200)
    counts, waits = Counts(), []
    assert _get(session, counts, waits) == "ok"
    assert counts.requests == 5 and session.timeouts == [2.5] * 5
    assert counts.retries == {"timeout": 1, "connection": 1, "5xx": 1, "429": 1}
    # exponential backoff by attempt (1, 2, 4 s), except where the answer says how long to wait
    assert waits == [1.0, 2.0, 4.0, 7.0]


def test_backoff_is_capped() -> None:
    assert [Backoff(base=0.5, cap=3.0)(a) for a in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_the_last_error_is_raised_when_no_attempt_is_left() -> None:
    session = ScriptedSession(500, 502, requests.Timeout())
    counts, waits = Counts(), []
    with pytest.raises(RuntimeError) as exc:
        _get(session, counts, waits, max_retries=2)
    assert str(exc.value) == "GET /x failed after 3 attempts; last error: no answer within 2.5 s"
    # no wait after the last attempt
    assert counts.requests == 3 and counts.retries == {"5xx": 2} and waits == [1.0, 2.0]
    # how the timeout is written: the client's choice (ServiceNow's messages say "60.0 s")
    with pytest.raises(RuntimeError, match=r"last error: no answer within 60\.0 s$"):
        _get(
            ScriptedSession(requests.Timeout()),
            Counts(),
            [],
            max_retries=0,
            timeout=60.0,
            timeout_label="60.0",
        )


def test_a_wait_never_exceeds_the_cap_whatever_retry_after_says() -> None:
    counts, waits = Counts(), []
    assert _get(ScriptedSession(429, 200), counts, waits, backoff=Backoff(cap=5.0)) == "ok"
    assert waits == [5.0]  # the answer asked for 7 s


def test_retries_stop_before_a_wait_that_would_pass_the_budget() -> None:
    """On a virtual clock (the sleeps move it): 1 + 2 + 4 s waited, the next wait (8 s) would end at 15 s,
    past the 10 s budget, so the fourth failure raises at once, however many retries are left."""
    now = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    counts = Counts()
    with pytest.raises(RuntimeError) as exc:
        get_with_retries(
            ScriptedSession(*[503] * 10),
            "http://h/x",
            {},
            _answer,
            what="GET /x",
            error=RuntimeError,
            timeout=2.5,
            max_retries=9,
            backoff=Backoff(),
            sleep=sleep,
            counts=counts,
            budget=10.0,
            clock=lambda: now[0],
        )
    assert waits == [1.0, 2.0, 4.0] and counts.requests == 4 and now[0] <= 10.0
    assert str(exc.value) == (
        "GET /x failed after 4 attempts in 7.0 s: the next wait (8 s) would pass the retry budget of 10 s; "
        "last error: HTTP 503"
    )


def test_a_body_cut_by_a_reset_is_retried_as_a_connection_error() -> None:
    session = ScriptedSession(requests.exceptions.ChunkedEncodingError("IncompleteRead"), 200)
    counts, waits = Counts(), []
    assert _get(session, counts, waits) == "ok" and counts.retries == {"connection": 1}


def test_an_answer_that_raises_is_not_retried() -> None:
    session = ScriptedSession(400, 200)
    counts, waits = Counts(), []
    with pytest.raises(ValueError, match="HTTP 400: not retried"):
        _get(session, counts, waits)
    assert counts.requests == 1 and counts.retries == {} and waits == [] and session.script == [200]


def test_both_clients_send_the_shared_auth_headers() -> None:
    assert prometheus.Auth is table_api.Auth is http_auth.Auth
    basic = http_auth.Auth.basic("svc", "pa:ss")
    assert basic == http_auth.Auth("basic", "pa:ss", "svc")
    assert basic.headers() == {"Authorization": "Basic c3ZjOnBhOnNz"}  # base64("svc:pa:ss")
    bearer = http_auth.Auth.bearer("tok-123")
    assert bearer.headers() == {"Authorization": "Bearer tok-123"}
    assert "pa:ss" not in repr(basic) and "tok-123" not in repr(bearer)
    # the connection extra: extra_dejson first, else extra as JSON text or a dict, empty when none
    conn = SimpleNamespace(extra='{"bearer_token": "t"}')
    assert prometheus.auth_from_connection(conn) == http_auth.Auth.bearer("t")
    assert http_auth.connection_extra(SimpleNamespace(extra_dejson={"a": 1}, extra="{}")) == {"a": 1}
    assert http_auth.connection_extra(SimpleNamespace(extra={"a": 2})) == {"a": 2}
    assert http_auth.connection_extra(SimpleNamespace(extra=None)) == {}


def test_connection_base_url_from_a_bare_host_or_a_url() -> None:
    """The one reading of an Airflow connection's URL the ServiceNow, Jira and LimeSurvey clients share."""
    from types import SimpleNamespace as C

    from slm_platform.sources.http_auth import connection_base_url

    assert connection_base_url(C(host="acme.service-now.com", schema=None, port=None)) == (
        "https://acme.service-now.com"
    )
    assert connection_base_url(C(host="127.0.0.1", schema="http", port=8080)) == "http://127.0.0.1:8080"
    assert connection_base_url(C(host="http://127.0.0.1:9/", schema=None, port=8080)) == "http://127.0.0.1:9"
    assert connection_base_url(C(host="", schema=None, port=None)) == ""
