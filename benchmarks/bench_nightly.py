"""Wall time of the nightly DAG (`./slm nightly run`, i.e. `airflow dags test`) and of its dbt part.

Runs the real nightly on a stack you started and loaded, then reads the per-task start/end lines of the
run's log to split the time into: before dbt (extract, load, contracts, GX gate), dbt (first to last task
of the `dbt` group) and publish. Compare two versions of the DAG by saving one run and passing it as the
baseline of the other; the report gives ratios, never an absolute pass/fail.

    SLM_HOME=/tmp/bench ./slm stack up --only pg,airflow
    SLM_HOME=/tmp/bench ./slm demo generate --out /tmp/bench/drops/demo
    SLM_HOME=/tmp/bench .venvs/airflow/bin/python benchmarks/bench_nightly.py \\
        --drop /tmp/bench/drops/demo --repeat 2 --save /tmp/after.json [--baseline /tmp/before.json]

How the nightly grows with the demo's history: `--months 1,4,7,13` generates, for each count, the demo drop
of that many months ending before --date, empties the warehouse (schemas raw, staging, intermediate,
marts_build: a first nightly, as `make demo` runs it), runs the nightly on it and prints the dbt phase per
month of data against the smallest run, then each model's build seconds (dbt's own timing of the node, as
the build logs it) and the models whose cost grows faster than the data between the two largest runs.

    SLM_HOME=/tmp/bench .venvs/airflow/bin/python benchmarks/bench_nightly.py --months 1,4,7,13 \\
        --save /tmp/by_months.json   # rerun the same line to resume an interrupted series
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_TASK_LINE = re.compile(r"^(\S+Z) .*\[DAG TEST\] (starting task_id|end task task_id)=(\S+)")


def _phases(log: Path) -> dict[str, float]:
    """Seconds spent before dbt, in dbt and in publish, from the `[DAG TEST]` task lines of one run."""
    starts: dict[str, datetime] = {}
    ends: dict[str, datetime] = {}
    for line in log.read_text().splitlines():
        m = _TASK_LINE.match(line)
        if not m:
            continue
        at = datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
        task = m.group(3)
        if m.group(2).startswith("starting"):
            starts.setdefault(task, at)  # a retried task keeps its first start ...
        else:
            ends[task] = at  # ... and its last end
    if not starts:
        raise SystemExit(f"no task lines in {log}: did the run start?")
    dbt = [t for t in starts if t.startswith("dbt.")]
    first = min(starts.values())
    dbt_start = min(starts[t] for t in dbt)
    dbt_end = max(ends[t] for t in dbt if t in ends)
    last = max(ends.values())
    return {
        "before_dbt_s": (dbt_start - first).total_seconds(),
        "dbt_s": (dbt_end - dbt_start).total_seconds(),
        "after_dbt_s": (last - dbt_end).total_seconds(),
        "dbt_tasks": len(dbt),
    }


# dbt's line for a built model, as the watcher relays it (colour codes stripped first):
# "12 of 459 OK created sql table model s.name ... [INSERT 0 8 in 0.29s]".
_MODEL_LINE = re.compile(r"\d+ of \d+ OK created sql \w+ model (\S+) .*? in ([\d.]+)s\]")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _model_seconds(log: Path) -> dict[str, float]:
    """Seconds dbt spent building each model (not its tests) in one run."""
    seconds: dict[str, float] = {}
    for line in log.read_text().splitlines():
        if m := _MODEL_LINE.search(_ANSI.sub("", line)):
            seconds[m.group(1)] = float(m.group(2))
    return seconds


def _empty_warehouse() -> None:
    """Drop what the nightly builds from scratch (raw data, bookkeeping, models), as on a fresh stack; the
    published marts stay until the next publish swaps them."""
    import psycopg2

    from slm_platform.ops import stack
    from slm_platform.settings import WAREHOUSE_DB

    conn = psycopg2.connect(stack.pg_server().dsn(WAREHOUSE_DB))
    conn.autocommit = True
    with conn.cursor() as cur:
        for schema in ("raw", "staging", "intermediate", "marts_build"):
            cur.execute(f"drop schema if exists {schema} cascade")  # fixed names
    conn.close()


def by_months(date: str, months: list[int], repeat: int, save: Path | None) -> list[dict]:
    """One first nightly per history length (the median of ``repeat``), each on an emptied warehouse. Each
    result is saved as soon as it is measured; lengths already in ``save`` are kept, not run again (a long
    series can be resumed)."""
    from datetime import date as Date

    from slm_platform.sources.demo_data import demo_window, generate

    home = Path(os.environ.get("SLM_HOME", REPO / ".slm"))
    results = json.loads(save.read_text())["by_months"] if save and save.exists() else []
    for n in months:
        if any(r["months"] == n for r in results):
            continue
        start, _ = demo_window(Date.fromisoformat(date), n)
        drop = home / "bench_drops" / f"{n}m"
        counts = generate(drop, start=start, months=n)
        runs = []
        for _ in range(repeat):
            _empty_warehouse()
            runs.append(run_once(date, str(drop)))
            runs[-1]["models"] = _model_seconds(home / "logs" / f"nightly-{date}.log")
        run = sorted(runs, key=lambda r: r["dbt_s"])[len(runs) // 2]
        results.append({"months": n, "tickets": counts["tickets"], "checks": counts["checks"], **run})
        results[-1]["load"] = os.getloadavg()[0]
        if save:
            save.write_text(json.dumps({"by_months": results}, indent=2))
        print(
            f"{n:>2} months ({counts['tickets']} tickets, {counts['checks']} checks):"
            f" wall {run['wall_s']:.1f}s"
            f"  dbt {run['dbt_s']:.1f}s  models {sum(run['models'].values()):.1f}s",
            flush=True,
        )
    return sorted(results, key=lambda r: r["months"])


def report_by_months(results: list[dict]) -> None:
    base = results[0]
    print("\nmonths  dbt s  dbt s/month  x dbt vs first  x months  model s  x model s  load")
    for r in results:
        models = sum(r["models"].values())
        print(
            f"{r['months']:>6} {r['dbt_s']:>6.1f} {r['dbt_s'] / r['months']:>12.2f} "
            f"{r['dbt_s'] / base['dbt_s']:>15.2f} {r['months'] / base['months']:>9.2f}"
            f" {models:>8.1f} {models / sum(base['models'].values()):>10.2f} {r.get('load', 0):>5.1f}"
        )
    if len(results) < 2:
        return
    # Growth exponent of each model between the two largest runs: 1 is linear in the months; fixed costs
    # (views, small dimensions) give less, a model that joins history with history gives more.
    a, b = results[-2], results[-1]
    print(f"\nslowest models at {b['months']} months, and their growth from {a['months']} months")
    print(
        "model                                                    "
        + "".join(f"{r['months']:>7}m" for r in results)
        + "   exponent"
    )
    for name, sec in sorted(b["models"].items(), key=lambda kv: -kv[1])[:15]:
        before = a["models"].get(name)
        exponent = (
            math.log(sec / before) / math.log(b["months"] / a["months"])
            if before and sec >= 0.05
            else float("nan")
        )
        cells = "".join(f"{r['models'].get(name, float('nan')):>8.2f}" for r in results)
        flag = "  faster than the data" if exponent > 1.3 else ""
        print(f"{name:56} {cells}   {exponent:>7.2f}{flag}")


def run_once(date: str, drop: str | None) -> dict[str, float]:
    home = Path(os.environ.get("SLM_HOME", REPO / ".slm"))
    cmd = [str(REPO / "slm"), "nightly", "run", "--date", date]
    if drop:
        cmd += ["--drop", drop]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"the nightly failed:\n{proc.stdout}\n{proc.stderr}")
    return {"wall_s": wall, **_phases(home / "logs" / f"nightly-{date}.log")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--date", default="2026-11-01", help="run date (the demo data covers October 2026)")
    ap.add_argument("--drop", help="drop folder the run extracts from (default: none, raw as loaded)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--save", type=Path, help="write the runs (JSON) here, to serve as a baseline later")
    ap.add_argument("--baseline", type=Path, help="runs saved by an earlier --save: print ratios against it")
    ap.add_argument("--from-log", type=Path, nargs="*", help="read these run logs instead of running")
    ap.add_argument(
        "--months",
        help="history lengths, comma-separated (e.g. 1,4,7,13): a first nightly on each, warehouse emptied",
    )
    args = ap.parse_args()
    if args.months:
        report_by_months(
            by_months(args.date, [int(n) for n in args.months.split(",")], args.repeat, args.save)
        )
        return 0

    runs = []
    for i in range(len(args.from_log) if args.from_log else args.repeat):
        runs.append(_phases(args.from_log[i]) if args.from_log else run_once(args.date, args.drop))
        r = runs[-1]
        r.setdefault("wall_s", r["before_dbt_s"] + r["dbt_s"] + r["after_dbt_s"])  # a log: DAG run only
        print(
            f"run {i + 1}: wall {r['wall_s']:.1f}s  before dbt {r['before_dbt_s']:.1f}s  "
            f"dbt {r['dbt_s']:.1f}s ({r['dbt_tasks']} tasks)  after {r['after_dbt_s']:.1f}s",
            flush=True,
        )
    load = os.getloadavg()[0]
    summary = {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "dbt_s")}
    print(
        f"median of {len(runs)}: wall {summary['wall_s']:.1f}s, dbt {summary['dbt_s']:.1f}s"
        f" (load average {load:.1f})"
    )
    if args.save:
        args.save.write_text(json.dumps({"runs": runs, "median": summary, "load": load}, indent=2))
    if args.baseline:
        base = json.loads(args.baseline.read_text())["median"]
        for key in ("wall_s", "dbt_s"):
            print(
                f"{key}: {summary[key]:.1f}s vs baseline {base[key]:.1f}s → ×{summary[key] / base[key]:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
