"""``./slm demo up|generate``: the deterministic demo data set, and the whole demo in one command."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from slm_platform.cli.common import say
from slm_platform.cli.nightly import run_nightly
from slm_platform.errors import StackError


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("demo", help="the demo: its data set, or everything from start to dashboards")
    verbs = group.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser(
        "up", help="start the stack, load demo data, run the nightly DAG, provision Superset"
    )
    s.add_argument("--date", type=date.fromisoformat, default=date(2026, 11, 1))
    s.add_argument("--months", type=int, default=13, help="months of history, ending before --date")
    s.set_defaults(func=up)

    s = verbs.add_parser("generate", help="write the deterministic demo data set as a canonical drop")
    s.add_argument("--out", help="folder (default: $SLM_HOME/drops/demo)")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument(
        "--start",
        type=date.fromisoformat,
        help="first month (default: the months end with October 2026, the month before the demo date)",
    )
    s.add_argument(
        "--months", type=int, help="months of history (default: 13 for the demo, 1 for the m and l profiles)"
    )
    s.add_argument(
        "--profile",
        choices=("s", "m", "l"),
        default="s",
        help="s: the demo (3 clients, 5-minute checks); m: 50 clients, 500 services; l: 500 clients, 5,000 "
        "services, about 5 M tickets a year; m and l check every service each minute (docs/design/scale.md)",
    )
    s.add_argument(
        "--days", type=int, help="m and l: only the first DAYS days from the start (a short window)"
    )
    s.add_argument("--no-progress", action="store_true", help="m and l: no progress bar on stderr")
    s.set_defaults(func=generate)


def generate(args: argparse.Namespace) -> int:
    from slm_platform.settings import slm_home
    from slm_platform.sources import demo_data

    out = Path(args.out) if args.out else slm_home() / "drops" / "demo"
    if args.months is not None and args.months < 1:
        raise StackError("--months must be at least 1")
    if args.days is not None and (args.profile == "s" or args.days < 1):
        raise StackError("--days (at least 1) is for the m and l profiles; the demo covers whole months")
    months = args.months or demo_data.PROFILES[args.profile].default_months
    start, months = demo_data.demo_window(demo_data.DEMO_DATE, months)
    counts = demo_data.generate_profile(
        out,
        args.profile,
        seed=args.seed,
        start=args.start or start,
        months=months,
        days=args.days,
        progress=not args.no_progress,
    )
    for name, n in counts.items():
        say(f"  {name:14} {n:>8} rows")
    say(f"demo drop written to {out}")
    return 0


def up(args: argparse.Namespace) -> int:
    from slm_platform.ops import provision_dashboards, stack
    from slm_platform.settings import slm_home
    from slm_platform.sources import demo_data

    if args.months < 1:
        raise StackError("--months must be at least 1")
    st = stack.up(stack.COMPONENTS, say)
    drop = slm_home() / "drops" / "demo"
    start, months = demo_data.demo_window(args.date, args.months)
    say(f"==> generating demo data: {months} months from {start:%Y-%m}")
    demo_data.generate(drop, start=start, months=months)
    run_nightly(args.date, drop)
    say("==> provisioning Superset (bundle, roles, users, row-level security)")
    users = provision_dashboards.provision_stack(say)
    creds = stack.credentials()
    say("")
    say("The demo is ready.")
    say(f"  Airflow   {st['airflow']['url']}   user admin / {creds['airflow_admin_password']}")
    say(f"  Superset  {st['superset']['url']}   user admin / {creds['superset_admin_password']}")
    for who, c in users.items():
        say(f"            {who:10} {c['username']} / {c['password']}")
    say(f"  Warehouse {st['postgresql']['warehouse_dsn']}  (./slm stack dsn)")
    say(f"  Credentials are kept in {st['credentials_file']}; stop everything with `make down`.")
    return 0
