"""Loader throughput vs a bare COPY of the same file, and the loader's peak memory.

    .venvs/airflow/bin/python benchmarks/bench_load.py [--tickets N ...] [--checks N ...]
        [--dsn postgresql://…/postgres] [--repeat N] [--before CHECKOUT]

Creates a scratch database on the server of ``--dsn`` (default ``$SLM_TEST_PG_URL`` or the local server)
and, per entity and size (default: tickets 200,000 and 1,000,000; checks 1,000,000 and 10,000,000), writes a
canonical file (streamed: memory does not grow with it), then times, N times each (the best run counts:
the machine may be shared):
  - bare ``COPY`` of the file into a typed table without any index (the floor: no validation, no key);
  - bare ``COPY`` of the file into a table of the same shape as the raw table WITH the same primary key
    (``like raw.<entity>``, the bookkeeping columns filled by constant defaults): the like-for-like
    baseline, since the raw table must maintain its key too;
  - ``load_drop`` of the file into an empty raw table (first load);
  - ``load_drop`` of the same file again (rerun: everything unchanged);
  - tickets only: ``load_drop`` of an increment (the same keys, every tenth row a newer version).
Each load runs in a child process that reports its peak resident memory (VmHWM): it must not grow with
the file. Goal: each load reaches at least 60 % of the bare COPY's rows/s (both ratios are printed).
Server CPU (of the backend, from /proc, when the server is local) is printed too: wall time on a shared
machine partly measures the neighbours. ``--before`` times the loader of another checkout too, in the same
rounds (before/after figures under the same load). The scratch database is dropped.
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

# SLM_BENCH_CODE: load with the package found there (a checkout of another commit, see --before).
sys.path.insert(0, os.environ.get("SLM_BENCH_CODE") or str(Path(__file__).resolve().parents[1]))

from slm_platform.canonical import entity  # noqa: E402
from slm_platform.load.raw_schema import ensure_raw_schema  # noqa: E402

CLIENTS = [
    ("ACME", "Europe/Paris", "FR"),
    ("GLOBEX", "America/New_York", "US"),
    ("INITECH", "Europe/Berlin", "DE"),
]
CHECK_SERVICES = 2000  # checks: this many services, each checked once a minute


def _write_refs(drop: Path, services: list[tuple[str, str]]) -> None:
    drop.mkdir(parents=True, exist_ok=True)
    with open(drop / "clients.csv", "w") as fh:
        fh.write("client_code,client_name,timezone,country\n")
        for code, tz, country in CLIENTS:
            fh.write(f"{code},{code.title()},{tz},{country}\n")
    with open(drop / "services.csv", "w") as fh:
        fh.write("service_code,client_code,service_name,calendar_code,criticality\n")
        for code, client in services:
            fh.write(f"{code},{client},{code},24x7,high\n")


def write_drop(drop: Path, rows: int, seed: int = 1, changed_every: int = 0) -> Path:
    """A drop of clients, services and ``rows`` tickets; ``changed_every=k``: every k-th ticket is a
    newer version (one day later, status reopened) of the same ticket, the others are identical."""
    _write_refs(drop, [(f"{c}-{s}", c) for c, _, _ in CLIENTS for s in ("ERP", "WEB")])
    rnd = random.Random(seed)
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


def write_checks_drop(drop: Path, rows: int, seed: int = 1) -> Path:
    """A drop of clients, ``CHECK_SERVICES`` services and ``rows`` checks (one a minute per service,
    about 1 % down), written line by line."""
    services = [f"SVC{n:05d}" for n in range(CHECK_SERVICES)]
    _write_refs(drop, [(s, CLIENTS[n % 3][0]) for n, s in enumerate(services)])
    rnd = random.Random(seed)
    base = datetime(2025, 1, 1, tzinfo=UTC)
    per_service = -(-rows // len(services))
    minutes = [(base + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ") for m in range(per_service)]
    latencies = [str(rnd.randrange(5, 900)) for _ in range(9973)]  # a prime: no alignment with services
    path = drop / "checks.csv"
    written = 0
    with open(path, "w", buffering=1 << 20) as fh:
        fh.write("service_code,checked_at,status,latency_ms\n")
        for m, at in enumerate(minutes):
            chunk = []
            for n, svc in enumerate(services):
                if written == rows:
                    break
                k = m * len(services) + n
                if k % 97 == 13:
                    chunk.append(f"{svc},{at},down,\n")
                else:
                    chunk.append(f"{svc},{at},up,{latencies[k % 9973]}\n")
                written += 1
            fh.write("".join(chunk))
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


def bare_copy(dsn: str, name: str, path: Path, keyed: bool) -> tuple[float, float | None]:
    """(seconds, server CPU seconds) of a bare COPY of ``path`` into a fresh table.

    ``keyed``: the raw table's exact shape and primary key (bookkeeping columns by constant defaults);
    otherwise the canonical columns, typed, no index at all."""
    spec = entity(name)
    if keyed:
        shape = (
            f"(like {spec.table} including defaults, primary key ({', '.join(spec.key)}))",
            "alter table bare alter _batch_id set default 0, alter _source set default 'bare', "
            "alter _loaded_at set default now()",
        )
        create = [f"create table bare {shape[0]}", shape[1]]
    else:
        create = [f"create table bare ({', '.join(f'{c} {t}' for c, t in spec.columns)})"]
    admin(dsn, "drop table if exists bare", *create)
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cpu0 = backend_cpu(conn.get_backend_pid())
        t0 = time.perf_counter()
        with open(path, "rb") as fh:
            cur.copy_expert(
                f"copy bare ({', '.join(spec.column_names)}) from stdin with (format csv, header true)",
                fh,
                size=1 << 20,
            )
        conn.commit()
        seconds = time.perf_counter() - t0
        cpu1 = backend_cpu(conn.get_backend_pid())
    conn.close()
    admin(dsn, "drop table bare")
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


def worker(dsn: str, drop: Path, name: str, stepwise: bool) -> None:
    """Child process: load one drop, print timings, counts and peak memory as JSON."""
    from slm_platform.load import loader
    from slm_platform.load.loader import load_drop

    kwargs = {}
    if hasattr(loader, "LoadOptions"):  # the path is a parameter of load_drop
        kwargs["options"] = loader.LoadOptions(single_pass=not stepwise)
    else:  # a checkout from before the loader's split (--before): a module toggle
        loader.SINGLE_PASS = not stepwise
    real_connect = psycopg2.connect
    psycopg2.connect = lambda d: real_connect(d, connection_factory=_MeteredConnection)

    t0 = time.perf_counter()
    results = load_drop(dsn, drop, **kwargs)
    seconds = time.perf_counter() - t0
    t = next(r for r in results if r.entity == name)
    out = {
        "seconds": seconds,
        "file_seconds": t.seconds,
        "steps": t.step_seconds,
        "counts": [t.rows_read, t.rows_loaded, t.rows_unchanged, t.rows_quarantined],
        "peak_rss_mb": peak_rss_mb(),
        "server_cpu": _MeteredConnection.cpu_at_close,  # the whole drop's backend, from connect to close
    }
    print(json.dumps(out))


def load_in_child(dsn: str, drop: Path, name: str, stepwise: bool, code: str | None = None) -> dict:
    env = dict(os.environ)
    env.pop("SLM_BENCH_CODE", None)
    if code:
        env["SLM_BENCH_CODE"] = code
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            str(drop),
            "--entity",
            name,
            "--dsn",
            dsn,
            *(["--stepwise"] if stepwise else []),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode:
        raise SystemExit(f"load of {drop} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _best(runs: list[tuple[float, float | None]]) -> tuple[float, float | None]:
    cpus = [c for _, c in runs if c is not None]
    return min(s for s, _ in runs), (min(cpus) if cpus else None)


def bench_size(
    dsn: str, name: str, rows: int, repeat: int, tmp: Path, stepwise: bool, before: str | None = None
) -> dict:
    t0 = time.perf_counter()
    full = tmp / f"{name}_full_{rows}"
    drops: dict[str, Path] = {"first load": full, "rerun": full}
    expected = {"first load": [rows, rows, 0, 0], "rerun": [rows, 0, rows, 0]}
    if name == "tickets":
        path = write_drop(full, rows)
        drops["10% changed"] = tmp / f"tickets_incr_{rows}"
        write_drop(drops["10% changed"], rows, changed_every=10)
        changed = (rows + 9) // 10
        expected["10% changed"] = [rows, changed, rows - changed, 0]
    else:
        path = write_checks_drop(full, rows)
    print(
        f"\n== {rows:,} {name} rows ({path.stat().st_size / 1e6:.0f} MB), written in "
        f"{time.perf_counter() - t0:.1f} s; best of {repeat}",
        flush=True,
    )
    bare: dict[str, list[tuple[float, float | None]]] = {"unindexed": [], "keyed": []}
    codes: dict[str, str | None] = {"": None, **({"before: ": before} if before else {})}
    runs: dict[tuple[str, str], list[dict]] = {(c, s): [] for c in codes for s in drops}
    for _ in range(repeat):
        bare["unindexed"].append(bare_copy(dsn, name, path, keyed=False))
        bare["keyed"].append(bare_copy(dsn, name, path, keyed=True))
        for label, code in codes.items():  # interleaved: the same neighbours for both
            admin(dsn, f"truncate raw.{name}")  # first load: into an empty table
            for scenario, drop in drops.items():
                r = load_in_child(dsn, drop, name, stepwise, code)
                assert r["counts"] == expected[scenario], (label, scenario, r["counts"], expected[scenario])
                runs[(label, scenario)].append(r)
    admin(dsn, f"truncate raw.{name}")  # leave room on disk for the next size
    report: dict = {"entity": name, "rows": rows, "baselines": {}, "scenarios": {}}
    for kind, label in (("unindexed", "bare COPY, no index"), ("keyed", "bare COPY, same key")):
        s, cpu = _best(bare[kind])
        shown = f"; server CPU {cpu:.2f} s" if cpu else ""
        print(f"{label:28s} {s:7.2f} s {rows / s:12,.0f} rows/s{shown}")
        report["baselines"][kind] = {"seconds": s, "server_cpu": cpu}
    for label, scenario in runs:
        best = min(runs[(label, scenario)], key=lambda r: r["seconds"])
        load_cpus = [r["server_cpu"] for r in runs[(label, scenario)] if r["server_cpu"] is not None]
        load_cpu = min(load_cpus) if load_cpus else None
        ratios = {}
        for kind in ("keyed", "unindexed"):
            base = report["baselines"][kind]
            cpu = base["server_cpu"]
            ratios[kind] = {
                "wall": base["seconds"] / best["seconds"],
                "cpu": cpu / load_cpu if cpu and load_cpu else None,
            }
        steps = ", ".join(f"{k} {v:.2f}" for k, v in best["steps"].items())
        cpu_text = "" if load_cpu is None else f"; server CPU {load_cpu:.2f} s"

        def pct(kind: str, ratios: dict = ratios) -> str:
            r = ratios[kind]
            cpu = "" if r["cpu"] is None else f" (CPU {r['cpu']:4.0%})"
            return f"{r['wall']:4.0%}{cpu}"

        print(
            f"{label}{scenario:12s} load_drop {best['seconds']:7.2f} s "
            f"{rows / best['seconds']:12,.0f} rows/s = "
            f"{pct('keyed')} of keyed COPY, {pct('unindexed')} of unindexed COPY (goal >= 60 %); "
            f"peak RSS {best['peak_rss_mb']:.0f} MB{cpu_text}\n"
            f"{'':13s}{name} file {best['file_seconds']:.2f} s: {steps}",
            flush=True,
        )
        report["scenarios"][label + scenario] = {
            "seconds": best["seconds"],
            "rows_per_s": rows / best["seconds"],
            "ratios": ratios,
            "server_cpu": load_cpu,
            "steps": best["steps"],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs[(label, scenario)]),
        }
    for d in {*drops.values()}:
        for f in d.iterdir():
            f.unlink()  # the 10 M check file is ~0.5 GB
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tickets", nargs="*", type=int, default=None, help="ticket file sizes (rows)")
    ap.add_argument("--checks", nargs="*", type=int, default=None, help="check file sizes (rows)")
    default_dsn = os.environ.get("SLM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--dsn", default=default_dsn, help="DSN of a database on the server to use")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best one counts")
    ap.add_argument("--stepwise", action="store_true", help="measure the step-by-step path (no single pass)")
    ap.add_argument(
        "--before",
        help="also time the loader of this checkout (e.g. `git worktree add /tmp/old HEAD~1`), interleaved",
    )
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # internal: load one drop, print JSON
    ap.add_argument("--entity", default="tickets", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.dsn, args.worker, args.entity, args.stepwise)
        return
    sizes = {"tickets": args.tickets, "checks": args.checks}
    if sizes["tickets"] is None and sizes["checks"] is None:
        sizes = {"tickets": [200_000, 1_000_000], "checks": [1_000_000, 10_000_000]}

    db = f"bench_load_{os.getpid()}"
    admin(args.dsn, f"create database {db}")
    target = with_db(args.dsn, db)
    reports = []
    try:
        conn = psycopg2.connect(target)
        ensure_raw_schema(conn)
        conn.close()
        with tempfile.TemporaryDirectory(dir=os.environ.get("SLM_BENCH_TMP")) as tmp:
            for name, rows_list in sizes.items():
                for rows in rows_list or ():
                    reports.append(
                        bench_size(target, name, rows, args.repeat, Path(tmp), args.stepwise, args.before)
                    )
    finally:
        admin(args.dsn, f"drop database if exists {db} with (force)")
    for name in sizes:
        mine = [r for r in reports if r["entity"] == name]
        if len(mine) > 1:
            rss = ", ".join(
                f"{r['rows']:,} rows: {r['scenarios']['first load']['peak_rss_mb']:.0f} MB" for r in mine
            )
            print(f"\npeak RSS of the process loading {name} (first load): {rss}")
    print("\n" + json.dumps(reports))


if __name__ == "__main__":
    main()
