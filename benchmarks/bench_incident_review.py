"""Time from triggering an incident review to its published report, against a full nightly in the same run.

On a stack you started and loaded with the demo (`SLM_HOME=/tmp/bench ./slm demo up`), this triggers the real
`slm_incident_review` DAG through the REST API (scheduler + LocalExecutor, as `./slm incident review` does)
for a demo major incident, follows it to its end, and reads each task's duration from the API; then it runs
the full nightly (`./slm nightly run --date 2026-11-01 --drop <demo drop>`, i.e. `airflow dags test`) and
prints both wall times and their ratio. The goal is under 2 minutes and under half of a nightly; the report
gives figures, never a pass/fail.

    SLM_HOME=/tmp/bench .venvs/airflow/bin/python benchmarks/bench_incident_review.py [--ticket INC...]
        [--repeat 2] [--skip-nightly]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _api():
    from slm_platform.ops import stack
    from slm_platform.orchestration.incident_review import AirflowApi

    st = stack.status()
    return AirflowApi(st["airflow"]["url"], "admin", stack.credentials()["airflow_admin_password"])


def _latest_major() -> str:
    import psycopg2

    from slm_platform.ops import stack
    from slm_platform.settings import WAREHOUSE_DB

    with psycopg2.connect(stack.pg_server().dsn(WAREHOUSE_DB)) as conn, conn.cursor() as cur:
        cur.execute(
            "select ticket_id from raw.tickets where ticket_type = 'incident' and is_major"
            " and resolved_at is not null and resolved_at - opened_at < interval '24 hours'"
            " order by resolved_at desc limit 1"
        )
        return cur.fetchone()[0]


def review_once(ticket: str) -> dict:
    from slm_platform.orchestration.incident_review import DAG_ID, follow

    api = _api()
    started = time.monotonic()
    resp = api.trigger({"ticket_id": ticket})
    resp.raise_for_status()
    run_id = resp.json()["dag_run_id"]
    state, _ = follow(api, run_id, lambda _line: None, poll=0.5)
    wall = time.monotonic() - started
    if state != "success":
        raise SystemExit(f"review {run_id} ended {state}")
    tasks = api.get(f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    durations = {t["task_id"]: t["duration"] or 0.0 for t in tasks}
    run = api.get(f"dags/{DAG_ID}/dagRuns/{run_id}")
    first = min(datetime.fromisoformat(t["start_date"]) for t in tasks)
    queued = (first - datetime.fromisoformat(run["run_after"])).total_seconds()
    return {"wall_s": wall, "tasks": durations, "to_first_task_s": queued}


def nightly_once(drop: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        [str(REPO / "slm"), "nightly", "run", "--date", "2026-11-01", "--drop", str(drop)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ticket", help="major incident to review (default: the demo's latest short one)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--skip-nightly", action="store_true")
    args = ap.parse_args()
    from slm_platform.settings import slm_home

    ticket = args.ticket or _latest_major()
    reviews, nightlies = [], []
    for i in range(args.repeat):
        r = review_once(ticket)
        reviews.append(r["wall_s"])
        slowest = sorted(r["tasks"].items(), key=lambda kv: -kv[1])[:4]
        print(
            f"review {i + 1} of {ticket}: trigger -> published {r['wall_s']:.1f}s (first task after"
            f" {r['to_first_task_s']:.1f}s; " + ", ".join(f"{k} {v:.1f}s" for k, v in slowest) + ")",
            flush=True,
        )
        if not args.skip_nightly:
            nightlies.append(nightly_once(slm_home() / "drops" / "demo"))
            print(f"nightly {i + 1}: {nightlies[-1]:.1f}s", flush=True)
    review = statistics.median(reviews)
    line = f"median review {review:.1f}s (goal < 120 s)"
    if nightlies:
        nightly = statistics.median(nightlies)
        line += f", nightly {nightly:.1f}s, review / nightly = {review / nightly:.2f} (goal < 0.5)"
    print(line + f" (load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
