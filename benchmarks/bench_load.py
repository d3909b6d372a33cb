"""Loader throughput vs a bare COPY of the same ticket file, and the loader's peak memory.

    .venvs/airflow/bin/python benchmarks/bench_load.py [ROWS ...] [--dsn postgresql://…/postgres] [--repeat N]

Creates a scratch database on the server of ``--dsn`` (default ``$SLM_TEST_PG_URL`` or the local server),
and for each ROWS (default 200,000 and 1,000,000) writes a canonical ticket file plus an increment (the
same keys, every tenth row a newer version), then times, N times each (the best run counts: the machine
may be shared):
  - a bare ``COPY`` of the file into an unindexed, typed table (the floor: no validation, no key);
  - ``load_drop`` of the file into an empty ``raw.tickets`` (first load);
  - ``load_drop`` of the same file again (rerun: everything unchanged);
  - ``load_drop`` of the increment (10 % of the rows changed).
Each load runs in a child process that reports its peak resident memory (VmHWM): it must not grow with
the file. Goal: each load reaches at least 60 % of the bare COPY's rows/s. The scratch database is dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slm_platform.canonical import entity  # noqa: E402
from slm_platform.raw_schema import ensure_raw_schema  # noqa: E402

CLIENTS = [
    ("ACME", "Europe/Paris", "FR"),
    ("GLOBEX", "America/New_York", "US"),
    ("INITECH", "Europe/Berlin", "DE"),
]
SCENARIOS = ("first load", "rerun", "10% changed")


def write_drop(drop: Path, rows: int, seed: int = 1, changed_every: int = 0) -> Path:
    """A drop of clients, services and ``rows`` tickets; ``changed_every=k``: every k-th ticket is a
    newer version (one day later, status reopened) of the same ticket, the others are identical."""
    drop.mkdir(parents=True, exist_ok=True)
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
            status, updated = "closed", r
            if changed_every and i % changed_every == 0:
                status, updated = "reopened", (resolved + timedelta(days=1)).isoformat()
            fh.write(
                f"T{i:08d},{client},{client}-{'ERP' if i % 2 else 'WEB'},incident,{prio},{o},{o},{r},{r},"
                f"{status},ServiceDesk,false,,network,{updated}\n"
            )
    return path


def with_db(dsn: str, db: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + db))


def admin(dsn: str, *statements: str) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


def bare_copy(dsn: str, path: Path) -> tuple[float, float | None]:
    spec = entity("tickets")
    cols = ", ".join(f"{c} {t}" for c, t in spec.columns)
    admin(dsn, "drop table if exists bare_tickets", f"create table bare_tickets ({cols})")
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cpu0 = backend_cpu(conn.get_backend_pid())
        t0 = time.perf_counter()
        with open(path, "rb") as fh:
            cur.copy_expert("copy bare_tickets from stdin with (format csv, header true)", fh, size=1 << 20)
        conn.commit()
        seconds = time.perf_counter() - t0
        cpu1 = backend_cpu(conn.get_backend_pid())
    conn.close()
    return seconds, (cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None)


def backend_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by a local server backend; None if not readable.

    Wall time on a shared machine mostly measures the neighbours; the server's CPU time does not."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _MeteredConnection(psycopg2.extensions.connection):
    """Remembers its backend's CPU time just before closing (the process is gone afterwards)."""

    cpu_at_close: float | None = None

    def close(self) -> None:
        if not self.closed:
            type(self).cpu_at_close = backend_cpu(self.get_backend_pid())
        super().close()


def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource  # not Linux: ru_maxrss (kB on Linux, bytes on macOS; close enough for a trend)

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(dsn: str, drop: Path, stepwise: bool) -> None:
    """Child process: load one drop, print timings, counts and peak memory as JSON."""
    from slm_platform import loader
    from slm_platform.loader import load_drop

    loader.SINGLE_PASS = not stepwise
    real_connect = psycopg2.connect
    loader.psycopg2.connect = lambda d: real_connect(d, connection_factory=_MeteredConnection)

    t0 = time.perf_counter()
    results = load_drop(dsn, drop)
    seconds = time.perf_counter() - t0
    t = next(r for r in results if r.entity == "tickets")
    out = {
        "seconds": seconds,
        "tickets_seconds": t.seconds,
        "steps": t.step_seconds,
        "counts": [t.rows_read, t.rows_loaded, t.rows_unchanged, t.rows_quarantined],
        "peak_rss_mb": peak_rss_mb(),
        "server_cpu": _MeteredConnection.cpu_at_close,  # the whole drop's backend, from connect to close
    }
    print(json.dumps(out))


def load_in_child(dsn: str, drop: Path, stepwise: bool) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            str(drop),
            "--dsn",
            dsn,
            *(["--stepwise"] if stepwise else []),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"load of {drop} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_size(dsn: str, rows: int, repeat: int, tmp: Path, stepwise: bool) -> dict:
    t0 = time.perf_counter()
    full = tmp / f"full_{rows}"
    path = write_drop(full, rows)
    write_drop(tmp / f"incr_{rows}", rows, changed_every=10)
    print(
        f"\n== {rows:,} ticket rows ({path.stat().st_size / 1e6:.0f} MB), written in "
        f"{time.perf_counter() - t0:.1f} s; best of {repeat}",
        flush=True,
    )
    expected = {
        "first load": [rows, rows, 0, 0],
        "rerun": [rows, 0, rows, 0],
        "10% changed": [rows, (rows + 9) // 10, rows - (rows + 9) // 10, 0],
    }
    copies: list[tuple[float, float | None]] = []
    runs: dict[str, list[dict]] = {s: [] for s in SCENARIOS}
    for _ in range(repeat):
        copies.append(bare_copy(dsn, path))
        admin(dsn, "drop table if exists bare_tickets")
        admin(dsn, "truncate raw.tickets")  # first load: into an empty table
        for scenario, drop in zip(SCENARIOS, (full, full, tmp / f"incr_{rows}"), strict=True):
            r = load_in_child(dsn, drop, stepwise)
            assert r["counts"] == expected[scenario], (scenario, r["counts"], expected[scenario])
            runs[scenario].append(r)
    copy_s = min(s for s, _ in copies)
    cpus = [c for _, c in copies if c is not None]
    copy_cpu = min(cpus) if cpus else None
    shown = f"; server CPU {copy_cpu:.2f} s" if copy_cpu else ""
    print(f"bare COPY (unindexed):  {copy_s:7.2f} s {rows / copy_s:12,.0f} rows/s{shown}")
    report = {"rows": rows, "bare_copy_s": copy_s, "bare_copy_cpu": copy_cpu, "scenarios": {}}
    for scenario in SCENARIOS:
        best = min(runs[scenario], key=lambda r: r["seconds"])
        ratio = copy_s / best["seconds"]
        steps = ", ".join(f"{k} {v:.2f}" for k, v in best["steps"].items())
        load_cpus = [r["server_cpu"] for r in runs[scenario] if r["server_cpu"] is not None]
        cpu_ratio = copy_cpu / min(load_cpus) if copy_cpu and load_cpus else None
        cpu_text = f"; server CPU {min(load_cpus):.2f} s = {cpu_ratio:4.0%} of COPY's" if cpu_ratio else ""
        print(
            f"{scenario:12s} load_drop {best['seconds']:7.2f} s {rows / best['seconds']:12,.0f} rows/s "
            f"= {ratio:4.0%} of COPY (goal >= 60 %); peak RSS {best['peak_rss_mb']:.0f} MB{cpu_text}\n"
            f"{'':13s}tickets.csv {best['tickets_seconds']:.2f} s: {steps}",
            flush=True,
        )
        report["scenarios"][scenario] = {
            "seconds": best["seconds"],
            "ratio": ratio,
            "server_cpu": min(load_cpus) if load_cpus else None,
            "cpu_ratio": cpu_ratio,
            "steps": best["steps"],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs[scenario]),
        }
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="*", type=int, default=[200_000, 1_000_000])
    default_dsn = os.environ.get("SLM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--dsn", default=default_dsn, help="DSN of a database on the server to use")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best one counts")
    ap.add_argument("--stepwise", action="store_true", help="measure the step-by-step path (no single pass)")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # internal: load one drop, print JSON
    args = ap.parse_args()
    if args.worker:
        worker(args.dsn, args.worker, args.stepwise)
        return

    db = f"bench_load_{os.getpid()}"
    admin(args.dsn, f"create database {db}")
    target = with_db(args.dsn, db)
    reports = []
    try:
        conn = psycopg2.connect(target)
        ensure_raw_schema(conn)
        conn.close()
        with tempfile.TemporaryDirectory() as tmp:
            for rows in args.rows:
                reports.append(bench_size(target, rows, args.repeat, Path(tmp), args.stepwise))
    finally:
        admin(args.dsn, f"drop database if exists {db}")
    if len(reports) > 1:
        rss = ", ".join(
            f"{r['rows']:,} rows: {r['scenarios']['first load']['peak_rss_mb']:.0f} MB" for r in reports
        )
        print(f"\npeak RSS of the loading process (first load): {rss}")
    print("\n" + json.dumps(reports))


if __name__ == "__main__":
    main()
