"""Prometheus extractor: configuration, window planning, and the HTTP error paths.

The error paths (5xx, 429, garbled JSON, timeouts, refused credentials, bad queries) are played by a local
server answering as Prometheus's HTTP API does; the real server is in tests/test_prometheus_real.py.
"""

from __future__ import annotations

import gzip
import json
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

import pytest

from slm_platform.load.loader import load_drop
from slm_platform.sources import prometheus as prom
from tests.conftest import query_dicts

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def _matrix(series: list[tuple[dict, list[tuple[int, str]]]]) -> dict:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": m, "values": [[t, v] for t, v in vals]} for m, vals in series],
        },
    }


class FakePrometheus:
    """Answers /api/v1/query_range from a script: (status, body, delay seconds, headers) per request."""

    def __init__(self, script: list[tuple[int, object, float, dict]]):
        self.script, self.requests = list(script), []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                u = urlparse(self.path)
                fake.requests.append((u.path, parse_qs(u.query), dict(self.headers)))
                status, body, delay, headers = fake.script.pop(0) if len(fake.script) > 1 else fake.script[0]
                time.sleep(delay)
                raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakePrometheus:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _config(**over) -> prom.PrometheusConfig:
    doc = {
        "expression": "probe_success",
        "step": "60s",
        "chunk": "1h",
        "retries": 2,
        "services": [{"match": {"instance": "erp"}, "service_code": "ACME-ERP"}],
        **over,
    }
    return prom.config_from_dict(doc, "cfg.yaml")


OK_BODY = _matrix([({"__name__": "probe_success", "instance": "erp"}, [(int(T0.timestamp()), "1")])])
NO_SLEEP: list[float] = []


def _extract(url: str, tmp_path: Path, config=None, **kw):
    return prom.extract_checks(
        config or _config(), T0, T0 + timedelta(minutes=1), tmp_path, url=url, sleep=NO_SLEEP.append, **kw
    )


# ---------------------------------------------------------------------------------------------------
# windows


def test_chunks_cover_every_step_of_the_window_once() -> None:
    rng = random.Random(7)
    for _ in range(300):
        step = rng.choice([1, 15, 60, 300])
        start = T0 + timedelta(seconds=rng.uniform(-5000, 5000))
        end = start + timedelta(seconds=rng.uniform(0, 40 * step))
        per = rng.choice([1, 2, 7, 11_000])
        chunks = prom.plan_chunks(start, end, step, per)
        got = [t for first, last in chunks for t in range(first, last + step, step)]
        # independent enumeration: every multiple of step in [start, end)
        lo = int(start.timestamp()) - step
        want = [
            t
            for t in range(lo - lo % step, int(end.timestamp()) + step, step)
            if start.timestamp() <= t < end.timestamp()
        ]
        assert got == want, (start, end, step, per)
        assert all((last - first) // step + 1 <= per for first, last in chunks)


def test_config_caps_points_per_query_at_prometheus_limit() -> None:
    assert _config(step="1s", chunk="4h").points_per_chunk == prom.MAX_POINTS
    assert _config(step="60s", chunk="1d").points_per_chunk == 1440


def test_catch_up_window() -> None:
    start, end, step, week = T0, T0 + timedelta(hours=1), 60, 7 * 86400
    assert prom.catch_up_window(start, end, None, step, week) == (start, end)  # first run
    # the previous interval was loaded: exactly this interval (also for a rerun, watermark past it)
    assert prom.catch_up_window(start, end, start - timedelta(seconds=60), step, week) == (start, end)
    assert prom.catch_up_window(start, end, end - timedelta(seconds=60), step, week) == (start, end)
    # a hole of three hours: reach back to just after the watermark
    hole = start - timedelta(hours=3)
    assert prom.catch_up_window(start, end, hole, step, week) == (hole + timedelta(seconds=60), end)
    # a hole longer than the catch-up limit: only as far back as the limit
    old = start - timedelta(days=30)
    assert prom.catch_up_window(start, end, old, step, week) == (start - timedelta(days=7), end)


# ---------------------------------------------------------------------------------------------------
# configuration


def test_the_shipped_configuration_loads() -> None:
    c = prom.load_config()
    assert c.step_seconds == 60 and c.rules and c.url
    assert c.service_for({"instance": "https://shop.acme.example/", "job": "blackbox"}) == "ACME-WEB"
    assert c.service_for({"instance": "https://unknown.example/"}) is None


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"expression": ""}, "'expression'"),
        ({"step": "1.5m"}, "step"),
        ({"step": "0s"}, "step"),
        ({"chunk": "30s"}, "shorter than one step"),
        ({"services": [{"match": {}, "service_code": "X"}]}, "services[1]"),
        ({"services": [{"match": {"a": "b"}}]}, "services[1]"),
        ({"retries": -1}, "retries"),
        ({"colour": "red"}, "unknown key"),
    ],
)
def test_bad_configuration_is_refused_naming_the_field(over: dict, message: str) -> None:
    with pytest.raises(prom.ConfigError, match="cfg.yaml") as exc:
        _config(**over)
    assert message in str(exc.value)


def test_connection_and_environment_give_url_and_auth() -> None:
    conn = SimpleNamespace(host="prom.internal", port=9090, login=None, password=None, extra_dejson={})
    assert prom.url_from_connection(conn) == "http://prom.internal:9090"
    assert prom.auth_from_connection(conn) is None
    conn = SimpleNamespace(
        host="https://prom.example/prometheus", port=None, login="u", password="p", extra_dejson={}
    )
    assert prom.url_from_connection(conn) == "https://prom.example/prometheus"
    assert prom.auth_from_connection(conn).headers() == {"Authorization": "Basic dTpw"}
    conn.extra_dejson = {"bearer_token": "s3cret"}
    auth = prom.auth_from_connection(conn)
    assert auth.headers() == {"Authorization": "Bearer s3cret"} and "s3cret" not in repr(auth)
    assert prom.auth_from_env({"SLM_PROMETHEUS_TOKEN": "t"}).kind == "bearer"
    assert prom.auth_from_env({"SLM_PROMETHEUS_USER": "u", "SLM_PROMETHEUS_PASSWORD": "p"}).user == "u"
    assert prom.auth_from_env({}) is None


# ---------------------------------------------------------------------------------------------------
# HTTP error paths


def test_5xx_and_garbled_answers_are_retried(tmp_path: Path) -> None:
    script = [(503, "overloaded", 0, {}), (200, "<html>proxy</html>", 0, {}), (200, OK_BODY, 0, {})]
    with FakePrometheus(script) as fake:
        res = _extract(fake.url, tmp_path)
    assert res.retries == {"5xx": 1, "bad_json": 1} and res.requests == 3
    assert res.rows_mapped == 1
    (path, params, headers), *_ = fake.requests
    assert path == "/api/v1/query_range" and params["query"] == ["probe_success"] and params["step"] == ["60"]
    assert "Authorization" not in headers


def test_429_waits_as_told(tmp_path: Path) -> None:
    NO_SLEEP.clear()
    with FakePrometheus([(429, "slow down", 0, {"Retry-After": "7"}), (200, OK_BODY, 0, {})]) as fake:
        res = _extract(fake.url, tmp_path)
    assert res.retries == {"429": 1} and NO_SLEEP == [7.0]


def test_persistent_5xx_fails_clearly_and_leaves_no_file(tmp_path: Path) -> None:
    with FakePrometheus(
        [(500, {"status": "error", "errorType": "internal", "error": "boom"}, 0, {})]
    ) as fake:
        with pytest.raises(
            prom.PrometheusError, match=r"after 3 attempts; last error: HTTP 500: internal: boom"
        ):
            _extract(fake.url, tmp_path)
    assert len(fake.requests) == 3
    assert not (tmp_path / "checks.csv.gz").exists() and not (tmp_path / ".partial").exists()


def test_a_bad_query_is_not_retried(tmp_path: Path) -> None:
    body = {"status": "error", "errorType": "bad_data", "error": 'parse error: unexpected "}"'}
    with FakePrometheus([(400, body, 0, {})]) as fake:
        with pytest.raises(prom.PrometheusError, match="bad_data: parse error") as exc:
            _extract(fake.url, tmp_path)
    assert len(fake.requests) == 1 and "query_range" in str(exc.value)


def test_refused_credentials_say_so(tmp_path: Path) -> None:
    with FakePrometheus([(401, "Unauthorized", 0, {})]) as fake:
        with pytest.raises(prom.PrometheusAuthError, match="credentials"):
            _extract(fake.url, tmp_path, auth=prom.Auth("bearer", "wrong"))
    assert fake.requests[0][2]["Authorization"] == "Bearer wrong"


def test_timeouts_are_retried(tmp_path: Path) -> None:
    cfg = prom.PrometheusConfig(**{**_config().__dict__, "timeout_seconds": 0.3})
    with FakePrometheus([(200, OK_BODY, 2.0, {}), (200, OK_BODY, 0, {})]) as fake:
        res = _extract(fake.url, tmp_path, config=cfg)
    assert res.retries == {"timeout": 1} and res.rows_mapped == 1
    assert fake.requests[0][1]["timeout"] == ["0.3s"]  # the server-side limit is asked too


def test_no_url_anywhere_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(prom.ConfigError, match="no Prometheus URL"):
        prom.extract_checks(_config(), T0, T0 + timedelta(minutes=1), tmp_path)


# ---------------------------------------------------------------------------------------------------
# values the load must refuse, with their reasons


def test_odd_values_and_shared_services_are_quarantined_with_reasons(tmp_path: Path, fresh_db: str) -> None:
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "clients.csv").write_text("client_code,client_name,timezone,country\nACME,ACME,Europe/Paris,FR\n")
    (ref / "services.csv").write_text(
        "service_code,client_code,service_name,calendar_code,criticality\nACME-ERP,ACME,ERP,24x7,high\n"
    )
    load_drop(fresh_db, ref)
    t = int(T0.timestamp())
    body = _matrix(
        [
            ({"instance": "erp", "probe": "paris"}, [(t, "1"), (t + 60, "0.5"), (t + 120, "NaN")]),
            ({"instance": "erp", "probe": "lisbon"}, [(t, "0")]),  # a second series for ACME-ERP
        ]
    )
    cfg = _config()
    with FakePrometheus([(200, body, 0, {})]) as fake:
        res = prom.extract_checks(cfg, T0, T0 + timedelta(minutes=3), tmp_path / "out", url=fake.url)
    assert res.rows_bad_value == 2 and res.samples == 4
    assert list(res.shared_services) == ["ACME-ERP"] and len(res.shared_services["ACME-ERP"]) == 2
    with gzip.open(res.file, "rt") as fh:
        assert fh.readline().strip() == ",".join(prom.HEADER)
    (batch,) = load_drop(fresh_db, tmp_path / "out", source="prometheus")
    assert (batch.rows_read, batch.rows_loaded, batch.rows_quarantined) == (4, 1, 3)
    reasons = sorted(r["reason"] for r in query_dicts(fresh_db, "select reason from raw.quarantine"))
    assert reasons == [
        "bad status: '0.5' (expected one of up, down)",
        "bad status: 'NaN' (expected one of up, down)",
        "duplicate key in file",
    ]
