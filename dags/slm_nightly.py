"""Nightly pipeline: extract → load (raw) + contracts → quality gate (GX) → dbt build (Cosmos) → publish.

Every task is keyed on the run's data interval and idempotent: a rerun of the same night loses nothing and
duplicates nothing. Heavy imports (loader, GX) happen inside the tasks, not at parse time.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import Asset, dag, get_current_context, task
from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import InvocationMode, LoadMode, TestBehavior

REPO = Path(__file__).resolve().parents[1]
DBT_PROJECT = Path(os.environ.get("SLM_DBT_PROJECT", REPO / "dbt_project"))
DBT_EXECUTABLE = os.environ.get("SLM_DBT_EXECUTABLE", str(REPO / ".venvs" / "dbt" / "bin" / "dbt"))
MARTS = Asset(name="slm_marts", uri="slm://warehouse/marts")

default_args = {"owner": "slm", "retries": 1, "retry_delay": timedelta(seconds=30)}


def _warehouse_dsn() -> str:
    from airflow.sdk import Connection

    return Connection.get("slm_warehouse").get_uri().replace("postgres://", "postgresql://", 1)


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
        """Quality gate on raw data: a failed expectation stops the run before anything is published."""
        from slm_platform.quality import raise_on_failure, run_checkpoint

        result = run_checkpoint("raw_tickets", _warehouse_dsn())
        raise_on_failure(result)
        return {"checkpoint": result.checkpoint, "evaluated": result.evaluated}

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
            dbt_executable_path=DBT_EXECUTABLE, invocation_mode=InvocationMode.SUBPROCESS
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            invocation_mode=InvocationMode.SUBPROCESS,
            test_behavior=TestBehavior.BUILD,
            # relationships tests have two parents: run them once both exist, not with the first one
            should_detach_multiple_parents_tests=True,
            dbt_executable_path=DBT_EXECUTABLE,
        ),
    )

    @task(retries=0, outlets=[MARTS])
    def publish() -> None:
        """Swap the freshly built and tested marts into the schema dashboards read, atomically."""
        from slm_platform.publish import publish_marts

        publish_marts(_warehouse_dsn())

    landing = extract()
    [check_raw(load(landing)), load_contracts(landing)] >> dbt >> publish()


slm_nightly()
