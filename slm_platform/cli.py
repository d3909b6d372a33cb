"""``./slm``: the operator's command line."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

from slm_platform.errors import StackError

NIGHTLY_DAG = "slm_nightly"


def _say(msg: str) -> None:
    print(msg, flush=True)


def cmd_stack(args: argparse.Namespace) -> int:
    from slm_platform import stack

    if args.action == "up":
        only = tuple(args.only.split(",")) if args.only else stack.COMPONENTS
        unknown = set(only) - set(stack.COMPONENTS)
        if unknown:
            raise StackError(f"unknown component(s) {sorted(unknown)}; choose from {stack.COMPONENTS}")
        _print_status(stack.up(only, _say))
    elif args.action == "down":
        stack.down(_say)
        _say("stack stopped")
    else:
        st = stack.status()
        print(json.dumps(st, indent=2)) if args.json else _print_status(st)
    return 0


def _print_status(st: dict) -> None:
    _say(f"SLM_HOME:     {st['slm_home']}")
    if "postgresql" in st:
        pg = st["postgresql"]
        kind = "existing server" if pg["external"] else "embedded cluster"
        _say(
            f"PostgreSQL:   {'running' if pg['running'] else 'stopped'} ({kind}) on {pg['host']}:{pg['port']}"
        )
        _say(f"Warehouse:    {pg['warehouse_dsn']}   (./slm dsn prints it with the password)")
    for name in ("airflow", "superset"):
        if name in st:
            s = st[name]
            _say(
                f"{name.capitalize():13} {'running' if s['running'] else 'stopped'} at {s['url']}"
                f"  login: {s['login']}"
            )
    _say(f"Credentials:  {st['credentials_file']}")


def cmd_dsn(args: argparse.Namespace) -> int:
    from slm_platform import stack
    from slm_platform.settings import WAREHOUSE_DB

    print(stack.pg_server().dsn(WAREHOUSE_DB))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from slm_platform import demo_data
    from slm_platform.settings import slm_home

    out = Path(args.out) if args.out else slm_home() / "drops" / "demo"
    if args.months < 1:
        raise StackError("--months must be at least 1")
    start, months = demo_data.demo_window(demo_data.DEMO_DATE, args.months)
    counts = demo_data.generate(out, seed=args.seed, start=args.start or start, months=months)
    for name, n in counts.items():
        _say(f"  {name:14} {n:>8} rows")
    _say(f"demo drop written to {out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from slm_platform import loader, stack
    from slm_platform.settings import WAREHOUSE_DB

    drop = Path(args.dir)
    if not drop.is_dir():
        raise StackError(f"{drop} is not a folder (expected a drop in the canonical format)")
    dsn = stack.pg_server().dsn(WAREHOUSE_DB)
    try:
        results = loader.load_drop(dsn, drop, source=args.source, log=_say)
    except loader.LoadError as exc:
        raise StackError(str(exc)) from exc
    _print_batches(results)
    return 0


def _run_nightly(run_date: date, drop: Path | None) -> None:
    """Run the nightly DAG with ``airflow dags test`` (in-process, recorded in Airflow's metadata)."""
    from slm_platform import dbt_runner, stack
    from slm_platform.settings import venv_bin

    env = stack.airflow_env()
    dbt_runner.dbt_parse(dbt_runner.dbt_env(stack.pg_server()))
    conf = {"drop": str(drop.resolve())} if drop else {}
    _say(f"==> running DAG {NIGHTLY_DAG} on {run_date} (covers {run_date - timedelta(days=1)})")
    cmd = [str(venv_bin("airflow", "airflow")), "dags", "test", NIGHTLY_DAG, run_date.isoformat()]
    if conf:
        cmd += ["-c", json.dumps(conf)]
    log_file = Path(env["SLM_HOME"]) / "logs" / f"nightly-{run_date}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    state = None
    with (
        open(log_file, "w") as log,
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if m := _TASK_END.search(line):
                _say(f"    finished {m.group(1)}")
            if "DagRun Finished" in line and (m := _RUN_STATE.search(line)):
                state = m.group(1)
    if proc.returncode != 0 or state != "success":
        raise StackError(f"the nightly DAG ended in state {state!r}; full log: {log_file}")
    _say(f"    DAG run succeeded (log: {log_file})")


_TASK_END = re.compile(r"\[DAG TEST\] end task task_id=(\S+)")
_RUN_STATE = re.compile(r"\bstate=(\w+)")


def cmd_import_servicenow_export(args: argparse.Namespace) -> int:
    """Convert a ServiceNow audit-log export to a canonical drop, then load it like any drop."""
    from slm_platform.servicenow.export import convert_export
    from slm_platform.settings import slm_home

    out = Path(args.out) if args.out else slm_home() / "drops" / "servicenow_export"
    try:
        res = convert_export(
            args.file,
            out,
            timezone=args.timezone,
            client_code=args.client,
            client_name=args.client_name,
            country=args.country,
            calendar_code=args.calendar,
            ambiguous=args.ambiguous,
        )
    except (ValueError, OSError) as exc:
        raise StackError(f"cannot convert {args.file}: {exc}") from exc
    _say(
        f"converted {res.rows_read} rows: {res.tickets} tickets, {res.events} events, "
        f"{res.services} services "
        f"in {res.seconds:.1f}s → {out}"
    )
    args.dir, args.source = str(out), "servicenow_export"
    return cmd_import(args)


def _warehouse_dsn(args: argparse.Namespace) -> str:
    from slm_platform import stack
    from slm_platform.settings import WAREHOUSE_DB

    return args.dsn or stack.pg_server().dsn(WAREHOUSE_DB)


def cmd_loads(args: argparse.Namespace) -> int:
    import psycopg2

    from slm_platform import load_report

    conn = psycopg2.connect(_warehouse_dsn(args))
    try:
        batches = load_report.recent_batches(conn, args.last, args.entity, args.source)
    finally:
        conn.close()
    for line in load_report.format_batches(batches):
        _say(line)
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    import json

    import psycopg2

    from slm_platform import load_report

    conn = psycopg2.connect(_warehouse_dsn(args))
    try:
        if args.rows:
            rows = load_report.quarantine_rows(conn, args.batch, args.entity, args.source, args.limit)
            for batch, entity, location, reason, record in rows:
                _say(f"batch {batch}  {entity}  {location}  {reason}")
                _say(f"    {json.dumps(record, ensure_ascii=False, sort_keys=True)}")
            if not rows:
                _say("nothing quarantined")
        else:
            summary = load_report.quarantine_summary(conn, args.batch, args.entity, args.source)
            for line in load_report.format_summary(summary):
                _say(line)
    finally:
        conn.close()
    return 0


def _print_batches(results: list) -> None:
    for r in results:
        _say(
            f"  {r.entity:14} read {r.rows_read:>8}  loaded {r.rows_loaded:>8}  "
            f"unchanged {r.rows_unchanged:>8}  quarantined {r.rows_quarantined:>6}"
        )
    refused = [r for r in results if r.rows_quarantined]
    if refused:
        batches = ", ".join(str(r.batch_id) for r in refused)
        _say(f"quarantined rows (batch {batches}): ./slm quarantine [--batch N] [--rows] shows why")


def cmd_extract_prometheus(args: argparse.Namespace) -> int:
    """Extract [start, end) from Prometheus into a landing folder, then load it like any drop."""
    import os
    from datetime import UTC, datetime

    from slm_platform import loader
    from slm_platform.monitoring import prometheus as prom
    from slm_platform.settings import slm_home

    def when(value: str) -> datetime:
        t = datetime.fromisoformat(value)
        if t.tzinfo is None:
            raise StackError(f"{value}: give a time zone (e.g. 2026-11-01T00:00Z)")
        return t

    try:
        config = prom.load_config(args.config or prom.DEFAULT_CONFIG)
        dsn = _warehouse_dsn(args)
        if args.start:
            start = when(args.start)
        else:
            high_water = prom.watermark(dsn)
            if high_water is None:
                raise StackError("no prometheus watermark yet (nothing loaded): give --start")
            start = datetime.fromtimestamp(high_water.timestamp() + config.step_seconds, UTC)
        step = config.step_seconds
        now = datetime.now(UTC).timestamp()
        end = when(args.end) if args.end else datetime.fromtimestamp(now // step * step, UTC)
        landing = Path(args.out) if args.out else slm_home() / "landing" / "prometheus"
        url = args.url or os.environ.get("SLM_PROMETHEUS_URL") or None
        _say(f"==> extracting {config.expression} [{start.isoformat()}, {end.isoformat()}) step {step}s")
        res, batches = prom.extract_and_load(
            dsn, config, start, end, landing, url=url, auth=prom.auth_from_env(), log=_say
        )
    except (prom.PrometheusError, prom.ConfigError, ValueError, loader.LoadError) as exc:
        raise StackError(str(exc)) from exc
    _say(
        f"extracted {res.samples} samples of {res.series} series in {res.chunks} queries "
        f"({res.rows_unmapped} unmapped) → {res.file}"
    )
    _print_batches(batches)
    return 0


def cmd_import_statuspage(args: argparse.Namespace) -> int:
    """Convert a status-page outage history (CSV) to a canonical drop, then load it."""
    from slm_platform import loader
    from slm_platform.monitoring import statuspage
    from slm_platform.settings import slm_home

    out = Path(args.out) if args.out else slm_home() / "drops" / "statuspage"
    try:
        mapping = statuspage.load_mapping(args.mapping or statuspage.DEFAULT_MAPPING)
        res, batches = statuspage.import_file(_warehouse_dsn(args), args.file, out, mapping, log=_say)
    except (statuspage.MappingError, ValueError, OSError, loader.LoadError) as exc:
        raise StackError(f"cannot import {args.file}: {exc}") from exc
    _say(
        f"read {res.rows_read} rows: {res.rows_mapped} mapped ({res.outage_rows} outage rows, "
        f"{res.maintenance_rows} maintenance rows, {res.merged} merged), {res.rows_unmapped} unmapped "
        f"(quarantined) → {out}"
    )
    _print_batches(batches)
    return 0


def cmd_import_survey_export(args: argparse.Namespace) -> int:
    """Convert a survey-tool export (responses, optional invitations) with its mapping, then load it."""
    from slm_platform import stack
    from slm_platform.loader import LoadError
    from slm_platform.settings import WAREHOUSE_DB
    from slm_platform.surveys.export import import_export
    from slm_platform.surveys.mapping import load_mapping

    try:
        mapping = load_mapping(args.mapping)
        res = import_export(stack.pg_server().dsn(WAREHOUSE_DB), args.file, mapping, args.invitations, _say)
    except (ValueError, OSError, LoadError) as exc:
        raise StackError(f"cannot import {args.file}: {exc}") from exc
    _say(
        f"converted {res.responses_read} responses ({res.responses_not_submitted} not submitted) and "
        f"{res.invitations_without_response} unanswered invitations "
        f"({res.invitations_not_sent} participants never invited, not counted) into {res.rows_written} rows"
    )
    for r in res.load:
        _say(
            f"  {r.entity}: read {r.rows_read}, loaded {r.rows_loaded}, unchanged {r.rows_unchanged}, "
            f"quarantined {r.rows_quarantined} (see raw.quarantine)"
        )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    run_date = args.date or date.today()
    _run_nightly(run_date, Path(args.drop) if args.drop else None)
    return 0


def cmd_review_pack(args: argparse.Namespace) -> int:
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
    conn = psycopg2.connect(_warehouse_dsn(args))
    try:
        res = build_pack(conn, args.client, period, args.edition, out, schema=args.schema)
    except ReviewDataError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    except PdfError as exc:
        raise StackError(str(exc)) from exc
    finally:
        conn.close()
    _say(str(res.html_path))
    _say(str(res.pdf_path))
    return 0


def cmd_incident_review(args: argparse.Namespace) -> int:
    """Trigger the real slm_incident_review DAG on the running stack, follow it, say where the report is.

    Bad parameters (the DAG's JSON schema, then the same checks as its validate task, against the
    warehouse) give one line and exit 2 before any run exists."""
    import psycopg2

    from slm_platform import incident_review as ir
    from slm_platform import stack

    conf: dict = {"ticket_id": args.ticket_id, "window_from": args.window_from, "window_to": args.window_to}
    conf["clients"] = args.client or []
    try:
        ir.check_schema(conf)
        conn = psycopg2.connect(_warehouse_dsn(args))
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
    _say(
        f"==> reviewing {plan.ticket_id}: window [{plan.window_from.isoformat()},"
        f" {plan.window_to.isoformat()}], clients {', '.join(plan.clients)}; run {run_id}"
    )
    state, tasks = ir.follow(api, run_id, _say)
    if state != "success":
        failed = [t for t, s in tasks.items() if s == "failed"]
        raise StackError(
            f"the review ended in state {state!r} (failed: {', '.join(failed)}); {st['airflow']['url']}"
        )
    _say(f"    review published ({st['airflow']['url']}/dags/{ir.DAG_ID}/runs/{run_id})")
    report = api.get(f"dags/{ir.DAG_ID}/dagRuns/{run_id}/taskInstances/finish/xcomEntries/return_value")[
        "value"
    ].get("report")
    _say(f"    report: {report}" if report else "    report: none (this DAG has no report task yet)")
    return 0


def cmd_contracts(args: argparse.Namespace) -> int:
    from slm_platform import contracts

    return contracts.main_validate(Path(args.file) if args.file else None)


def cmd_superset(args: argparse.Namespace) -> int:
    from slm_platform import superset_setup

    creds = superset_setup.provision_stack(_say)
    for who, c in creds.items():
        _say(f"  {who:16} {c['username']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from slm_platform import demo_data, stack, superset_setup
    from slm_platform.settings import slm_home

    if args.months < 1:
        raise StackError("--months must be at least 1")
    st = stack.up(stack.COMPONENTS, _say)
    drop = slm_home() / "drops" / "demo"
    start, months = demo_data.demo_window(args.date, args.months)
    _say(f"==> generating demo data: {months} months from {start:%Y-%m}")
    demo_data.generate(drop, start=start, months=months)
    _run_nightly(args.date, drop)
    _say("==> provisioning Superset (bundle, roles, users, row-level security)")
    users = superset_setup.provision_stack(_say)
    creds = stack.credentials()
    _say("")
    _say("The demo is ready.")
    _say(f"  Airflow   {st['airflow']['url']}   user admin / {creds['airflow_admin_password']}")
    _say(f"  Superset  {st['superset']['url']}   user admin / {creds['superset_admin_password']}")
    for who, c in users.items():
        _say(f"            {who:10} {c['username']} / {c['password']}")
    _say(f"  Warehouse {st['postgresql']['warehouse_dsn']}  (./slm dsn)")
    _say(f"  Credentials are kept in {st['credentials_file']}; stop everything with `make down`.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slm", description="Service-level management platform")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("stack", help="start, stop or show the local stack")
    s.add_argument("action", choices=["up", "down", "status"])
    s.add_argument("--only", help="comma-separated components to start (pg,airflow,superset)")
    s.add_argument("--json", action="store_true", help="status as JSON")
    s.set_defaults(func=cmd_stack)

    s = sub.add_parser("dsn", help="print the warehouse connection string")
    s.set_defaults(func=cmd_dsn)

    s = sub.add_parser("generate", help="write the deterministic demo data set as a canonical drop")
    s.add_argument("--out", help="folder (default: $SLM_HOME/drops/demo)")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument(
        "--start",
        type=date.fromisoformat,
        help="first month (default: the months end with October 2026, the month before the demo date)",
    )
    s.add_argument("--months", type=int, default=13, help="months of history (default 13)")
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("import", help="load a canonical drop folder into the warehouse's raw schema")
    s.add_argument("dir")
    s.add_argument("--source", default="canonical")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("loads", help="the last load batches: rows read, loaded, unchanged, quarantined")
    s.add_argument("--last", type=int, default=20, help="how many batches (default 20)")
    s.add_argument("--entity", help="only this entity (tickets, checks, ...)")
    s.add_argument("--source", help="only this source (canonical, servicenow_export, ...)")
    s.add_argument("--dsn", help="warehouse DSN (default: the stack's warehouse)")
    s.set_defaults(func=cmd_loads)

    s = sub.add_parser("quarantine", help="what the loads refused, and why (grouped by reason, or --rows)")
    s.add_argument("--batch", type=int, help="only this load batch")
    s.add_argument("--entity", help="only this entity")
    s.add_argument("--source", help="only this source")
    s.add_argument("--rows", action="store_true", help="list the rows with their raw record")
    s.add_argument("--limit", type=int, default=50, help="rows listed with --rows (default 50)")
    s.add_argument("--dsn", help="warehouse DSN (default: the stack's warehouse)")
    s.set_defaults(func=cmd_quarantine)

    s = sub.add_parser(
        "import-servicenow-export",
        help="convert a ServiceNow incident audit-log export (CSV, .gz) and load it",
    )
    s.add_argument("file")
    s.add_argument("--timezone", required=True, help="IANA zone of the export's zone-less timestamps")
    s.add_argument("--client", default="SNOW", help="client_code the incidents belong to")
    s.add_argument("--client-name")
    s.add_argument("--country", help="ISO country code of the client (public holidays)")
    s.add_argument("--calendar", default="24x7", help="calendar_code of the services created")
    s.add_argument(
        "--ambiguous",
        choices=["earlier", "later", "error"],
        default="earlier",
        help="DST fall-back wall times: which instant to take",
    )
    s.add_argument("--out", help="folder for the converted drop (default: $SLM_HOME/drops/servicenow_export)")
    s.set_defaults(func=cmd_import_servicenow_export)

    s = sub.add_parser("extract", help="extract a monitoring source into the warehouse")
    s.add_argument("source", choices=["prometheus"])
    s.add_argument("--start", help="window start, ISO-8601 with zone (default: just after the watermark)")
    s.add_argument("--end", help="window end, excluded (default: now, down to a step)")
    s.add_argument("--config", help="source configuration (default: config/sources/prometheus.yaml)")
    s.add_argument("--url", help="Prometheus URL (default: SLM_PROMETHEUS_URL, then the configuration)")
    s.add_argument("--out", help="landing folder (default: $SLM_HOME/landing/prometheus)")
    s.add_argument("--dsn", help="warehouse DSN (default: the stack's warehouse)")
    s.set_defaults(func=cmd_extract_prometheus)

    s = sub.add_parser("import-statuspage", help="convert a status-page outage history (CSV) and load it")
    s.add_argument("file")
    s.add_argument(
        "--mapping", help="title -> service mapping (default: config/sources/statuspage_github.yaml)"
    )
    s.add_argument("--out", help="folder for the converted drop (default: $SLM_HOME/drops/statuspage)")
    s.add_argument("--dsn", help="warehouse DSN (default: the stack's warehouse)")
    s.set_defaults(func=cmd_import_statuspage)

    s = sub.add_parser(
        "import-survey-export",
        help="convert a survey-tool export (LimeSurvey, Typeform: CSV or JSON) with a mapping and load it",
    )
    s.add_argument("file", help="responses export: one row per response, one column per question")
    s.add_argument(
        "--mapping", required=True, help="YAML mapping (e.g. config/sources/survey_export_sample.yaml)"
    )
    s.add_argument("--invitations", help="participants / invitations export (unanswered ones count)")
    s.set_defaults(func=cmd_import_survey_export)

    s = sub.add_parser("run", help="run a DAG")
    s.add_argument("dag", choices=["nightly"])
    s.add_argument(
        "--date",
        type=date.fromisoformat,
        help="run date D (default: today); the run covers the day before, [D-1, D)",
    )
    s.add_argument("--drop", help="extract from this drop folder instead of the configured sources")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("review-pack", help="build a service review pack (HTML + PDF) for a client and period")
    s.add_argument("--client", required=True, help="client code (e.g. ACME)")
    s.add_argument("--period", required=True, help="2026-10 (month), 2026-Q4 (quarter) or 2026 (year)")
    s.add_argument("--edition", choices=["client", "manager"], default="client")
    s.add_argument("--out", help="folder (default: $SLM_HOME/reports)")
    s.add_argument("--schema", default="marts", help="schema of the marts (default: marts)")
    s.add_argument("--dsn", help="warehouse DSN (default: the stack's warehouse)")
    s.set_defaults(func=cmd_review_pack)

    s = sub.add_parser(
        "incident-review",
        help="review a major incident: trigger the slm_incident_review DAG, follow it, print the report",
    )
    s.add_argument("ticket_id", help="the major incident's ticket id")
    s.add_argument("--from", dest="window_from", help="window start, ISO-8601 with zone (default: opened)")
    s.add_argument("--to", dest="window_to", help="window end, ISO-8601 with zone (default: resolved)")
    s.add_argument("--client", action="append", help="a client whose report edition to write (repeatable)")
    s.add_argument("--dsn", help="warehouse DSN (default: the stack's warehouse)")
    s.set_defaults(func=cmd_incident_review)

    s = sub.add_parser("contracts", help="contract catalogue")
    s.add_argument("action", choices=["validate"])
    s.add_argument("file", nargs="?")
    s.set_defaults(func=cmd_contracts)

    s = sub.add_parser("superset", help="Superset assets")
    s.add_argument("action", choices=["provision"])
    s.set_defaults(func=cmd_superset)

    s = sub.add_parser(
        "demo", help="start the stack, load demo data, run the nightly DAG, provision Superset"
    )
    s.add_argument("--date", type=date.fromisoformat, default=date(2026, 11, 1))
    s.add_argument("--months", type=int, default=13, help="months of history, ending before --date")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from slm_platform.dbt_runner import DbtError

    try:
        return args.func(args)
    except (StackError, DbtError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
