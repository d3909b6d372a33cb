"""The Prometheus extractor against a REAL Prometheus server (Debian package, `make test` installs it).

The test starts ``prometheus`` on 127.0.0.1 with a throw-away data directory, scraping every second a local
HTTP target whose ``probe_success`` series it controls: it flips them up and down (and removes one for a
while) on a schedule, recording the instant of each flip. Then it extracts the window and loads it, and
checks that what Prometheus saw, as extracted, matches what the test did: the down periods and the gap
within one scrape interval plus one step (the most a state change can take to show on the step grid).
No expected figure is written down here: all of them come from the recorded flip times.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from slm_platform.load import imports
from slm_platform.load.loader import load_drop
from slm_platform.sources import prometheus as prom
from tests.conftest import query_dicts, scratch_database, slm

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
SCRAPE = 1  # seconds between scrapes of the test's target
STEP = 1  # seconds: the check interval the extract asks for
TOL = SCRAPE + STEP  # a flip shows on the step grid at most one scrape and one step late
SERVICES = {"alpha": "PX-ALPHA", "beta": "PX-BETA"}  # "stray" is deliberately left unmapped


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProbeTarget:
    """A scrape target serving ``probe_success{target=...}``; a series set to None is not exposed."""

    def __init__(self) -> None:
        self.values: dict[str, int | None] = {}
        self.lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with target.lock:
                    lines = ["# HELP probe_success Whether the probe succeeded", "# TYPE probe_success gauge"]
                    lines += [
                        f'probe_success{{target="{name}"}} {value}'
                        for name, value in sorted(target.values.items())
                        if value is not None
                    ]
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def set(self, name: str, value: int | None) -> float:
        """Change a series; returns the instant the change took effect."""
        with self.lock:
            self.values[name] = value
            return time.time()

    def __enter__(self) -> ProbeTarget:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class PrometheusProcess:
    """``prometheus`` on loopback with its own data directory (kept by the caller's tmp dir)."""

    def __init__(self, workdir: Path, scrape_target: str | None = None, tsdb: Path | None = None):
        self.workdir, self.port = workdir, free_port()
        self.tsdb = tsdb or workdir / "tsdb"
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "prometheus.yml"
        scrape = (
            f"scrape_configs:\n  - job_name: probes\n    scrape_interval: {SCRAPE}s\n"
            f"    scrape_timeout: {SCRAPE}s\n    static_configs:\n      - targets: ['{scrape_target}']\n"
            if scrape_target
            else "scrape_configs: []\n"
        )
        self.config.write_text(
            f"global:\n  scrape_interval: {SCRAPE}s\n  evaluation_interval: {SCRAPE}s\n{scrape}"
        )
        self.log = workdir / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> PrometheusProcess:
        assert os.access(PROMETHEUS, os.X_OK), "prometheus missing: run `make system-packages`"
        cmd = [
            PROMETHEUS,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.tsdb}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"prometheus exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}"
                )
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise AssertionError(f"prometheus not ready after 60 s: {self.log.read_text()[-2000:]}")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Scenario:
    url: str
    w0: int  # extract window [w0, w1), epoch seconds (multiples of STEP)
    w1: int
    first_sample: float  # the instant Prometheus's first scrape was seen
    flips: dict[str, list[tuple[float, int | None]]]  # series -> (instant, value) in time order
    initial: dict[str, int | None]


def _series_seen(url: str) -> int:
    r = requests.get(f"{url}/api/v1/query", params={"query": "probe_success"}, timeout=5)
    return len(r.json()["data"]["result"]) if r.status_code == 200 else 0


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    work = tmp_path_factory.mktemp("prometheus")
    initial = {"alpha": 1, "beta": 1, "stray": 1}
    with ProbeTarget() as target:
        for name, value in initial.items():
            target.set(name, value)
        with PrometheusProcess(work, target.address) as server:
            deadline = time.monotonic() + 30
            while _series_seen(server.url) < len(initial):
                assert time.monotonic() < deadline, "prometheus never scraped the target"
                time.sleep(0.2)
            first_sample = time.time()
            w0 = math.ceil(time.time() / STEP) * STEP + STEP
            # (offset from w0 in scrape intervals, series, new value); None = series not exposed (a gap)
            plan = [
                (3, "alpha", 0),
                (4, "beta", None),
                (8, "alpha", 1),
                (9, "beta", 1),
                (11, "beta", 0),
                (12, "alpha", 0),
                (15, "beta", 1),
                (16, "alpha", 1),
            ]
            flips: dict[str, list[tuple[float, int | None]]] = {name: [] for name in initial}
            for offset, name, value in plan:
                time.sleep(max(0.0, w0 + offset * SCRAPE - time.time()))
                flips[name].append((target.set(name, value), value))
            w1 = w0 + 19 * SCRAPE
            # let the last scrapes of the window land before anything reads it
            time.sleep(max(0.0, w1 + TOL + SCRAPE - time.time()))
            yield Scenario(server.url, w0, w1, first_sample, flips, initial)


def _config(chunk: str = "1h") -> prom.PrometheusConfig:
    return prom.config_from_dict(
        {
            "expression": "probe_success",
            "step": f"{STEP}s",
            "chunk": chunk,
            "retries": 1,
            "services": [{"match": {"target": t}, "service_code": c} for t, c in SERVICES.items()],
        },
        "test-config",
    )


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _file_rows(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return fh.read().splitlines()


@pytest.fixture(scope="module")
def warehouse(pg_server, tmp_path_factory) -> Iterator[str]:
    with scratch_database(pg_server) as dsn:
        load_drop(dsn, _reference_drop(tmp_path_factory.mktemp("ref")))
        yield dsn


@pytest.fixture(scope="module")
def loaded(scenario: Scenario, warehouse: str, tmp_path_factory) -> dict:
    landing = tmp_path_factory.mktemp("landing")
    res, batches = imports.prometheus_window(
        warehouse, _config(), _utc(scenario.w0), _utc(scenario.w1), landing, url=scenario.url
    )
    return {"res": res, "batches": batches, "landing": landing, "dsn": warehouse}


def _checks(dsn: str, service: str) -> dict[int, str]:
    rows = query_dicts(
        dsn,
        "select extract(epoch from checked_at)::bigint as t, status from raw.checks "
        "where service_code = %s order by checked_at",
        (service,),
    )
    return {r["t"]: r["status"] for r in rows}


def _true_periods(sc: Scenario, name: str, value: int | None) -> list[tuple[float, float]]:
    """Where the series held ``value``, from the test's own flips, clipped to the window."""
    state, since, out = sc.initial[name], float(sc.w0), []
    for at, new in sc.flips[name] + [(float(sc.w1), "end")]:
        at = min(max(at, sc.w0), sc.w1)
        if state == value and at > since:
            out.append((since, at))
        if new != "end":
            state, since = new, at
    return out


def _runs(points: list[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive step points, as [first, last + STEP)."""
    runs: list[tuple[int, int]] = []
    for t in points:
        if runs and runs[-1][1] == t:
            runs[-1] = (runs[-1][0], t + STEP)
        else:
            runs.append((t, t + STEP))
    return runs


def _assert_edges(measured: list[tuple[int, int]], truth: list[tuple[float, float]], what: str) -> None:
    assert len(measured) == len(truth), f"{what}: measured {measured}, test did {truth}"
    for (m0, m1), (t0, t1) in zip(measured, truth, strict=True):
        assert abs(m0 - t0) <= TOL and abs(m1 - t1) <= TOL, f"{what}: measured {(m0, m1)} vs did {(t0, t1)}"


def _held_downtime(checks: dict[int, str], w1: int) -> float:
    """Downtime as the canonical format defines it: a check holds until the next one, at most 2 steps."""
    times = sorted(checks)
    total = 0.0
    for i, t in enumerate(times):
        if checks[t] == "down":
            nxt = times[i + 1] if i + 1 < len(times) else w1
            total += min(nxt - t, 2 * STEP)
    return total


def test_extracted_downtime_matches_what_the_target_did(scenario: Scenario, loaded: dict) -> None:
    for name in ("alpha", "beta"):
        checks = _checks_in(loaded, name)
        down = [t for t, s in sorted(checks.items()) if s == "down"]
        truth = _true_periods(scenario, name, 0)
        assert truth, name
        _assert_edges(_runs(down), truth, f"{name} down")
        did = sum(b - a for a, b in truth)
        assert abs(_held_downtime(checks, scenario.w1) - did) <= TOL * len(truth), (name, did, checks)


def _checks_in(loaded: dict, name: str) -> dict[int, str]:
    return _checks(loaded["dsn"], SERVICES[name])


def test_absent_samples_are_gaps_not_rows(scenario: Scenario, loaded: dict) -> None:
    points = list(range(scenario.w0, scenario.w1, STEP))
    alpha = _checks_in(loaded, "alpha")
    assert sorted(alpha) == points  # always exposed: one check per step, none invented, none lost
    beta = _checks_in(loaded, "beta")
    missing = [t for t in points if t not in beta]
    truth = _true_periods(scenario, "beta", None)
    _assert_edges(_runs(missing), truth, "beta gap")
    assert set(beta) <= set(points)
    # the gap's core has no row at all: absent means unmeasured, not up
    (a, b) = truth[0]
    assert not [t for t in beta if a + TOL <= t < b]


def test_unmapped_series_is_quarantined_not_dropped(scenario: Scenario, loaded: dict) -> None:
    res: prom.ExtractResult = loaded["res"]
    points = (scenario.w1 - scenario.w0) // STEP
    assert len(res.unmapped_series) == 1
    name = next(iter(res.unmapped_series))
    assert name.endswith('job="probes",target="stray"}') and name.startswith("probe_success{")
    assert res.unmapped_series[name] == points == res.rows_unmapped
    assert res.samples == res.rows_mapped + res.rows_unmapped
    q = query_dicts(
        loaded["dsn"],
        "select reason, raw_record from raw.quarantine where source = 'prometheus' and entity = 'checks'",
    )
    assert len(q) == points
    assert {r["reason"] for r in q} == {"missing key: service_code"}
    assert {r["raw_record"]["prometheus_series"] for r in q} == {name}
    assert all("no rule of test-config maps" in r["raw_record"]["unmapped"] for r in q)
    (batch,) = loaded["batches"]
    assert batch.rows_read == res.samples
    assert batch.rows_read == batch.rows_loaded + batch.rows_unchanged + batch.rows_quarantined
    assert (batch.rows_loaded, batch.rows_quarantined) == (res.rows_mapped, res.rows_unmapped)


def test_watermark_is_the_last_check_loaded(scenario: Scenario, loaded: dict) -> None:
    last = max(max(_checks_in(loaded, "alpha")), max(_checks_in(loaded, "beta")))
    assert prom.watermark(loaded["dsn"]) == _utc(last)
    assert last == scenario.w1 - STEP  # the window's end is excluded


def test_chunked_extract_equals_one_query(scenario: Scenario, loaded: dict, tmp_path: Path) -> None:
    small = _config(chunk=f"{4 * STEP}s")
    res = prom.extract_checks(small, _utc(scenario.w0), _utc(scenario.w1), tmp_path, url=scenario.url)
    assert res.chunks == math.ceil((scenario.w1 - scenario.w0) / (4 * STEP)) > loaded["res"].chunks == 1
    one = _file_rows(loaded["res"].file)
    many = _file_rows(res.file)
    assert one[0] == many[0]  # header
    assert sorted(many[1:]) == sorted(one[1:]) and len(many) == len(set(many))


def test_a_window_beyond_11000_points_is_split(scenario: Scenario, loaded: dict, tmp_path: Path) -> None:
    # The limit is Prometheus's: it refuses more than 11,000 steps in one query, and takes our largest chunk
    def ask(steps: int) -> requests.Response:
        params = {
            "query": "probe_success",
            "start": scenario.w1 - steps * STEP,
            "end": scenario.w1,
            "step": STEP,
        }
        return requests.get(f"{scenario.url}/api/v1/query_range", params=params, timeout=30)

    refused = ask(prom.MAX_POINTS + 1)
    assert refused.status_code == 400 and "11,000" in refused.json()["error"], refused.text
    assert ask(prom.MAX_POINTS - 1).json()["status"] == "success"  # MAX_POINTS points: what a chunk asks
    # ...so the extract splits a longer window, even with a chunk setting that would exceed it
    start = scenario.w1 - 4 * 3600
    res = prom.extract_checks(_config(chunk="4h"), _utc(start), _utc(scenario.w1), tmp_path, url=scenario.url)
    assert res.chunks == math.ceil(4 * 3600 / prom.MAX_POINTS)
    rows = _file_rows(res.file)[1:]
    times = [datetime.fromisoformat(line.split(",")[1]).timestamp() for line in rows]
    # nothing before Prometheus's first scrape (samples are not invented to fill the earlier hours)
    assert min(times) >= scenario.first_sample - 5 * SCRAPE
    inside = sorted(line for line, t in zip(rows, times, strict=True) if scenario.w0 <= t < scenario.w1)
    assert inside == sorted(_file_rows(loaded["res"].file)[1:])


def test_rerun_is_idempotent(scenario: Scenario, loaded: dict) -> None:
    dsn = loaded["dsn"]
    before = query_dicts(dsn, "select * from raw.checks order by service_code, checked_at")
    first_file = _file_rows(loaded["res"].file)
    res, batches = imports.prometheus_window(
        dsn, _config(), _utc(scenario.w0), _utc(scenario.w1), loaded["landing"], url=scenario.url
    )
    assert res.file == loaded["res"].file  # same window, same landing folder
    assert _file_rows(res.file) == first_file  # Prometheus's past does not change
    (batch,) = batches
    first = loaded["batches"][0]
    assert (batch.rows_read, batch.rows_loaded, batch.rows_unchanged) == (
        first.rows_read,
        0,
        first.rows_loaded,
    )
    after = query_dicts(dsn, "select * from raw.checks order by service_code, checked_at")
    strip = [{k: v for k, v in r.items() if not k.startswith("_")} for r in before]
    assert [{k: v for k, v in r.items() if not k.startswith("_")} for r in after] == strip
    dup = query_dicts(
        dsn, "select count(*) - count(distinct (service_code, checked_at)) as n from raw.checks"
    )
    assert dup[0]["n"] == 0


def _reference_drop(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clients.csv").write_text("client_code,client_name,timezone,country\nPX,Probe client,UTC,\n")
    (folder / "services.csv").write_text(
        "service_code,client_code,service_name,calendar_code,criticality\n"
        + "".join(f"{code},PX,{name},24x7,high\n" for name, code in SERVICES.items())
    )
    return folder


def test_cli_extract_resumes_from_the_watermark(
    scenario: Scenario, loaded: dict, stack_home: Path, pg_server, tmp_path: Path
) -> None:
    cfg = tmp_path / "prometheus.yaml"
    doc = {
        "url": scenario.url,
        "expression": "probe_success",
        "step": f"{STEP}s",
        "chunk": "1h",
        "services": [{"match": {"target": t}, "service_code": c} for t, c in SERVICES.items()],
    }
    cfg.write_text(json.dumps(doc))  # JSON is YAML
    mid = scenario.w0 + (scenario.w1 - scenario.w0) // 2

    def iso(t: int) -> str:
        return _utc(t).isoformat()

    with scratch_database(pg_server) as dsn:
        load_drop(dsn, _reference_drop(tmp_path / "ref"))
        common = ["--config", str(cfg), "--dsn", dsn, "--out", str(tmp_path / "landing")]
        first = slm(
            stack_home, "extract", "prometheus", "--start", iso(scenario.w0), "--end", iso(mid), *common
        )
        assert "quarantined" in first.stdout, first.stdout
        assert prom.watermark(dsn) == _utc(mid - STEP)
        # no --start: it goes on just after the watermark
        second = slm(stack_home, "extract", "prometheus", "--end", iso(scenario.w1), *common)
        assert f"[{iso(mid)}, {iso(scenario.w1)})" in second.stdout, second.stdout
        for code in SERVICES.values():
            # two CLI runs that meet at the watermark = one extract of the whole window
            assert _checks(dsn, code) == _checks(loaded["dsn"], code)
        bad = slm(stack_home, "extract", "prometheus", "--start", "2026-01-01T00:00", *common, check=False)
        assert bad.returncode == 1 and "time zone" in bad.stderr, bad.stderr
