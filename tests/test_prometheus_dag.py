"""The real ``slm_prometheus`` DAG, run with ``airflow dags test`` against a real Prometheus server.

A DAG run covers a past hour, so the test gives Prometheus that hour's history: ``promtool tsdb
create-blocks-from openmetrics`` (the documented backfill) writes the test's samples into a throw-away
data directory, and ``prometheus`` serves it on loopback. A throw-away Airflow (own AIRFLOW_HOME, metadata
on the suite's PostgreSQL) and warehouse; connections from ``AIRFLOW_CONN_*`` variables, as in production.
The expected rows come from the samples the test wrote, not from the extractor.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from slm_platform.load.loader import load_drop
from slm_platform.settings import REPO_ROOT, PgServer, venv_bin
from tests.conftest import query_dicts
from tests.test_prometheus_real import PrometheusProcess

AIRFLOW = str(venv_bin("airflow", "airflow"))
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
STEP = 60
# a past hour (within Prometheus's default 15-day retention): the run at RUN covers [RUN - 1 h, RUN)
RUN = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
START = RUN - timedelta(hours=1)
EARLY = START - timedelta(hours=2)
SERIES = {"erp": "ACME-ERP", "web": "ACME-WEB", "ghost": None}  # ghost: no mapping rule


def _value(series: str, t: int) -> int:
    """The test's history: erp down 10 min, web down 5 min, inside the hour; all up otherwise."""
    minute = (t - int(START.timestamp())) // 60
    if series == "erp" and 10 <= minute < 24:
        return 0
    if series == "web" and 40 <= minute < 45:
        return 0
    return 1


def _times() -> list[int]:
    # 10 minutes either side of the hours the tests extract, so that their edges are tested; the two hours
    # before START are the scheduler-gap test's
    lo, hi = int(EARLY.timestamp()) - 600, int(RUN.timestamp()) + 600
    return list(range(lo, hi + 1, STEP))


def _db(pg: PgServer, prefix: str, drop: bool = False, name: str | None = None) -> str:
    name = name or f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(pg.dsn("postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'drop database if exists "{name}" with (force)' if drop else f'create database "{name}"')
    admin.close()
    return name


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("prom_backfill")
    om = work / "history.om"
    lines = ["# HELP probe_success Whether the probe succeeded", "# TYPE probe_success gauge"]
    for series in SERIES:
        lines += [
            f'probe_success{{instance="{series}",job="blackbox"}} {_value(series, t)} {t}' for t in _times()
        ]
    om.write_text("\n".join(lines + ["# EOF"]) + "\n")
    proc = subprocess.run(
        [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(om), str(work / "tsdb")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with PrometheusProcess(work, tsdb=work / "tsdb") as server:
        yield server.url


@pytest.fixture(scope="module")
def airflow_env(
    pg_server: PgServer, backfilled: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    meta_db, wh_db = _db(pg_server, "af"), _db(pg_server, "wh")
    home = tmp_path_factory.mktemp("prom_dag")
    config = home / "prometheus.yaml"
    config.write_text(
        json.dumps(
            {
                "expression": 'probe_success{job="blackbox"}',
                "step": f"{STEP}s",
                "chunk": "20m",  # three queries for the hour
                "services": [{"match": {"instance": s}, "service_code": c} for s, c in SERIES.items() if c],
            }
        )
    )
    host, port = backfilled.removeprefix("http://").split(":")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_server.dsn(meta_db).replace(
                "postgresql://", "postgresql+psycopg2://", 1
            ),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "AIRFLOW_CONN_SLM_WAREHOUSE": pg_server.dsn(wh_db),
            # a bare host + port, as an operator would type it; the test's configuration in the extra
            "AIRFLOW_CONN_PROMETHEUS_DEFAULT": json.dumps(
                {"conn_type": "http", "host": host, "port": int(port), "extra": {"config": str(config)}}
            ),
            "SLM_HOME": str(home / "slm"),
        }
    )
    try:
        proc = subprocess.run(
            [AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        ref = home / "ref"
        ref.mkdir()
        (ref / "clients.csv").write_text(
            "client_code,client_name,timezone,country\nACME,ACME Europe,Europe/Paris,FR\n"
        )
        (ref / "services.csv").write_text(
            "service_code,client_code,service_name,calendar_code,criticality\n"
            "ACME-ERP,ACME,ERP,FR-BUSINESS,high\nACME-WEB,ACME,Web shop,24x7,critical\n"
        )
        load_drop(pg_server.dsn(wh_db), ref)
        yield {"env": env, "warehouse": pg_server.dsn(wh_db), "meta": pg_server.dsn(meta_db), "home": home}
    finally:
        _db(pg_server, "", drop=True, name=meta_db)
        _db(pg_server, "", drop=True, name=wh_db)


def _dags_test(env: dict, log: Path, run: datetime = RUN) -> str:
    cmd = [AIRFLOW, "dags", "test", "slm_prometheus", run.isoformat()]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    log.write_text(out)
    assert proc.returncode == 0, out[-4000:]
    finished = [line for line in out.splitlines() if "DagRun Finished" in line]
    assert finished and "state=success" in finished[-1], out[-4000:]
    return out


def _checks(dsn: str) -> list[dict]:
    return query_dicts(
        dsn,
        "select service_code, extract(epoch from checked_at)::bigint as t, status, _source "
        "from raw.checks order by 1, 2",
    )


def _batches(dsn: str) -> list[dict]:
    return query_dicts(
        dsn,
        "select entity, status, rows_read, rows_loaded, rows_unchanged, rows_quarantined "
        "from raw.load_batches where source = 'prometheus' order by batch_id",
    )


def test_dag_loads_the_hour_and_reruns_idempotently(airflow_env: dict) -> None:
    env, dsn, home = airflow_env["env"], airflow_env["warehouse"], airflow_env["home"]
    _dags_test(env, home / "run1.log")

    points = range(int(START.timestamp()), int(RUN.timestamp()), STEP)  # [start, end): end excluded
    expected = [
        {"service_code": code, "t": t, "status": "up" if _value(s, t) else "down", "_source": "prometheus"}
        for s, code in sorted(SERIES.items(), key=lambda kv: kv[1] or "")
        if code
        for t in points
    ]
    got = _checks(dsn)
    assert got == expected
    assert {r["status"] for r in expected} == {"up", "down"}  # the hour holds both

    first = _batches(dsn)
    assert [b["entity"] for b in first] == ["checks"]
    b = first[0]
    # the unmapped series' samples are quarantined, not dropped: read = loaded + quarantined
    assert (b["status"], b["rows_read"], b["rows_loaded"], b["rows_quarantined"]) == (
        "ok",
        len(expected) + len(points),
        len(expected),
        len(points),
    )
    landing = home / "slm" / "landing" / "prometheus" / START.strftime("%Y-%m-%dT%H%MZ")
    assert sorted(p.name for p in landing.iterdir()) == ["checks.csv.gz"]
    wm = query_dicts(dsn, "select high_water from raw.watermarks where source = 'prometheus'")
    assert wm == [{"high_water": RUN - timedelta(seconds=STEP)}]
    # No Asset any more (nothing was scheduled on it: docs/design/orchestration.md): what a later run
    # reads is the window the load recorded, the DAG's mark.
    events = query_dicts(airflow_env["meta"], "select count(*) as n from asset_event")
    assert events[0]["n"] == 0
    marks = query_dicts(dsn, "select count(*) as n from raw.extract_windows where dag_id = 'slm_prometheus'")
    assert marks[0]["n"] == 1

    # the same interval again: same window (the watermark is at its end), nothing changes
    _dags_test(env, home / "run2.log")
    assert _checks(dsn) == got
    second = _batches(dsn)[len(first) :]
    assert [(x["rows_read"], x["rows_loaded"], x["rows_unchanged"]) for x in second] == [
        (b["rows_read"], 0, b["rows_loaded"])
    ]


def _expected(lo: datetime, hi: datetime) -> list[dict]:
    points = range(int(lo.timestamp()), int(hi.timestamp()), STEP)
    return [
        {"service_code": code, "t": t, "status": "up" if _value(s, t) else "down", "_source": "prometheus"}
        for s, code in sorted(SERIES.items(), key=lambda kv: kv[1] or "")
        if code
        for t in points
    ]


def test_a_scheduler_gap_is_caught_up_from_the_mark(pg_server: PgServer, airflow_env: dict) -> None:
    """Run the hour [EARLY, EARLY + 1 h), miss the next (scheduler down), run [START, RUN): that run
    extracts [EARLY + 1 h, RUN), so the missed hour's samples are loaded, each once; the missed interval run
    afterwards (a backfill) reads exactly its own hour and changes nothing."""
    home = airflow_env["home"]
    wh_db = _db(pg_server, "wh_gap")  # a warehouse of its own: no mark from the other test
    try:
        dsn = pg_server.dsn(wh_db)
        load_drop(dsn, home / "ref")
        env = dict(airflow_env["env"], AIRFLOW_CONN_SLM_WAREHOUSE=dsn)
        d0, d1, d2 = START - timedelta(hours=1), START, RUN  # runs at the interval ends

        _dags_test(env, home / "gap_d0.log", d0)
        assert _checks(dsn) == _expected(EARLY, d0)
        out = _dags_test(env, home / "gap_d2.log", d2)
        assert f"catch-up: missed intervals since {d0.isoformat()}" in out
        got = _checks(dsn)
        assert got == _expected(EARLY, RUN)  # the missed hour included, no point twice (the key)
        batches = _batches(dsn)
        per_hour = 3 * 3600 // STEP  # three series, one sample a step
        # the catch-up read the gap and its own hour, not the hour before again
        assert [b["rows_read"] for b in batches] == [per_hour, 2 * per_hour]
        windows = query_dicts(
            dsn,
            "select window_start, window_end from raw.extract_windows where dag_id = 'slm_prometheus'"
            " order by recorded_at",
        )
        assert [(w["window_start"], w["window_end"]) for w in windows] == [(EARLY, d0), (d0, RUN)]

        _dags_test(env, home / "gap_d1.log", d1)
        assert _checks(dsn) == got
        (rerun,) = _batches(dsn)[len(batches) :]
        assert (rerun["rows_read"], rerun["rows_loaded"]) == (per_hour, 0)
        last = query_dicts(
            dsn,
            "select window_start, window_end from raw.extract_windows where dag_id = 'slm_prometheus'"
            " order by recorded_at desc limit 1",
        )
        assert last == [{"window_start": d0, "window_end": d1}]
    finally:
        _db(pg_server, "", drop=True, name=wh_db)
