"""The real ``slm_surveys`` DAG, run with ``airflow dags test`` against the local LimeSurvey and Typeform
servers (tests/survey_fakes.py): connections from ``AIRFLOW_CONN_*`` variables, as in production; a
throw-away Airflow metadata database and warehouse on the suite's PostgreSQL (the fixture of
tests/test_servicenow_dag.py). Expected rows come from the fakes' data."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import psycopg2

from tests.survey_fakes import FakeLimeSurvey, FakeTypeform
from tests.test_servicenow_dag import AIRFLOW, airflow_home  # noqa: F401 (the module fixture)
from tests.test_survey_api import (
    T0,
    expected_limesurvey,
    limesurvey_data,
    ls_response,
    tf_item,
    typeform_data,
)

RUN = T0 + timedelta(days=2)  # this run's interval: (RUN - 1h, RUN]; the first run of a survey takes all


def _dags_test(env: dict, ls: FakeLimeSurvey, tf: FakeTypeform, log: Path, run=RUN) -> str:
    conns = {
        "AIRFLOW_CONN_SLM_LIMESURVEY": {
            "conn_type": "http",
            "host": ls.url,
            "login": ls.user,
            "password": ls.password,
            "extra": {"mappings": ["config/sources/survey_api_limesurvey_sample.yaml"]},
        },
        "AIRFLOW_CONN_SLM_TYPEFORM": {
            "conn_type": "http",
            "host": tf.url,
            "password": tf.token,
            "extra": {"mappings": ["config/sources/survey_api_typeform_sample.yaml"]},
        },
    }
    run_env = dict(env, **{k: json.dumps(v) for k, v in conns.items()})
    proc = subprocess.run(
        [AIRFLOW, "dags", "test", "slm_surveys", run.isoformat()],
        env=run_env,
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


def test_dag_pulls_both_tools_reruns_idempotently_and_continues_from_each_mark(airflow_home: dict) -> None:  # noqa: F811
    env, dsn, home = airflow_home["env"], airflow_home["warehouse"], airflow_home["home"]
    ls, tf = limesurvey_data(12), typeform_data(8)
    with ls, tf:
        _dags_test(env, ls, tf, home / "surveys1.log")
        ids = {r[0] for r in _query(dsn, "select response_id from raw.surveys")}
        want = set(expected_limesurvey(ls)) | {f"TF-{it['token']}" for it in tf.items}
        assert ids == want
        # the same interval again: nothing new, nothing duplicated
        _dags_test(env, ls, tf, home / "surveys2.log")
        batches = _query(
            dsn,
            "select source, rows_read, rows_loaded, rows_unchanged, rows_quarantined from raw.load_batches"
            " where entity = 'surveys' order by batch_id",
        )
        by_source: dict[str, list[tuple]] = {}
        for b in batches:  # the mapped tasks of one run load in any order
            by_source.setdefault(b[0], []).append(b[1:])
        assert set(by_source) == {"limesurvey_api_482915", "typeform_api_after_ticket"}
        for first, again in by_source.values():
            assert first[0] == first[1] and first[3] == 0
            # the rerun reads the interval only (the mark is past it): the unanswered invitations again
            assert again[1] == 0 and again[0] == again[2] and again[3] == 0
        # the next hour: one new answer on each side, pulled from each survey's own mark
        ls.responses[3] = ls_response(3, "tok003", RUN + timedelta(minutes=30), satis="A4")
        ls.participants[2]["completed"] = "Y"
        tf.items.append(tf_item(77, RUN + timedelta(minutes=40)))
        _dags_test(env, ls, tf, home / "surveys3.log", RUN + timedelta(hours=1))
    rows = dict(_query(dsn, "select response_id, answered_at is not null from raw.surveys"))
    assert rows["LSAPI482915-T-tok003"] is True and rows["TF-r0077tok"] is True
    assert len(rows) == len(want) + 1  # the invitation became its answer; one new Typeform response
    marks = _query(dsn, "select dag_id, max(window_end) from raw.extract_windows group by dag_id order by 1")
    assert [m[0] for m in marks] == [
        "slm_surveys:limesurvey_api_482915",
        "slm_surveys:typeform_api_after_ticket",
    ]
    assert {m[1] for m in marks} == {RUN + timedelta(hours=1)}
