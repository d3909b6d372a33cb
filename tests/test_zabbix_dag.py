"""The real ``slm_zabbix`` DAG, run with ``airflow dags test`` against the local Zabbix JSON-RPC server.

A throw-away Airflow (own AIRFLOW_HOME, metadata on the suite's PostgreSQL) and warehouse; the connection
``slm_zabbix`` from an ``AIRFLOW_CONN_*`` variable (host + extra api_token + mapping), as in production.
One hour runs, the next is missed (scheduler down), the third catches it up from the DAG's mark: the problem
the first run left open gets its end from the recovery read in the caught-up hour; a rerun changes nothing.
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
import yaml

from slm_platform.load.loader import load_drop
from slm_platform.settings import REPO_ROOT, PgServer, venv_bin
from tests.conftest import query_dicts
from tests.zabbix_fake import FakeZabbix

AIRFLOW = str(venv_bin("airflow", "airflow"))
RUN = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
D0 = RUN - timedelta(hours=2)  # the run at D0 covers [D0 - 1 h, D0); the one at D0 + 1 h is missed


def _ts(dt: datetime) -> int:
    return int(dt.timestamp())


def _db(pg: PgServer, name: str, drop: bool = False) -> None:
    admin = psycopg2.connect(pg.dsn("postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'drop database if exists "{name}" with (force)' if drop else f'create database "{name}"')
    admin.close()


@pytest.fixture(scope="module")
def setting(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    meta_db, wh_db = f"af_{uuid.uuid4().hex[:10]}", f"wh_{uuid.uuid4().hex[:10]}"
    _db(pg_server, meta_db)
    _db(pg_server, wh_db)
    home = tmp_path_factory.mktemp("zabbix_dag")
    z = FakeZabbix(version="7.0.5")
    z.hosts = {"101": "erp-web-01", "301": "lab-01"}
    z.groups = {"ACME/ERP": ["101"]}
    first = D0 - timedelta(hours=1)
    left_open = z.add_problem("101", _ts(first) + 1800, None)  # recovered in the missed hour
    z.add_problem("101", _ts(D0) + 600, _ts(D0) + 900)  # inside the missed hour
    z.add_problem("101", _ts(RUN) - 1200, None)  # still open at the last run's end
    z.add_problem("301", _ts(D0) + 60, _ts(D0) + 120)  # unmapped: quarantined
    mapping = home / "zabbix.yaml"
    mapping.write_text(
        yaml.safe_dump({"services": [{"service_code": "ACME-ERP", "host_groups": ["ACME/ERP"]}]})
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))
    }
    with z:
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
                "AIRFLOW_CONN_SLM_ZABBIX": json.dumps(
                    {
                        "conn_type": "http",
                        "host": z.url.removesuffix("/api_jsonrpc.php"),
                        "extra": {"api_token": z.token, "mapping": str(mapping)},
                    }
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
            (ref / "clients.csv").write_text("client_code,client_name,timezone,country\nACME,ACME,UTC,FR\n")
            (ref / "services.csv").write_text(
                "service_code,client_code,service_name,calendar_code,criticality\nACME-ERP,ACME,ERP,24x7,high\n"
            )
            load_drop(pg_server.dsn(wh_db), ref)
            yield {
                "env": env,
                "warehouse": pg_server.dsn(wh_db),
                "home": home,
                "fake": z,
                "left_open": left_open,
            }
        finally:
            _db(pg_server, meta_db, drop=True)
            _db(pg_server, wh_db, drop=True)


def _dags_test(env: dict, log: Path, run: datetime) -> str:
    proc = subprocess.run(
        [AIRFLOW, "dags", "test", "slm_zabbix", run.isoformat()],
        env=env,
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


def _outages(dsn: str) -> list[tuple]:
    rows = query_dicts(
        dsn, "select started_at, ended_at from raw.outages where service_code = 'ACME-ERP' order by 1"
    )
    return [(r["started_at"], r["ended_at"]) for r in rows]


def test_hourly_runs_catch_up_a_gap_close_open_problems_and_rerun_idempotently(setting: dict) -> None:
    env, dsn, home = setting["env"], setting["warehouse"], setting["home"]
    first = D0 - timedelta(hours=1)
    _dags_test(env, home / "d0.log", D0)
    assert _outages(dsn) == [(first + timedelta(minutes=30), None)]  # open at the window's end
    setting["fake"].recover(setting["left_open"], _ts(D0) + 300)  # recovered during the missed hour
    out = _dags_test(env, home / "run.log", RUN)
    assert f"catch-up: missed intervals since {D0.isoformat()}" in out
    expected = [
        (first + timedelta(minutes=30), D0 + timedelta(minutes=5)),  # closed by the caught-up hour
        (D0 + timedelta(minutes=10), D0 + timedelta(minutes=15)),
        (RUN - timedelta(minutes=20), None),
    ]
    assert _outages(dsn) == expected
    windows = query_dicts(
        dsn,
        "select window_start, window_end from raw.extract_windows where dag_id = 'slm_zabbix'"
        " order by recorded_at",
    )
    assert [(w["window_start"], w["window_end"]) for w in windows] == [(first, D0), (D0, RUN)]
    q = query_dicts(dsn, "select count(*) as n from raw.quarantine where entity = 'outages'")
    assert q[0]["n"] == 1  # lab-01's problem, once
    # the same interval again: same window, nothing changes
    _dags_test(env, home / "rerun.log", RUN)
    assert _outages(dsn) == expected
    batches = query_dicts(
        dsn,
        "select rows_loaded from raw.load_batches where source = 'zabbix' and entity = 'outages'"
        " order by batch_id",
    )
    assert batches[-1]["rows_loaded"] == 0
