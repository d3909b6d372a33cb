"""The real ``slm_incident_review`` DAG on the suite's running stack (api-server, scheduler, LocalExecutor).

Runs are triggered through the REST API with a conf (and through ``./slm incident review``) and followed to
their end. Refusals: malformed values are refused by Airflow's Params before a run exists; values the data
contradicts are refused by the validate task (or by the CLI before it triggers), naming the parameter, with
nothing written. Concurrency: two reviews at once, and a review during a nightly, both succeed and leave
consistent marts (the impact mart's "with" figures equal the availability and SLA marts of the same build).
The data-triggered path: an hourly ServiceNow run (against the fake instance) that loads a resolved major
incident triggers exactly one review of it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from slm_platform.orchestration.incident_review import DAG_ID, AirflowApi, data_run_id
from tests.conftest import SLM, DemoStack, slm

TERMINAL = ("success", "failed")


def _query(dsn: str, sql: str, args: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@pytest.fixture(scope="module")
def api(demo_stack: DemoStack) -> AirflowApi:
    return AirflowApi(demo_stack.airflow_url, "admin", demo_stack.credentials["airflow_admin_password"])


@pytest.fixture(scope="module")
def majors(demo_stack: DemoStack) -> list[tuple[str, str]]:
    """Resolved demo major incidents shorter than the maximum window: (ticket, client), latest first."""
    rows = _query(
        demo_stack.warehouse_dsn,
        "select ticket_id, client_code from raw.tickets where ticket_type = 'incident' and is_major"
        " and resolved_at is not null and resolved_at - opened_at < interval '24 hours'"
        " and resolved_at < '2026-11-01' order by resolved_at desc",
    )
    assert len(rows) >= 3, rows
    return rows


def _runs(api: AirflowApi) -> list[dict]:
    return api.get(f"dags/{DAG_ID}/dagRuns?limit=100")["dag_runs"]


def _wait(api: AirflowApi, run_id: str, timeout: float = 1200) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = api.get(f"dags/{DAG_ID}/dagRuns/{run_id}")["state"]
        if state in TERMINAL:
            return state
        time.sleep(3)
    raise AssertionError(f"{run_id} did not finish in {timeout} s")


def _trigger(api: AirflowApi, conf: dict) -> str:
    resp = api.trigger(conf)
    assert resp.status_code == 200, resp.text
    return resp.json()["dag_run_id"]


def _task_log(api: AirflowApi, run_id: str, task_id: str) -> str:
    resp = api.http.get(
        f"{api.url}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1",
        headers={"Accept": "application/json"},
        timeout=30,
    )
    resp.raise_for_status()
    content = resp.json()["content"]
    return "\n".join(c.get("event", "") if isinstance(c, dict) else str(c) for c in content)


def _task_events(api: AirflowApi, run_id: str, task_id: str) -> list[tuple[datetime, str]]:
    """(timestamp, event) of a task's log, from the REST API."""
    resp = api.http.get(
        f"{api.url}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1",
        headers={"Accept": "application/json"},
        timeout=30,
    )
    resp.raise_for_status()
    return [
        (datetime.fromisoformat(c["timestamp"]), c.get("event", ""))
        for c in resp.json()["content"]
        if isinstance(c, dict) and c.get("timestamp")
    ]


def _nightly_dbt_start(log: Path) -> datetime:
    """When the nightly's `dbt build` really started (after any wait for the build lock): dbt's first line."""
    for line in log.read_text().splitlines():
        if m := re.match(r"^(\S+Z) .*Running with dbt=", line):
            return datetime.fromisoformat(m.group(1))
    raise AssertionError(f"no dbt start in {log}")


def _writes(dsn: str) -> tuple:
    """What a review writes: load batches, gate windows, review rows, and the published marts' tables."""
    return _query(
        dsn,
        "select (select count(*) from raw.load_batches), (select count(*) from raw.quality_gate_runs),"
        " (select count(*) from raw.incident_reviews),"
        " (select string_agg(c.relname || ':' || c.oid, ',' order by c.relname) from pg_class c"
        "  join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'marts' and c.relkind = 'r')",
    )[0]


@pytest.fixture(scope="module", autouse=True)
def _reviews_table(demo_stack: DemoStack) -> None:
    # raw.incident_reviews exists from the first load on (ensure_raw_schema); make sure for _writes.
    from slm_platform.load.raw_schema import ensure_raw_schema

    conn = psycopg2.connect(demo_stack.warehouse_dsn)
    try:
        ensure_raw_schema(conn)
    finally:
        conn.close()


def assert_marts_consistent(dsn: str) -> None:
    """The incident marts and the marts they are computed from come from the same build: one cut-off, and
    the impact mart's "with" figures equal fct_availability's and fct_sla_attainment's rows."""
    cut_offs = _query(
        dsn,
        "select distinct as_of from marts.fct_availability union select distinct as_of"
        " from marts.fct_major_incident",
    )
    assert len(cut_offs) == 1, cut_offs
    mismatched = _query(
        dsn,
        "select i.ticket_id, i.objective_id, i.period_type, i.period_start, i.attainment_with_pct,"
        " a.availability_pct from marts.fct_major_incident_impact i join marts.fct_availability a"
        " using (client_code, service_code, agreement_id, objective_id, period_type, period_start)"
        " where i.metric = 'availability' and i.attainment_with_pct is distinct from a.availability_pct",
    )
    assert mismatched == []
    (checked,) = _query(
        dsn, "select count(*) from marts.fct_major_incident_impact where metric = 'availability'"
    )[0]
    assert checked > 0


# --- refusals ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conf", "param"),
    [
        ({"ticket_id": "INC 1; drop table"}, "ticket_id"),
        ({}, "ticket_id"),
        ({"ticket_id": "INC0000001", "window_from": "yesterday"}, "window_from"),
        ({"ticket_id": "INC0000001", "window_to": "2026-10-01T10:00"}, "window_to"),  # no zone
        ({"ticket_id": "INC0000001", "clients": "ACME"}, "clients"),
        ({"ticket_id": "INC0000001", "clients": ["acme corp"]}, "clients"),
    ],
)
def test_rest_api_refuses_malformed_params_before_a_run_exists(
    api: AirflowApi, demo_stack: DemoStack, conf: dict, param: str
) -> None:
    runs, writes = len(_runs(api)), _writes(demo_stack.warehouse_dsn)
    resp = api.trigger(conf)
    assert resp.status_code == 400, resp.text
    assert f"param {param}" in resp.json()["detail"], resp.text
    assert len(_runs(api)) == runs
    assert _writes(demo_stack.warehouse_dsn) == writes


def test_validate_task_refuses_what_the_data_contradicts(
    api: AirflowApi, demo_stack: DemoStack, majors: list[tuple[str, str]]
) -> None:
    """Well-formed but wrong: the run exists, its validate task fails at once naming each parameter, and
    nothing is written (no batch, no gate window, no review row, marts untouched)."""
    dsn = demo_stack.warehouse_dsn
    ticket, _client = majors[0]
    writes = _writes(dsn)
    unknown = _trigger(api, {"ticket_id": "INC9999999"})
    assert _wait(api, unknown) == "failed"
    reversed_window = _trigger(
        api,
        {
            "ticket_id": ticket,
            "window_from": "2026-10-02T00:00:00Z",
            "window_to": "2026-10-01T00:00:00Z",
            "clients": ["NOSUCH"],
        },
    )
    assert _wait(api, reversed_window) == "failed"
    assert "REFUSED ticket_id: INC9999999 is unknown" in _task_log(api, unknown, "validate")
    log = _task_log(api, reversed_window, "validate")
    assert "REFUSED window_to:" in log and "(window reversed)" in log
    assert "REFUSED clients: NOSUCH is not a known client" in log
    for run_id in (unknown, reversed_window):
        states = api.task_states(run_id)
        assert states["validate"] == "failed"
        # record_failure ran and found no review of this run to mark (validate recorded none)
        assert states.pop("record_failure") == "success", states
        assert {s for t, s in states.items() if t != "validate"} == {"upstream_failed"}, states
    assert _writes(dsn) == writes


def test_cli_refuses_bad_parameters_in_one_line(
    api: AirflowApi, demo_stack: DemoStack, majors: list[tuple[str, str]]
) -> None:
    dsn = demo_stack.warehouse_dsn
    ticket, _client = majors[0]
    (non_major,) = _query(
        dsn, "select ticket_id from raw.tickets where ticket_type = 'incident' and not is_major limit 1"
    )[0]
    (request,) = _query(dsn, "select ticket_id from raw.tickets where ticket_type = 'request' limit 1")[0]
    (other,) = _query(
        dsn,
        "select client_code from raw.clients where client_code <> all(%s) order by 1 limit 1",
        ([c for t, c in majors if t == ticket],),
    )[0]
    cases = [
        (["bad id!"], "ticket_id: 'bad id!' does not match"),
        (["INC9999999"], "ticket_id: INC9999999 is unknown"),
        ([non_major], f"ticket_id: {non_major} is an incident but not a major one"),
        ([request], f"ticket_id: {request} is a request, not a major incident"),
        ([ticket, "--from", "2026-10-02T00:00Z", "--to", "2026-10-01T00:00Z"], "(window reversed)"),
        (
            [ticket, "--from", "2026-10-01T00:00Z", "--to", "2026-10-05T00:00Z"],
            "more than the maximum of 72 h",
        ),
        ([ticket, "--to", "2026-10-05"], "window_to: '2026-10-05' does not match"),
        ([ticket, "--client", "NOSUCH"], "clients: NOSUCH is not a known client"),
        ([ticket, "--client", other], f"clients: {other} was not affected by {ticket}"),
    ]
    runs, writes = len(_runs(api)), _writes(dsn)
    for args, message in cases:
        proc = slm(demo_stack.home, "incident", "review", *args, check=False, timeout=300)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ERROR: review refused: "), (args, proc.stderr)
        assert message in lines[0], (args, lines[0])
        assert "Traceback" not in proc.stderr
    assert len(_runs(api)) == runs
    assert _writes(dsn) == writes


# --- reviews that run ------------------------------------------------------------------------------------


def _incident_rows(dsn: str, ticket: str) -> tuple[list, list]:
    return (
        _query(dsn, "select * from marts.fct_major_incident where ticket_id = %s", (ticket,)),
        sorted(
            _query(dsn, "select * from marts.fct_major_incident_impact where ticket_id = %s", (ticket,)),
            key=repr,
        ),
    )


def test_review_through_the_rest_api(
    api: AirflowApi, demo_stack: DemoStack, majors: list[tuple[str, str]]
) -> None:
    dsn = demo_stack.warehouse_dsn
    ticket, client = majors[0]
    (published,) = _query(dsn, "select max(as_of) from marts.fct_availability")[0]
    batches = _query(dsn, "select count(*) from raw.load_batches")[0][0]
    publications = _query(dsn, "select count(*) from raw.mart_publications")[0][0]
    conf = {"ticket_id": ticket, "clients": [client]}
    run_id = _trigger(api, conf)
    assert _wait(api, run_id) == "success"
    states = api.task_states(run_id)
    assert states.pop("record_failure") == "skipped", states  # runs only when the review failed
    assert set(states.values()) == {"success"}, states
    # no source connection on the demo stack: both re-extracts skipped, said in the log, nothing loaded
    log = _task_log(api, run_id, "extract")
    assert "servicenow: no connection 'servicenow_default': skipped" in log
    assert "prometheus: no connection 'prometheus_default': skipped" in log
    assert _query(dsn, "select count(*) from raw.load_batches")[0][0] == batches
    # recorded; the cut-off is the published one (the incident ended before it): dashboards never go back
    row = _query(
        dsn,
        "select run_id, status, triggered_by, as_of from raw.incident_reviews where ticket_id = %s",
        (ticket,),
    )
    assert row == [(run_id, "success", "manual", published)]
    assert _query(
        dsn, "select count(*) from information_schema.schemata where schema_name = 'marts_build_review'"
    )[0] == (0,)
    assert _incident_rows(dsn, ticket)[0] and _incident_rows(dsn, ticket)[1]
    assert_marts_consistent(dsn)
    # the publish left its record: the tables it replaced, with the checksums of what is now published
    ((kind, recorded),) = _query(
        dsn, "select kind, tables from raw.mart_publications order by publication_id desc limit 1"
    )
    assert kind == "tables"
    assert _query(dsn, "select count(*) from raw.mart_publications")[0][0] == publications + 1
    checksum_sql = "select count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text from marts.{} as t"
    for table, entry in recorded.items():
        ((rows, checksum),) = _query(dsn, checksum_sql.format(table))
        assert (rows, checksum) == (entry["rows"], entry["checksum"]), table
    assert "fct_major_incident_impact" in recorded, sorted(recorded)
    report = demo_stack.home / "reports" / "incidents" / ticket
    assert (report / f"{ticket}_manager.pdf").stat().st_size > 0
    assert (report / f"{ticket}_client_{client}.pdf").stat().st_size > 0


def test_cli_reruns_the_same_review_with_the_same_result(
    api: AirflowApi, demo_stack: DemoStack, majors: list[tuple[str, str]]
) -> None:
    """`./slm incident review` triggers the real DAG (a new run, same conf as the REST one above), shows
    each task as it ends and where the report is; the figures are the same (no wall clock in them)."""
    dsn = demo_stack.warehouse_dsn
    ticket, client = majors[0]
    before = _incident_rows(dsn, ticket)
    runs = {r["dag_run_id"] for r in _runs(api)}
    proc = slm(demo_stack.home, "incident", "review", ticket, "--client", client, timeout=1500)
    out = proc.stdout
    assert f"==> reviewing {ticket}" in out
    for task_id in ("validate", "extract", "load", "check_raw", "build_publish", "report", "finish"):
        assert f"success  {task_id}" in out, out
    assert f"report: {demo_stack.home / 'reports' / 'incidents' / ticket}" in out
    new = [r for r in _runs(api) if r["dag_run_id"] not in runs]
    assert len(new) == 1 and new[0]["state"] == "success" and new[0]["conf"]["ticket_id"] == ticket
    assert _incident_rows(dsn, ticket) == before
    assert_marts_consistent(dsn)


def _interval(api: AirflowApi, dag_id: str, run_id: str, task_id: str) -> tuple[datetime, datetime]:
    ti = api.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
    return datetime.fromisoformat(ti["start_date"]), datetime.fromisoformat(ti["end_date"])


def test_two_reviews_triggered_at_once(
    api: AirflowApi, demo_stack: DemoStack, majors: list[tuple[str, str]]
) -> None:
    (a, _), (b, _) = majors[1], majors[2]
    run_a = _trigger(api, {"ticket_id": a})
    run_b = _trigger(api, {"ticket_id": b})
    assert _wait(api, run_a) == "success"
    assert _wait(api, run_b) == "success"
    # one after the other (max_active_runs=1), never interleaved
    ra, rb = (api.get(f"dags/{DAG_ID}/dagRuns/{r}") for r in (run_a, run_b))
    first, second = sorted((ra, rb), key=lambda r: r["start_date"])
    assert first["end_date"] <= second["start_date"]
    dsn = demo_stack.warehouse_dsn
    assert _incident_rows(dsn, a)[0] and _incident_rows(dsn, b)[0]
    assert_marts_consistent(dsn)


def test_review_during_a_nightly(
    api: AirflowApi, demo_stack: DemoStack, majors: list[tuple[str, str]]
) -> None:
    """`./slm nightly run` (airflow dags test: pools do not apply) with a review triggered while it runs:
    both succeed, their dbt builds never overlap (the warehouse build lock: the nightly's producer waits
    for it inside its task), the marts are consistent."""
    dsn = demo_stack.warehouse_dsn
    ticket, _ = majors[2]
    env_home = str(demo_stack.home)
    nightly = subprocess.Popen(
        [SLM, "nightly", "run", "--date", "2026-11-01", "--drop", str(demo_stack.home / "drops" / "demo")],
        env={**os.environ, "SLM_HOME": env_home},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert nightly.stdout is not None
        for line in nightly.stdout:  # trigger once the nightly is under way (its extract has ended)
            if "finished extract" in line:
                break
        run_id = _trigger(api, {"ticket_id": ticket})
        rest = nightly.communicate(timeout=1800)[0]
    finally:
        if nightly.poll() is None:
            nightly.kill()
    assert nightly.returncode == 0, rest[-3000:]
    assert _wait(api, run_id) == "success"
    # `airflow dags test` dates a run's start at its logical date, so other modules' runs of later days
    # sort before it: look through all of them, not the latest few.
    nightly_run = next(
        r
        for r in api.get("dags/slm_nightly/dagRuns?order_by=-start_date&limit=100")["dag_runs"]
        if (r["logical_date"] or "").startswith("2026-11-01")
    )
    # The task intervals may overlap (a task waiting for the lock is already running): compare the dbt runs
    # themselves. The nightly's dbt starts after the review has published, or the review's dbt starts after
    # the nightly's producer has ended.
    _, producer_end = _interval(api, "slm_nightly", nightly_run["dag_run_id"], "dbt.dbt_producer_watcher")
    nightly_dbt = _nightly_dbt_start(demo_stack.home / "logs" / "nightly-2026-11-01.log")
    events = _task_events(api, run_id, "build_publish")
    review_dbt = next(t for t, e in events if e.startswith("dbt build --select"))
    published = next(t for t, e in events if e.startswith("published "))
    assert published <= nightly_dbt or review_dbt >= producer_end, (review_dbt, published, nightly_dbt)
    assert _incident_rows(dsn, ticket)[0]
    assert_marts_consistent(dsn)


# --- the data-triggered path -----------------------------------------------------------------------------


@pytest.fixture()
def servicenow_connection(api: AirflowApi) -> Iterator:
    from tests.servicenow_fake import COMPANIES, SERVICES, FakeServiceNow

    with FakeServiceNow() as fake:
        conn = {
            "connection_id": "servicenow_default",
            "conn_type": "http",
            "host": fake.url,
            "login": fake.user,
            "password": fake.password,
            "extra": json.dumps({"client_map": COMPANIES, "service_map": SERVICES}),
        }
        resp = api.http.post(f"{api.url}/api/v2/connections", json=conn, timeout=30)
        assert resp.status_code in (200, 201), resp.text
        try:
            yield fake
        finally:
            api.http.delete(f"{api.url}/api/v2/connections/servicenow_default", timeout=30)


def test_servicenow_run_triggers_one_review_per_resolved_major_incident(
    api: AirflowApi, demo_stack: DemoStack, servicenow_connection, majors: list[tuple[str, str]]
) -> None:
    fake = servicenow_connection
    dsn = demo_stack.warehouse_dsn
    ticket = "INC9900001"
    opened = datetime(2026, 10, 20, 10, 5, tzinfo=UTC)
    fake.open_incident(ticket, opened, "ACME Europe SA", "Web shop", "ServiceDesk", "1", True)
    fake.incident(ticket)["major_incident_state"] = "accepted"
    fake.change(ticket, opened + timedelta(minutes=10), status="in_progress")
    fake.change(ticket, opened + timedelta(minutes=45), status="resolved")
    logical = "2026-10-20T11:00:00Z"  # the hourly run whose interval (10:00, 11:00] holds the updates
    try:
        resp = api.http.post(
            f"{api.url}/api/v2/dags/slm_servicenow/dagRuns", json={"logical_date": logical}, timeout=30
        )
        assert resp.status_code == 200, resp.text
        sn_run = resp.json()["dag_run_id"]
        api.http.patch(f"{api.url}/api/v2/dags/slm_servicenow", json={"is_paused": False}, timeout=30)
        for attempt in range(2):
            if attempt:  # the same interval again (a rerun): it sees the incident already reviewed
                resp = api.http.post(
                    f"{api.url}/api/v2/dags/slm_servicenow/clearTaskInstances",
                    json={
                        "dry_run": False,
                        "dag_run_id": sn_run,
                        "reset_dag_runs": True,
                        "only_failed": False,
                    },
                    timeout=30,
                )
                assert resp.status_code == 200, resp.text
                time.sleep(5)
            deadline = time.monotonic() + 900
            while (state := api.get(f"dags/slm_servicenow/dagRuns/{sn_run}")["state"]) not in TERMINAL:
                assert time.monotonic() < deadline
                time.sleep(3)
            assert state == "success"
            assert _wait(api, data_run_id(ticket)) == "success"
        reviews = [r for r in _runs(api) if r["conf"].get("ticket_id") == ticket]
        assert [r["dag_run_id"] for r in reviews] == [data_run_id(ticket)]
        assert _query(
            dsn, "select status, triggered_by from raw.incident_reviews where ticket_id = %s", (ticket,)
        ) == [("success", "data")]
        row = _query(
            dsn,
            "select client_code, service_code, is_resolved from marts.fct_major_incident"
            " where ticket_id = %s",
            (ticket,),
        )
        assert row == [("ACME", "ACME-WEB", True)]
        assert_marts_consistent(dsn)
    finally:
        api.http.patch(f"{api.url}/api/v2/dags/slm_servicenow", json={"is_paused": True}, timeout=30)
        # leave the demo warehouse as the other modules expect it: without the fake's incident
        _query(dsn, "delete from raw.ticket_events where ticket_id = %s", (ticket,))
        _query(dsn, "delete from raw.tickets where ticket_id = %s", (ticket,))
        _query(dsn, "delete from raw.incident_reviews where ticket_id = %s", (ticket,))
        # and the marts a review rebuilds, rebuilt without it (no ServiceNow source to re-extract it from);
        api.http.delete(f"{api.url}/api/v2/connections/servicenow_default", timeout=30)
        # fct_ticket_volume, not rebuilt by a review, never had it
        assert _wait(api, _trigger(api, {"ticket_id": majors[0][0]})) == "success"
