"""``./slm extract zabbix``: its command, added to the ``extract`` group by cli/imports.py.

Extracts ``[start, end)`` from Zabbix's JSON-RPC API (problems → outages, maintenance, check items →
checks) into a landing folder, loads it, and records the window under the DAG's id (``slm_zabbix``) so the
hourly DAG resumes after it. ``--compare-sla`` reads Zabbix's own SLI for the window's periods beside ours.
Credentials: ``SLM_ZABBIX_TOKEN`` (API token), or ``SLM_ZABBIX_USER`` + ``SLM_ZABBIX_PASSWORD``.
"""

from __future__ import annotations

import argparse
import json

from slm_platform.cli.common import add_dsn, say, warehouse_dsn
from slm_platform.errors import StackError

DAG_ID = "slm_zabbix"


def add_command(sources: argparse._SubParsersAction) -> None:
    """Add ``zabbix`` to the ``extract`` group's sources."""
    s = sources.add_parser(
        "zabbix",
        help="a window of Zabbix problems, maintenance and checks (JSON-RPC API), landed then loaded",
    )
    s.add_argument(
        "--start", help="window start, ISO-8601 with zone (default: the last window's end, else 1 h)"
    )
    s.add_argument("--end", help="window end, excluded (default: now, down to the minute)")
    s.add_argument(
        "--mapping", help="host groups / tags → services (default: config/sources/zabbix_sample.yaml)"
    )
    s.add_argument("--url", help="API URL (default: SLM_ZABBIX_URL, then the mapping's url)")
    s.add_argument("--out", help="landing root (default: $SLM_HOME/landing/zabbix)")
    s.add_argument(
        "--compare-sla",
        action="store_true",
        help="also read sla.getsli (the mapping's sla_id) for the window and compare it with ours",
    )
    add_dsn(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    from datetime import UTC, datetime, timedelta
    from pathlib import Path

    import psycopg2

    from slm_platform.load.loader import LoadError
    from slm_platform.orchestration import extract_windows
    from slm_platform.settings import slm_home
    from slm_platform.sources import zabbix as zbx

    def when(value: str) -> datetime:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if t.tzinfo is None:
            raise StackError(f"{value}: give a time zone (e.g. 2026-11-01T00:00Z)")
        return t

    try:
        mapping = zbx.load_mapping(args.mapping or zbx.DEFAULT_MAPPING)
        creds = zbx.credentials_from_env()
        if creds is None:
            raise StackError(
                "no Zabbix credentials: set SLM_ZABBIX_TOKEN, or SLM_ZABBIX_USER and SLM_ZABBIX_PASSWORD"
            )
        url = args.url or os.environ.get("SLM_ZABBIX_URL") or mapping.url
        dsn = warehouse_dsn(args)
        end = when(args.end) if args.end else datetime.now(UTC).replace(second=0, microsecond=0)
        if args.start:
            start = when(args.start)
        else:
            conn = psycopg2.connect(dsn)
            try:
                mark = extract_windows.mark(conn, DAG_ID)
            finally:
                conn.close()
            start = mark if mark is not None and mark < end else end - timedelta(hours=1)
        root = Path(args.out) if args.out else slm_home() / "landing" / "zabbix"
        out = zbx.landing_dir(root, start, end)
        res = zbx.extract(mapping, start, end, out, url=url, creds=creds, log=say)
        run_id = f"cli__{start.isoformat()}__{end.isoformat()}"  # keyed on the window: a rerun updates it
        batches_xcom = extract_windows.load_and_record(
            dsn, out, zbx.SOURCE, DAG_ID, run_id, (start, end), (start, end), log=say
        )
    except (zbx.ZabbixError, zbx.MappingError, ValueError, OSError, LoadError) as exc:
        raise StackError(f"zabbix: {exc}") from exc
    say(
        f"zabbix {res.api_version}: [{start.isoformat()}, {end.isoformat()}) {res.problems} problems "
        f"({res.below_severity} below {mapping.min_severity}), {res.recoveries} recoveries, "
        f"{res.outage_rows} outage rows ({res.open_at_end} open, {res.reopened} closed from earlier"
        f" windows), {res.outage_unmapped} quarantined, {res.maintenance_rows} maintenance rows,"
        f" {res.check_rows} checks; "
        f"{res.requests} requests, retries {res.retries or 0} in {res.seconds:.1f} s → {out}"
    )
    for b in batches_xcom:
        say(f"  {json.dumps(b, default=str)}")
    if args.compare_sla:
        try:
            sli = zbx.get_sli(mapping, start, end, url=url, creds=creds)
        except (zbx.ZabbixError, zbx.MappingError) as exc:
            raise StackError(f"zabbix sla.getsli: {exc}") from exc
        rows = zbx.compare_sla(
            sli, out, cut_off=int(end.timestamp()), window=(int(start.timestamp()), int(end.timestamp()))
        )
        for r in rows:
            flag = "agree" if r["agree"] else "DIFFER"
            say(
                f"  {r['service_code']:16} {r['period_from']}..{r['period_to']}  ours {r['ours_pct']}  "
                f"zabbix {r['zabbix_pct']}  {flag} {r['why']}"
            )
        agree = sum(r["agree"] for r in rows)
        say(f"SLA: {agree}/{len(rows)} service-periods agree within 0.01 points")
    return 0
