"""Airflow on Celery for real: the nightly under the scheduler on two workers, and a worker killed mid-run.

One stack for the module (its own SLM_HOME): ``./slm stack up --only pg,airflow --executor celery`` (Redis,
two Celery workers), one month of demo data (``./slm demo generate --months 1``). Two runs of
``slm_nightly`` for the same night, each triggered through the REST API and run by the scheduler:

1. Celery, and one worker killed with SIGKILL (it and every process it started) while the run is in its dbt
   model tasks: the run still succeeds; every task that ran did so on one of the two workers and both ran
   some (task instance ``hostname`` in the metadata database: ``worker1@host`` / ``worker2@host``,
   docs/design/executors.md); the task the dead worker held failed its first try there (found by the
   scheduler's heartbeat timeout) and succeeded on the other worker.
2. LocalExecutor (``./slm stack up --executor local`` on the same stack, which restarts Airflow).

Every run publishes the same marts: per mart, row count and sum(hashtextextended(row::text, 0)) over every
column; left out, the load bookkeeping marts that each run extends by design (fct_load_batch,
fct_quarantine_reason: one row per load batch, and every run loads; as in tests/test_repeats.py).

The stack's env lowers three scheduler timings so the test is fast (they are not the stack's defaults):
``task_instance_heartbeat_timeout`` 60 s (default 300; the dead worker's running task),
``task_queued_timeout`` 120 s (default 600; a task whose message the dead worker had reserved, not started),
and no scheduled runs (``use_job_schedule`` False: only the runs the test triggers).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from slm_platform.settings import AIRFLOW_DB, WAREHOUSE_DB, PgServer
from tests.conftest import slm, stop_and_remove

DAG_ID = "slm_nightly"
NIGHT = "2026-10-21"  # covers 20 October: closes no period, so no review pack is printed
BOOKKEEPING_TABLES = {"fct_load_batch", "fct_quarantine_reason"}
PRODUCER = "dbt.dbt_producer_watcher"
TEST_ENV = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    # A message the dead worker had reserved but not started stays unacknowledged in Redis (until the
    # visibility timeout) and its task "queued": the scheduler requeues it after this (default 600 s).
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
}


def _with_env():
    """Run ``./slm`` with the test's scheduler timings in the environment the stack's processes inherit."""
    saved = {k: os.environ.get(k) for k in TEST_ENV}
    os.environ.update(TEST_ENV)

    def restore() -> None:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    return restore


def _query(dsn: str, sql: str, args: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def mart_checksums(dsn: str) -> dict[str, tuple[int, int]]:
    """(rows, sum of hashtextextended(row::text, 0)) per published mart, the bookkeeping marts left out."""
    tables = [
        t
        for (t,) in _query(
            dsn,
            "select table_name from information_schema.tables where table_schema = 'marts' order by 1",
        )
        if t not in BOOKKEEPING_TABLES
    ]
    out = {}
    for t in tables:
        (n, h), *_ = _query(
            dsn,
            f'select count(*), coalesce(sum(hashtextextended(m::text, 0)), 0) from marts."{t}" m',  # noqa: S608
        )
        out[t] = (int(n), int(h))
    return out


class Stack:
    def __init__(self, home: Path) -> None:
        from slm_platform.orchestration.incident_review import AirflowApi

        state = json.loads((home / "stack.json").read_text())
        creds = json.loads((home / "credentials.json").read_text())
        pg = state["pg"]
        server = PgServer(pg["host"], int(pg["port"]), pg["user"], pg["password"])
        self.home = home
        self.warehouse = server.dsn(WAREHOUSE_DB)
        self.meta = server.dsn(AIRFLOW_DB)
        self.api = AirflowApi(f"http://127.0.0.1:{state['airflow']['api_port']}", "admin",
                              creds["airflow_admin_password"])  # fmt: skip
        deadline = time.monotonic() + 600
        while self.api.http.get(f"{self.api.url}/api/v2/dags/{DAG_ID}", timeout=30).status_code != 200:
            assert time.monotonic() < deadline, f"{DAG_ID} never appeared in the API"
            time.sleep(3)

    def trigger(self, drop: Path, run_id: str) -> str:
        body = {"dag_run_id": run_id, "logical_date": f"{NIGHT}T00:00:00Z", "conf": {"drop": str(drop)}}
        resp = self.api.http.post(f"{self.api.url}/api/v2/dags/{DAG_ID}/dagRuns", json=body, timeout=60)
        assert resp.status_code == 200, resp.text
        return run_id

    def run(self, run_id: str) -> dict:
        return self.api.get(f"dags/{DAG_ID}/dagRuns/{run_id}")

    def wait(self, run_id: str, timeout: float = 1200) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(3)
        raise AssertionError(f"{run_id} did not finish within {timeout} s")

    def task_instances(self, run_id: str) -> list[tuple]:
        """(task_id, map_index, try_number, state, hostname) of every try: earlier tries from the history."""
        sql = (
            "select task_id, map_index, try_number, state, hostname from task_instance"
            " where dag_id = %s and run_id = %s"
            " union all select task_id, map_index, try_number, state, hostname from task_instance_history"
            " where dag_id = %s and run_id = %s order by 1, 2, 3"
        )
        return _query(self.meta, sql, (DAG_ID, run_id, DAG_ID, run_id))


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("celery_home")
    restore = _with_env()
    try:
        started = time.monotonic()
        slm(home, "stack", "up", "--only", "pg,airflow", "--executor", "celery", timeout=900)
        up_seconds = time.monotonic() - started
        drop = home / "drops" / "celery"
        slm(home, "demo", "generate", "--months", "1", "--out", str(drop))
        stack = Stack(home)
        yield {"home": home, "drop": drop, "stack": stack, "sums": {}, "up_seconds": up_seconds}
    finally:
        restore()
        stop_and_remove(home)


def _seconds(run: dict) -> float:
    from datetime import datetime

    start, end = (datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in ("start_date", "end_date"))
    return round((end - start).total_seconds(), 1)


def _workers(home: Path) -> dict[str, int]:
    return {
        p.stem.removeprefix("airflow-celery-"): int(p.read_text())
        for p in (home / "run").glob("airflow-celery-*.pid")
    }


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def test_nightly_on_two_celery_workers_survives_a_killed_worker(celery_stack: dict, record_property) -> None:
    stack: Stack = celery_stack["stack"]
    home = celery_stack["home"]
    run_id = stack.trigger(celery_stack["drop"], "celery_1")
    # Wait for the dbt models' tasks (after the producer's build): a model task running on a worker.
    deadline = time.monotonic() + 1200
    victim = None
    while victim is None:
        assert time.monotonic() < deadline, "no dbt model task ever ran"
        assert stack.run(run_id)["state"] in ("queued", "running"), stack.run(run_id)
        for task_id, _m, try_number, state, host in stack.task_instances(run_id):
            if task_id.startswith("dbt.") and task_id != PRODUCER and state == "running" and host:
                victim = (task_id, try_number, host)
                break
        else:
            time.sleep(0.5)
    task_id, _, host = victim
    worker = host.split("@")[0]
    pid = _workers(home)[worker]
    doomed = {pid, *_descendants(pid)}
    killed_at = time.monotonic()
    for p in doomed:  # the worker and everything it started, as if its machine went away
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    print(f"killed {worker} (pids {sorted(doomed)}) while it ran {task_id}")
    run = stack.wait(run_id)
    waited = round(time.monotonic() - killed_at, 1)
    assert run["state"] == "success", run
    tis = stack.task_instances(run_id)

    # every task that ran, ran on one of the two workers, and both ran some
    ran = [t for t in tis if t[3] == "success" and t[4]]  # EmptyOperators succeed without a worker
    per_worker = {w: sum(1 for *_, h in ran if h.startswith(f"{w}@")) for w in ("worker1", "worker2")}
    assert len(ran) > 20 and sum(per_worker.values()) == len(ran), (per_worker, len(ran))
    assert all(n > 0 for n in per_worker.values()), per_worker

    # the dead worker's task: its first try failed there, a later one succeeded on the other worker
    tries = [t for t in tis if t[0] == task_id]
    retried = sorted({t[0] for t in tis if t[2] > 1})
    print(f"tasks with more than one try: {retried}")
    record_property("retried", retried)
    print(f"celery run: {_seconds(run)} s, {len(ran)} task instances, per worker {per_worker}")
    print(f"tries of {task_id}: {tries}; the run finished {waited} s after the kill")
    record_property("celery_seconds", _seconds(run))
    record_property("per_worker", per_worker)
    record_property(
        "killed", {"worker": worker, "task": task_id, "tries": [list(t) for t in tries], "waited": waited}
    )
    first = [t for t in tries if t[2] == 1]
    last = max(tries, key=lambda t: t[2])
    assert first and first[0][4].startswith(f"{worker}@") and first[0][3] != "success", tries
    assert last[3] == "success" and last[4] and not last[4].startswith(f"{worker}@"), tries
    celery_stack["sums"]["celery"] = mart_checksums(stack.warehouse)


def test_local_executor_run_publishes_the_same_marts(celery_stack: dict, record_property) -> None:
    home = celery_stack["home"]
    restore = _with_env()
    try:
        slm(home, "stack", "up", "--only", "pg,airflow", "--executor", "local", timeout=900)
    finally:
        restore()
    st = json.loads(slm(home, "stack", "status", "--json").stdout)
    assert st["airflow"]["executor"] == "LocalExecutor" and st["airflow"]["workers"] == {}
    assert not _workers(home)
    stack = Stack(home)
    # A night has one run in Airflow 3 (unique logical date): the Celery run's record goes, its marts stay.
    resp = stack.api.http.delete(f"{stack.api.url}/api/v2/dags/{DAG_ID}/dagRuns/celery_1", timeout=60)
    assert resp.status_code == 204, resp.text
    run = stack.wait(stack.trigger(celery_stack["drop"], "local_1"))
    assert run["state"] == "success", run
    hosts = {h for *_, h in stack.task_instances("local_1") if h}
    assert not any("@" in h for h in hosts), hosts  # not a Celery worker's name
    local = mart_checksums(stack.warehouse)
    print(f"local run: {_seconds(run)} s; marts compared: {len(local)}")
    record_property("local_seconds", _seconds(run))
    assert sum(1 for n, _ in local.values() if n > 0) >= 10
    assert local == celery_stack["sums"]["celery"]
