"""ServiceNow incidents → raw: extract through the Table API, then load into the warehouse.

Each run extracts the window ``(start, data_interval_end]`` of ``sys_updated_on``, where start is the
earliest of the data interval's start, the end of the last window this DAG extracted and loaded (its mark in
raw.extract_windows: intervals missed while the scheduler was down are caught up by the next run) and the
``since`` param. A rerun of an interval finds the mark past it and re-extracts exactly the interval into the
same landing folder and upserts it (idempotent). Params are typed; the ``validate`` task refuses any other
conf key by name (slm_platform.orchestration.dag_params).

Connection ``servicenow_default``: host = instance URL (or ``instance.service-now.com``), login + password
(basic) or extra ``oauth_token``; extra ``client_map`` / ``service_map`` (display name → code),
``default_client``, ``default_service``, ``page_size``. Connection ``slm_warehouse``: the warehouse
PostgreSQL (slm_platform.orchestration.warehouse).

A major incident the run loads resolved, with no review yet, triggers its review (DAG
``slm_incident_review``, run id ``incident_review__<ticket>``): one per incident, claimed in
raw.incident_reviews before the trigger.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, get_current_context, task
from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable

from slm_platform.orchestration import dag_params
from slm_platform.orchestration.warehouse import warehouse_dsn

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "slm_servicenow"
SERVICENOW_CONN_ID = "servicenow_default"
INCIDENT_REVIEW_DAG = "slm_incident_review"

default_args = {"owner": "slm", "retries": 2, "retry_delay": timedelta(minutes=2)}
log = logging.getLogger(__name__)


def _landing_dir(interval_start) -> Path:
    home = Path(os.environ.get("SLM_HOME", REPO / ".slm"))
    # hour resolution: one folder per hourly interval, stable across reruns of that interval
    return home / "landing" / "servicenow" / interval_start.strftime("%Y-%m-%dT%H%MZ")


@dag(
    dag_id=DAG_ID,
    # An interval timetable, so each run has a real (start, end] window to extract; a cron trigger would
    # give zero-length intervals and the window would have to come from state kept elsewhere.
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    # No Airflow catch-up: after a scheduler gap one run extracts the whole gap from the DAG's mark.
    catchup=False,
    # one run at a time: the mark a run reads is the one the previous run wrote, and the instance's API
    # load stays low
    max_active_runs=1,
    default_args=default_args,
    tags=["slm", "servicenow", "extract"],
    doc_md=__doc__,
    params=dag_params.params(dag_params.EXTRACT, dag_params.EXTRACT_DEFAULTS),
)
def slm_servicenow() -> None:
    @task
    def extract(conf: dict) -> dict:
        """Incidents updated in the run's window (and their full history) → a canonical drop."""
        import psycopg2
        from airflow.sdk import Connection

        from slm_platform.orchestration import extract_windows
        from slm_platform.sources.servicenow.table_api import (
            FieldMapping,
            auth_from_connection,
            base_url_from_connection,
            extract_incidents,
        )

        ctx = get_current_context()
        start, end = ctx["data_interval_start"], ctx["data_interval_end"]
        wh = psycopg2.connect(warehouse_dsn())
        try:
            mark = extract_windows.mark(wh, DAG_ID)
        finally:
            wh.close()
        since = dag_params.when(conf["since"]) if conf.get("since") else None
        window = extract_windows.plan(start, end, mark, since)
        for note in window.notes:
            log.info(note)
        conn = Connection.get(SERVICENOW_CONN_ID)
        extra = conn.extra_dejson or {}
        fields = FieldMapping(
            client_map=dict(extra.get("client_map") or {}),
            service_map=dict(extra.get("service_map") or {}),
            default_client=extra.get("default_client"),
            default_service=extra.get("default_service"),
        )
        out = _landing_dir(start)
        out.mkdir(parents=True, exist_ok=True)
        # extract_incidents writes into out/.partial and moves complete files into place, so a failed
        # attempt never leaves a half-written drop for the load to pick up.
        res = extract_incidents(
            base_url_from_connection(conn),
            auth_from_connection(conn),
            window.start,
            window.end,
            out,
            page_size=int(extra.get("page_size", 500)),
            fields=fields,
        )
        return {
            "landing": str(out),
            "since": window.start.isoformat(),
            "until": window.end.isoformat(),
            "incidents": res.incidents,
            "events": res.events,
            "requests": res.requests,
            "retries": res.retries,
            "seconds": res.seconds,
        }

    @task
    def load(extracted: dict) -> list[dict]:
        """Load the window's drop, then record the window as covered (the next run's catch-up mark)."""
        from datetime import datetime

        from slm_platform.orchestration import extract_windows

        ctx = get_current_context()
        return extract_windows.load_and_record(
            warehouse_dsn(),
            extracted["landing"],
            "servicenow",
            DAG_ID,
            ctx["dag_run"].run_id,
            (ctx["data_interval_start"], ctx["data_interval_end"]),
            (datetime.fromisoformat(extracted["since"]), datetime.fromisoformat(extracted["until"])),
        )

    @task
    def claim_reviews(batches: list[dict]) -> list[dict]:
        """Major incidents this run loaded resolved that have no review yet: claimed in
        raw.incident_reviews (so no later run claims them again), one review run each."""
        import psycopg2

        from slm_platform.orchestration.incident_review import claim_unreviewed, data_run_id

        ids = [b["batch_id"] for b in batches if b["entity"] == "tickets" and b["loaded"]]
        conn = psycopg2.connect(warehouse_dsn())
        try:
            claimed = claim_unreviewed(conn, ids, data_run_id)
        finally:
            conn.close()
        log.info(f"major incidents resolved without a review: {claimed or 'none'}")
        return [{"trigger_run_id": data_run_id(t), "conf": {"ticket_id": t}} for t in claimed]

    conf = dag_params.validate_task(DAG_ID, dag_params.EXTRACT, dag_params.EXTRACT_DEFAULTS)
    # One mapped trigger per claimed incident; the run id is the incident's, so a second trigger of the
    # same incident (a rerun of this interval) is skipped instead of starting a second review.
    TriggerDagRunOperator.partial(
        task_id="trigger_review", trigger_dag_id=INCIDENT_REVIEW_DAG, skip_when_already_exists=True
    ).expand_kwargs(claim_reviews(load(extract(conf))))


slm_servicenow()
