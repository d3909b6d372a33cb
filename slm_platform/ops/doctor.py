"""``./slm doctor``: what is missing or broken in the set-up, each with the command that fixes it.

Standard library only, so it runs with the plain ``python3`` that builds the environments, before any of
them exists: ``make demo`` and ``make test`` run
``python3 -m slm_platform.ops.doctor --before-envs`` first and
stop early with its advice. ``--before-envs`` treats what the same ``make`` run is about to build or
install (the environments; Debian packages when run as root) as notes, not problems; without it an
environment must exist and its interpreter must import its main packages.

Exit status: 0 when nothing blocks, 1 when something does (each such line starts with FAIL).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from slm_platform.ops import pgcluster, procs
from slm_platform.settings import REPO_ROOT, VENVS, read_json, slm_home, state_file

ENVS = ("airflow", "dbt", "superset", "pg")
# The environments take 2.0 GB once built (measured), and a rebuild holds an old and a new copy of one
# side by side until the swap; the stack wants 2 GiB (stack.MIN_FREE_DISK).
ENVS_DISK = 3 * 1024**3
HOME_DISK = 2 * 1024**3
# The Debian packages make installs as root (tools/ensure_system_packages.sh), by the binary they give.
DEBIAN = {
    "chromium": ("/usr/bin/chromium", "chromium fonts-liberation fonts-dejavu-core"),
    "prometheus": ("/usr/bin/prometheus", "prometheus"),
    "poppler-utils": ("/usr/bin/pdfinfo", "poppler-utils"),
    # The stack's cache and Celery broker, started with PostgreSQL (slm_platform/ops/redis_server.py).
    "redis-server": ("/usr/bin/redis-server", "redis-server"),
}
# A binary elsewhere than Debian's path, named by an environment variable.
BINARY_ENV = {"chromium": "SLM_CHROMIUM", "redis-server": "SLM_REDIS_SERVER"}
PORT_VARS = (
    ("SLM_PORT_PG", "pg"),
    ("SLM_PORT_REDIS", "redis"),
    ("SLM_PORT_AIRFLOW", "airflow"),
    ("SLM_PORT_SUPERSET", "superset"),
)
AIRFLOW_SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
CELERY_WORKERS = ("worker1", "worker2")


@dataclass
class Finding:
    status: str  # "ok", "note" (worth knowing, blocks nothing) or "FAIL" (blocks the set-up)
    what: str
    detail: str
    fix: str = ""


def _root() -> bool:
    return os.geteuid() == 0


def _apt(packages: str) -> str:
    sudo = "" if _root() else "sudo "
    return f"{sudo}apt-get update && {sudo}apt-get install -y --no-install-recommends {packages}"


def check_python() -> list[Finding]:
    v = sys.version_info
    where = f"{v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if v < (3, 11):
        return [
            Finding(
                "FAIL",
                "python",
                f"{where}: the environments need Python 3.11",
                f"{_apt('python3.11 python3.11-venv')}; then run make with PY=python3.11",
            )
        ]
    out = [Finding("ok", "python", where)]
    if v[:2] != (3, 11):
        out = [Finding("note", "python", f"{where}: the lock files are made and tested for 3.11")]
    if importlib.util.find_spec("ensurepip") is None and not (VENVS / "uv" / "bin" / "uv").exists():
        # Debian ships venv's pip bootstrap separately; uv is bootstrapped with `python3 -m venv`.
        out.append(
            Finding(
                "FAIL",
                "python",
                "this python3 cannot create virtual environments (no ensurepip)",
                _apt(f"python3.{v.minor}-venv"),
            )
        )
    return out


def _free(path: Path) -> int:
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def check_disk(env_states: dict[str, str]) -> list[Finding]:
    out = []
    gib = 1024**3
    missing = [n for n, s in env_states.items() if s != "ok"]
    need = ENVS_DISK if missing else 0
    free = _free(VENVS)
    if free < need:
        out.append(
            Finding(
                "FAIL",
                "disk",
                f"{free / gib:.1f} GiB free for the environments in {VENVS}; building them takes about 3 GiB",
                "free some space, or set SLM_VENVS to a folder on a larger disk",
            )
        )
    else:
        out.append(Finding("ok", "disk", f"{free / gib:.1f} GiB free for the environments ({VENVS})"))
    home = slm_home()
    free = _free(home)
    if free < HOME_DISK:
        out.append(
            Finding(
                "FAIL",
                "disk",
                f"{free / gib:.1f} GiB free under SLM_HOME={home}; the stack needs at least 2 GiB",
                "free some space, or set SLM_HOME to a folder on a larger disk",
            )
        )
    else:
        out.append(Finding("ok", "disk", f"{free / gib:.1f} GiB free for the stack (SLM_HOME={home})"))
    return out


def check_tools() -> list[Finding]:
    wanted = ["flock"] + (["runuser"] if _root() else [])
    missing = [t for t in wanted if shutil.which(t) is None]
    if missing:
        return [Finding("FAIL", "tools", f"not found: {', '.join(missing)}", _apt("util-linux"))]
    return [Finding("ok", "tools", ", ".join(wanted))]


def check_postgresql(env_states: dict[str, str], before_envs: bool) -> list[Finding]:
    url = os.environ.get("SLM_PG_URL")
    if url:
        u = urlparse(url)
        host, port = u.hostname or "127.0.0.1", u.port or 5432
        try:
            socket.create_connection((host, port), timeout=3).close()
        except OSError as exc:
            return [
                Finding(
                    "FAIL",
                    "postgresql",
                    f"SLM_PG_URL names {host}:{port}, which does not answer ({exc})",
                    "start that server, fix SLM_PG_URL, or unset it to use an embedded cluster",
                )
            ]
        return [Finding("ok", "postgresql", f"the existing server at {host}:{port} (SLM_PG_URL) answers")]
    for origin, bindir in pgcluster.bindir_candidates():
        if pgcluster.has_tools(bindir):
            version = _output([str(bindir / "pg_ctl"), "--version"]).replace("pg_ctl (PostgreSQL) ", "")
            return [Finding("ok", "postgresql", f"PostgreSQL {version} binaries in {bindir} ({origin})")]
    if os.environ.get("SLM_PG_BINDIR"):
        return [
            Finding(
                "FAIL",
                "postgresql",
                f"SLM_PG_BINDIR={os.environ['SLM_PG_BINDIR']} does not hold initdb, pg_ctl and postgres",
                "point SLM_PG_BINDIR at their folder, or unset it",
            )
        ]
    if before_envs and env_states.get("pg") != "ok":
        return [
            Finding(
                "note",
                "postgresql",
                "no server binaries on this machine: this run installs PostgreSQL 16 from the locked "
                "pgserver wheel into .venvs/pg",
            )
        ]
    return [
        Finding(
            "FAIL",
            "postgresql",
            "no server binaries (initdb, pg_ctl, postgres): not Debian's, not on PATH, not in .venvs/pg",
            f"make -C {REPO_ROOT} envs   (the locked pgserver wheel; or Debian's: {_apt('postgresql')})",
        )
    ]


def _output(cmd: list[str], timeout: float = 20) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"({exc})"
    return (proc.stdout or proc.stderr).strip()


def env_states() -> dict[str, str]:
    """``NAME -> ok | stale | missing`` from the environments' markers (tools/build_env.sh --status)."""
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "tools" / "build_env.sh"), "--status"],
        capture_output=True,
        text=True,
        env={**os.environ, "SLM_VENVS": str(VENVS)},
    )
    states = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    return {name: states.get(name, "missing") for name in ("uv", *ENVS)}


def check_envs(states: dict[str, str], before_envs: bool, imports: bool) -> list[Finding]:
    out: dict[str, Finding] = {}
    to_import = []
    for name, state in states.items():
        what = f"env {name}"
        where = VENVS / name
        if state != "ok":
            detail = "not built yet" if state == "missing" else "marker does not match (lock, check or files)"
            if before_envs:
                out[name] = Finding("note", what, f"{where}: {detail}; this run builds it")
            else:
                out[name] = Finding("FAIL", what, f"{where}: {detail}", f"make -C {REPO_ROOT} envs")
        elif name == "uv" or not imports:
            out[name] = Finding("ok", what, f"{where}")
        else:
            to_import.append(name)
    # Side by side: each import is one process mostly waiting on the disk (airflow's takes 9 s on a quiet
    # machine, a minute on a loaded one).
    with ThreadPoolExecutor(max_workers=len(to_import) or 1) as pool:
        running = {name: pool.submit(_import_check, name) for name in to_import}
        out.update({name: future.result() for name, future in running.items()})
    return [out[name] for name in states]


def _import_check(name: str) -> Finding:
    """Run the environment's own check (envs/NAME/check.py) with its interpreter."""
    what = f"env {name}"
    with tempfile.TemporaryDirectory() as scratch:
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [
                    str(VENVS / name / "bin" / "python"),
                    str(REPO_ROOT / "envs" / name / "check.py"),
                    f"{scratch}/f",
                ],
                capture_output=True,
                text=True,
                cwd=scratch,
                timeout=600,
                env={**os.environ, "AIRFLOW_HOME": scratch, "PYTHONDONTWRITEBYTECODE": "1"},
            )
            ok, tail = proc.returncode == 0, (proc.stdout + proc.stderr).strip().splitlines()[-1:]
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, tail = False, [str(exc)]
        seconds = time.monotonic() - started
    if ok:
        return Finding("ok", what, f"{VENVS / name}: imports its packages ({seconds:.1f} s)")
    return Finding(
        "FAIL",
        what,
        f"{VENVS / name}: its interpreter cannot import its packages: {' '.join(tail)[:300]}",
        f"rm -f {VENVS / name}/.built && make -C {REPO_ROOT} envs   (rebuilds it from its lock)",
    )


def check_debian(names: tuple[str, ...], before_envs: bool) -> list[Finding]:
    out = []
    for name in names:
        binary, packages = DEBIAN[name]
        var = BINARY_ENV.get(name)
        if var and os.environ.get(var):
            exe = os.environ[var]
            if os.access(exe, os.X_OK):
                out.append(Finding("ok", name, f"{exe} ({var})"))
            else:
                out.append(
                    Finding(
                        "FAIL",
                        name,
                        f"{var}={exe} is not an executable",
                        f"point {var} at a {name} binary, or unset it to use {binary}",
                    )
                )
            continue
        if os.access(binary, os.X_OK):
            out.append(Finding("ok", name, binary))
        elif before_envs and _root() and shutil.which("apt-get"):
            out.append(
                Finding("note", name, f"{binary} missing: this run installs Debian's {name} (as root)")
            )
        else:
            out.append(Finding("FAIL", name, f"{binary} missing (Debian package {name})", _apt(packages)))
    return out


def check_ports(state: dict) -> list[Finding]:
    out = []
    for var, component in PORT_VARS:
        value = os.environ.get(var)
        if not value:
            continue
        if not value.isdigit():
            out.append(Finding("FAIL", "ports", f"{var}={value} is not a port number", f"unset {var}"))
            continue
        port = int(value)
        if _stack_port(state, component) == port and _component_running(state, component):
            out.append(Finding("ok", "ports", f"{port} ({var}) is this stack's {component}"))
        elif procs.port_is_free(port):
            out.append(Finding("ok", "ports", f"{port} ({var}) is free"))
        else:
            out.append(
                Finding(
                    "FAIL",
                    "ports",
                    f"{port} ({var}) is in use by another program on 127.0.0.1",
                    f"stop the program on it (`ss -ltnp 'sport = :{port}'` names it), or unset {var} "
                    "to let the stack pick a free port",
                )
            )
    if not any(os.environ.get(var) for var, _ in PORT_VARS):
        out.append(Finding("ok", "ports", "none fixed (SLM_PORT_*): the stack picks free ones"))
    return out


def _stack_port(state: dict, component: str) -> int | None:
    if component == "pg":
        return state.get("pg", {}).get("port")
    if component == "airflow":
        return state.get("airflow", {}).get("api_port")
    return state.get(component, {}).get("port")


def _component_running(state: dict, component: str) -> bool:
    run = slm_home() / "run"
    if component == "pg":
        pg = state.get("pg", {})
        return bool(pg) and (pg.get("external") or _pg_cluster_running(pg))
    if component == "airflow":
        return procs.is_running(run, "airflow-api-server")
    return procs.is_running(run, component)


def _pg_cluster_running(pg: dict) -> bool:
    if not pg.get("root"):
        return False
    c = pgcluster.Cluster(root=Path(pg["root"]), port=int(pg["port"]), superuser="", password="")
    return c.running()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback URL we built)
            return resp.status, resp.read(20000).decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def check_stack(state: dict) -> list[Finding]:
    if not state:
        return [Finding("ok", "stack", f"none under SLM_HOME={slm_home()} (make demo starts one)")]
    out = []
    run, logs = slm_home() / "run", slm_home() / "logs"
    restart = "./slm stack down && ./slm stack up"
    pg = state.get("pg", {})
    if pg:
        up = _component_running(state, "pg")
        answers = False
        if up:
            try:
                socket.create_connection((pg.get("host", "127.0.0.1"), int(pg["port"])), timeout=3).close()
                answers = True
            except OSError:
                answers = False
        where = f"{pg.get('host')}:{pg.get('port')}"
        if not up:
            out.append(Finding("note", "stack pg", f"stopped (was on {where})", "./slm stack up"))
        elif answers:
            out.append(Finding("ok", "stack pg", f"running, answers on {where}"))
        else:
            log = Path(pg.get("root", "")) / "postgresql.log"
            out.append(
                Finding("FAIL", "stack pg", f"running but not answering on {where} (log: {log})", restart)
            )
    rd = state.get("redis", {})
    if rd:
        if not procs.is_running(run, "redis"):
            out.append(
                Finding(
                    "note", "stack redis", f"stopped (was on 127.0.0.1:{rd.get('port')})", "./slm stack up"
                )
            )
        else:
            try:
                socket.create_connection(("127.0.0.1", int(rd["port"])), timeout=3).close()
                out.append(Finding("ok", "stack redis", f"running, answers on 127.0.0.1:{rd.get('port')}"))
            except OSError:
                out.append(
                    Finding(
                        "FAIL", "stack redis", f"running but not answering (log: {logs}/redis.log)", restart
                    )
                )
    af = state.get("airflow", {})
    if af.get("api_port"):
        services = [f"airflow-{s}" for s in AIRFLOW_SERVICES]
        if af.get("executor") == "celery":
            services += [f"airflow-celery-{w}" for w in CELERY_WORKERS]
        running = [s for s in services if procs.is_running(run, s)]
        if not running:
            out.append(Finding("note", "stack airflow", "stopped", "./slm stack up"))
        else:
            missing = [s.removeprefix("airflow-") for s in services if s not in running]
            code, body = _get(f"http://127.0.0.1:{af.get('api_port')}/api/v2/monitor/health")
            unhealthy = _unhealthy_airflow(code, body)
            if unhealthy or missing:
                detail = "; ".join(
                    ([f"not running: {', '.join(missing)}"] if missing else [])
                    + ([unhealthy] if unhealthy else [])
                )
                out.append(
                    Finding("FAIL", "stack airflow", f"{detail} (logs: {logs}/airflow-*.log)", restart)
                )
            else:
                out.append(
                    Finding("ok", "stack airflow", f"healthy at http://127.0.0.1:{af.get('api_port')}")
                )
    ss = state.get("superset", {})
    if ss:
        if not procs.is_running(run, "superset"):
            out.append(Finding("note", "stack superset", "stopped", "./slm stack up"))
        else:
            code, body = _get(f"http://127.0.0.1:{ss.get('port')}/health")
            if code == 200 and body.strip() == "OK":
                out.append(Finding("ok", "stack superset", f"healthy at http://127.0.0.1:{ss.get('port')}"))
            else:
                out.append(
                    Finding(
                        "FAIL",
                        "stack superset",
                        f"running but /health answers {code} {body[:120]!r} (log: {logs}/superset.log)",
                        restart,
                    )
                )
    return out


def _unhealthy_airflow(code: int, body: str) -> str:
    if code != 200:
        return f"api-server health answers {code} {body[:120]!r}"
    try:
        health = json.loads(body)
    except ValueError:
        return f"api-server health is not JSON: {body[:120]!r}"
    bad = [
        f"{k} {v.get('status')}"
        for k, v in health.items()
        if isinstance(v, dict) and v.get("status") != "healthy"
    ]
    return f"unhealthy: {', '.join(bad)}" if bad else ""


def diagnose(before_envs: bool = False, purpose: str = "all") -> list[Finding]:
    """Every finding, in the order a set-up needs them."""
    states = env_states()
    state = read_json(state_file()) if purpose != "test" else {}
    findings = check_python() + check_disk(states) + check_tools()
    findings += check_postgresql(states, before_envs)
    findings += check_envs(states, before_envs, imports=not before_envs)
    debian = ("chromium", "prometheus", "poppler-utils") if purpose == "test" else ("chromium",)
    debian = ("redis-server", *debian)  # every stack starts it
    findings += check_debian(debian, before_envs)
    findings += check_ports(state)
    if purpose != "test":  # the suite starts throw-away stacks of its own
        findings += check_stack(state)
    return findings


def render(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"  {f.status:<5} {f.what:<15} {f.detail}")
        if f.fix and f.status != "ok":
            lines.append(f"  {'':<5} {'':<15} fix: {f.fix}")
    return "\n".join(lines)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--before-envs", action="store_true", help="what `make` is about to build is not a problem"
    )
    ap.add_argument("--for", dest="purpose", choices=("demo", "test", "all"), default="all")


def run(before_envs: bool = False, purpose: str = "all") -> int:
    print(f"slm doctor: checkout {REPO_ROOT}, SLM_HOME {slm_home()}", flush=True)
    findings = diagnose(before_envs, purpose)
    print(render(findings), flush=True)
    blocking = [f for f in findings if f.status == "FAIL"]
    if blocking:
        again = {"demo": "make demo", "test": "make test"}.get(purpose, "./slm doctor")
        n = len(blocking)
        print(f"{n} problem{'s' if n > 1 else ''} to fix first (the fix: lines), then run `{again}` again.")
        return 1
    print("nothing blocks the set-up.")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="slm doctor", description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    args = ap.parse_args(argv)
    return run(args.before_envs, args.purpose)


if __name__ == "__main__":
    sys.exit(main())
