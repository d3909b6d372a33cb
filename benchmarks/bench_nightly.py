"""Wall time of the nightly DAG (`./slm run nightly`, i.e. `airflow dags test`) and of its dbt part.

Runs the real nightly on a stack you started and loaded, then reads the per-task start/end lines of the
run's log to split the time into: before dbt (extract, load, contracts, GX gate), dbt (first to last task
of the `dbt` group) and publish. Compare two versions of the DAG by saving one run and passing it as the
baseline of the other; the report gives ratios, never an absolute pass/fail.

    SLM_HOME=/tmp/bench ./slm stack up --only pg,airflow
    SLM_HOME=/tmp/bench ./slm generate --out /tmp/bench/drops/demo
    SLM_HOME=/tmp/bench .venvs/airflow/bin/python benchmarks/bench_nightly.py \\
        --drop /tmp/bench/drops/demo --repeat 2 --save /tmp/after.json [--baseline /tmp/before.json]
"""

from __future__ import annotations

import argparse
import json
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


def run_once(date: str, drop: str | None) -> dict[str, float]:
    home = Path(os.environ.get("SLM_HOME", REPO / ".slm"))
    cmd = [str(REPO / "slm"), "run", "nightly", "--date", date]
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
    args = ap.parse_args()

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
