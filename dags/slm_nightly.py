"""Nightly pipeline: extract → load (raw) + contracts → quality gate (GX) → dbt build (Cosmos) → publish →
review packs (on the runs that close a month, quarter or year).

The dbt part is ONE `dbt build` (Cosmos watcher mode) with a task per model and per model's tests that
reports its outcome; dbt gets `--vars as_of: <data_interval_end>` as the cut-off of open clocks.

Every task is keyed on the run's data interval and idempotent: a rerun of the same night loses nothing and
duplicates nothing. Heavy imports (loader, GX) happen inside the tasks, not at parse time.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import Asset, TriggerRule, dag, get_current_context, task
from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import (
    PRODUCER_WATCHER_TASK_ID,
    ExecutionMode,
    InvocationMode,
    LoadMode,
    TestBehavior,
)

from slm_platform.incident_review import release_build_lock, take_build_lock

REPO = Path(__file__).resolve().parents[1]
DBT_PROJECT = Path(os.environ.get("SLM_DBT_PROJECT", REPO / "dbt_project"))
DBT_EXECUTABLE = os.environ.get("SLM_DBT_EXECUTABLE", str(REPO / ".venvs" / "dbt" / "bin" / "dbt"))
MARTS = Asset(name="slm_marts", uri="slm://warehouse/marts")
# The cut-off of every "still open" clock: the end of the run's data interval, not the latest loaded
# timestamp, so a rerun of the same night computes the same figures whatever was loaded since.
DBT_VARS = {"as_of": "{{ data_interval_end.isoformat() }}"}
# Shared with slm_incident_review: one dbt build or publish at a time (slm_platform.incident_review.POOL).
MARTS_BUILD_POOL = "slm_marts_build"

default_args = {"owner": "slm", "retries": 1, "retry_delay": timedelta(seconds=30)}


def _warehouse_dsn() -> str:
    from airflow.sdk import Connection

    return Connection.get("slm_warehouse").get_uri().replace("postgres://", "postgresql://", 1)


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
    dag_id="slm_nightly",
    # An interval timetable: the run for day D covers [D, D+1) and starts after midnight, so every task
    # is keyed on the day it loads (a cron trigger would give a zero-length interval).
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["slm", "nightly", "sla"],
    doc_md=__doc__,
    params={"drop": None},
)
def slm_nightly() -> None:
    @task
    def extract() -> str:
        """Copy the night's source files into a landing folder named after the data interval."""
        from slm_platform.extract import land_drop

        ctx = get_current_context()
        drop = ctx["params"].get("drop") or os.environ.get("SLM_DROP_DIR")
        home = Path(os.environ.get("SLM_HOME", REPO / ".slm"))
        return str(land_drop(drop, home / "landing", ctx["data_interval_start"]))

    @task
    def load(landing: str) -> list[dict]:
        from slm_platform.loader import load_drop

        results = load_drop(_warehouse_dsn(), Path(landing), source="canonical")
        return [r.reconciliation() for r in results]

    @task
    def load_contracts(landing: str) -> dict[str, int]:
        """The contract catalogue (SLAs, OLAs, UCs, calendars): from the drop if it brings one, else the
        configured catalogue. An invalid catalogue fails the run before anything is computed from it."""
        from slm_platform.contracts_load import DEFAULT_CATALOGUE, load_contracts

        in_drop = Path(landing) / "contracts.yaml"
        path = in_drop if in_drop.exists() else Path(os.environ.get("SLM_CONTRACTS", DEFAULT_CATALOGUE))
        return load_contracts(_warehouse_dsn(), path)

    @task(retries=0)
    def check_raw(batches: list[dict]) -> dict:
        """Quality gate on raw data (tickets, checks, surveys): every checkpoint runs, and a failed
        expectation in any of them stops the run before dbt, naming all that failed.

        Checks are validated by window: the load batches above the last passed window, up to the last one
        loaded, recorded under the run's data interval (a rerun validates the same batches; a failed window
        moves nothing). Trigger with conf {"full_gate": true} to validate them whole instead."""
        from slm_platform.quality import raise_on_any_failure, run_gate

        ctx = get_current_context()
        full = bool((ctx["dag_run"].conf or {}).get("full_gate", False))
        gate = run_gate(_warehouse_dsn(), ctx["data_interval_start"].isoformat(), full=full)
        print(
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
        profile_config=ProfileConfig(
            profile_name="slm", target_name="default", profiles_yml_filepath=DBT_PROJECT / "profiles.yml"
        ),
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
        ),
        operator_args={"vars": DBT_VARS},
    )
    _consumers_after_producer(dbt)

    @task(
        retries=0,
        outlets=[MARTS],
        pool=MARTS_BUILD_POOL,
        pre_execute=take_build_lock,
        post_execute=release_build_lock,
    )
    def publish() -> None:
        """Swap the freshly built and tested marts into the schema dashboards read, atomically."""
        from slm_platform.publish import publish_marts

        publish_marts(_warehouse_dsn())

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
            _warehouse_dsn(), ctx["data_interval_end"].date(), home / "reports", log=print
        )
        return [
            {"client": r.client_code, "period": r.period.label, "edition": r.edition, "pdf": str(r.pdf_path)}
            for r in results
        ]

    landing = extract()
    [check_raw(load(landing)), load_contracts(landing)] >> dbt >> publish() >> review_packs()


slm_nightly()
