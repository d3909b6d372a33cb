"""Prometheus probes → raw.checks: extract ``/api/v1/query_range`` of the configured expression, then load.

Each run covers its data interval ``[data_interval_start, data_interval_end)``: one check per step (the
check interval) per mapped series, absent samples left as gaps. When the source's watermark shows that
earlier intervals were never extracted (scheduler down, runs skipped), the run reaches back to just after
it, at most ``max_catch_up`` (config ``chunk``-sized queries; default 7 days, within Prometheus retention).
A rerun of an interval extracts the same window into the same landing folder and upserts it: idempotent.

Connection ``prometheus_default``: host = Prometheus URL (``http://prometheus:9090`` or a bare host + port),
login + password (basic auth) or extra ``bearer_token``; extra ``config`` = path of the source configuration
(default ``config/sources/prometheus.yaml``, or ``SLM_PROMETHEUS_CONFIG``), extra ``max_catch_up`` (e.g.
``7d``). Without the connection, the configuration's ``url`` is used, unauthenticated. Connection
``slm_warehouse``: the warehouse. The load task updates the ``slm_prometheus_raw`` asset.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import Asset, dag, get_current_context, task
from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS_CONN_ID = "prometheus_default"
WAREHOUSE_CONN_ID = "slm_warehouse"
PROMETHEUS_RAW = Asset(name="slm_prometheus_raw", uri="slm://warehouse/raw/prometheus")

default_args = {"owner": "slm", "retries": 2, "retry_delay": timedelta(minutes=2)}


def _warehouse_dsn() -> str:
    from airflow.sdk import Connection

    return Connection.get(WAREHOUSE_CONN_ID).get_uri().replace("postgres://", "postgresql://", 1)


def _landing_dir(interval_start) -> Path:
    home = Path(os.environ.get("SLM_HOME", REPO / ".slm"))
    # one folder per hourly interval, stable across reruns of that interval
    return home / "landing" / "prometheus" / interval_start.strftime("%Y-%m-%dT%H%MZ")


@dag(
    dag_id="slm_prometheus",
    # An interval timetable: each run has a real [start, end) window; a cron trigger would give
    # zero-length intervals.
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    catchup=False,  # missed intervals are caught up from the watermark instead (bounded, one run)
    max_active_runs=1,
    default_args=default_args,
    tags=["slm", "prometheus", "availability", "extract"],
    doc_md=__doc__,
)
def slm_prometheus() -> None:
    @task
    def extract() -> dict:
        """Samples of the run's window → ``checks.csv.gz`` in the interval's landing folder."""
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException

        from slm_platform.monitoring import prometheus as prom

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
        high_water = prom.watermark(_warehouse_dsn())
        w_start, w_end = prom.catch_up_window(start, end, high_water, config.step_seconds, max_catch_up)
        out = _landing_dir(start)
        res = prom.extract_checks(
            config,
            w_start,
            w_end,
            out,
            url=(prom.url_from_connection(conn) if conn else None) or config.url,
            auth=prom.auth_from_connection(conn) if conn else None,
            log=print,
        )
        return {"landing": str(out), **res.summary()}

    @task(outlets=[PROMETHEUS_RAW])
    def load(extracted: dict) -> list[dict]:
        from slm_platform.loader import load_drop

        results = load_drop(_warehouse_dsn(), Path(extracted["landing"]), source="prometheus", log=print)
        return [r.reconciliation() for r in results]

    load(extract())


slm_prometheus()
