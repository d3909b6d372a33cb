"""ServiceNow incidents → raw: extract through the Table API, then load into the warehouse.

Each run covers its data interval ``(data_interval_start, data_interval_end]`` of ``sys_updated_on``: the
extract's watermark is the interval itself, so runs neither overlap nor leave gaps, and a rerun of an
interval re-extracts the same window into the same landing folder and upserts it (idempotent).

Connection ``servicenow_default``: host = instance URL (or ``instance.service-now.com``), login + password
(basic) or extra ``oauth_token``; extra ``client_map`` / ``service_map`` (display name → code),
``default_client``, ``default_service``, ``page_size``. Connection ``slm_warehouse``: the warehouse
PostgreSQL. The load task updates the ``slm_servicenow_raw`` asset so that other DAGs can be scheduled on it.

A major incident the run loads resolved, with no review yet, triggers its review (DAG
``slm_incident_review``, run id ``incident_review__<ticket>``): one per incident, claimed in
raw.incident_reviews before the trigger.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Asset, dag, get_current_context, task
from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable

REPO = Path(__file__).resolve().parents[1]
SERVICENOW_CONN_ID = "servicenow_default"
WAREHOUSE_CONN_ID = "slm_warehouse"
INCIDENT_REVIEW_DAG = "slm_incident_review"
SERVICENOW_RAW = Asset(name="slm_servicenow_raw", uri="slm://warehouse/raw/servicenow")

default_args = {"owner": "slm", "retries": 2, "retry_delay": timedelta(minutes=2)}


def _landing_dir(interval_start) -> Path:
    home = Path(os.environ.get("SLM_HOME", REPO / ".slm"))
    # hour resolution: one folder per hourly interval, stable across reruns of that interval
    return home / "landing" / "servicenow" / interval_start.strftime("%Y-%m-%dT%H%MZ")


@dag(
    dag_id="slm_servicenow",
    # An interval timetable, so each run has a real (start, end] window to extract; a cron trigger would
    # give zero-length intervals and the window would have to come from state kept elsewhere.
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    catchup=False,
    max_active_runs=1,  # windows are disjoint, but one run at a time keeps the instance's API load low
    default_args=default_args,
    tags=["slm", "servicenow", "extract"],
    doc_md=__doc__,
)
def slm_servicenow() -> None:
    @task
    def extract() -> dict:
        """Incidents updated in the run's data interval (and their full history) → a canonical drop."""
        from airflow.sdk import Connection

        from slm_platform.servicenow.table_api import (
            FieldMapping,
            auth_from_connection,
            base_url_from_connection,
            extract_incidents,
        )

        ctx = get_current_context()
        start, end = ctx["data_interval_start"], ctx["data_interval_end"]
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
            start,
            end,
            out,
            page_size=int(extra.get("page_size", 500)),
            fields=fields,
        )
        return {
            "landing": str(out),
            "since": start.isoformat(),
            "until": end.isoformat(),
            "incidents": res.incidents,
            "events": res.events,
            "requests": res.requests,
            "retries": res.retries,
            "seconds": res.seconds,
        }

    @task(outlets=[SERVICENOW_RAW])
    def load(extracted: dict) -> list[dict]:
        from airflow.sdk import Connection

        from slm_platform.loader import load_drop

        dsn = Connection.get(WAREHOUSE_CONN_ID).get_uri().replace("postgres://", "postgresql://", 1)
        results = load_drop(dsn, Path(extracted["landing"]), source="servicenow")
        return [r.reconciliation() for r in results]

    @task
    def claim_reviews(batches: list[dict]) -> list[dict]:
        """Major incidents this run loaded resolved that have no review yet: claimed in
        raw.incident_reviews (so no later run claims them again), one review run each."""
        import psycopg2
        from airflow.sdk import Connection

        from slm_platform.incident_review import claim_unreviewed, data_run_id

        ids = [b["batch_id"] for b in batches if b["entity"] == "tickets" and b["loaded"]]
        dsn = Connection.get(WAREHOUSE_CONN_ID).get_uri().replace("postgres://", "postgresql://", 1)
        conn = psycopg2.connect(dsn)
        try:
            claimed = claim_unreviewed(conn, ids, data_run_id)
        finally:
            conn.close()
        print(f"major incidents resolved without a review: {claimed or 'none'}")
        return [{"trigger_run_id": data_run_id(t), "conf": {"ticket_id": t}} for t in claimed]

    # One mapped trigger per claimed incident; the run id is the incident's, so a second trigger of the
    # same incident (a rerun of this interval) is skipped instead of starting a second review.
    TriggerDagRunOperator.partial(
        task_id="trigger_review", trigger_dag_id=INCIDENT_REVIEW_DAG, skip_when_already_exists=True
    ).expand_kwargs(claim_reviews(load(extract())))


slm_servicenow()
