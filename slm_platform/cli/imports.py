"""``./slm import canonical|servicenow-export|statuspage|survey`` and ``./slm extract prometheus|surveys``:
bring a source's data into the warehouse (convert to a canonical drop where needed, then load it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from slm_platform.cli import extract_jira, extract_zabbix
from slm_platform.cli.common import add_dsn, print_batches, say, warehouse_dsn
from slm_platform.errors import StackError


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("import", help="load a drop or a source's export into the warehouse's raw schema")
    kinds = group.add_subparsers(dest="verb", required=True, metavar="KIND")

    s = kinds.add_parser("canonical", help="a canonical drop folder")
    s.add_argument("dir")
    s.add_argument("--source", default="canonical")
    add_dsn(s)
    s.set_defaults(func=canonical)

    s = kinds.add_parser(
        "servicenow-export", help="a ServiceNow incident audit-log export (CSV, .gz), converted then loaded"
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
    s.set_defaults(func=servicenow_export)

    s = kinds.add_parser("statuspage", help="a status-page outage history (CSV), converted then loaded")
    s.add_argument("file")
    s.add_argument(
        "--mapping", help="title -> service mapping (default: config/sources/statuspage_github.yaml)"
    )
    s.add_argument("--out", help="folder for the converted drop (default: $SLM_HOME/drops/statuspage)")
    add_dsn(s)
    s.set_defaults(func=statuspage)

    s = kinds.add_parser(
        "survey",
        help="a survey-tool export (LimeSurvey, Typeform: CSV or JSON) with a mapping, converted then loaded",
    )
    s.add_argument("file", help="responses export: one row per response, one column per question")
    s.add_argument(
        "--mapping", required=True, help="YAML mapping (e.g. config/sources/survey_export_sample.yaml)"
    )
    s.add_argument("--invitations", help="participants / invitations export (unanswered ones count)")
    add_dsn(s)
    s.set_defaults(func=survey)

    group = sub.add_parser("extract", help="extract a monitoring source into the warehouse")
    sources = group.add_subparsers(dest="verb", required=True, metavar="SOURCE")
    s = sources.add_parser("prometheus", help="a window of Prometheus probes, landed then loaded")
    s.add_argument("--start", help="window start, ISO-8601 with zone (default: just after the watermark)")
    s.add_argument("--end", help="window end, excluded (default: now, down to a step)")
    s.add_argument("--config", help="source configuration (default: config/sources/prometheus.yaml)")
    s.add_argument("--url", help="Prometheus URL (default: SLM_PROMETHEUS_URL, then the configuration)")
    s.add_argument("--out", help="landing folder (default: $SLM_HOME/landing/prometheus)")
    add_dsn(s)
    s.set_defaults(func=prometheus)
    s = sources.add_parser(
        "surveys", help="a survey tool's responses by API (LimeSurvey RemoteControl 2, Typeform), then loaded"
    )
    s.add_argument(
        "--mapping", required=True, help="mapping with an api section (config/sources/survey_api_*)"
    )
    s.add_argument("--start", help="window start, excluded, ISO-8601 with zone (default: the survey's mark)")
    s.add_argument("--end", help="window end, included (default: now)")
    s.add_argument("--all", action="store_true", help="everything up to --end (the first pull of a survey)")
    s.add_argument(
        "--url",
        help="RemoteControl URL / Typeform API base (default: the mapping's api.url, else api.typeform.com)",
    )
    s.add_argument("--out", help="landing folder (default: $SLM_HOME/landing/surveys/<source>/<end>)")
    add_dsn(s)
    s.set_defaults(func=surveys)
    # The ticketing and monitoring tools' extractors keep their commands in their own modules.
    for add in (extract_jira.add_command, extract_zabbix.add_command):
        add(sources)


def canonical(args: argparse.Namespace) -> int:
    from slm_platform.load import loader

    drop = Path(args.dir)
    if not drop.is_dir():
        raise StackError(f"{drop} is not a folder (expected a drop in the canonical format)")
    try:
        results = loader.load_drop(warehouse_dsn(args), drop, source=args.source, log=say)
    except loader.LoadError as exc:
        raise StackError(str(exc)) from exc
    print_batches(results)
    return 0


def servicenow_export(args: argparse.Namespace) -> int:
    """Convert a ServiceNow audit-log export to a canonical drop, then load it like any drop."""
    from slm_platform.settings import slm_home
    from slm_platform.sources.servicenow.export import convert_export

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
    say(
        f"converted {res.rows_read} rows: {res.tickets} tickets, {res.events} events, "
        f"{res.services} services "
        f"in {res.seconds:.1f}s → {out}"
    )
    args.dir, args.source = str(out), "servicenow_export"
    return canonical(args)


def statuspage(args: argparse.Namespace) -> int:
    """Convert a status-page outage history (CSV) to a canonical drop, then load it."""
    from slm_platform.load import imports, loader
    from slm_platform.settings import slm_home
    from slm_platform.sources import statuspage

    out = Path(args.out) if args.out else slm_home() / "drops" / "statuspage"
    try:
        mapping = statuspage.load_mapping(args.mapping or statuspage.DEFAULT_MAPPING)
        res, batches = imports.statuspage_file(warehouse_dsn(args), args.file, out, mapping, log=say)
    except (statuspage.MappingError, ValueError, OSError, loader.LoadError) as exc:
        raise StackError(f"cannot import {args.file}: {exc}") from exc
    say(
        f"read {res.rows_read} rows: {res.rows_mapped} mapped ({res.outage_rows} outage rows, "
        f"{res.maintenance_rows} maintenance rows, {res.merged} merged), {res.rows_unmapped} unmapped "
        f"(quarantined) → {out}"
    )
    print_batches(batches)
    return 0


def survey(args: argparse.Namespace) -> int:
    """Convert a survey-tool export (responses, optional invitations) with its mapping, then load it."""
    from slm_platform.load.imports import survey_export_file
    from slm_platform.load.loader import LoadError
    from slm_platform.sources.surveys.mapping import load_mapping

    try:
        mapping = load_mapping(args.mapping)
        res = survey_export_file(warehouse_dsn(args), args.file, mapping, args.invitations, say)
    except (ValueError, OSError, LoadError) as exc:
        raise StackError(f"cannot import {args.file}: {exc}") from exc
    say(
        f"converted {res.responses_read} responses ({res.responses_not_submitted} not submitted) and "
        f"{res.invitations_without_response} unanswered invitations "
        f"({res.invitations_not_sent} participants never invited, not counted) into {res.rows_written} rows"
    )
    for r in res.load:
        say(
            f"  {r.entity}: read {r.rows_read}, loaded {r.rows_loaded}, unchanged {r.rows_unchanged}, "
            f"quarantined {r.rows_quarantined} (see raw.quarantine)"
        )
    return 0


def prometheus(args: argparse.Namespace) -> int:
    """Extract [start, end) from Prometheus into a landing folder, then load it like any drop."""
    import os
    from datetime import UTC, datetime

    from slm_platform.load import imports, loader
    from slm_platform.settings import slm_home
    from slm_platform.sources import prometheus as prom

    def when(value: str) -> datetime:
        t = datetime.fromisoformat(value)
        if t.tzinfo is None:
            raise StackError(f"{value}: give a time zone (e.g. 2026-11-01T00:00Z)")
        return t

    try:
        config = prom.load_config(args.config or prom.DEFAULT_CONFIG)
        dsn = warehouse_dsn(args)
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
        say(f"==> extracting {config.expression} [{start.isoformat()}, {end.isoformat()}) step {step}s")
        res, batches = imports.prometheus_window(
            dsn, config, start, end, landing, url=url, auth=prom.auth_from_env(), log=say
        )
    except (prom.PrometheusError, prom.ConfigError, ValueError, loader.LoadError) as exc:
        raise StackError(str(exc)) from exc
    say(
        f"extracted {res.samples} samples of {res.series} series in {res.chunks} queries "
        f"({res.rows_unmapped} unmapped) → {res.file}"
    )
    print_batches(batches)
    return 0


def surveys(args: argparse.Namespace) -> int:
    """Pull a survey's responses of (start, end] by API into a landing folder, load it, record the window.

    Credentials from the environment: SLM_LIMESURVEY_USER + SLM_LIMESURVEY_PASSWORD, SLM_TYPEFORM_TOKEN.
    The window is recorded as the survey's mark (raw.extract_windows, ``slm_surveys:<source>``), shared with
    the DAG: the next run, by hand or hourly, starts where this one ended."""
    import os
    from datetime import UTC, datetime

    import psycopg2

    from slm_platform.load import imports, loader
    from slm_platform.orchestration import extract_windows
    from slm_platform.settings import slm_home
    from slm_platform.sources.http_auth import Auth
    from slm_platform.sources.surveys import api
    from slm_platform.sources.surveys.mapping import load_mapping

    def when(value: str) -> datetime:
        t = datetime.fromisoformat(value)
        if t.tzinfo is None:
            raise StackError(f"{value}: give a time zone (e.g. 2026-11-01T00:00Z)")
        return t

    try:
        mapping = load_mapping(args.mapping)
        settings = api.api_settings(mapping)
        dsn = warehouse_dsn(args)
        mark_id = f"slm_surveys:{mapping.source}"
        end = when(args.end) if args.end else datetime.now(UTC).replace(microsecond=0)
        if args.all:
            start = None
        elif args.start:
            start = when(args.start)
        else:
            conn = psycopg2.connect(dsn)
            try:
                start = extract_windows.mark(conn, mark_id)
            finally:
                conn.close()
            if start is None:
                raise StackError(f"no window of {mapping.source} recorded yet: give --start or --all")
        landing = (
            Path(args.out)
            if args.out
            else slm_home() / "landing" / "surveys" / mapping.source / end.strftime("%Y-%m-%dT%H%M%SZ")
        )
        creds: dict = {}
        if settings.tool == "limesurvey":
            creds = {
                "user": os.environ.get("SLM_LIMESURVEY_USER"),
                "password": os.environ.get("SLM_LIMESURVEY_PASSWORD", ""),
            }
            if not creds["user"]:
                raise StackError("set SLM_LIMESURVEY_USER and SLM_LIMESURVEY_PASSWORD (a RemoteControl user)")
        else:
            token = os.environ.get("SLM_TYPEFORM_TOKEN")
            if not token:
                raise StackError("set SLM_TYPEFORM_TOKEN (a personal access token with responses:read)")
            creds = {"auth": Auth.bearer(token)}
        shown = start.isoformat() if start else "the beginning"
        say(
            f"==> pulling {settings.tool} {settings.survey_id} ({mapping.source}):"
            f" ({shown}, {end.isoformat()}]"
        )
        res = imports.survey_api_window(dsn, mapping, start, end, landing, url=args.url, log=say, **creds)
        conn = psycopg2.connect(dsn)
        try:
            window_start = start or datetime.fromtimestamp(0, UTC)
            run_id = f"cli__{end.isoformat()}"
            extract_windows.record(conn, mark_id, run_id, (window_start, end), (window_start, end))
        finally:
            conn.close()
    except (api.SurveyApiError, ValueError, OSError, loader.LoadError) as exc:
        raise StackError(str(exc)) from exc
    say(
        f"pulled {res.responses_in_window} responses of {res.responses_listed} listed, "
        f"{res.invitations_written} unanswered invitations, {len(res.malformed)} malformed "
        f"in {res.requests} requests ({res.seconds:.1f}s) → {landing}"
    )
    print_batches(res.load)
    return 0
