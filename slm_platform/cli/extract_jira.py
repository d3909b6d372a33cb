"""``./slm extract jira``: the Jira extractor's command, added to the ``extract`` group by cli/imports.py.

Extracts the issues updated in ``(start, end]`` (Jira Cloud REST API v3: enhanced JQL search, changelog;
JSM: each request's SLA cycles) into a landing folder, loads the drop, and records the window under the
DAG's id (``slm_jira``) so the hourly DAG resumes after it. JSM's SLA cycles land beside the drop
(``<out>.jsm/jsm_sla.csv``); tools/jira_sla_report.py compares them with our verdicts.
Credentials: ``SLM_JIRA_EMAIL`` + ``SLM_JIRA_TOKEN`` (an API token); site: ``--url`` or ``SLM_JIRA_URL``.
"""

from __future__ import annotations

import argparse
import json

from slm_platform.cli.common import add_dsn, say, warehouse_dsn
from slm_platform.errors import StackError

DAG_ID = "slm_jira"


def add_command(sources: argparse._SubParsersAction) -> None:
    """Add ``jira`` to the ``extract`` group's sources."""
    s = sources.add_parser(
        "jira",
        help="Jira Service Management issues and their history (REST API v3), landed then loaded",
    )
    s.add_argument(
        "--start", help="window start, excluded, ISO-8601 with zone (default: the last window's end)"
    )
    s.add_argument("--end", help="window end, included (default: now, to the second)")
    s.add_argument("--all", action="store_true", help="everything up to --end (the first extract of a site)")
    s.add_argument("--mapping", help="statuses, types, clients… (default: config/sources/jira_sample.yaml)")
    s.add_argument("--url", help="site, e.g. https://acme.atlassian.net (default: SLM_JIRA_URL)")
    s.add_argument("--out", help="landing folder (default: $SLM_HOME/landing/jira/<end>)")
    add_dsn(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    from datetime import UTC, datetime
    from pathlib import Path

    import psycopg2

    from slm_platform.load.loader import LoadError
    from slm_platform.orchestration import extract_windows
    from slm_platform.settings import slm_home
    from slm_platform.sources.http_auth import Auth
    from slm_platform.sources.jira.api import JiraError, extract_issues
    from slm_platform.sources.jira.mapping import MappingError, load_mapping

    def when(value: str) -> datetime:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if t.tzinfo is None:
            raise StackError(f"{value}: give a time zone (e.g. 2026-11-01T00:00Z)")
        return t

    repo = Path(__file__).resolve().parents[2]
    try:
        mapping = load_mapping(args.mapping or repo / "config" / "sources" / "jira_sample.yaml")
        url = args.url or os.environ.get("SLM_JIRA_URL")
        email, token = os.environ.get("SLM_JIRA_EMAIL"), os.environ.get("SLM_JIRA_TOKEN")
        if not url:
            raise StackError("no Jira site: give --url or set SLM_JIRA_URL (https://<site>.atlassian.net)")
        if not email or not token:
            raise StackError("set SLM_JIRA_EMAIL and SLM_JIRA_TOKEN (the account's e-mail and an API token)")
        dsn = warehouse_dsn(args)
        end = when(args.end) if args.end else datetime.now(UTC).replace(microsecond=0)
        if args.all:
            start = None
        elif args.start:
            start = when(args.start)
        else:
            conn = psycopg2.connect(dsn)
            try:
                start = extract_windows.mark(conn, DAG_ID)
            finally:
                conn.close()
            if start is None:
                raise StackError("no Jira window recorded yet: give --start or --all")
        out = (
            Path(args.out) if args.out else slm_home() / "landing" / "jira" / end.strftime("%Y-%m-%dT%H%M%SZ")
        )
        shown = start.isoformat() if start else "the beginning"
        say(f"==> extracting Jira {url}: issues updated in ({shown}, {end.isoformat()}]")
        res = extract_issues(url, Auth.basic(email, token), mapping, start, end, out)
        window_start = start or datetime.fromtimestamp(0, UTC)
        # Keyed on the window (a rerun of it updates its record): a clock-second id let two runs within one
        # second overwrite each other's record.
        run_id = f"cli__{window_start.isoformat()}__{end.isoformat()}"
        batches = extract_windows.load_and_record(
            dsn, out, mapping.source, DAG_ID, run_id, (window_start, end), (window_start, end), log=say
        )
    except (JiraError, MappingError, ValueError, OSError, LoadError) as exc:
        raise StackError(f"jira: {exc}") from exc
    say(
        f"jira: {res.issues} issues, {res.events} events from {res.histories} changelog entries "
        f"({res.changelog_requests} changelog pages), {res.sla_cycles} JSM SLA cycles; "
        f"{res.requests} requests, retries {res.retries or 0} in {res.seconds:.1f} s → {out}"
    )
    for b in batches:
        say(f"  {json.dumps(b, default=str)}")
    return 0
