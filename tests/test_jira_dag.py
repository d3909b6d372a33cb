"""The real ``slm_jira`` DAG, run with ``airflow dags test`` against the local Jira/JSM server
(tests/jira_fake.py): connection ``slm_jira`` from an ``AIRFLOW_CONN_*`` variable, as in production; a
throw-away Airflow metadata database and warehouse on the suite's PostgreSQL (the fixture of
tests/test_servicenow_dag.py). Expected rows come from the fake's generated truth."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2

from tests.jira_fake import FakeJira, change, populate
from tests.test_servicenow_dag import AIRFLOW, airflow_home  # noqa: F401 (the module fixture)

START = datetime(2026, 10, 15, tzinfo=UTC)
RUN = datetime(2026, 11, 20, 5, tzinfo=UTC)  # interval (04:00, 05:00]


def _dags_test(env: dict, fake: FakeJira, log: Path, run: datetime = RUN, conf: dict | None = None) -> str:
    conn = {
        "conn_type": "http",
        "host": fake.url,
        "login": fake.email,
        "password": fake.api_token,
        "extra": {"mapping": "config/sources/jira_sample.yaml", "page_size": 7},
    }
    cmd = [AIRFLOW, "dags", "test", "slm_jira", run.isoformat()]
    if conf is not None:
        cmd += ["-c", json.dumps(conf)]
    proc = subprocess.run(
        cmd,
        env=dict(env, AIRFLOW_CONN_SLM_JIRA=json.dumps(conn)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    log.write_text(out)
    assert proc.returncode == 0, out[-4000:]
    finished = [line for line in out.splitlines() if "DagRun Finished" in line]
    assert finished and "state=success" in finished[-1], out[-4000:]
    return out


def _query(dsn: str, sql: str) -> list[tuple]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
    conn.close()
    return rows


def test_dag_extracts_since_reruns_idempotently_and_continues_from_its_mark(airflow_home: dict) -> None:  # noqa: F811
    env, dsn, home = airflow_home["env"], airflow_home["warehouse"], airflow_home["home"]
    with FakeJira(max_page=5, embedded_limit=4) as fake:
        populate(fake, 30, START, seed=9)
        # first run: everything since START (the since param), up to the interval's end
        _dags_test(env, fake, home / "jira1.log", conf={"since": START.isoformat()})
        tickets = {
            r[0]: r[1:] for r in _query(dsn, "select ticket_id, status, assignment_group from raw.tickets")
        }
        assert set(tickets) == set(fake.expected)
        for key, exp in fake.expected.items():
            assert tickets[key] == (exp["status"], exp["assignment_group"]), key
        n_events = sum(len(v) for v in fake.truth.values())
        assert _query(dsn, "select count(*) from raw.ticket_events")[0][0] == n_events
        landing = Path(env["SLM_HOME"]) / "landing" / "jira" / "2026-11-20T0400Z"
        assert (landing / "tickets.csv").exists() and (
            landing.with_name(landing.name + ".jsm") / "jsm_sla.csv"
        ).exists()
        # the same interval again: nothing new, nothing duplicated
        _dags_test(env, fake, home / "jira2.log", conf={"since": START.isoformat()})
        assert _query(dsn, "select count(*) from raw.tickets")[0][0] == 30
        assert _query(dsn, "select count(*) from raw.ticket_events")[0][0] == n_events
        # two hours later (one interval missed): the run extracts from the mark, the change is loaded
        open_one = next(k for k, e in sorted(fake.expected.items()) if e["status"] == "in_progress")
        change(fake, open_one, RUN + timedelta(minutes=20), status="resolved", team="Network"
               if fake.expected[open_one]["assignment_group"] != "Network" else "Carrier-X")  # fmt: skip
        _dags_test(env, fake, home / "jira3.log", run=RUN + timedelta(hours=2))
    assert _query(dsn, f"select status from raw.tickets where ticket_id = '{open_one}'") == [("resolved",)]
    assert _query(dsn, "select count(*) from raw.ticket_events")[0][0] == n_events + 2
    windows = _query(dsn, "select window_start, window_end from raw.extract_windows where dag_id = 'slm_jira'"
                     " order by recorded_at")  # fmt: skip
    assert windows[-1] == (RUN, RUN + timedelta(hours=2))
