"""Survey tools → raw.surveys, pulled by API every hour (LimeSurvey RemoteControl 2, Typeform Responses API).

Each survey is described by a mapping file (the export importer's format plus an ``api`` section:
``config/sources/survey_api_*_sample.yaml``). The surveys a run pulls are the mapping files listed in the
``mappings`` extra of each tool's connection; a tool without a connection is not configured (logged).

- ``slm_limesurvey``: host = the LimeSurvey site (``https://surveys.example.com``; the RemoteControl path
  ``/index.php/admin/remotecontrol`` is added) or the full RemoteControl URL; login + password of a
  RemoteControl user with export rights; extra ``{"mappings": ["config/sources/….yaml", …]}``.
- ``slm_typeform``: password (or extra ``token``) = a personal access token with ``responses:read``; host =
  the API base for the EU data centre (default ``https://api.typeform.com``); extra ``mappings``.

Each survey has its own window and catch-up mark (raw.extract_windows, dag_id ``slm_surveys:<source>``):
from the earliest of the data interval's start, the survey's mark and the ``since`` param, to the interval's
end; a survey that failed in one run is caught up by the next. One mapped extract and load per survey: a
survey whose tool is down fails alone, the others load. The window's drop goes to
``$SLM_HOME/landing/surveys/<source>/<interval start>`` (the pulled records beside it, ``….api``), the load
upserts on response_id (a rerun duplicates nothing) and only then records the window.
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
DAG_ID = "slm_surveys"
CONNECTIONS = {"limesurvey": "slm_limesurvey", "typeform": "slm_typeform"}

default_args = {"owner": "slm", "retries": 2, "retry_delay": timedelta(minutes=2)}
log = logging.getLogger(__name__)


def _landing_dir(source: str, interval_start) -> Path:
    home = Path(os.environ.get("SLM_HOME", REPO / ".slm"))
    return home / "landing" / "surveys" / source / interval_start.strftime("%Y-%m-%dT%H%MZ")


def mark_id(source: str) -> str:
    """The survey's own catch-up mark in raw.extract_windows (one window per survey, not per DAG)."""
    return f"{DAG_ID}:{source}"


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    catchup=False,  # a gap is extracted by the next run, from each survey's mark
    max_active_runs=1,
    default_args=default_args,
    tags=["slm", "surveys", "extract"],
    doc_md=__doc__,
    params=dag_params.params(dag_params.EXTRACT, dag_params.EXTRACT_DEFAULTS),
)
def slm_surveys() -> None:
    @task
    def surveys() -> list[dict]:
        """The surveys to pull: the mapping files listed by each tool's connection (extra.mappings)."""
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException

        found: list[dict] = []
        for tool, conn_id in CONNECTIONS.items():
            try:
                conn = Connection.get(conn_id)
            except AirflowNotFoundException:
                log.info(f"{tool}: no connection {conn_id}, not configured")
                continue
            paths = (conn.extra_dejson or {}).get("mappings") or []
            if not paths:
                log.warning(f"{tool}: connection {conn_id} lists no mapping files (extra.mappings)")
            found += [{"tool": tool, "conn_id": conn_id, "mapping": str(p)} for p in paths]
        return found

    @task(map_index_template="{{ task.op_kwargs['survey']['mapping'] }}")
    def extract(survey: dict, conf: dict) -> dict:
        """One survey's responses changed in its window (and its unanswered invitations) → a drop."""
        import psycopg2
        from airflow.sdk import Connection

        from slm_platform.load.imports import extract_survey_api
        from slm_platform.orchestration import extract_windows
        from slm_platform.sources.surveys import api, limesurvey, typeform
        from slm_platform.sources.surveys.mapping import load_mapping

        ctx = get_current_context()
        start, end = ctx["data_interval_start"], ctx["data_interval_end"]
        since = dag_params.when(conf["since"]) if conf.get("since") else None
        tool, conn = survey["tool"], Connection.get(survey["conn_id"])
        mapping = load_mapping(REPO / survey["mapping"])
        settings = api.api_settings(mapping)
        if settings.tool != tool:
            raise api.SurveyApiError(
                f"{survey['mapping']}: api.tool is {settings.tool}, listed under {conn.conn_id}"
            )
        wh = psycopg2.connect(warehouse_dsn())
        try:
            mark = extract_windows.mark(wh, mark_id(mapping.source))
        finally:
            wh.close()
        window = extract_windows.plan(start, end, mark, since)
        for note in window.notes:
            log.info(f"{mapping.source}: {note}")
        # a survey's first window (no mark, no since) takes everything up to the interval's end
        first = mark is None and since is None
        out = _landing_dir(mapping.source, start)
        if tool == "limesurvey":
            user, password, url = limesurvey.credentials_from_connection(conn)
            res = extract_survey_api(
                mapping, None if first else window.start, window.end, out,
                url=settings.url or url, user=user, password=password,
            )  # fmt: skip
        else:
            auth, url = typeform.credentials_from_connection(conn)
            res = extract_survey_api(
                mapping, None if first else window.start, window.end, out, url=url, auth=auth
            )
        summary = res.summary()
        log.info(f"{mapping.source}: {summary}")
        return {**summary, "window_start": window.start.isoformat()}

    @task
    def load(extracted: dict) -> list[dict]:
        """Load one survey's drop, then record its window (the survey's next catch-up mark)."""
        from datetime import datetime

        from slm_platform.orchestration import extract_windows

        ctx = get_current_context()
        return extract_windows.load_and_record(
            warehouse_dsn(),
            extracted["landing"],
            extracted["source"],
            mark_id(extracted["source"]),
            ctx["dag_run"].run_id,
            (ctx["data_interval_start"], ctx["data_interval_end"]),
            (datetime.fromisoformat(extracted["window_start"]), datetime.fromisoformat(extracted["until"])),
            log=log.info,
        )

    conf = dag_params.validate_task(DAG_ID, dag_params.EXTRACT, dag_params.EXTRACT_DEFAULTS)
    # one extract and one load per survey (mapped): a survey whose tool is down fails alone, the others load
    load.expand(extracted=extract.partial(conf=conf).expand(survey=surveys()))


slm_surveys()
