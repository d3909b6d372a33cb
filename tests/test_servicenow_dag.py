"""The real ``slm_servicenow`` DAG, run with ``airflow dags test`` against the fake ServiceNow instance.

A throw-away Airflow (own AIRFLOW_HOME, metadata database on the suite's PostgreSQL) and a throw-away
warehouse; connections come from ``AIRFLOW_CONN_*`` variables, as in production. Expected rows come from the
fake's tables (which incidents' ``sys_updated_on`` falls in the window), not from the extractor.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from slm_platform.load.loader import load_drop
from slm_platform.settings import REPO_ROOT, PgServer, venv_bin
from tests.servicenow_fake import COMPANIES, SERVICES, FakeServiceNow, populate, sn_time

START = datetime(2026, 9, 1, tzinfo=UTC)
RUN = datetime(2026, 9, 1, 5, tzinfo=UTC)  # hourly interval timetable: this run covers (04:00, 05:00]
WINDOW = (RUN - timedelta(hours=1), RUN)
AIRFLOW = str(venv_bin("airflow", "airflow"))


def _create_db(pg: PgServer, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(pg.dsn("postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'create database "{name}"')
    admin.close()
    return name


def _drop_db(pg: PgServer, name: str) -> None:
    admin = psycopg2.connect(pg.dsn("postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'drop database if exists "{name}" with (force)')
    admin.close()


@pytest.fixture(scope="module")
def airflow_home(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A migrated, empty Airflow metadata database + a fresh warehouse holding the reference data."""
    meta_db = _create_db(pg_server, "af")
    wh_db = _create_db(pg_server, "wh")
    home = tmp_path_factory.mktemp("sn_dag")
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
            "GLOBEX,Globex,America/New_York,US\n"
        )
        (ref / "services.csv").write_text(
            "service_code,client_code,service_name,calendar_code,criticality\n"
            "ACME-ERP,ACME,ERP,24x7,high\nACME-WEB,ACME,Web shop,24x7,critical\n"
            "GLOBEX-CRM,GLOBEX,CRM,24x7,high\n"
        )
        load_drop(pg_server.dsn(wh_db), ref)
        yield {"env": env, "warehouse": pg_server.dsn(wh_db), "home": home}
    finally:
        _drop_db(pg_server, meta_db)
        _drop_db(pg_server, wh_db)


def _dags_test(
    env: dict, fake: FakeServiceNow, log: Path, run: datetime = RUN, conf: dict | None = None
) -> str:
    conn = {
        "conn_type": "http",
        "host": fake.url,
        "login": fake.user,
        "password": fake.password,
        # a small page size so that the run pages through the window (and the audit) several times
        "extra": {"client_map": COMPANIES, "service_map": SERVICES, "page_size": 4},
    }
    run_env = dict(env, AIRFLOW_CONN_SERVICENOW_DEFAULT=json.dumps(conn))
    cmd = [AIRFLOW, "dags", "test", "slm_servicenow", run.isoformat()]
    if conf is not None:
        cmd += ["-c", json.dumps(conf)]
    proc = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=300)
    log.write_text(proc.stdout + proc.stderr)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    finished = [line for line in out.splitlines() if "DagRun Finished" in line]
    assert finished and "state=success" in finished[-1], out[-4000:]
    return out


def _snapshot(dsn: str) -> tuple[list, list]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("select * from raw.tickets order by ticket_id")
        tickets = cur.fetchall()
        cur.execute("select * from raw.ticket_events order by ticket_id, occurred_at, field")
        events = cur.fetchall()
    conn.close()
    return tickets, events


def _batches(dsn: str) -> list[tuple]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "select entity, status, rows_read, rows_loaded, rows_unchanged, rows_quarantined "
            "from raw.load_batches where source = 'servicenow' order by batch_id"
        )
        rows = cur.fetchall()
    conn.close()
    return rows


def _in_window(fake: FakeServiceNow, window: tuple[datetime, datetime] = WINDOW) -> dict[str, dict]:
    lo, hi = sn_time(window[0]), sn_time(window[1])
    return {i["number"]: dict(i) for i in fake.tables["incident"] if lo < i["sys_updated_on"] <= hi}


def test_dag_loads_exactly_the_window_and_reruns_idempotently(airflow_home: dict) -> None:
    env, dsn, home = airflow_home["env"], airflow_home["warehouse"], airflow_home["home"]
    with FakeServiceNow() as fake:
        populate(fake, 60, START)
        # ties at both edges of the window: start is excluded, end is included
        fake.open_incident("INC2000001", WINDOW[0], "ACME Europe SA", "ERP", "ServiceDesk", "3", True)
        fake.open_incident("INC2000002", WINDOW[1], "Globex Corporation", "CRM", "ServiceDesk", "2", False)
        expected = _in_window(fake)
        assert "INC2000002" in expected and "INC2000001" not in expected
        assert 5 <= len(expected) < len(fake.tables["incident"])  # a real subset, spanning pages of 4

        _dags_test(env, fake, home / "run1.log")

        tickets, events = _snapshot(dsn)
        got = {t[0]: t for t in tickets}
        assert set(got) == set(expected)
        cols = _columns(dsn)
        for number, inc in expected.items():
            row = dict(zip(cols, got[number], strict=True))
            assert row["updated_at"] == datetime.strptime(inc["sys_updated_on"], "%Y-%m-%d %H:%M:%S").replace(
                tzinfo=UTC
            )
            assert row["priority"] == f"P{inc['priority']}"
            assert row["_source"] == "servicenow"
        # each window incident's whole history, as generated
        assert len(events) == sum(len(fake.truth[n]) for n in expected)
        assert {e[0] for e in events} == set(expected)
        landing = home / "slm" / "landing" / "servicenow" / WINDOW[0].strftime("%Y-%m-%dT%H%MZ")
        assert sorted(p.name for p in landing.iterdir()) == ["ticket_events.csv", "tickets.csv"]

        first = _batches(dsn)
        assert [b[0] for b in first] == ["tickets", "ticket_events"]
        for _entity, status, read, loaded, unchanged, quarantined in first:
            assert status == "ok" and read == loaded + unchanged + quarantined and quarantined == 0
        assert first[0][2:4] == (len(expected), len(expected))

        # The same interval again, after one of its incidents was updated past the window's end: the
        # rerun reads the same window only, so raw is unchanged (the later update belongs to the next run).
        moved = sorted(expected)[0]
        fake.change(moved, WINDOW[1] + timedelta(minutes=20), group="Carrier-X")
        _dags_test(env, fake, home / "run2.log")
        assert _snapshot(dsn) == (tickets, events)
        second = _batches(dsn)[len(first) :]
        assert [b[0] for b in second] == ["tickets", "ticket_events"]
        tickets_batch = second[0]
        assert tickets_batch[1:] == ("ok", len(expected) - 1, 0, len(expected) - 1, 0)
        assert second[1][3] == 0 and second[1][1] == "ok"


def _columns(dsn: str) -> list[str]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("select * from raw.tickets limit 0")
        names = [d.name for d in cur.description]
    conn.close()
    return names


def _windows(dsn: str) -> list[tuple]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "select interval_start, interval_end, window_start, window_end from raw.extract_windows"
            " where dag_id = 'slm_servicenow' order by recorded_at"
        )
        rows = cur.fetchall()
    conn.close()
    return rows


def test_a_scheduler_gap_is_caught_up_from_the_mark(pg_server: PgServer, airflow_home: dict) -> None:
    """Run the 05:00 interval, miss the 06:00 one (scheduler down), run 07:00: the 07:00 run extracts
    (05:00, 07:00], so the missed hour's incidents are loaded, each once; the missed interval run later
    (a backfill) re-reads exactly its own hour and changes nothing."""
    home = airflow_home["home"]
    wh_db = _create_db(pg_server, "wh_gap")  # a warehouse of its own: no mark from the other test
    try:
        dsn = pg_server.dsn(wh_db)
        load_drop(dsn, home / "ref")
        env = dict(airflow_home["env"], AIRFLOW_CONN_SLM_WAREHOUSE=dsn)
        d0, d1, d2 = RUN, RUN + timedelta(hours=1), RUN + timedelta(hours=2)
        with FakeServiceNow() as fake:
            populate(fake, 60, START)
            # the generated history leaves hours without updates: two incidents in each later hour
            for i, at in enumerate(
                (d0 + timedelta(minutes=10), d0 + timedelta(minutes=40), d1 + timedelta(minutes=15), d2)
            ):
                fake.open_incident(
                    f"INC300000{i}", at, "ACME Europe SA", "ERP", "ServiceDesk", "3", i % 2 == 0
                )
            fake.change("INC3000000", d0 + timedelta(minutes=25), status="in_progress", group="Network")
            first = _in_window(fake, (d0 - timedelta(hours=1), d0))
            missed = _in_window(fake, (d0, d1))
            last = _in_window(fake, (d1, d2))
            assert first and missed and last  # every hour has incidents, the missed one included

            _dags_test(env, fake, home / "gap_d0.log", d0)
            assert {t[0] for t in _snapshot(dsn)[0]} == set(first)
            out = _dags_test(env, fake, home / "gap_d2.log", d2)
            assert f"catch-up: missed intervals since {d0.isoformat()}" in out

            tickets, events = _snapshot(dsn)
            assert {t[0] for t in tickets} == set(first) | set(missed) | set(last)
            assert len(events) == sum(len(fake.truth[n]) for n in {*first, *missed, *last})
            # the catch-up read the gap and its own hour, not the hour before again: nothing read twice
            batches = _batches(dsn)
            assert [b[2] for b in batches if b[0] == "tickets"] == [len(first), len(missed) + len(last)]
            assert _windows(dsn) == [
                (d0 - timedelta(hours=1), d0, d0 - timedelta(hours=1), d0),
                (d1, d2, d0, d2),
            ]

            # the missed interval itself, run afterwards (a backfill): the mark is past it, so its own hour
            # only, every row unchanged
            _dags_test(env, fake, home / "gap_d1.log", d1)
            assert _snapshot(dsn) == (tickets, events)
            rerun = _batches(dsn)[len(batches) :]
            assert rerun[0] == ("tickets", "ok", len(missed), 0, len(missed), 0)
            assert _windows(dsn)[-1] == (d0, d1, d0, d1)
    finally:
        _drop_db(pg_server, wh_db)


def test_since_reaches_back_and_unknown_conf_is_refused(airflow_home: dict) -> None:
    """conf {"since": ...} widens the window back to that instant; a conf key the DAG does not take fails
    the run in validate, naming the key, before anything is extracted."""
    env, dsn, home = airflow_home["env"], airflow_home["warehouse"], airflow_home["home"]
    with FakeServiceNow() as fake:
        populate(fake, 60, START)
        since = RUN - timedelta(hours=3)
        expected = _in_window(fake, (since, RUN))
        assert len(expected) > len(_in_window(fake))
        _dags_test(env, fake, home / "since.log", conf={"since": since.isoformat()})
        assert set(expected) <= {t[0] for t in _snapshot(dsn)[0]}
        assert _windows(dsn)[-1] == (RUN - timedelta(hours=1), RUN, since, RUN)

        before, requests = _batches(dsn), fake.requests
        cmd = [AIRFLOW, "dags", "test", "slm_servicenow", RUN.isoformat(), "-c", json.dumps({"sinse": "x"})]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        out = proc.stdout + proc.stderr
        (home / "refused.log").write_text(out)
        assert "REFUSED sinse: unknown parameter: slm_servicenow takes since" in out
        finished = [line for line in out.splitlines() if "DagRun Finished" in line]
        assert finished and "state=failed" in finished[-1], out[-4000:]
        assert (_batches(dsn), fake.requests) == (before, requests)  # nothing extracted, nothing loaded
