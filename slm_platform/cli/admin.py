"""``./slm contracts validate``, ``./slm superset provision`` and ``./slm superset warm``: the contract
catalogue and the dashboards."""

from __future__ import annotations

import argparse
from pathlib import Path

from slm_platform.cli.common import say


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("contracts", help="the contract catalogue (calendars, SLA / OLA / UC)")
    verbs = group.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("validate", help="check a catalogue and name every error")
    s.add_argument("file", nargs="?")
    s.set_defaults(func=validate_contracts)

    group = sub.add_parser("superset", help="Superset assets")
    verbs = group.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("provision", help="import the bundle; create roles, users and row-level security")
    s.set_defaults(func=provision)
    s = verbs.add_parser(
        "warm",
        help="empty the dashboards' cache and refill it for every client (with its row-level security)",
    )
    s.add_argument("--keep", action="store_true", help="do not empty the cache first (only refill)")
    s.set_defaults(func=warm)


def validate_contracts(args: argparse.Namespace) -> int:
    from slm_platform.contracts import catalogue

    return catalogue.main_validate(Path(args.file) if args.file else None)


def provision(args: argparse.Namespace) -> int:
    from slm_platform.ops import provision_dashboards

    creds = provision_dashboards.provision_stack(say)
    for who, c in creds.items():
        say(f"  {who:16} {c['username']}")
    return 0


def warm(args: argparse.Namespace) -> int:
    """What the nightly's warm_dashboards task does after publish, by hand (after a manual publish, or when
    that task failed)."""
    from slm_platform.dashboards.warm import warm as warm_superset
    from slm_platform.ops import stack

    url = stack.status()["superset"]["url"]
    password = stack.credentials()["superset_admin_password"]
    result = warm_superset(url, "admin", password, say, clear=not args.keep)
    s = result.summary()
    say(
        f"warmed {s['warmed']}/{s['charts']} charts of {s['dashboards']} dashboards for {s['scopes']} role "
        f"sets in {s['seconds']}s ({s['skipped']} without a saved query, {s['errors']} errors)"
    )
    for error in result.errors:
        say(f"  not warmed: {error}")
    return 1 if result.errors else 0
