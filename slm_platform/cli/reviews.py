"""``./slm review-pack build`` and ``./slm incident review``: the service review pack of a client and period,
and the on-demand review of a major incident (through the real ``slm_incident_review`` DAG)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slm_platform.cli.common import add_dsn, say, warehouse_dsn
from slm_platform.errors import StackError


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("review-pack", help="service review packs (HTML + PDF) per client and period")
    verbs = group.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("build", help="build one pack from the published marts")
    s.add_argument("--client", required=True, help="client code (e.g. ACME)")
    s.add_argument("--period", required=True, help="2026-10 (month), 2026-Q4 (quarter) or 2026 (year)")
    s.add_argument("--edition", choices=["client", "manager"], default="client")
    s.add_argument("--out", help="folder (default: $SLM_HOME/reports)")
    s.add_argument("--schema", default="marts", help="schema of the marts (default: marts)")
    add_dsn(s)
    s.set_defaults(func=build_pack)

    group = sub.add_parser("incident", help="major incidents")
    verbs = group.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser(
        "review",
        help="review a major incident: trigger the slm_incident_review DAG, follow it, print the report",
    )
    s.add_argument("ticket_id", help="the major incident's ticket id")
    s.add_argument("--from", dest="window_from", help="window start, ISO-8601 with zone (default: opened)")
    s.add_argument("--to", dest="window_to", help="window end, ISO-8601 with zone (default: resolved)")
    s.add_argument("--client", action="append", help="a client whose report edition to write (repeatable)")
    add_dsn(s)
    s.set_defaults(func=review_incident)


def build_pack(args: argparse.Namespace) -> int:
    """Build one service review pack (HTML + PDF) from the published marts; exit 2 when it cannot exist."""
    import psycopg2

    from slm_platform.reports.pdf import PdfError
    from slm_platform.reports.periods import PeriodError, parse_period
    from slm_platform.reports.review_data import ReviewDataError
    from slm_platform.reports.review_pack import build_pack
    from slm_platform.settings import slm_home

    try:
        period = parse_period(args.period)
    except PeriodError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else slm_home() / "reports"
    conn = psycopg2.connect(warehouse_dsn(args))
    try:
        res = build_pack(conn, args.client, period, args.edition, out, schema=args.schema)
    except ReviewDataError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    except PdfError as exc:
        raise StackError(str(exc)) from exc
    finally:
        conn.close()
    say(str(res.html_path))
    say(str(res.pdf_path))
    return 0


def review_incident(args: argparse.Namespace) -> int:
    """Trigger the real slm_incident_review DAG on the running stack, follow it, say where the report is.

    Bad parameters (the DAG's JSON schema, then the same checks as its validate task, against the
    warehouse) give one line and exit 2 before any run exists."""
    import psycopg2

    from slm_platform.ops import stack
    from slm_platform.orchestration import incident_review as ir

    conf: dict = {"ticket_id": args.ticket_id, "window_from": args.window_from, "window_to": args.window_to}
    conf["clients"] = args.client or []
    try:
        ir.check_schema(conf)
        conn = psycopg2.connect(warehouse_dsn(args))
        try:
            conn.set_session(readonly=True)
            plan = ir.plan_review(conn, conf)
        finally:
            conn.close()
    except ir.Refused as exc:
        print(f"ERROR: review refused: {exc}", file=sys.stderr)
        return 2
    st = stack.status()
    if not st.get("airflow", {}).get("running"):
        raise StackError("Airflow is not running: start it with ./slm stack up")
    api = ir.AirflowApi(st["airflow"]["url"], "admin", stack.credentials()["airflow_admin_password"])
    resp = api.trigger(conf)
    if 400 <= resp.status_code < 500:
        print(f"ERROR: review refused by Airflow: {ir.api_error(resp)}", file=sys.stderr)
        return 2
    resp.raise_for_status()
    run_id = resp.json()["dag_run_id"]
    say(
        f"==> reviewing {plan.ticket_id}: window [{plan.window_from.isoformat()},"
        f" {plan.window_to.isoformat()}], clients {', '.join(plan.clients)}; run {run_id}"
    )
    state, tasks = ir.follow(api, run_id, say)
    if state != "success":
        failed = [t for t, s in tasks.items() if s == "failed"]
        raise StackError(
            f"the review ended in state {state!r} (failed: {', '.join(failed)}); {st['airflow']['url']}"
        )
    say(f"    review published ({st['airflow']['url']}/dags/{ir.DAG_ID}/runs/{run_id})")
    report = api.get(f"dags/{ir.DAG_ID}/dagRuns/{run_id}/taskInstances/finish/xcomEntries/return_value")[
        "value"
    ].get("report")
    say(f"    report: {report}" if report else "    report: none (this DAG has no report task yet)")
    return 0
