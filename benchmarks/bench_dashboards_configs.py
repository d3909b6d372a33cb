"""Issue 13's side-by-side: dashboards under load, today's product against the configuration before it.

On a running demo stack (``SLM_HOME``, with Superset and Redis), this starts extra Superset servers beside
the stack's own, on the same metadata database, warehouse, data and row-level security rules, then runs
``bench_dashboards.py`` against all of them in one run (modes alternating between servers, so they share the
machine's load), and stops them. Configurations:

- ``before``: ``superset/superset_config.py`` as it was before issue 13 (commit 147fd91, the last
  landed one before it, read with ``git show``), gunicorn ``-w 2 --threads 4``, each worker its own
  ``SimpleCache`` (300 s), Superset's database event logger; warmed by forced fetches (``--warm``), as
  nothing else warmed it then;
- ``no-permcache`` (``--with-no-permcache``): the product without its permission cache
  (``SUPERSET_SLM_PERMISSION_CACHE=0``), the product's gunicorn options and Redis;
- ``no-answers`` (``--with-no-answers``): the product without its shared chart-data answers
  (``SUPERSET_SLM_ANSWER_CACHE=0``, superset/slm_answers.py);
- ``after``: the stack's own Superset, the product, warmed by the product's own warm-up (``/slm/warm-up``,
  what the nightly runs after its publish).

    SLM_HOME=/tmp/bench ./slm demo up
    SLM_HOME=/tmp/bench .venvs/airflow/bin/python benchmarks/bench_dashboards_configs.py --users 20 \\
        --duration 60 --json /tmp/side_by_side.json

Nothing here is a pass/fail: the figures go to docs/design/dashboards_under_load.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from slm_platform.dashboards import superset_service
from slm_platform.ops import procs, stack
from slm_platform.settings import REPO_ROOT, slm_home

BEFORE_COMMIT = "147fd91"  # the last landed commit before issue 13 (071d1e8 was rewritten into 99e44fa)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(name: str, env: dict[str, str], workers: int, threads: int, run_dir: Path, log_dir: Path) -> str:
    port = _free_port()
    procs.start(run_dir, log_dir, name, superset_service.gunicorn_command(port, workers, threads), env)
    url = f"http://127.0.0.1:{port}"
    superset_service.wait_healthy(url, timeout=300)
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--mode", default="burst,meeting")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of meeting mode per server")
    parser.add_argument("--warm", type=int, default=3, help="forced fetches per account and chart (before)")
    parser.add_argument("--with-no-permcache", action="store_true", help="also the product without it")
    parser.add_argument(
        "--with-no-answers", action="store_true", help="also the product without its shared answers"
    )
    parser.add_argument("--json", help="write bench_dashboards' results here")
    args = parser.parse_args(argv)

    state = stack.status()
    if not state.get("superset", {}).get("running"):
        parser.error(f"no running Superset in SLM_HOME={slm_home()}: start the demo stack first")
    own_url = state["superset"]["url"]
    work = Path(tempfile.mkdtemp(prefix="slm-side-by-side-"))
    run_dir, log_dir = work / "run", work / "logs"
    old_config = work / "superset_config_before.py"
    old_config.write_text(
        subprocess.run(
            ["git", "show", f"{BEFORE_COMMIT}:superset/superset_config.py"],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    started: list[str] = []
    try:
        before_env = stack.superset_env()
        before_env.pop("SUPERSET_REDIS_URL", None)
        before_env["SUPERSET_CONFIG_PATH"] = str(old_config)
        print(f"before: {BEFORE_COMMIT}'s config, -w 2 --threads 4 (logs in {log_dir})", file=sys.stderr)
        targets = [f"before={_start('superset-before', before_env, 2, 4, run_dir, log_dir)}"]
        started.append("superset-before")
        # The product with one of its parts switched off: (flag, label, switch, what it is).
        variants = [
            (args.with_no_permcache, "no-permcache", "SUPERSET_SLM_PERMISSION_CACHE", "its permission cache"),
            (args.with_no_answers, "no-answers", "SUPERSET_SLM_ANSWER_CACHE", "its shared answers"),
        ]
        for wanted, label, switch, what in variants:
            if not wanted:
                continue
            print(f"{label}: the product without {what}", file=sys.stderr)
            env = stack.superset_env() | {switch: "0"}
            workers, threads = superset_service.WORKERS, superset_service.THREADS
            targets.append(f"{label}={_start(f'superset-{label}', env, workers, threads, run_dir, log_dir)}")
            started.append(f"superset-{label}")
        targets.append(f"after={own_url}")
        cmd = [sys.executable, str(Path(__file__).with_name("bench_dashboards.py")),
               "--users", str(args.users), "--mode", args.mode, "--duration", str(args.duration),
               "--warm", str(args.warm), "--product-warm", "after"]  # fmt: skip
        for wanted, label, _, _ in variants:
            if wanted:
                cmd += ["--product-warm", label]
        for t in targets:
            cmd += ["--superset-url", t]
        if args.json:
            cmd += ["--json", args.json]
        return subprocess.run(cmd, env=dict(os.environ), check=False).returncode
    finally:
        for name in started:
            procs.stop(run_dir, name)


if __name__ == "__main__":
    raise SystemExit(main())
