"""The data profiles end to end (issue 13): generate, load, gate, dbt build, publish, nightly increment.

On a stack you started (``SLM_HOME=/tmp/bench ./slm stack up --only pg,airflow``), for one profile of
``./slm demo generate --profile s|m|l`` and a window (``--days`` for m and l, whole months for s):

  1. generate the drop (a child process: wall time and its peak resident memory);
  2. empty the warehouse (schemas raw, staging, intermediate, marts_build, as on a fresh stack) and run the
     first nightly on the drop (``./slm nightly run --date <end of window> --drop``): wall time and the peak
     resident memory of the largest process of the run, split per step from the run's task lines
     (extract + load, contracts, quality gate, dbt build, publish, the rest);
  3. the nightly increment: generate the next day alone (m and l: a day's rows do not depend on the window,
     ids carry the day) and run the next night's nightly on it: the same figures, and its ratio to step 2.

Times "to publish" run from the first task to the end of ``publish`` (what a client waits for); a run
that fails after publishing (``warm_dashboards`` without Superset on the stack) is reported with its figures
and the failed task. Prints the figures and writes ``--json``. PostgreSQL's own memory is not in the peak
figures (the server is shared by the stack). Nothing is asserted; the machine may be shared: the load
average is printed.

    SLM_HOME=/tmp/bench .venvs/airflow/bin/python benchmarks/bench_profiles.py --profile m --days 7 \\
        --json /tmp/m.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

_TASK_LINE = re.compile(r"^(\S+Z) .*\[DAG TEST\] (starting task_id|end task task_id)=(\S+)")
STEPS = (
    ("load", ("extract", "load")),
    ("contracts", ("contract",)),
    ("gate", ("check_raw", "gate", "quality")),
    ("dbt", ("dbt.",)),
    ("publish", ("publish",)),
    ("review_packs", ("review_pack",)),
    ("warm_dashboards", ("warm",)),
)


def timed(cmd: list[str], log: Path | None = None, may_fail: bool = False) -> dict[str, float]:
    """Run ``cmd``; wall seconds and the peak resident memory (MB) of its largest process (GNU time)."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_profiles_time_{os.getpid()}"
    started = time.perf_counter()
    with open(log or os.devnull, "w") as fh:
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", str(out), *cmd],
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=False,
        )
    wall = time.perf_counter() - started
    if proc.returncode != 0 and not may_fail:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}" + (f"; see {log}" if log else ""))
    peak_kb = int(out.read_text().split()[-1])
    out.unlink()
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(peak_kb / 1024, 1), "rc": proc.returncode}


def task_steps(log: Path) -> dict[str, float]:
    """Seconds per step of one nightly run, from its ``[DAG TEST]`` task lines (a step spans its tasks)."""
    starts: dict[str, datetime] = {}
    ends: dict[str, datetime] = {}
    for line in log.read_text().splitlines():
        m = _TASK_LINE.match(line)
        if not m:
            continue
        at = datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
        if m.group(2).startswith("starting"):
            starts.setdefault(m.group(3), at)
        else:
            ends[m.group(3)] = at
    steps: dict[str, float] = {}
    claimed: set[str] = set()
    for step, keys in STEPS:
        tasks = [t for t in starts if t not in claimed and t in ends and any(k in t for k in keys)]
        claimed.update(tasks)
        if tasks:
            steps[step] = round(sum((ends[t] - starts[t]).total_seconds() for t in tasks), 1)
    rest = [t for t in starts if t not in claimed and t in ends]
    steps["other"] = round(sum((ends[t] - starts[t]).total_seconds() for t in rest), 1)
    return steps


def drop_size(path: Path) -> dict[str, float]:
    rows = {}
    for f in sorted(path.glob("*.csv")):
        with open(f, "rb") as fh:
            rows[f.stem] = sum(1 for _ in fh) - 1
    return {"rows": rows, "mb": round(sum(f.stat().st_size for f in path.iterdir()) / 2**20, 1)}


def nightly(run_date: date, drop: Path, home: Path, label: str) -> dict:
    cmd = [str(REPO / "slm"), "nightly", "run", "--date", run_date.isoformat(), "--drop", str(drop)]
    out = home / "logs" / f"bench-profiles-{label}.out"
    out.parent.mkdir(parents=True, exist_ok=True)
    res = timed(cmd, out, may_fail=True)
    log = home / "logs" / f"nightly-{run_date.isoformat()}.log"
    res["steps"] = task_steps(log)
    res["to_publish_s"] = to_publish(log)
    if res["rc"] != 0:  # e.g. warm_dashboards without Superset: the figures up to publish still stand
        res["failed_tasks"] = failed_tasks(log)
        if res["to_publish_s"] is None:
            raise SystemExit(f"the nightly failed before publishing: {res['failed_tasks']}; see {out}")
    return res


def to_publish(log: Path) -> float | None:
    """Seconds from the run's first task to the end of ``publish`` (what a client waits for)."""
    first = end = None
    for line in log.read_text().splitlines():
        if m := _TASK_LINE.match(line):
            at = datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
            first = first or at
            if m.group(2).startswith("end") and m.group(3) == "publish":
                end = at
    return round((end - first).total_seconds(), 1) if first and end else None


def failed_tasks(log: Path) -> list[str]:
    states = r"\[(?:TaskInstanceState\.)?(?:up_for_retry|failed|FAILED)\]"
    found = re.findall(r"TaskInstance: [^.\s]+\.(\S+) \S+ " + states, log.read_text())
    return sorted(set(found))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=("s", "m", "l"), default="m")
    ap.add_argument("--start", type=date.fromisoformat, default=date(2026, 10, 1))
    ap.add_argument("--days", type=int, help="m and l: days of the window (default 7 for m, 1 for l)")
    ap.add_argument("--months", type=int, default=13, help="s: months of the demo (default 13)")
    ap.add_argument("--no-increment", action="store_true", help="skip the nightly increment")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    from bench_nightly import _empty_warehouse

    home = Path(os.environ.get("SLM_HOME", REPO / ".slm"))
    py = sys.executable
    gen = [py, "-m", "slm_platform.cli", "demo", "generate", "--profile", args.profile, "--no-progress"]
    result: dict = {
        "profile": args.profile,
        "load_before": os.getloadavg()[0],
        "when": datetime.now().isoformat(),
    }
    # s is the demo: its drop goes where `./slm demo up` puts it (bench_incident_review reads it there)
    drop = home / "drops" / ("demo" if args.profile == "s" else f"bench-{args.profile}")
    if args.profile == "s":
        from slm_platform.sources.demo_data import DEMO_DATE, demo_window

        start, _ = demo_window(DEMO_DATE, args.months)
        gen += ["--months", str(args.months), "--start", start.isoformat()]
        end = DEMO_DATE
        result["window"] = f"{args.months} months from {start}"
    else:
        days = args.days or (7 if args.profile == "m" else 1)
        gen += ["--start", args.start.isoformat(), "--days", str(days)]
        end = args.start + timedelta(days=days)
        result["window"] = f"{days} days from {args.start}"
    print(f"profile {args.profile}, {result['window']}: generating", flush=True)
    result["generate"] = timed([*gen, "--out", str(drop)])
    result["drop"] = drop_size(drop)
    print(f"  generate {result['generate']}, {result['drop']['mb']} MB", flush=True)
    _empty_warehouse()
    print("  first nightly ...", flush=True)
    result["nightly"] = nightly(end, drop, home, f"{args.profile}-first")
    print(f"  nightly {result['nightly']}", flush=True)
    if args.profile != "s" and not args.no_increment:
        inc = home / "drops" / f"bench-{args.profile}-increment"
        g = [py, "-m", "slm_platform.cli", "demo", "generate", "--profile", args.profile, "--no-progress"]
        timed([*g, "--start", end.isoformat(), "--days", "1", "--out", str(inc)])
        result["increment_drop"] = drop_size(inc)
        print("  nightly increment (one more day) ...", flush=True)
        result["increment"] = nightly(end + timedelta(days=1), inc, home, f"{args.profile}-increment")
        inc, first = result["increment"]["to_publish_s"], result["nightly"]["to_publish_s"]
        result["increment_vs_first"] = round(inc / first, 2)  # first task to publish, both
        print(f"  increment {result['increment']} (x{result['increment_vs_first']} of the first)", flush=True)
    result["load_after"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
