"""Jira Service Management issues → raw.tickets / raw.ticket_events, extracted every hour.

Each run extracts the issues updated in ``(start, data_interval_end]``, where start is the earliest of the
data interval's start, the end of the last window this DAG extracted and loaded (its mark in
raw.extract_windows: intervals missed while the scheduler was down are caught up by the next run) and the
``since`` param. Every issue's whole changelog is re-read, so the drop holds its complete history; the load
upserts (a rerun of an interval duplicates nothing) and only then records the window. JSM's own SLA cycles
land beside the drop (``….jsm/jsm_sla.csv``) for tools/jira_sla_report.py.

Connection ``slm_jira``: host = the site (``https://acme.atlassian.net``), login = the account's e-mail,
password = its API token (or extra ``bearer_token``); extra ``mapping`` = the mapping file (default
``config/sources/jira_sample.yaml``, relative to the repository), ``page_size``. Connection
``slm_warehouse``: the warehouse PostgreSQL (slm_platform.orchestration.warehouse).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import dag, get_current_context, task
from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable

from slm_platform.orchestration import dag_params
from slm_platform.orchestration.warehouse import warehouse_dsn

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "slm_jira"
JIRA_CONN_ID = "slm_jira"
DEFAULT_MAPPING = "config/sources/jira_sample.yaml"

default_args = {"owner": "slm", "retries": 2, "retry_delay": timedelta(minutes=2)}
log = logging.getLogger(__name__)


def _landing_dir(interval_start) -> Path:
    home = Path(os.environ.get("SLM_HOME", REPO / ".slm"))
    return home / "landing" / "jira" / interval_start.strftime("%Y-%m-%dT%H%MZ")


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    catchup=False,  # a gap is extracted by the next run, from the DAG's mark
    max_active_runs=1,  # the mark a run reads is the one the previous run wrote
    default_args=default_args,
    tags=["slm", "jira", "extract"],
    doc_md=__doc__,
    params=dag_params.params(dag_params.EXTRACT, dag_params.EXTRACT_DEFAULTS),
)
def slm_jira() -> None:
    @task
    def extract(conf: dict) -> dict:
        """Issues updated in the run's window (full changelog, JSM SLA cycles) → a canonical drop."""
        import psycopg2
        from airflow.sdk import Connection

        from slm_platform.orchestration import extract_windows
        from slm_platform.sources.jira.api import (
            auth_from_connection,
            base_url_from_connection,
            extract_issues,
        )
        from slm_platform.sources.jira.mapping import load_mapping

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
        conn = Connection.get(JIRA_CONN_ID)
        extra = conn.extra_dejson or {}
        mapping_path = Path(extra.get("mapping") or DEFAULT_MAPPING)
        mapping = load_mapping(mapping_path if mapping_path.is_absolute() else REPO / mapping_path)
        out = _landing_dir(start)
        out.mkdir(parents=True, exist_ok=True)
        # written into out/.partial and moved into place when complete: a failed attempt leaves no half drop
        res = extract_issues(
            base_url_from_connection(conn),
            auth_from_connection(conn),
            mapping,
            window.start,
            window.end,
            out,
            page_size=int(extra["page_size"]) if extra.get("page_size") else None,
        )
        return {
            "landing": str(out),
            "source": mapping.source,
            "since": window.start.isoformat(),
            "until": window.end.isoformat(),
            "issues": res.issues,
            "events": res.events,
            "sla_cycles": res.sla_cycles,
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
            extracted["source"],
            DAG_ID,
            ctx["dag_run"].run_id,
            (ctx["data_interval_start"], ctx["data_interval_end"]),
            (datetime.fromisoformat(extracted["since"]), datetime.fromisoformat(extracted["until"])),
        )

    conf = dag_params.validate_task(DAG_ID, dag_params.EXTRACT, dag_params.EXTRACT_DEFAULTS)
    load(extract(conf))


slm_jira()
