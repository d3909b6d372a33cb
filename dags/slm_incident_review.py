"""Review of one major incident, on demand: validate → re-extract its window → load → quality gate →
rebuild what it touches (dbt selection) → publish → incident report (HTML and PDF, manager and client
editions).

Triggered from the UI's form, the REST API (``POST /api/v2/dags/slm_incident_review/dagRuns`` with a conf),
``./slm incident review TICKET_ID``, or by the data: the hourly ``slm_servicenow`` run triggers one review
per major incident it loads resolved (run id ``incident_review__<ticket>``, claimed in raw.incident_reviews).

Params are typed with a JSON schema, so malformed values are refused before a run exists; the ``validate``
task then checks them against the warehouse (unknown ticket, not a major incident, window reversed or longer
than SLM_INCIDENT_MAX_WINDOW_HOURS, unknown client) and refuses, naming the parameter, before anything is
written. Concurrency: one review at a time (max_active_runs=1); its dbt build and publish (one task) run in
the pool ``slm_marts_build`` (one slot) shared with the nightly's dbt build and publish, and under the
warehouse build lock they also take (``airflow dags test`` ignores pools). The review builds into its own
schema (marts_build_review) and publishes table by table in one transaction. Every result is keyed on
the conf and the data (the cut-off comes from the data, never from the clock): a rerun gives the same.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import Param, TriggerRule, dag, get_current_context, task

from slm_platform.orchestration.incident_review import DAG_ID, PARAM_SCHEMAS, POOL
from slm_platform.orchestration.warehouse import warehouse_dsn

REPO = Path(__file__).resolve().parents[1]
SERVICENOW_CONN_ID = "servicenow_default"
PROMETHEUS_CONN_ID = "prometheus_default"

default_args = {"owner": "slm", "retries": 1, "retry_delay": timedelta(seconds=20)}
log = logging.getLogger(__name__)


def _work_dir(key: str) -> Path:
    home = Path(os.environ.get("SLM_HOME", REPO / ".slm"))
    return home / "incident_reviews" / key


def _connection(conn_id: str):
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


@dag(
    dag_id=DAG_ID,
    schedule=None,
    catchup=False,
    max_active_runs=1,  # one review at a time: a second one queues until the first has published
    is_paused_upon_creation=False,  # no schedule: only triggered runs, which a paused DAG would not start
    default_args=default_args,
    tags=["slm", "incident", "review"],
    doc_md=__doc__,
    params={
        "ticket_id": Param(**PARAM_SCHEMAS["ticket_id"]),
        "window_from": Param(None, **PARAM_SCHEMAS["window_from"]),
        "window_to": Param(None, **PARAM_SCHEMAS["window_to"]),
        "clients": Param([], **PARAM_SCHEMAS["clients"]),
    },
)
def slm_incident_review() -> None:
    @task
    def validate() -> dict:
        """Check the parameters against the warehouse (read only); a refusal names each bad parameter and
        fails the run at once, with nothing written. An accepted review is recorded as running."""
        import psycopg2
        from airflow.sdk.exceptions import AirflowFailException

        from slm_platform.orchestration import incident_review as ir

        ctx = get_current_context()
        conf = {k: ctx["params"].get(k) for k in ir.PARAM_SCHEMAS}
        # Keys the DAG does not take are in the run's conf only (Airflow 3.3 accepts them untyped).
        unknown = {k: v for k, v in (ctx["dag_run"].conf or {}).items() if k not in ir.PARAM_SCHEMAS}
        dsn = warehouse_dsn()
        conn = psycopg2.connect(dsn)
        try:
            conn.set_session(readonly=True)
            try:
                plan = ir.plan_review(conn, {**conf, **unknown})
            except ir.Refused as exc:
                for param, why in exc.problems:
                    log.error(f"REFUSED {param}: {why}")
                raise AirflowFailException(f"review refused: {exc}") from None
            conn.rollback()
            conn.set_session(readonly=False)
            by = "data" if ctx["dag_run"].run_id == ir.data_run_id(plan.ticket_id) else "manual"
            ir.record_review(
                conn,
                plan.ticket_id,
                ctx["dag_run"].run_id,
                conf,
                "running",
                triggered_by=by,
                as_of=plan.as_of,
            )
        finally:
            conn.close()
        log.info(
            f"review of {plan.ticket_id} ({plan.client_code}/{plan.service_code}): window"
            f" [{plan.window_from.isoformat()}, {plan.window_to.isoformat()}], affected services"
            f" {plan.affected_services}, clients {plan.affected_clients}; cut-off {plan.as_of.isoformat()}"
        )
        return plan.to_xcom()

    @task
    def extract(plan: dict) -> list[dict]:
        """Re-extract the incident window from the sources that support it (ServiceNow Table API,
        Prometheus) into the review's landing folders; a source without a connection is skipped."""
        from datetime import datetime

        from slm_platform.sources import prometheus as prom
        from slm_platform.sources.servicenow import table_api as sn

        start, end = datetime.fromisoformat(plan["window_from"]), datetime.fromisoformat(plan["window_to"])
        landing = _work_dir(plan["key"]) / "landing"
        out: list[dict] = []
        conn = _connection(SERVICENOW_CONN_ID)
        if conn is None:
            log.info(f"servicenow: no connection {SERVICENOW_CONN_ID!r}: skipped")
        else:
            extra = conn.extra_dejson or {}
            target = landing / "servicenow"
            target.mkdir(parents=True, exist_ok=True)
            res = sn.extract_incidents(
                sn.base_url_from_connection(conn),
                sn.auth_from_connection(conn),
                start,
                end,
                target,
                page_size=int(extra.get("page_size", 500)),
                fields=sn.FieldMapping(
                    client_map=dict(extra.get("client_map") or {}),
                    service_map=dict(extra.get("service_map") or {}),
                    default_client=extra.get("default_client"),
                    default_service=extra.get("default_service"),
                ),
            )
            log.info(f"servicenow: {res.incidents} incidents, {res.events} events in (start, end]")
            out.append({"source": "servicenow", "landing": str(target)})
        conn = _connection(PROMETHEUS_CONN_ID)
        if conn is None:
            log.info(f"prometheus: no connection {PROMETHEUS_CONN_ID!r}: skipped")
        else:
            extra = conn.extra_dejson or {}
            config_path = (
                extra.get("config") or os.environ.get("SLM_PROMETHEUS_CONFIG") or prom.DEFAULT_CONFIG
            )
            config = prom.load_config(config_path)
            step = config.step_seconds
            # whole steps, so a rerun asks for exactly the same samples
            w_start = datetime.fromtimestamp(start.timestamp() // step * step, start.tzinfo)
            target = landing / "prometheus"
            res = prom.extract_checks(
                config,
                w_start,
                end,
                target,
                url=prom.url_from_connection(conn) or config.url,
                auth=prom.auth_from_connection(conn),
                log=log.info,
            )
            out.append({"source": "prometheus", "landing": str(target)})
        return out

    @task
    def load(landings: list[dict]) -> list[dict]:
        from slm_platform.load.loader import load_drop

        batches: list[dict] = []
        for item in landings:
            results = load_drop(warehouse_dsn(), Path(item["landing"]), source=item["source"], log=log.info)
            batches += [r.reconciliation() for r in results]
        return batches

    @task(retries=0)
    def check_raw() -> dict:
        """The nightly's quality gate, on the batches loaded since the last passed window (this run's key):
        it runs after the load (an explicit dependency), and reads no XCom from it."""
        from slm_platform.gate.quality import raise_on_any_failure, run_gate

        ctx = get_current_context()
        gate = run_gate(warehouse_dsn(), f"{DAG_ID}/{ctx['dag_run'].run_id}")
        log.info(f"quality gate {gate.run_key}: load batches ({gate.after_batch}, {gate.through_batch}]")
        results = raise_on_any_failure(gate.results)
        return {
            "batches": [gate.after_batch, gate.through_batch],
            **{r.checkpoint: r.evaluated for r in results},
        }

    # A retry is safe (the build schema is dropped first, the publish is one transaction) but a failed dbt
    # test will not heal: one retry, for a lost connection.
    @task(pool=POOL)
    def build_publish(plan: dict, gate: dict) -> dict:
        """Under the warehouse build lock: dbt build of the incident marts and what they are computed from
        into marts_build_review, at the later of the review's cut-off and the published one, then move the
        rebuilt tables into `marts` in one transaction. Holding the lock through the publish means a nightly
        publish (which takes it too) lands wholly before (its cut-off is then ours) or after (its own
        complete, consistent build then replaces everything) - never a mix with an older cut-off."""
        from datetime import datetime

        import psycopg2

        from slm_platform.orchestration import incident_review as ir

        # one dbt folder for every review (they never run at once): dbt's partial parse is reused
        work = _work_dir("_dbt")
        dsn = warehouse_dsn()
        ir.take_build_lock(dsn=dsn)  # released below, or when this task's process ends
        try:
            conn = psycopg2.connect(dsn)
            try:
                published = ir.published_as_of(conn)
            finally:
                conn.close()
            as_of = datetime.fromisoformat(plan["as_of"])
            if published and published > as_of:
                log.info(f"a nightly published a later cut-off meanwhile: {published.isoformat()}")
                as_of = published
            ir.build(dsn, as_of, str(work))
            tables = ir.publish(dsn)
        finally:
            ir.release_build_lock()
        log.info(f"published {len(tables)} tables at cut-off {as_of.isoformat()}: {', '.join(tables)}")
        return {"as_of": as_of.isoformat(), "tables": tables}

    @task
    def report(plan: dict, published: dict) -> dict:
        """The incident report (slm_platform/reports/incident_report.py), HTML and PDF: the manager edition
        and one client edition per requested (default: affected) client, from the marts just published."""
        from slm_platform.reports.incident_report import write_incident_reports

        home = Path(os.environ.get("SLM_HOME", REPO / ".slm"))
        out = home / "reports" / "incidents" / plan["ticket_id"]
        files = write_incident_reports(warehouse_dsn(), plan["ticket_id"], out, clients=plan["clients"])
        return {
            "dir": str(out),
            "files": [str(p) for f in files for p in (f.html_path, f.pdf_path)],
            "manager_pdf": str(next(f.pdf_path for f in files if f.edition == "manager")),
        }

    @task
    def finish(plan: dict, published: dict, written: dict) -> dict:
        import psycopg2

        from slm_platform.orchestration import incident_review as ir

        ctx = get_current_context()
        conf = {k: ctx["params"].get(k) for k in ir.PARAM_SCHEMAS}
        conn = psycopg2.connect(warehouse_dsn())
        try:
            ir.record_review(
                conn,
                plan["ticket_id"],
                ctx["dag_run"].run_id,
                conf,
                "success",
                as_of=published["as_of"],
                report_path=written["dir"],
            )
        finally:
            conn.close()
        return {
            "ticket_id": plan["ticket_id"],
            "as_of": published["as_of"],
            "published": published["tables"],
            "report": written["dir"],
            "report_files": written["files"],
        }

    @task
    def warm_dashboards(published: dict) -> dict:
        """Refill Superset's chart-data cache after this publish (as the nightly does after its own), or the
        republished figures would hide behind the night's cache entries for up to 26 h. Never fails the run:
        a warning naming `./slm superset warm` when Superset cannot be reached or a chart fails to warm."""
        from slm_platform.orchestration.dashboards_cache import warm_after_publish

        return warm_after_publish(log)

    # Runs only when a task upstream of `finish` failed: the review this run recorded as running is then
    # recorded as failed (a run refused by validate recorded nothing and changes nothing). Succeeds itself,
    # so the run's state stays the failed task's.
    @task(trigger_rule=TriggerRule.ONE_FAILED)
    def record_failure() -> int:
        import psycopg2

        from slm_platform.orchestration import incident_review as ir

        run_id = get_current_context()["dag_run"].run_id
        conn = psycopg2.connect(warehouse_dsn())
        try:
            changed = ir.mark_review_failed(conn, run_id)
        finally:
            conn.close()
        log.info(f"run {run_id} failed: {changed} review row(s) recorded as failed")
        return changed

    plan = validate()
    gate = check_raw()
    load(extract(plan)) >> gate
    published = build_publish(plan, gate)
    warm_dashboards(published)
    finish(plan, published, report(plan, published)) >> record_failure()


slm_incident_review()
