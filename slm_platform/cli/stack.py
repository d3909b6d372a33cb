"""``./slm stack up|down|status|dsn``: the local stack (PostgreSQL, Redis, Airflow, Superset)."""

from __future__ import annotations

import argparse
import json

from slm_platform.cli.common import say
from slm_platform.errors import StackError


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("stack", help="start, stop or show the local stack; print its warehouse DSN")
    verbs = group.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("up", help="start the stack (all components, or --only)")
    s.add_argument("--only", help="comma-separated components to start (pg,airflow,superset)")
    s.add_argument(
        "--executor",
        choices=("local", "celery"),
        help="Airflow's executor: local (LocalExecutor, the default) or celery (two Celery workers on the "
        "stack's Redis); remembered, so a later up keeps it",
    )
    s.set_defaults(func=up)
    s = verbs.add_parser("down", help="stop every process of the stack")
    s.set_defaults(func=down)
    s = verbs.add_parser("status", help="what runs, where, and the login of each service")
    s.add_argument("--json", action="store_true", help="status as JSON")
    s.set_defaults(func=status)
    s = verbs.add_parser("dsn", help="print the warehouse connection string (with its password)")
    s.set_defaults(func=dsn)


def up(args: argparse.Namespace) -> int:
    from slm_platform.ops import stack

    only = tuple(args.only.split(",")) if args.only else stack.COMPONENTS
    unknown = set(only) - set(stack.COMPONENTS)
    if unknown:
        raise StackError(f"unknown component(s) {sorted(unknown)}; choose from {stack.COMPONENTS}")
    print_status(stack.up(only, say, args.executor))
    return 0


def down(args: argparse.Namespace) -> int:
    from slm_platform.ops import stack

    stack.down(say)
    say("stack stopped")
    return 0


def status(args: argparse.Namespace) -> int:
    from slm_platform.ops import stack

    st = stack.status()
    print(json.dumps(st, indent=2)) if args.json else print_status(st)
    return 0


def dsn(args: argparse.Namespace) -> int:
    from slm_platform.ops import stack
    from slm_platform.settings import WAREHOUSE_DB

    print(stack.pg_server().dsn(WAREHOUSE_DB))
    return 0


def print_status(st: dict) -> None:
    say(f"SLM_HOME:     {st['slm_home']}")
    if "postgresql" in st:
        pg = st["postgresql"]
        kind = "existing server" if pg["external"] else "embedded cluster"
        state = "running" if pg["running"] else "stopped"
        say(f"PostgreSQL:   {state} ({kind}) on {pg['host']}:{pg['port']}")
        say(f"Warehouse:    {pg['warehouse_dsn']}   (./slm stack dsn prints it with the password)")
    if "redis" in st:
        rd = st["redis"]
        say(f"Redis:        {'running' if rd['running'] else 'stopped'} on {rd['host']}:{rd['port']}")
    for name in ("airflow", "superset"):
        if name in st:
            s = st[name]
            say(
                f"{name.capitalize():13} {'running' if s['running'] else 'stopped'} at {s['url']}"
                f"  login: {s['login']}"
            )
    if "airflow" in st:
        af = st["airflow"]
        workers = ", ".join(f"{w} {'running' if up else 'stopped'}" for w, up in af["workers"].items())
        say(f"Executor:     {af['executor']}" + (f" (Celery workers: {workers})" if workers else ""))
    say(f"Credentials:  {st['credentials_file']}")
