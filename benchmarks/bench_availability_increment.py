"""Nightly availability increment: dbt time for one new day of checks vs a full rebuild, as history grows.

    .venvs/airflow/bin/python benchmarks/bench_availability_increment.py \
        [--services 2000] [--history-days 2,6] [--dsn postgresql://…/postgres] [--keep]

Creates a scratch database on the server of ``--dsn`` (default ``$SLM_TEST_PG_URL``, else the local stack's
server) with one client, N services on a 24x7 SLA availability objective (99.9 %, monthly), and 1-minute
checks written straight into raw.checks with generate_series (a few 15-minute outages per service and month).
For each history length H (ascending; the history grows backwards from the increment day):
  1. bring the models up to date on H days of history (not timed);
  2. load the increment: one more day of checks for every service (N x 1,440 rows, a new load batch);
  3. time ``dbt run`` of the availability models (incremental: only the new service-days are rebuilt);
  4. time ``dbt run --full-refresh`` of the same models over H + 1 days;
and prints both with their ratio, per model. Goal: increment <= 10 % of the full rebuild. The full rebuild
grows with the history, the increment does not: a year of 2,000 services at 1 minute (1.05 billion rows) is
out of reach of a laptop-sized benchmark; a year at 200 services (``--services 200 --history-days 365``,
105 M rows, 11 GB, ~34 GB of disk at the full rebuild's peak with its sort spill) is measured instead.
The scratch database (and dbt's target directory) are dropped unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slm_platform.contracts.load import load_contracts  # noqa: E402
from slm_platform.load.raw_schema import ensure_raw_schema  # noqa: E402
from slm_platform.transform.dbt_runner import dbt, dbt_env  # noqa: E402

MODELS = ["--select", "+fct_availability", "+fct_outage", "+fct_error_budget_burn"]
INCREMENT_DAY = datetime(2026, 10, 31, tzinfo=UTC)
GOAL = 0.10
CHUNK_DAYS = 30
CATALOGUE = """
calendars:
  - code: 24x7
    timezone: UTC
    hours: always
agreements:
  - id: SLA-BENCH
    kind: SLA
    party: BENCH
    valid_from: 2025-01-01
    valid_to: null
    objectives:
      - {metric: availability, target_pct: 99.9, calendar: 24x7, period: month}
"""


def with_db(dsn: str, db: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + db))


def admin(dsn: str, statement: str) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


def default_dsn() -> str:
    if os.environ.get("SLM_TEST_PG_URL"):
        return os.environ["SLM_TEST_PG_URL"]
    from slm_platform.settings import pg_server

    return pg_server().dsn("postgres")


def execute(dsn: str, sql: str, args: tuple = ()) -> float:
    started = time.perf_counter()
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("set synchronous_commit = off")
            cur.execute(sql, args)
    finally:
        conn.close()
    return time.perf_counter() - started


def insert_checks(dsn: str, services: int, start: datetime, end: datetime, batch: int) -> float:
    """1-minute checks of every service in [start, end); down in 15-minute blocks (~3 per service-month).

    One statement (and transaction) per chunk of at most CHUNK_DAYS days, so a year of history is never one
    transaction of a hundred million rows; every chunk carries the same load batch.
    """
    seconds = 0.0
    chunk_end = end
    while chunk_end > start:
        chunk_start = max(start, chunk_end - timedelta(days=CHUNK_DAYS))
        seconds += insert_chunk(dsn, services, chunk_start, chunk_end, batch)
        chunk_end = chunk_start
        if end - start > timedelta(days=CHUNK_DAYS):
            done = (end - chunk_end).days
            print(f"    {done}/{(end - start).days} d inserted, {seconds:.0f} s", flush=True)
    return seconds


def insert_chunk(dsn: str, services: int, start: datetime, end: datetime, batch: int) -> float:
    return execute(
        dsn,
        """
        insert into raw.checks (service_code, checked_at, status, latency_ms, _batch_id, _source, _loaded_at)
        select
            'B' || lpad(s::text, 5, '0'),
            ts,
            case when ((extract(epoch from ts)::bigint / 900) + s * 37) %% 960 = 0 then 'down' else 'up' end,
            case when ((extract(epoch from ts)::bigint / 900) + s * 37) %% 960 = 0 then null else 120 end,
            %s, 'bench', now()
        from generate_series(1, %s) as s
        cross join
            generate_series(%s::timestamptz, %s::timestamptz - interval '1 minute', interval '1 minute') as ts
        """,
        (batch, services, start, end),
    )


def setup(dsn: str, services: int) -> None:
    conn = psycopg2.connect(dsn)
    try:
        ensure_raw_schema(conn)
        with conn, conn.cursor() as cur:
            cur.execute("insert into raw.clients values ('BENCH', 'Bench', 'UTC', 'FR', 0, 'bench', now())")
            cur.execute(
                "insert into raw.services select 'B' || lpad(s::text, 5, '0'), 'BENCH', 'svc ' || s, '24x7',"
                " 'high', 0, 'bench', now() from generate_series(1, %s) as s",
                (services,),
            )
    finally:
        conn.close()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(CATALOGUE)
    try:
        load_contracts(dsn, fh.name, start=datetime(2025, 1, 1).date(), end=datetime(2027, 12, 31).date())
    finally:
        os.unlink(fh.name)


def sizes(dsn: str) -> str:
    """The database's size and the row counts of the availability tables, after the full rebuild."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select pg_size_pretty(pg_database_size(current_database()))")
            parts = [f"database {cur.fetchone()[0]}"]
            cur.execute(
                "select table_schema, table_name from information_schema.tables"
                " where table_type = 'BASE TABLE'"
                " and (table_name like 'int\\_%' or table_name like 'fct\\_%')"
                " order by table_name"
            )
            for schema, table in cur.fetchall():
                cur.execute(f'select count(*) from "{schema}"."{table}"')
                parts.append(f"{schema}.{table} {cur.fetchone()[0]:,} rows")
    finally:
        conn.close()
    return "; ".join(parts)


def run_dbt(dsn: str, target: Path, *extra: str) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    dbt(
        ["run", *MODELS, *extra, "--target-path", str(target), "--log-path", str(target / "logs")],
        dbt_env(dsn),
    )
    elapsed = time.perf_counter() - started
    results = json.loads((target / "run_results.json").read_text())["results"]
    return elapsed, {r["unique_id"].split(".")[-1]: r["execution_time"] for r in results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--history-days", default="2,6", help="ascending history lengths, comma-separated")
    parser.add_argument(
        "--dsn", default=None, help="a server's admin DSN (default: $SLM_TEST_PG_URL / stack)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)
    histories = sorted(int(d) for d in args.history_days.split(","))
    server = args.dsn or default_dsn()
    db = f"bench_avail_{int(time.time())}"
    admin(server, f"create database {db}")
    dsn = with_db(server, db)
    target = Path(tempfile.mkdtemp(prefix="bench_avail_"))
    rows_per_day = args.services * 1440
    print(f"database {db}: {args.services} services, 1-minute checks ({rows_per_day:,} rows a day)")
    report = []
    try:
        setup(dsn, args.services)
        loaded_from = INCREMENT_DAY
        batch = 1
        for history in histories:
            start = INCREMENT_DAY - timedelta(days=history)
            admin(dsn, f"delete from raw.checks where checked_at >= '{INCREMENT_DAY.isoformat()}'")
            seconds = insert_checks(dsn, args.services, start, loaded_from, batch)
            days = (loaded_from - start).days
            print(
                f"history {history} d: +{days} d ({days * rows_per_day:,} rows) inserted in {seconds:.0f} s"
            )
            loaded_from = start
            admin(dsn, "analyze raw.checks")
            catch_up, _ = run_dbt(dsn, target)  # the models on H days, as after the previous night
            # A first build takes the full-refresh path, which does not summarize the BRIN index; a previous
            # nightly (incremental) run would have, so only the new day's pages are left for the increment.
            admin(dsn, "select brin_summarize_new_values('raw.checks_batch_brin')")
            print(f"  models brought up to date in {catch_up:.0f} s")

            batch += 1
            seconds = insert_checks(
                dsn, args.services, INCREMENT_DAY, INCREMENT_DAY + timedelta(days=1), batch
            )
            batch += 1
            print(f"  increment: {rows_per_day:,} rows inserted in {seconds:.0f} s")
            incremental, inc_models = run_dbt(dsn, target)
            full, full_models = run_dbt(dsn, target, "--full-refresh")
            ratio = incremental / full
            model_ratio = sum(inc_models.values()) / sum(full_models.values())
            report.append((history, incremental, full, ratio, model_ratio))
            print(
                f"  dbt incremental {incremental:.1f} s  vs  full rebuild {full:.1f} s  ->  {ratio:.1%}"
                f"  (model time only, without dbt's start-up: {model_ratio:.1%})"
            )
            print(f"  {sizes(dsn)}")
            for model in full_models:
                print(
                    f"    {model:40} incremental {inc_models.get(model, 0):7.1f} s"
                    f"   full {full_models[model]:7.1f} s"
                )
    finally:
        if not args.keep:
            admin(server, f"drop database if exists {db} with (force)")
            shutil.rmtree(target, ignore_errors=True)
    print("\nhistory (days) | increment (s) | full rebuild (s) | ratio (goal <= 10 %) | model time ratio")
    for history, incremental, full, ratio, model_ratio in report:
        print(f"{history:14} | {incremental:13.1f} | {full:16.1f} | {ratio:20.1%} | {model_ratio:6.1%}")
    return 0 if report and report[-1][3] <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
