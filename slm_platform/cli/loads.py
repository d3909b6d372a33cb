"""``./slm loads list`` and ``./slm quarantine list``: what the loads did, and what they refused and why."""

from __future__ import annotations

import argparse
import json

from slm_platform.cli.common import add_dsn, say, warehouse_dsn


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("loads", help="the load batches: rows read, loaded, unchanged, quarantined")
    verbs = group.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("list", help="the last load batches")
    s.add_argument("--last", type=int, default=20, help="how many batches (default 20)")
    s.add_argument("--entity", help="only this entity (tickets, checks, ...)")
    s.add_argument("--source", help="only this source (canonical, servicenow_export, ...)")
    add_dsn(s)
    s.set_defaults(func=list_loads)

    group = sub.add_parser("quarantine", help="what the loads refused, and why")
    verbs = group.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("list", help="grouped by reason, or each row with --rows")
    s.add_argument("--batch", type=int, help="only this load batch")
    s.add_argument("--entity", help="only this entity")
    s.add_argument("--source", help="only this source")
    s.add_argument("--rows", action="store_true", help="list the rows with their raw record")
    s.add_argument("--limit", type=int, default=50, help="rows listed with --rows (default 50)")
    add_dsn(s)
    s.set_defaults(func=list_quarantine)


def list_loads(args: argparse.Namespace) -> int:
    import psycopg2

    from slm_platform.load import report

    conn = psycopg2.connect(warehouse_dsn(args))
    try:
        batches = report.recent_batches(conn, args.last, args.entity, args.source)
    finally:
        conn.close()
    for line in report.format_batches(batches):
        say(line)
    return 0


def list_quarantine(args: argparse.Namespace) -> int:
    import psycopg2

    from slm_platform.load import report

    conn = psycopg2.connect(warehouse_dsn(args))
    try:
        if args.rows:
            rows = report.quarantine_rows(conn, args.batch, args.entity, args.source, args.limit)
            for batch, entity, location, reason, record in rows:
                say(f"batch {batch}  {entity}  {location}  {reason}")
                say(f"    {json.dumps(record, ensure_ascii=False, sort_keys=True)}")
            if not rows:
                say("nothing quarantined")
        else:
            summary = report.quarantine_summary(conn, args.batch, args.entity, args.source)
            for line in report.format_summary(summary):
                say(line)
    finally:
        conn.close()
    return 0
