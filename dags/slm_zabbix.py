"""Zabbix → raw.outages, raw.maintenance, raw.checks: extract the JSON-RPC API's problems, maintenance and
check items of a window, then load.

Each run covers ``[start, data_interval_end)``: start is the earliest of the data interval's start, the end of
the last window this DAG (or ``./slm extract zabbix``) extracted and loaded (its mark in raw.extract_windows:
intervals missed while the scheduler was down are caught up by the next run) and the ``since`` param, at
most ``max_catch_up`` back (default 7 days). Problems open at the window's end are written open; the run
that reads their recovery writes their end under the same key (an upsert). A rerun of an interval extracts
the same window again into the same landing folder and upserts it: idempotent.

Connection ``slm_zabbix``: host = the Zabbix frontend (``https://zabbix.example.com`` or a bare host; the
API path ``/api_jsonrpc.php`` is added), extra ``api_token`` (Zabbix 5.4+ API token: sent as
``Authorization: Bearer`` from 6.4, in the request body before), or login + password (``user.login``);
extra ``mapping`` = the mapping file (default ``config/sources/zabbix_sample.yaml`` or
``SLM_ZABBIX_MAPPING``), extra ``max_catch_up`` (e.g. ``7d``). Connection ``slm_warehouse``: the warehouse.
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
DAG_ID = "slm_zabbix"
ZABBIX_CONN_ID = "slm_zabbix"

default_args = {"owner": "slm", "retries": 2, "retry_delay": timedelta(minutes=2)}
log = logging.getLogger(__name__)


def _landing_dir(interval_start) -> Path:
    home = Path(os.environ.get("SLM_HOME", REPO / ".slm"))
    return home / "landing" / "zabbix" / interval_start.strftime("%Y-%m-%dT%H%MZ")


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    catchup=False,  # missed intervals are caught up from the DAG's mark instead (bounded, one run)
    max_active_runs=1,  # the mark a run reads is the one the previous run wrote
    default_args=default_args,
    tags=["slm", "zabbix", "availability", "extract"],
    doc_md=__doc__,
    params=dag_params.params(dag_params.EXTRACT, dag_params.EXTRACT_DEFAULTS),
)
def slm_zabbix() -> None:
    @task
    def extract(conf: dict) -> dict:
        """Problems, maintenance and checks of the run's window → the interval's landing folder."""
        import psycopg2
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

        from slm_platform.orchestration import extract_windows
        from slm_platform.sources import zabbix as zbx

        ctx = get_current_context()
        start, end = ctx["data_interval_start"], ctx["data_interval_end"]
        try:
            conn = Connection.get(ZABBIX_CONN_ID)
        except AirflowNotFoundException:
            raise AirflowFailException(
                f"connection {ZABBIX_CONN_ID} is not defined (host = the Zabbix frontend, extra api_token or"
                " login + password)"
            ) from None
        extra = conn.extra_dejson or {}
        mapping = zbx.load_mapping(
            extra.get("mapping") or os.environ.get("SLM_ZABBIX_MAPPING") or zbx.DEFAULT_MAPPING
        )
        max_catch_up = zbx.parse_duration(extra.get("max_catch_up", "7d"), "max_catch_up")
        try:
            creds, url = zbx.credentials_from_connection(conn)
        except zbx.ZabbixAuthError as exc:
            raise AirflowFailException(str(exc)) from None
        wh = psycopg2.connect(warehouse_dsn())
        try:
            mark = extract_windows.mark(wh, DAG_ID)
        finally:
            wh.close()
        since = dag_params.when(conf["since"]) if conf.get("since") else None
        try:
            window = extract_windows.plan(start, end, mark, since, max_catch_up)
        except ValueError as exc:
            log.error(f"REFUSED since: {exc}")
            raise AirflowFailException(f"since: {exc}") from None
        for note in window.notes:
            log.info(note)
        out = _landing_dir(start)
        try:
            res = zbx.extract(
                mapping, window.start, window.end, out, url=url or mapping.url, creds=creds, log=log.info
            )
        except zbx.ZabbixAuthError as exc:  # retrying cannot fix refused credentials
            raise AirflowFailException(str(exc)) from None
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
            "zabbix",
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


slm_zabbix()
