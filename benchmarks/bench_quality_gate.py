"""Benchmark: the raw_checks quality gate over the whole table vs over the night's window of load batches.

    .venvs/airflow/bin/python benchmarks/bench_quality_gate.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

Builds a scratch database (dropped at the end) with ``--old`` checks in nightly load batches of ``--new``
rows each (2,000 services at one check a minute), vacuums and analyzes it (the history's BRIN ranges are
summarized, as autovacuum leaves them), then loads one more batch of ``--new`` rows (the night's load, not
analyzed yet). It then times, alternating, ``--repeat`` times each: the committed checkpoints over the
whole tables (the gate before), the gate by window (:func:`slm_platform.gate.quality.run_gate`: window
recorded,
BRIN summary, raw_checks_increment on the new batch, tickets and surveys whole: one row each here) and the
gate on an empty window (its fixed cost: GX context, connections); it reports the best times, their
ratio with and without the fixed cost, and the rows each validated.
"""

from __future__ import annotations

import argparse
import os
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from slm_platform.gate.quality import RAW_CHECKPOINTS, run_checkpoints, run_gate
from slm_platform.load.raw_schema import ensure_raw_schema

SERVICES = 2000


def _dsn_for(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


def _load_batch(cur, first_minute: int, rows: int) -> int:
    """One load batch of ``rows`` checks: all services, one check a minute from ``first_minute``."""
    cur.execute(
        "insert into raw.load_batches (source, entity, file, started_at, finished_at, rows_read,"
        " rows_loaded, status) values ('bench', 'checks', 'checks.csv', now(), now(), %s, %s, 'ok')"
        " returning batch_id",
        (rows, rows),
    )
    (batch,) = cur.fetchone()
    cur.execute(
        "insert into raw.checks (service_code, checked_at, status, latency_ms, _batch_id, _source,"
        " _loaded_at)"
        " select 'SVC-' || (i %% %(services)s), timestamptz '2024-01-01'"
        "   + ((%(first)s + i / %(services)s) * interval '1 minute'),"
        "   case when i %% 97 = 0 then 'down' else 'up' end,"
        "   case when i %% 97 = 0 then null else 20 + i %% 400 end, %(batch)s, 'bench', now()"
        " from generate_series(0, %(rows)s - 1) i",
        {"services": SERVICES, "first": first_minute, "batch": batch, "rows": rows},
    )
    return batch


def _build(dsn: str, old: int, new: int) -> int:
    conn = psycopg2.connect(dsn)
    ensure_raw_schema(conn)
    with conn.cursor() as cur:
        for table, cols, values in (
            ("clients", "client_code, client_name, timezone", "'ACME', 'Acme', 'UTC'"),
            ("services", "service_code, client_code, service_name", "'SVC-0', 'ACME', 'web'"),
            (
                "tickets",
                "ticket_id, client_code, service_code, ticket_type, priority, opened_at, updated_at",
                "'T1', 'ACME', 'SVC-0', 'incident', 'P1', now(), now()",
            ),
        ):
            cur.execute(
                f"insert into raw.{table} ({cols}, _batch_id, _source, _loaded_at)"  # noqa: S608 - fixed
                f" values ({values}, 0, 'bench', now())"
            )
        minute, loaded = 0, 0
        while loaded < old:
            rows = min(new, old - loaded)
            _load_batch(cur, minute, rows)
            minute += rows // SERVICES + 1
            loaded += rows
        conn.commit()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("vacuum analyze raw.checks")
    conn.autocommit = False
    with conn.cursor() as cur:
        previous = _load_batch(cur, minute, new) - 1
    conn.commit()
    conn.close()
    return previous


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="a database of the server (the scratch one is created)")
    parser.add_argument("--old", type=int, default=5_000_000, help="checks already validated")
    parser.add_argument("--new", type=int, default=300_000, help="checks of the night's load batch")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    scratch = f"slm_bench_gate_{os.getpid()}"
    admin = psycopg2.connect(args.dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"create database {scratch}")
    dsn = _dsn_for(args.dsn, scratch)
    try:
        t_build, previous = _timed(lambda: _build(dsn, args.old, args.new))
        print(
            f"built {args.old:,} old + {args.new:,} new checks in {t_build:.0f} s; load avg {os.getloadavg()}"
        )
        # Night n-1 passed: the mark is the last old batch, so the gate's window is the new batch alone.
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            ensure_raw_schema(conn)  # raw.quality_gate_runs (GATE_DDL moved to load/raw_schema.py)
            cur.execute(
                "insert into raw.quality_gate_runs (run_key, after_batch, through_batch, full_check, status)"
                " values ('previous night', 0, %s, false, 'passed')",
                (previous,),
            )

        run_checkpoints(["raw_tickets"], dsn)  # warm-up: GX's import (seconds) is paid once per process
        times: dict[str, list[float]] = {"whole": [], "gate": [], "empty": []}
        for attempt in range(args.repeat):
            # Before: the three committed checkpoints over the whole tables.
            t, whole = _timed(lambda: run_checkpoints(RAW_CHECKPOINTS, dsn))
            times["whole"].append(t)
            # After: the gate on a new run key (window recorded, BRIN summarized, checks of the new batch).
            t, gate = _timed(lambda a=attempt: run_gate(dsn, f"bench night {a}"))
            times["gate"].append(t)
            # The gate's fixed cost: the next run key finds an empty window (the previous one passed).
            t, empty = _timed(lambda a=attempt: run_gate(dsn, f"bench quiet night {a}"))
            times["empty"].append(t)
            with conn.cursor() as cur:  # back to night n-1's mark for the next attempt
                cur.execute("delete from raw.quality_gate_runs where run_key like 'bench %%'")
            assert all(r.success for r in whole) and gate.success and empty.success
            rows = {r.checkpoint: r.rows for r in (*whole, *gate.results)}
            print(
                f"attempt {attempt + 1}: whole tables {times['whole'][-1]:.1f} s"
                f" (raw_checks {rows['raw_checks']:,} rows), gate {times['gate'][-1]:.1f} s"
                f" (window ({gate.after_batch}, {gate.through_batch}]:"
                f" {rows['raw_checks_increment']:,} rows), empty-window gate {times['empty'][-1]:.1f} s;"
                f" load avg {os.getloadavg()}"
            )
        conn.close()
        whole_s, gate_s, fixed_s = (min(times[k]) for k in ("whole", "gate", "empty"))
        net_whole, net_gate = whole_s - fixed_s, gate_s - fixed_s
        print(
            f"best: whole tables {whole_s:.1f} s, gate by window {gate_s:.1f} s"
            f" (ratio {gate_s / whole_s:.1%}); less the empty-window gate ({fixed_s:.1f} s: GX context,"
            f" connections, tickets and surveys): {net_whole:.1f} s vs {net_gate:.1f} s"
            f" ({net_gate / net_whole:.1%})"
        )
    finally:
        with admin.cursor() as cur:
            cur.execute(f"drop database if exists {scratch} with (force)")
        admin.close()


if __name__ == "__main__":
    main()
