"""``./slm nightly run``: the nightly DAG, run in-process by ``airflow dags test`` (recorded in Airflow)."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from datetime import date, timedelta
from pathlib import Path

from slm_platform.cli.common import say
from slm_platform.errors import StackError

NIGHTLY_DAG = "slm_nightly"
_TASK_END = re.compile(r"\[DAG TEST\] end task task_id=(\S+)")
_RUN_STATE = re.compile(r"\bstate=(\w+)")


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("nightly", help="the nightly DAG: extract, load, gate, build, publish")
    verbs = group.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("run", help="run it once, now, and follow it")
    s.add_argument(
        "--date",
        type=date.fromisoformat,
        help="run date D (default: today); the run covers the day before, [D-1, D)",
    )
    s.add_argument("--drop", help="extract from this drop folder instead of the configured sources")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_nightly(args.date or date.today(), Path(args.drop) if args.drop else None)
    return 0


def run_nightly(run_date: date, drop: Path | None) -> None:
    """Run the nightly DAG with ``airflow dags test`` (in-process, recorded in Airflow's metadata)."""
    from slm_platform.ops import stack
    from slm_platform.settings import venv_bin
    from slm_platform.transform import dbt_runner

    env = stack.airflow_env()
    dbt_runner.dbt_parse(dbt_runner.dbt_env(stack.pg_server()))
    conf = {"drop": str(drop.resolve())} if drop else {}
    say(f"==> running DAG {NIGHTLY_DAG} on {run_date} (covers {run_date - timedelta(days=1)})")
    cmd = [str(venv_bin("airflow", "airflow")), "dags", "test", NIGHTLY_DAG, run_date.isoformat()]
    if conf:
        cmd += ["-c", json.dumps(conf)]
    log_file = Path(env["SLM_HOME"]) / "logs" / f"nightly-{run_date}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    state = None
    with (
        open(log_file, "w") as log,
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if m := _TASK_END.search(line):
                say(f"    finished {m.group(1)}")
            if "DagRun Finished" in line and (m := _RUN_STATE.search(line)):
                state = m.group(1)
    if proc.returncode != 0 or state != "success":
        raise StackError(f"the nightly DAG ended in state {state!r}; full log: {log_file}")
    say(f"    DAG run succeeded (log: {log_file})")
