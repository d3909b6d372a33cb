"""Fault storms: seeded schedules of source faults during real extracts.

ServiceNow (the local Table API server of tests/servicenow_fake.py) and Prometheus (the real ``prometheus``
binary on a backfilled TSDB, behind a local proxy that plays the faults) each get about 30 % of their
requests answered with a fault drawn from ``STORM_KINDS``: 429 with Retry-After, 500/502/503, timeouts,
TCP resets, answers cut mid-body, garbled 200s and 200s without ``result``, in runs of up to three in a
row. They land everywhere, and the tests check that they did land where it is hard: inside audit-history
paging (sys_audit pages after the first) and in the later chunks of a multi-chunk window.

Promise: the extract equals a clean one (byte for byte), or it fails loudly (naming the request and the
last error) and leaves nothing in its output folder. The clean extracts are taken from the same servers.
"""

from __future__ import annotations

import gzip
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from slm_platform.sources import prometheus as prom
from slm_platform.sources.servicenow.table_api import FieldMapping, ServiceNowError, extract_incidents
from tests.servicenow_fake import (
    COMPANIES,
    SERVICES,
    STORM_KINDS,
    FakeServiceNow,
    Fault,
    populate,
    reset_connection,
    send_raw,
    storm,
)
from tests.test_servicenow_api import AUTH
from tests.test_servicenow_api import START as SN_START
from tests.test_servicenow_api import UNTIL as SN_UNTIL

SEEDS = (11, 12, 13)
FAULT_NAME = {id(f): k for k, f in STORM_KINDS.items()}
MAX_RUN = 3  # longest run of consecutive faults in the storms
RETRIES = MAX_RUN  # enough to outlast any run: the storm must not fail the extract
# The client's timeout: far above a good answer's time on a loaded machine (a spurious timeout would be an
# extra retry), below the 2.5 s the timeout fault waits.
SN_TIMEOUT = 1.5


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_storm_schedule_is_seeded_with_runs_at_about_the_rate() -> None:
    plan = storm(5, 20_000)
    assert plan == storm(5, 20_000) and plan != storm(6, 20_000)
    assert 0.27 < len(plan) / 20_000 < 0.33
    runs, n = Counter(), 1
    while n <= 20_000:
        k = 0
        while n + k in plan:
            k += 1
        runs[k] += k > 0
        n += k + 1
    assert set(runs) - {0} == {1, 2, 3}
    assert set(FAULT_NAME[id(f)] for f in plan.values()) == set(STORM_KINDS)


# ---------------------------------------------------------------------------------------------------
# ServiceNow


def _sn_extract(fake: FakeServiceNow, out: Path, waits: list[float], **kw) -> object:
    kw.setdefault("max_retries", RETRIES)
    kw.setdefault("sleep", waits.append)
    return extract_incidents(
        fake.url,
        AUTH,
        None,
        SN_UNTIL,
        out,
        page_size=7,
        audit_batch=5,
        fields=FieldMapping(client_map=COMPANIES, service_map=SERVICES),
        timeout=SN_TIMEOUT,
        backoff_base=0.01,
        **kw,
    )


@pytest.fixture(scope="module")
def sn_clean(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sn_clean")
    with FakeServiceNow() as fake:
        populate(fake, 40, SN_START)
        _sn_extract(fake, out, [])
        log = list(fake.log)
    assert all(status == 200 for _, _, status in log)
    return out, log


def _audit_page(params: dict[str, str], path: str) -> bool:
    return path.endswith("/sys_audit") and params.get("sysparm_offset", "0") != "0"


@pytest.mark.parametrize("seed", SEEDS)
def test_servicenow_extract_through_a_storm_equals_a_clean_one(sn_clean, tmp_path: Path, seed: int) -> None:
    clean, clean_log = sn_clean
    assert sum(_audit_page(p, path) for path, p, _ in clean_log) >= 3  # the history is paged
    waits: list[float] = []
    with FakeServiceNow() as fake:
        populate(fake, 40, SN_START)
        fake.faults = storm(seed, 10 * len(clean_log), longest_run=MAX_RUN)
        res = _sn_extract(fake, tmp_path, waits)
        log = list(fake.log)
    assert _files(tmp_path) == _files(clean)
    faulted = [(n, path, p) for n, (path, p, _) in enumerate(log, start=1) if n in fake.faults]
    kinds = Counter(FAULT_NAME[id(fake.faults[n])] for n, _, _ in faulted)
    # every fault was retried and counted once; the good answers are the clean run's requests
    assert sum(res.retries.values()) == len(faulted) and res.requests == len(log)
    assert len(log) - len(faulted) == len(clean_log)
    assert 0.15 < len(faulted) / len(log) < 0.45, (len(faulted), len(log))
    assert any(_audit_page(p, path) for _, path, p in faulted), "no fault inside audit paging"
    assert res.retries.get("no_result", 0) == kinds["no_result"]
    assert res.retries.get("bad_json", 0) == kinds["garbled"]
    assert res.retries.get("timeout", 0) == kinds["timeout"]
    assert res.retries.get("connection", 0) == kinds["reset"] + kinds["truncated"]
    assert waits.count(2.0) == kinds["429"]  # Retry-After honoured


def test_the_storms_hit_every_kind_of_fault_inside_audit_paging(sn_clean) -> None:
    """Across the seeds, each kind of fault answers at least one request (the kinds are not left to luck)."""
    _, clean_log = sn_clean
    seen: set[str] = set()
    for seed in SEEDS:
        plan = storm(seed, 10 * len(clean_log), longest_run=MAX_RUN)
        seen |= {FAULT_NAME[id(f)] for n, f in plan.items() if n <= len(clean_log)}
    assert seen == set(STORM_KINDS)


@pytest.mark.parametrize("kinds", [("no_result",) * 4, ("garbled", "reset", "503", "timeout")])
def test_a_run_longer_than_the_retries_fails_loudly_inside_audit_paging(
    sn_clean, tmp_path: Path, kinds: tuple[str, ...]
) -> None:
    """Four faults in a row on a sys_audit page after the first: the extract raises, naming the request and
    the last error, and leaves nothing (a result-less 200 is no longer read as the last page)."""
    _, clean_log = sn_clean
    at = next(n for n, (path, p, _) in enumerate(clean_log, start=1) if _audit_page(p, path))
    with FakeServiceNow() as fake:
        populate(fake, 40, SN_START)
        fake.faults = {at + i: STORM_KINDS[k] for i, k in enumerate(kinds)}
        with pytest.raises(ServiceNowError, match=r"sys_audit failed after 4 attempts; last error: ") as exc:
            _sn_extract(fake, tmp_path, [], max_retries=3)
    assert list(tmp_path.iterdir()) == [], "a failed extract left files behind"
    last = {"no_result": "without a result list", "timeout": "no answer within 1.5 s"}[kinds[-1]]
    assert last in str(exc.value)


def test_retries_are_bounded_in_time(tmp_path: Path) -> None:
    """A Retry-After of an hour is not waited for (a wait never exceeds the backoff cap), and the retries of
    one request stop when the next wait would pass the budget: on a virtual clock, nothing sleeps."""
    now = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    with FakeServiceNow(always=Fault(429, retry_after="3600")) as fake:
        with pytest.raises(ServiceNowError, match=r"would pass the retry budget of 100 s") as exc:
            _sn_extract(
                fake, tmp_path, [], max_retries=50, sleep=sleep, clock=lambda: now[0], retry_budget=100
            )
    assert waits and max(waits) == 60.0 and sum(waits) <= 100, waits  # backoff_cap 60 s
    assert "HTTP 429" in str(exc.value) and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# Prometheus: the real server behind a faulting proxy

STEP = 15
SERIES = {"alpha": "PX-ALPHA", "beta": "PX-BETA"}


class FaultProxy:
    """Forwards GETs to ``upstream``; the request numbers in ``faults`` get the fault instead."""

    def __init__(self, upstream: str, faults: dict[int, Fault]):
        self.upstream, self.faults, self.log = upstream, faults, []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with proxy.lock:
                    n = len(proxy.log) + 1
                    proxy.log.append((n, parse_qs(urlsplit(self.path).query)))
                fault = proxy.faults.get(n)
                if fault is None:
                    r = requests.get(proxy.upstream + self.path, timeout=30)
                    send_raw(self, r.status_code, r.content)
                    return
                if fault.sleep:
                    time.sleep(fault.sleep)
                if fault.reset or fault.truncate:
                    reset_connection(self, b'{"status":"success","data":{' if fault.truncate else None)
                    return
                body = fault.body or '{"status":"error","errorType":"unavailable","error":"scripted"}'
                if fault.status == 200 and fault.body is None:  # a late answer: the client has given up
                    body = requests.get(proxy.upstream + self.path, timeout=30).text
                self.send_response(fault.status)
                if fault.retry_after:
                    self.send_header("Retry-After", fault.retry_after)
                data = body.encode()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def finish(self) -> None:
                try:
                    super().finish()
                except OSError:
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def prometheus_backfilled(tmp_path_factory: pytest.TempPathFactory):
    """The real prometheus on a TSDB backfilled by promtool: two probe series, 15 s apart, six hours ending
    two hours ago (inside the default retention), flipping down and back at seeded instants."""
    from tests.test_prometheus_real import PrometheusProcess

    work = tmp_path_factory.mktemp("prom_storm")
    end = (int(time.time()) // 3600 - 2) * 3600
    start = end - 6 * 3600
    lines = ["# TYPE probe_success gauge"]
    for name in SERIES:
        for i, t in enumerate(range(start, end, STEP)):
            value = 0 if (i // 97 + len(name)) % 5 == 0 else 1  # down stretches at fixed places
            lines.append(f'probe_success{{target="{name}"}} {value} {t}')
    (work / "data.om").write_text("\n".join(lines) + "\n# EOF\n")
    tsdb = work / "tsdb"
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(work / "data.om"), str(tsdb)],
        check=True,
        capture_output=True,
    )
    with PrometheusProcess(work, tsdb=tsdb) as p:
        yield p.url, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)


def _prom_config(timeout: float = 1.0) -> prom.PrometheusConfig:
    doc = {
        "expression": "probe_success",
        "step": f"{STEP}s",
        "chunk": "30m",  # six hours: twelve chunks
        "retries": RETRIES,
        "services": [{"match": {"target": k}, "service_code": v} for k, v in SERIES.items()],
    }
    cfg = prom.config_from_dict(doc, "storm.yaml")
    return prom.PrometheusConfig(**{**cfg.__dict__, "timeout_seconds": timeout})


def _gunzip(path: Path) -> bytes:
    with gzip.open(path, "rb") as fh:
        return fh.read()


@pytest.fixture(scope="module")
def prom_clean(prometheus_backfilled, tmp_path_factory: pytest.TempPathFactory):
    url, start, end = prometheus_backfilled
    out = tmp_path_factory.mktemp("prom_clean")
    res = prom.extract_checks(_prom_config(), start, end, out, url=url, sleep=lambda s: None)
    assert res.chunks == 12 and res.rows_mapped == 2 * 6 * 3600 // STEP and res.requests == 12
    rows = _gunzip(res.file)
    assert b",down," in rows and b",up," in rows
    return rows


@pytest.mark.parametrize("seed", SEEDS)
def test_prometheus_extract_through_a_storm_equals_a_clean_one(
    prometheus_backfilled, prom_clean, tmp_path: Path, seed: int
) -> None:
    url, start, end = prometheus_backfilled
    # the timeout fault sleeps past the client's timeout (1 s asked of the server, 2 s client side;
    # Prometheus reads whole durations only)
    faults = {n: f if not f.sleep else Fault(200, sleep=3.0) for n, f in storm(seed, 200).items()}
    waits: list[float] = []
    with FaultProxy(url, faults) as proxy:
        res = prom.extract_checks(_prom_config(), start, end, tmp_path, url=proxy.url, sleep=waits.append)
    assert _gunzip(res.file) == prom_clean
    faulted = [n for n, _ in proxy.log if n in faults]
    assert res.requests == len(proxy.log) and sum(res.retries.values()) == len(faulted)
    assert len(proxy.log) - len(faulted) == 12  # one good answer per chunk
    chunk_of = sorted({int(q["start"][0]) for _, q in proxy.log})
    later = {chunk_of.index(int(q["start"][0])) for n, q in proxy.log if n in faults}
    assert any(i >= 2 for i in later), "no fault in a later chunk"
    assert not (tmp_path / ".partial").exists()


def test_prometheus_run_longer_than_the_retries_fails_loudly_in_a_later_chunk(
    prometheus_backfilled, tmp_path: Path
) -> None:
    url, start, end = prometheus_backfilled
    # chunks 1-6 answer, then the 7th chunk's request and its three retries fail
    kinds = ("no_result", "truncated", "garbled", "502")
    faults = {7 + i: STORM_KINDS[k] for i, k in enumerate(kinds)}
    with FaultProxy(url, faults) as proxy:
        with pytest.raises(prom.PrometheusError, match=r"failed after 4 attempts; last error: HTTP 502"):
            prom.extract_checks(_prom_config(), start, end, tmp_path, url=proxy.url, sleep=lambda s: None)
    assert len(proxy.log) == 10 and list(tmp_path.iterdir()) == []
