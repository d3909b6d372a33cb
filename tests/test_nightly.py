"""The real nightly DAG on the real stack: figures, idempotent reruns, and the quality gate."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import date, datetime, timedelta
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


def _airflow(demo: DemoStack, path: str) -> dict:
    """GET from the stack's Airflow REST API as admin."""
    token = requests.post(
        f"{demo.airflow_url}/auth/token",
        json={"username": "admin", "password": demo.credentials["airflow_admin_password"]},
        timeout=30,
    ).json()["access_token"]
    response = requests.get(
        f"{demo.airflow_url}/api/v2/{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    response.raise_for_status()
    return response.json()


def _task_states(demo: DemoStack, logical_day: str) -> dict[str, str]:
    """Task id -> state of the latest slm_nightly run of that logical day."""
    runs = [
        r
        for r in _airflow(demo, "dags/slm_nightly/dagRuns?order_by=-start_date")["dag_runs"]
        if (r["logical_date"] or "").startswith(logical_day)
    ]
    states: dict[str, str] = {}
    while True:  # paged: the API caps a page (100 by default) and the dbt group grows with the models
        page = _airflow(
            demo,
            f"dags/slm_nightly/dagRuns/{runs[0]['dag_run_id']}/taskInstances?limit=100&offset={len(states)}",
        )
        states |= {ti["task_id"]: ti["state"] for ti in page["task_instances"]}
        if not page["task_instances"] or len(states) >= page["total_entries"]:
            return states


def _rows(dsn: str, table: str) -> list[tuple]:
    return sorted(_query(dsn, f"select * from {table}"), key=repr)  # noqa: S608 - fixed names


def test_dag_run_recorded_in_airflow(demo_stack: DemoStack) -> None:
    runs = _airflow(demo_stack, "dags/slm_nightly/dagRuns")["dag_runs"]
    assert any(
        r["state"] == "success" and (r["logical_date"] or "").startswith("2026-11-01") for r in runs
    ), runs
    # One dbt build, and a task per model (and per model's tests) that reports what it did to the model.
    states = _task_states(demo_stack, "2026-11-01")
    assert states["dbt.dbt_producer_watcher"] == "success"
    assert states["dbt.fct_ticket_volume.run"] == "success"
    assert states["dbt.fct_ticket_volume.test"] == "success"
    dbt_states = {k: v for k, v in states.items() if k.startswith("dbt.")}
    assert set(dbt_states.values()) == {"success"}, dbt_states


def test_dbt_gets_the_interval_end_as_cut_off(demo_stack: DemoStack) -> None:
    """The demo run (day 2026-11-01, covering October 31) computes running periods up to the end of its
    data interval (dbt var as_of), not up to the latest check loaded (the models' default)."""
    dsn = demo_stack.warehouse_dsn
    interval_end = datetime(2026, 11, 1, tzinfo=ZoneInfo("UTC"))
    assert _query(dsn, "select distinct as_of from marts.fct_availability") == [(interval_end,)]
    (latest_check,) = _query(dsn, "select max(checked_at) from raw.checks")[0]
    assert latest_check < interval_end  # the default would have given a different cut-off


def test_mart_matches_independent_count(demo_stack: DemoStack) -> None:
    expected = _expected_from_files(demo_stack)
    assert sum(expected.values()) > 100
    assert _mart(demo_stack.warehouse_dsn) == expected


def _previous_month(d: date) -> date:
    return (d - timedelta(days=1)).replace(day=1)


def test_demo_history_gives_reviews_something_to_say(demo_stack: DemoStack) -> None:
    """The demo is the 13 months before its run date, and its reviews have shape: ticket objective lines met
    and breached, some breached two months running, service-months with coverage below 99 %, SIP actions
    overdue at the cut-off. Each is found here from the base marts or the demo files, then the review marts
    must report the same."""
    dsn = demo_stack.warehouse_dsn
    months = sorted({m for _, m in _expected_from_files(demo_stack)})
    assert (months[0], months[-1], len(months)) == (date(2025, 10, 1), date(2026, 10, 1), 13)

    verdicts = {
        (c, o, s, p): met
        for c, o, s, p, met in _query(
            dsn,
            "select client_code, objective_id, service_code, period_start, is_met"
            " from marts.fct_sla_attainment where period_type = 'month' and is_met is not null",
        )
    }
    assert True in verdicts.values() and False in verdicts.values()
    two_running = {
        (c, p, o, s)
        for (c, o, s, p), met in verdicts.items()
        if not met and verdicts.get((c, o, s, _previous_month(p))) is False
    }
    assert two_running
    findings = set(
        _query(
            dsn,
            "select client_code, period_start, objective_id, service_code from marts.fct_review_finding"
            " where finding_kind = 'breached_two_running' and period_type = 'month'"
            " and objective_id in (select objective_id from marts.fct_sla_attainment)",
        )
    )
    assert findings == two_running

    low = set(
        _query(
            dsn,
            "select client_code, period_start, service_code from marts.fct_availability"
            " where period_type = 'month' and coverage_pct < 99",
        )
    )
    assert low
    assert low == set(
        _query(
            dsn,
            "select client_code, period_start, service_code from marts.fct_review_finding"
            " where finding_kind = 'coverage_below_threshold' and period_type = 'month'",
        )
    )

    # Overdue: open at the cut-off (the run's interval end) and due before that day in the client's zone.
    drop = demo_stack.home / "drops" / "demo"
    with open(drop / "clients.csv", newline="", encoding="utf-8") as fh:
        cut_off = {
            r["client_code"]: datetime(2026, 11, 1, tzinfo=ZoneInfo("UTC"))
            .astimezone(ZoneInfo(r["timezone"]))
            .date()
            for r in csv.DictReader(fh)
        }
    with open(drop / "sip_actions.csv", newline="", encoding="utf-8") as fh:
        overdue = {
            r["action_id"]
            for r in csv.DictReader(fh)
            if r["status"] == "open" and date.fromisoformat(r["due_on"]) < cut_off[r["client_code"]]
        }
    assert overdue
    assert overdue == {
        a for (a,) in _query(dsn, "select action_id from marts.fct_sip_action where is_overdue")
    }


def test_rerun_is_idempotent(demo_stack: DemoStack) -> None:
    dsn = demo_stack.warehouse_dsn
    before_raw = _query(dsn, "select count(*) from raw.tickets")[0][0]
    before_mart = _mart(dsn)
    before_rows = {t: _rows(dsn, t) for t in ("marts.fct_ticket_sla", "marts.fct_availability")}
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
    # Same interval, same cut-off: every figure is the same, not only the counts.
    for table, rows in before_rows.items():
        assert _rows(dsn, table) == rows, table
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


def test_failing_dbt_test_blocks_publish(demo_stack: DemoStack) -> None:
    """Raw data that passes GX but fails a dbt test: the dbt build fails, the task of the tested model's
    tests fails, publish does not run, the published marts stay; unaffected models still report success."""
    dsn = demo_stack.warehouse_dsn
    before = _mart(dsn)
    ticket, service = _query(
        dsn, "select ticket_id, service_code from raw.tickets order by ticket_id limit 1"
    )[0]
    # Bypass the loader (which refuses unknown services) as a manual fix would: the relationships test fails.
    _query(dsn, "update raw.tickets set service_code = 'NO-SUCH-SERVICE' where ticket_id = %s", (ticket,))
    try:
        proc = slm(
            demo_stack.home,
            "run",
            "nightly",
            "--date",
            "2026-11-03",
            "--drop",
            str(demo_stack.home / "drops" / "demo"),
            check=False,
        )
        assert proc.returncode == 1
        assert "ERROR: the nightly DAG ended in state 'failed'" in proc.stderr
        assert _mart(dsn) == before
        states = _task_states(demo_stack, "2026-11-03")
        assert states["check_raw"] == "success"
        assert states["dbt.dbt_producer_watcher"] == "failed"
        assert states["dbt.stg_canonical__tickets.run"] == "success"  # the view was built ...
        assert states["dbt.stg_canonical__tickets.test"] == "failed"  # ... and its tests failed
        assert states["dbt.dim_agreements.run"] == "success"  # independent of tickets: built and reported
        assert states["publish"] == "upstream_failed"
        log = (demo_stack.home / "logs" / "nightly-2026-11-03.log").read_text()
        assert "relationships_stg_canonical__tickets_service_code" in log
    finally:
        _query(dsn, "update raw.tickets set service_code = %s where ticket_id = %s", (service, ticket))
