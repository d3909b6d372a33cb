"""Prometheus probes → raw.checks: extract ``/api/v1/query_range`` of the configured expression, then load.

Each run covers the window ``[start, data_interval_end)``: one check per step (the check interval) per mapped
series, absent samples left as gaps. start is the earliest of the data interval's start, the end of the last
window this DAG extracted and loaded (its mark in raw.extract_windows: intervals never extracted because the
scheduler was down are caught up by the next run) and the ``since`` param, at most ``max_catch_up`` back
(config ``chunk``-sized queries; default 7 days, within Prometheus retention). Before the DAG's first
recorded window, the loaded checks' watermark stands in for the mark (after ``./slm extract-prometheus``).
A rerun of an interval extracts the same window into the same landing folder and upserts it: idempotent.
Params are typed; the ``validate`` task refuses any other conf key by name
(slm_platform.orchestration.dag_params).

Connection ``prometheus_default``: host = Prometheus URL (``http://prometheus:9090`` or a bare host + port),
login + password (basic auth) or extra ``bearer_token``; extra ``config`` = path of the source configuration
(default ``config/sources/prometheus.yaml``, or ``SLM_PROMETHEUS_CONFIG``), extra ``max_catch_up`` (e.g.
``7d``). Without the connection, the configuration's ``url`` is used, unauthenticated. Connection
``slm_warehouse``: the warehouse (slm_platform.orchestration.warehouse).
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
DAG_ID = "slm_prometheus"
PROMETHEUS_CONN_ID = "prometheus_default"

default_args = {"owner": "slm", "retries": 2, "retry_delay": timedelta(minutes=2)}
log = logging.getLogger(__name__)


def _landing_dir(interval_start) -> Path:
    home = Path(os.environ.get("SLM_HOME", REPO / ".slm"))
    # one folder per hourly interval, stable across reruns of that interval
    return home / "landing" / "prometheus" / interval_start.strftime("%Y-%m-%dT%H%MZ")


@dag(
    dag_id=DAG_ID,
    # An interval timetable: each run has a real [start, end) window; a cron trigger would give
    # zero-length intervals.
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    catchup=False,  # missed intervals are caught up from the DAG's mark instead (bounded, one run)
    max_active_runs=1,  # the mark a run reads is the one the previous run wrote
    default_args=default_args,
    tags=["slm", "prometheus", "availability", "extract"],
    doc_md=__doc__,
    params=dag_params.params(dag_params.EXTRACT, dag_params.EXTRACT_DEFAULTS),
)
def slm_prometheus() -> None:
    @task
    def extract(conf: dict) -> dict:
        """Samples of the run's window → ``checks.csv.gz`` in the interval's landing folder."""
        import psycopg2
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

        from slm_platform.orchestration import extract_windows
        from slm_platform.sources import prometheus as prom

        ctx = get_current_context()
        start, end = ctx["data_interval_start"], ctx["data_interval_end"]
        try:
            conn = Connection.get(PROMETHEUS_CONN_ID)
        except AirflowNotFoundException:  # not defined: the configuration's url, no auth
            conn = None
        extra = (conn.extra_dejson or {}) if conn else {}
        config_path = extra.get("config") or os.environ.get("SLM_PROMETHEUS_CONFIG") or prom.DEFAULT_CONFIG
        config = prom.load_config(config_path)
        max_catch_up = prom.parse_duration(extra.get("max_catch_up", "7d"), "max_catch_up")
        step = config.step_seconds
        wh = psycopg2.connect(warehouse_dsn())
        try:
            mark = extract_windows.mark(wh, DAG_ID)
        finally:
            wh.close()
        if mark is None:  # no window recorded yet: resume just after the loaded checks, if any
            mark, _ = prom.catch_up_window(start, end, prom.watermark(warehouse_dsn()), step, max_catch_up)
        since = dag_params.when(conf["since"]) if conf.get("since") else None
        try:
            window = extract_windows.plan(start, end, mark, since, max_catch_up, step)
        except ValueError as exc:  # a `since` beyond the source's retention: refused, not cut silently
            log.error(f"REFUSED since: {exc}")
            raise AirflowFailException(f"since: {exc}") from None
        for note in window.notes:
            log.info(note)
        out = _landing_dir(start)
        res = prom.extract_checks(
            config,
            window.start,
            window.end,
            out,
            url=(prom.url_from_connection(conn) if conn else None) or config.url,
            auth=prom.auth_from_connection(conn) if conn else None,
            log=log.info,
        )
        return {"landing": str(out), **window.to_xcom(), **res.summary()}

    @task
    def load(extracted: dict) -> list[dict]:
        """Load the window's drop, then record the window as covered (the next run's catch-up mark)."""
        from datetime import datetime

        from slm_platform.orchestration import extract_windows

        ctx = get_current_context()
        return extract_windows.load_and_record(
            warehouse_dsn(),
            extracted["landing"],
            "prometheus",
            DAG_ID,
            ctx["dag_run"].run_id,
            (ctx["data_interval_start"], ctx["data_interval_end"]),
            (
                datetime.fromisoformat(extracted["window_start"]),
                datetime.fromisoformat(extracted["window_end"]),
            ),
            log=log.info,
        )

    load(extract(dag_params.validate_task(DAG_ID, dag_params.EXTRACT, dag_params.EXTRACT_DEFAULTS)))


slm_prometheus()
