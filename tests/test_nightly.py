"""The real nightly DAG on the real stack: figures, idempotent reruns, and the quality gate."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import psycopg2
import requests

from tests.conftest import DemoStack, slm


def _query(dsn: str, sql: str, args: tuple = ()) -> list[tuple]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall() if cur.description else []
    conn.close()
    return rows


def _expected_from_files(demo: DemoStack) -> Counter:
    """Tickets opened per (client, month in the client's zone), straight from the demo CSV files."""
    drop = demo.home / "drops" / "demo"
    with open(drop / "clients.csv", newline="", encoding="utf-8-sig") as fh:
        zones = {r["client_code"]: ZoneInfo(r["timezone"]) for r in csv.DictReader(fh)}
    counts: Counter = Counter()
    with open(drop / "tickets.csv", newline="", encoding="utf-8-sig") as fh:
        for r in csv.DictReader(fh):
            opened = datetime.fromisoformat(r["opened_at"]).astimezone(zones[r["client_code"]])
            counts[(r["client_code"], opened.date().replace(day=1))] += 1
    return counts


def _mart(dsn: str) -> Counter:
    rows = _query(
        dsn,
        "select client_code, period_month, sum(tickets_opened)::int"
        " from marts.fct_ticket_volume group by 1, 2",
    )
    return Counter({(c, m): n for c, m, n in rows})


def test_dag_run_recorded_in_airflow(demo_stack: DemoStack) -> None:
    creds = demo_stack.credentials
    token = requests.post(
        f"{demo_stack.airflow_url}/auth/token",
        json={"username": "admin", "password": creds["airflow_admin_password"]},
        timeout=30,
    ).json()["access_token"]
    runs = requests.get(
        f"{demo_stack.airflow_url}/api/v2/dags/slm_nightly/dagRuns",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()["dag_runs"]
    assert any(r["state"] == "success" and r["logical_date"].startswith("2026-11-01") for r in runs), runs


def test_mart_matches_independent_count(demo_stack: DemoStack) -> None:
    expected = _expected_from_files(demo_stack)
    assert sum(expected.values()) > 100
    assert _mart(demo_stack.warehouse_dsn) == expected


def test_rerun_is_idempotent(demo_stack: DemoStack) -> None:
    dsn = demo_stack.warehouse_dsn
    before_raw = _query(dsn, "select count(*) from raw.tickets")[0][0]
    before_mart = _mart(dsn)
    slm(
        demo_stack.home,
        "run",
        "nightly",
        "--date",
        "2026-11-01",
        "--drop",
        str(demo_stack.home / "drops" / "demo"),
    )
    assert _query(dsn, "select count(*) from raw.tickets")[0][0] == before_raw
    assert _mart(dsn) == before_mart
    last = _query(
        dsn,
        "select rows_read, rows_loaded, rows_quarantined from raw.load_batches "
        "where entity = 'tickets' order by batch_id desc limit 1",
    )[0]
    assert last == (before_raw, 0, 0)


def test_quality_gate_blocks_publish(demo_stack: DemoStack) -> None:
    """A raw row that breaks an expectation fails the run before publish; the published marts stay."""
    dsn = demo_stack.warehouse_dsn
    before = _mart(dsn)
    ticket, priority = _query(dsn, "select ticket_id, priority from raw.tickets order by ticket_id limit 1")[
        0
    ]
    # Bypass the loader (as a manual fix or a faulty connector would) to put a bad priority in raw.
    _query(dsn, "update raw.tickets set priority = 'P9' where ticket_id = %s", (ticket,))
    try:
        proc = slm(
            demo_stack.home,
            "run",
            "nightly",
            "--date",
            "2026-11-02",
            "--drop",
            str(demo_stack.home / "drops" / "demo"),
            check=False,
        )
        assert proc.returncode == 1
        assert "ERROR: the nightly DAG ended in state 'failed'" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert _mart(dsn) == before
        log = (demo_stack.home / "logs" / "nightly-2026-11-02.log").read_text()
        assert "expect_column_values_to_be_in_set" in log
    finally:
        _query(dsn, "update raw.tickets set priority = %s where ticket_id = %s", (priority, ticket))
