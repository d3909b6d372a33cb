"""What every command group shares: printing, the warehouse DSN, a load's per-entity lines."""

from __future__ import annotations

import argparse


def say(msg: str) -> None:
    print(msg, flush=True)


def warehouse_dsn(args: argparse.Namespace) -> str:
    """``--dsn`` when given, else the local stack's warehouse."""
    from slm_platform.ops import stack
    from slm_platform.settings import WAREHOUSE_DB

    return getattr(args, "dsn", None) or stack.pg_server().dsn(WAREHOUSE_DB)


def add_dsn(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", help="warehouse DSN (default: the stack's warehouse)")


def print_batches(results: list) -> None:
    for r in results:
        say(
            f"  {r.entity:14} read {r.rows_read:>8}  loaded {r.rows_loaded:>8}  "
            f"unchanged {r.rows_unchanged:>8}  quarantined {r.rows_quarantined:>6}"
        )
    refused = [r for r in results if r.rows_quarantined]
    if refused:
        batches = ", ".join(str(r.batch_id) for r in refused)
        say(f"quarantined rows (batch {batches}): ./slm quarantine list [--batch N] [--rows] shows why")
