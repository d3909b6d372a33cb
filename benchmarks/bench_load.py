"""Loader throughput vs a bare COPY of the same ticket file.

    .venvs/airflow/bin/python benchmarks/bench_load.py [ROWS] [--dsn postgresql://…/postgres]

Creates a scratch database on the server of ``--dsn`` (default ``$SLM_TEST_PG_URL`` or the local server),
writes ROWS canonical ticket rows (default 1,000,000) to a CSV, then times
  1. a bare ``COPY`` of that file into an unindexed, typed table (the floor: no validation, no key);
  2. ``load_drop`` on a drop holding that file (staging, set-based validation, upsert by key, batch).
Goal: the loader reaches at least 60 % of the bare COPY's rows/s. The scratch database is dropped.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slm_platform.canonical import entity  # noqa: E402
from slm_platform.loader import load_drop  # noqa: E402

CLIENTS = [
    ("ACME", "Europe/Paris", "FR"),
    ("GLOBEX", "America/New_York", "US"),
    ("INITECH", "Europe/Berlin", "DE"),
]


def write_drop(drop: Path, rows: int, seed: int = 1) -> Path:
    rnd = random.Random(seed)
    with open(drop / "clients.csv", "w") as fh:
        fh.write("client_code,client_name,timezone,country\n")
        for code, tz, country in CLIENTS:
            fh.write(f"{code},{code.title()},{tz},{country}\n")
    with open(drop / "services.csv", "w") as fh:
        fh.write("service_code,client_code,service_name,calendar_code,criticality\n")
        for code, _, _ in CLIENTS:
            for s in ("ERP", "WEB"):
                fh.write(f"{code}-{s},{code},{s},24x7,high\n")
    spec = entity("tickets")
    base = datetime(2025, 1, 1, tzinfo=UTC)
    path = drop / "tickets.csv"
    with open(path, "w") as fh:
        fh.write(",".join(spec.column_names) + "\n")
        for i in range(rows):
            client = CLIENTS[i % 3][0]
            opened = base + timedelta(seconds=rnd.randrange(0, 365 * 86400))
            resolved = opened + timedelta(minutes=rnd.randrange(5, 5000))
            o, r = opened.isoformat(), resolved.isoformat()
            prio = f"P{rnd.randrange(1, 5)}"
            fh.write(
                f"T{i:08d},{client},{client}-{'ERP' if i % 2 else 'WEB'},incident,{prio},{o},{o},{r},{r},"
                f"closed,ServiceDesk,false,,network,{r}\n"
            )
    return path


def with_db(dsn: str, db: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + db))


def admin(dsn: str, statement: str) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


def bare_copy(dsn: str, path: Path) -> float:
    spec = entity("tickets")
    cols = ", ".join(f"{c} {t}" for c, t in spec.columns)
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute(f"create table bare_tickets ({cols})")
        conn.commit()
        t0 = time.perf_counter()
        with open(path, "rb") as fh:
            cur.copy_expert("copy bare_tickets from stdin with (format csv, header true)", fh, size=1 << 20)
        conn.commit()
        seconds = time.perf_counter() - t0
    conn.close()
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="?", type=int, default=1_000_000)
    default_dsn = os.environ.get("SLM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--dsn", default=default_dsn, help="DSN of a database on the server to use")
    args = ap.parse_args()

    db = f"bench_load_{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        drop = Path(tmp)
        t0 = time.perf_counter()
        path = write_drop(drop, args.rows)
        print(
            f"generated {args.rows:,} ticket rows ({path.stat().st_size / 1e6:.0f} MB) in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        admin(args.dsn, f"create database {db}")
        try:
            target = with_db(args.dsn, db)
            copy_s = bare_copy(target, path)
            t0 = time.perf_counter()
            results = load_drop(target, drop)
            load_s = time.perf_counter() - t0
            tickets = next(r for r in results if r.entity == "tickets")
            assert tickets.rows_loaded == args.rows and tickets.rows_quarantined == 0, tickets
        finally:
            admin(args.dsn, f"drop database if exists {db}")
    n = args.rows
    print(f"bare COPY (unindexed):  {copy_s:7.2f} s  {n / copy_s:12,.0f} rows/s")
    print(f"load_drop (whole drop): {load_s:7.2f} s  {n / load_s:12,.0f} rows/s")
    print(f"  of which tickets.csv: {tickets.seconds:7.2f} s  {n / tickets.seconds:12,.0f} rows/s")
    print("  steps:", ", ".join(f"{k} {v:.2f}" for k, v in tickets.step_seconds.items()))
    ratio = copy_s / load_s
    print(f"loader / COPY throughput: {ratio:.0%} (goal >= 60 %)")


if __name__ == "__main__":
    main()
