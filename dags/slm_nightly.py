"""Nightly pipeline: extract → load (raw) + contracts → quality gate (GX) → dbt build (Cosmos) → publish →
review packs (on the runs that close a month, quarter or year) and the dashboards' cache warm-up.

The dbt part is ONE `dbt build` (Cosmos watcher mode) with a task per model and per model's tests that
reports its outcome; dbt gets `--vars as_of: <data_interval_end>` as the cut-off of open clocks.

Every task is keyed on the run's data interval and idempotent: a rerun of the same night loses nothing and
duplicates nothing. Heavy imports (loader, GX) happen inside the tasks, not at parse time.

Params (typed, checked by Airflow when a run is created): ``drop`` (folder to extract from, default
SLM_DROP_DIR) and ``full_gate`` (boolean: the string "false" is refused, not read as true). The first task,
``validate``, refuses any other conf key by name before anything runs (slm_platform.orchestration.dag_params).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import TriggerRule, dag, get_current_context, task
from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable
from cosmos import DbtTaskGroup, ExecutionConfig, ProjectConfig, RenderConfig
from cosmos.constants import (
    PRODUCER_WATCHER_TASK_ID,
    ExecutionMode,
    InvocationMode,
    LoadMode,
    TestBehavior,
)

from slm_platform.orchestration import dag_params
from slm_platform.orchestration.incident_review import release_build_lock, take_build_lock
from slm_platform.orchestration.warehouse import dbt_profile, warehouse_dsn

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "slm_nightly"
DBT_PROJECT = Path(os.environ.get("SLM_DBT_PROJECT", REPO / "dbt_project"))
DBT_EXECUTABLE = os.environ.get("SLM_DBT_EXECUTABLE", str(REPO / ".venvs" / "dbt" / "bin" / "dbt"))
# The cut-off of every "still open" clock: the end of the run's data interval, not the latest loaded
# timestamp, so a rerun of the same night computes the same figures whatever was loaded since.
DBT_VARS = {"as_of": "{{ data_interval_end.isoformat() }}"}
# Shared with slm_incident_review: one dbt build or publish at a time
# (slm_platform.orchestration.incident_review.POOL).
MARTS_BUILD_POOL = "slm_marts_build"

default_args = {"owner": "slm", "retries": 1, "retry_delay": timedelta(seconds=30)}
log = logging.getLogger(__name__)


def _consumers_after_producer(group) -> None:
    """Start the per-model watcher tasks once the producer's `dbt build` has finished.

    Cosmos starts them alongside the producer in a task group; `airflow dags test` (what `./slm run
    nightly` uses) runs one task at a time in no fixed order, and a watcher run before the producer would
    wait for it forever. Cosmos' DbtDag does the same: producer upstream of the roots, which run whatever
    its outcome (ONE_DONE: success or failed, not upstream_failed) to report each model's own status.
    The group's only root is then the producer, so the gate and the contracts feed it alone.
    """
    producer = next(t for t in group.get_roots() if t.task_id.endswith(f".{PRODUCER_WATCHER_TASK_ID}"))
    for root in list(group.get_roots()):
        if root is not producer:
            producer >> root
            root.trigger_rule = TriggerRule.ONE_DONE


@dag(
    dag_id=DAG_ID,
    # An interval timetable: the run for day D covers [D, D+1) and starts after midnight, so every task
    # is keyed on the day it loads (a cron trigger would give a zero-length interval).
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["slm", "nightly", "sla"],
    doc_md=__doc__,
    params=dag_params.params(dag_params.NIGHTLY, dag_params.NIGHTLY_DEFAULTS),
)
def slm_nightly() -> None:
    @task
    def extract(conf: dict) -> str:
        """Copy the night's source files into a landing folder named after the data interval."""
        from slm_platform.sources.canonical_drop import land_drop

        ctx = get_current_context()
        drop = conf["drop"] or os.environ.get("SLM_DROP_DIR")
        home = Path(os.environ.get("SLM_HOME", REPO / ".slm"))
        return str(land_drop(drop, home / "landing", ctx["data_interval_start"]))

    @task
    def load(landing: str) -> list[dict]:
        from slm_platform.load.loader import load_drop

        results = load_drop(warehouse_dsn(), Path(landing), source="canonical")
        return [r.reconciliation() for r in results]

    @task
    def load_contracts(landing: str) -> dict[str, int]:
        """The contract catalogue (SLAs, OLAs, UCs, calendars): from the drop if it brings one, else the
        configured catalogue. An invalid catalogue fails the run before anything is computed from it."""
        from slm_platform.contracts.load import DEFAULT_CATALOGUE, load_contracts

        in_drop = Path(landing) / "contracts.yaml"
        path = in_drop if in_drop.exists() else Path(os.environ.get("SLM_CONTRACTS", DEFAULT_CATALOGUE))
        return load_contracts(warehouse_dsn(), path)

    @task(retries=0)
    def check_raw(conf: dict) -> dict:
        """Quality gate on raw data (tickets, checks, surveys): every checkpoint runs, and a failed
        expectation in any of them stops the run before dbt, naming all that failed.

        Checks are validated by window: the load batches above the last passed window, up to the last one
        loaded, recorded under the run's data interval (a rerun validates the same batches; a failed window
        moves nothing). Trigger with conf {"full_gate": true} to validate them whole instead (a boolean:
        the validated conf, never a truthy string)."""
        from slm_platform.gate.quality import raise_on_any_failure, run_gate

        ctx = get_current_context()
        gate = run_gate(warehouse_dsn(), ctx["data_interval_start"].isoformat(), full=conf["full_gate"])
        log.info(
            f"quality gate {gate.run_key}: load batches ({gate.after_batch}, {gate.through_batch}]"
            + (" (full check)" if gate.full_check else "")
            + (" (window recorded by an earlier attempt)" if gate.rerun else "")
        )
        results = raise_on_any_failure(gate.results)
        return {
            "batches": [gate.after_batch, gate.through_batch],
            "full_check": gate.full_check,
            **{r.checkpoint: r.evaluated for r in results},
        }

    # Watcher mode: ONE `dbt build` (the producer, dbt's own threads) instead of one dbt process per model,
    # while every model and its tests keep an Airflow task that reports what that build did to them.
    dbt = DbtTaskGroup(
        group_id="dbt",
        project_config=ProjectConfig(
            dbt_project_path=DBT_PROJECT,
            manifest_path=DBT_PROJECT / "target" / "manifest.json",
            install_dbt_deps=False,
        ),
        # The slm_warehouse connection mapped to the project's profile (slm_platform.orchestration.warehouse).
        profile_config=dbt_profile(DBT_PROJECT),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER,
            dbt_executable_path=DBT_EXECUTABLE,
            invocation_mode=InvocationMode.SUBPROCESS,
            # A producer retry would not rebuild: Cosmos skips it, and the skip would let publish through
            # while a failed test is only reported by its own task. No retry: a failed build fails the run.
            # The pool (one slot) and the warehouse build lock (taken by `dags test` runs too, which ignore
            # pools) keep an incident review's dbt build from running at the same time (incident_review.py).
            setup_operator_args={
                "retries": 0,
                "pool": MARTS_BUILD_POOL,
                "pre_execute": take_build_lock,
                "post_execute": release_build_lock,
            },
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            invocation_mode=InvocationMode.SUBPROCESS,
            # The producer's `dbt build` runs every test right after its model (TestBehavior.BUILD has no
            # watcher operator); AFTER_EACH gives each model a task that fails when one of its tests failed
            # (a multi-parent test counts for each parent, so none is detached).
            test_behavior=TestBehavior.AFTER_EACH,
            should_detach_multiple_parents_tests=False,
            dbt_executable_path=DBT_EXECUTABLE,
            # No Asset per model: nothing is scheduled on them (docs/design/orchestration.md, "Assets").
            emit_datasets=False,
        ),
        operator_args={"vars": DBT_VARS},
    )
    _consumers_after_producer(dbt)

    @task(
        retries=0,
        pool=MARTS_BUILD_POOL,
        pre_execute=take_build_lock,
        post_execute=release_build_lock,
    )
    def publish() -> None:
        """Swap the freshly built and tested marts into the schema dashboards read, atomically."""
        from slm_platform.transform.publish import publish_marts

        publish_marts(warehouse_dsn())

    @task
    def review_packs() -> list[dict]:
        """The service review packs of the periods this run closes, for every client, both editions: the
        run whose data interval ends on the 1st of a month closes that month (and the quarter on the 1st of
        a quarter, the year on 1 January); other runs build nothing. Files are replaced and registry rows
        upserted, so a rerun of the night gives the same packs (generated_at aside)."""
        from slm_platform.reports.review_pack import build_closed_period_packs

        ctx = get_current_context()
        home = Path(os.environ.get("SLM_HOME", REPO / ".slm"))
        results = build_closed_period_packs(
            warehouse_dsn(), ctx["data_interval_end"].date(), home / "reports", log=log.info
        )
        return [
            {"client": r.client_code, "period": r.period.label, "edition": r.edition, "pdf": str(r.pdf_path)}
            for r in results
        ]

    @task
    def warm_dashboards() -> dict:
        """Empty Superset's chart-data cache and refill it for every client's dashboards, each with that
        client's row-level security, so the first view after the night is served from the cache.

        Runs beside review_packs, after publish, and never fails the run: the marts are published whatever
        happens here. A chart that was not warmed runs its query on its first view; if even the emptying
        failed, the cache may serve the previous marts until a warm-up runs (26 h at most).
        A chart that fails to warm, or a Superset that cannot be reached (two attempts, 20 s apart), is a
        WARNING in this task's log naming what to do (`./slm superset warm` warms by hand). No `slm_superset`
        connection (a stack without Superset): nothing to warm, skipped."""
        from slm_platform.orchestration.dashboards_cache import warm_after_publish

        return warm_after_publish(log)

    conf = dag_params.validate_task(DAG_ID, dag_params.NIGHTLY, dag_params.NIGHTLY_DEFAULTS)
    landing = extract(conf)
    # The gate validates its window of load batches (all loaded since the last passed window, whoever
    # loaded them), not this run's batches alone: it reads no XCom from load, it only waits for it.
    gate = check_raw(conf)
    load(landing) >> gate
    published = [gate, load_contracts(landing)] >> dbt >> publish()
    published >> [review_packs(), warm_dashboards()]


slm_nightly()
