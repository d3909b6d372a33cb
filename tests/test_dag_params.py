"""Every DAG's parameters are typed and every refusal names the key and why.

Where each refusal happens (docs/design/orchestration.md): a value of the wrong type or shape is refused by
Airflow's Params when the run is created (REST API: 400 naming the param, and no run; CLI ``airflow dags
trigger``: an error naming it, and no run). A conf key no param declares is accepted by Airflow 3.3 (it
becomes an untyped param), so each DAG's first task, ``validate``, refuses it by name and fails the run
before anything else runs: shown through the REST API (the run's validate log) and the CLI (``airflow dags
test``, what ``./slm nightly run`` runs).

The REST and CLI tests run against the suite's stack (PostgreSQL + Airflow's api-server, scheduler,
dag-processor, triggerer), started by ``./slm stack up --only pg,airflow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slm_platform.orchestration import dag_params, extract_windows
from slm_platform.orchestration.incident_review import AirflowApi, api_error
from slm_platform.settings import REPO_ROOT, venv_bin
from tests.conftest import slm

AIRFLOW = str(venv_bin("airflow", "airflow"))
DAGS = ("slm_nightly", "slm_servicenow", "slm_prometheus", "slm_incident_review")
# One malformed value per DAG: (conf, the param Airflow must name).
BAD_VALUES = {
    "slm_nightly": ({"full_gate": "false"}, "full_gate"),  # a string: it used to turn the gate ON
    "slm_servicenow": ({"since": "yesterday"}, "since"),
    "slm_prometheus": ({"since": "2026-11-01T00:00:00"}, "since"),  # no zone: it would have to be guessed
    "slm_incident_review": ({"ticket_id": "INC 1; drop"}, "ticket_id"),
}


# --- the DAGs' declarations and the shared check, without a server ------------------------------------


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    from airflow.dag_processing.dagbag import DagBag

    from slm_platform.transform import dbt_runner

    dbt_runner.dbt_parse()  # Cosmos renders the nightly's dbt group from the manifest
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


def test_every_dag_has_typed_params_and_validates_first(dagbag) -> None:
    assert set(DAGS) <= set(dagbag.dags)
    for dag_id in DAGS:
        dag = dagbag.dags[dag_id]
        assert dag.params, dag_id
        for name in dag.params:
            param = dag.params.get_param(name)
            assert param.schema.get("type"), f"{dag_id}.{name} has no JSON-schema type"
            assert param.description, f"{dag_id}.{name} is not described"  # the UI form shows it
        # validate is the only root: nothing runs before the conf is checked
        assert [t.task_id for t in dag.roots] == ["validate"], dag_id


def test_airflow_refuses_bad_values_naming_the_param(dagbag) -> None:
    """The params as the server holds them (the DAG serialised and read back, as the api-server and the
    scheduler get it): each malformed value is refused naming its param; the defaults pass."""
    from airflow.exceptions import ParamValidationError
    from airflow.serialization.serialized_objects import DagSerialization

    for dag_id, (conf, name) in BAD_VALUES.items():
        served = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.dags[dag_id])).params
        with pytest.raises(ParamValidationError, match=f"Invalid input for param {name}"):
            served.deep_merge(conf).validate()
        if dag_id != "slm_incident_review":  # its ticket_id has no default: a run must name one
            served.deep_merge({}).validate()
        # a key no param declares is NOT refused by Airflow 3.3 (hence the validate task)
        served.deep_merge(
            {**({"ticket_id": "INC1"} if dag_id == "slm_incident_review" else {}), "nope": 1}
        ).validate()


def test_check_conf_names_unknown_keys_and_bad_values() -> None:
    with pytest.raises(dag_params.Refused) as exc:
        dag_params.check_conf(
            "slm_nightly",
            {"ful_gate": True, "full_gate": "false", "drop": ""},
            dag_params.NIGHTLY,
            dag_params.NIGHTLY_DEFAULTS,
        )
    assert exc.value.problems == [
        ("ful_gate", "unknown parameter: slm_nightly takes drop, full_gate"),
        ("drop", "'' should be non-empty"),
        ("full_gate", "'false' is not of type 'boolean'"),
    ]
    values = dag_params.check_conf(
        "slm_nightly", {"full_gate": True}, dag_params.NIGHTLY, dag_params.NIGHTLY_DEFAULTS
    )
    assert values == {"drop": None, "full_gate": True}
    assert dag_params.check_conf("slm_prometheus", None, dag_params.EXTRACT, dag_params.EXTRACT_DEFAULTS) == {
        "since": None
    }


def test_extract_window_plan() -> None:
    h = timedelta(hours=1)
    start = datetime(2026, 11, 1, 5, tzinfo=UTC)
    end = start + h
    plan = extract_windows.plan
    assert (plan(start, end, None).start, plan(start, end, None).end) == (start, end)  # first run
    assert plan(start, end, start).start == start  # the previous interval was extracted: no gap
    assert plan(start, end, end).start == start  # a rerun of an old interval: the interval only
    gap = plan(start, end, start - 3 * h)
    assert (gap.start, gap.end) == (start - 3 * h, end) and gap.notes  # a gap: from the mark
    cut = plan(start, end, start - 10 * h, max_back_seconds=4 * 3600)
    assert cut.start == start - 4 * h and "NOT extracted" in cut.notes[0]  # beyond retention: said
    assert plan(start, end, start, since=start - 2 * h).start == start - 2 * h
    assert plan(start, end, start - 3 * h, since=start - 2 * h).start == start - 3 * h  # the earliest
    with pytest.raises(ValueError, match="since"):
        plan(start, end, start, since=start - 5 * h, max_back_seconds=4 * 3600)
    odd = start - timedelta(minutes=59, seconds=30)
    assert plan(start, end, odd, step_seconds=60).start == start - timedelta(minutes=60)  # on the step grid


# --- through a running Airflow: REST API and CLI --------------------------------------------------------


@pytest.fixture(scope="module")
def airflow(stack_home: Path, pg_server) -> Iterator[dict]:
    """The suite's stack with Airflow up; the env of its CLI and an admin REST client."""
    slm(stack_home, "stack", "up", "--only", "pg,airflow", timeout=900)
    old = os.environ.get("SLM_HOME")
    os.environ["SLM_HOME"] = str(stack_home)
    try:
        from slm_platform.ops import stack

        env = stack.airflow_env()
        creds = stack.credentials()
    finally:
        if old is None:
            os.environ.pop("SLM_HOME", None)
        else:
            os.environ["SLM_HOME"] = old
    api = AirflowApi(env["AIRFLOW__API__BASE_URL"], "admin", creds["airflow_admin_password"])
    deadline = time.monotonic() + 600
    for dag_id in DAGS:  # the dag-processor serialises the DAGs after start: wait for each
        while api.http.get(f"{api.url}/api/v2/dags/{dag_id}", timeout=30).status_code != 200:
            assert time.monotonic() < deadline, f"{dag_id} never appeared in the API"
            time.sleep(3)
    yield {"env": env, "api": api, "home": stack_home}


def _runs(api: AirflowApi, dag_id: str) -> list[dict]:
    return api.get(f"dags/{dag_id}/dagRuns?limit=100")["dag_runs"]


def _post(api: AirflowApi, dag_id: str, conf: dict):
    return api.http.post(
        f"{api.url}/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf}, timeout=60
    )


def _wait(api: AirflowApi, dag_id: str, run_id: str, timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = api.get(f"dags/{dag_id}/dagRuns/{run_id}")["state"]
        if state in ("success", "failed"):
            return state
        time.sleep(3)
    raise AssertionError(f"{dag_id} {run_id} did not finish in {timeout} s")


def _task_states(api: AirflowApi, dag_id: str, run_id: str) -> dict[str, str | None]:
    """Every task instance of the run (paged: the nightly has more than a page of dbt tasks)."""
    states: dict[str, str | None] = {}
    while True:
        page = api.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100&offset={len(states)}")
        states |= {t["task_id"]: t["state"] for t in page["task_instances"]}
        if not page["task_instances"] or len(states) >= page["total_entries"]:
            return states


def _log(api: AirflowApi, dag_id: str, run_id: str, task_id: str) -> str:
    resp = api.http.get(
        f"{api.url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1",
        headers={"Accept": "application/json"},
        timeout=30,
    )
    resp.raise_for_status()
    return "\n".join(c.get("event", "") if isinstance(c, dict) else str(c) for c in resp.json()["content"])


def test_rest_api_refuses_bad_values_with_400_naming_the_param(airflow: dict) -> None:
    api = airflow["api"]
    for dag_id, (conf, name) in BAD_VALUES.items():
        before = len(_runs(api, dag_id))
        resp = _post(api, dag_id, conf)
        assert resp.status_code == 400, (dag_id, resp.status_code, resp.text)
        assert f"Invalid input for param {name}" in api_error(resp), (dag_id, resp.text)
        assert len(_runs(api, dag_id)) == before, dag_id  # refused before a run exists


def test_rest_api_run_with_an_unknown_key_is_refused_by_validate(airflow: dict) -> None:
    """Airflow 3.3 accepts a conf key no param declares (200, a run); the run fails in validate, whose log
    names the key, and nothing after it runs. On the nightly, whose schedule is paused on creation: the
    test unpauses it, so the scheduler also creates the latest scheduled run (which fails in extract: no
    drop configured); the manual run is followed whatever order the two take."""
    api = airflow["api"]
    for dag_id, conf, key in (
        ("slm_incident_review", {"ticket_id": "INC0000001", "windw_to": "2026-11-01T00:00:00Z"}, "windw_to"),
        ("slm_nightly", {"ful_gate": True}, "ful_gate"),
    ):
        resp = _post(api, dag_id, conf)
        assert resp.status_code == 200, resp.text
        run_id = resp.json()["dag_run_id"]
        api.http.patch(f"{api.url}/api/v2/dags/{dag_id}", json={"is_paused": False}, timeout=30)
        try:
            assert _wait(api, dag_id, run_id) == "failed"
        finally:
            if dag_id != "slm_incident_review":  # scheduled DAGs stay paused on the suite's stack
                api.http.patch(f"{api.url}/api/v2/dags/{dag_id}", json={"is_paused": True}, timeout=30)
        assert f"REFUSED {key}: unknown parameter: {dag_id} takes" in _log(api, dag_id, run_id, "validate")
        # nothing else ran: upstream_failed, or skipped (the nightly's Cosmos watcher tasks skip when their
        # producer never ran), or not scheduled at all
        states = _task_states(api, dag_id, run_id)
        ran = {t: state for t, state in states.items() if state not in (None, "upstream_failed", "skipped")}
        # the review's record_failure runs on any failure (it marks the run's review row, here none)
        expected = {"validate": "failed"} | (
            {"record_failure": "success"} if dag_id == "slm_incident_review" else {}
        )
        assert ran == expected, (dag_id, ran)
        assert states["extract"] == "upstream_failed", dag_id


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=600)


def test_cli_trigger_refuses_bad_values_naming_the_param(airflow: dict) -> None:
    api, env = airflow["api"], airflow["env"]
    for dag_id, (conf, name) in BAD_VALUES.items():
        before = len(_runs(api, dag_id))
        proc = _cli(env, "dags", "trigger", dag_id, "-c", json.dumps(conf))
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out[-3000:]
        assert f"Invalid input for param {name}" in out, out[-3000:]
        assert len(_runs(api, dag_id)) == before, dag_id


def test_cli_dags_test_refuses_an_unknown_key_in_validate(airflow: dict) -> None:
    """``airflow dags test`` (what ``./slm nightly run`` runs) with a misspelt key: validate fails naming
    it and why, nothing else runs, and the warehouse is not touched (no load batch)."""
    env = airflow["env"]
    proc = _cli(
        env,
        "dags",
        "test",
        "slm_nightly",
        "2026-11-02",
        "-c",
        json.dumps({"drop": "/nonexistent", "fullgate": 1}),
    )
    out = proc.stdout + proc.stderr
    (airflow["home"] / "dags_test_refused.log").write_text(out)
    assert "REFUSED fullgate: unknown parameter: slm_nightly takes drop, full_gate" in out, out[-4000:]
    finished = [line for line in out.splitlines() if "DagRun Finished" in line]
    assert finished and "state=failed" in finished[-1], out[-4000:]
    # extract would have failed on the missing drop folder: it never ran
    assert "drop folder /nonexistent does not exist" not in out
