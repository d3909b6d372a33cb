"""Background services started by the stack: one process group each, a pid file, a log file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from slm_platform.errors import StackError


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the stack's Celery workers: ``<worker>@<host>`` (SLM_CELERY_WORKER),
    the name the worker has in Celery, so a task instance's hostname tells which of two workers on one
    machine ran it. Elsewhere the machine's name, as Airflow's default."""
    host = socket.getfqdn()
    name = os.environ.get("SLM_CELERY_WORKER")
    return f"{name}@{host}" if name else host


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """No program listens on the port. A stopped server's closed connections may still hold it in
    TIME_WAIT; the servers themselves (PostgreSQL, Redis, gunicorn) bind with SO_REUSEADDR and start there,
    so the check does too: a restarted stack keeps its ports (measured without it: `stack down` then `up`
    moved PostgreSQL to another port, and Superset's warehouse connection pointed at the old one)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    except PermissionError:
        return int(pidfile.read_text().strip())


def is_running(run_dir: Path, name: str) -> bool:
    return _pid(run_dir / f"{name}.pid") is not None


def start(run_dir: Path, log_dir: Path, name: str, cmd: list[str], env: dict[str, str]) -> int:
    """Start ``cmd`` in its own session (so stopping it stops its workers too); no-op if running."""
    pidfile = run_dir / f"{name}.pid"
    pid = _pid(pidfile)
    if pid:
        return pid
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pidfile.write_text(str(proc.pid))
    return proc.pid


def stop(run_dir: Path, name: str, timeout: float = 30) -> bool:
    """Stop the process group: SIGINT first (Airflow's components shut their workers down on it)."""
    pidfile = run_dir / f"{name}.pid"
    pid = _pid(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.time() + wait
        while time.time() < deadline and _group_alive(pid):
            time.sleep(0.2)
        if not _group_alive(pid):
            break
    pidfile.unlink(missing_ok=True)
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # A zombie leader still "exists": reap it if it is our child.
    try:
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.killpg(pgid, 0)
        return _has_live_member(pgid)
    except ProcessLookupError:
        return False


def _has_live_member(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] = state, fields[2] = pgrp
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def wait_http(url: str, timeout: float, name: str, log_file: Path | None = None) -> None:
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status < 500:
                    return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = str(exc)
        time.sleep(1)
    tail = ""
    if log_file and log_file.exists():
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-30:])
    raise StackError(f"{name} did not answer at {url} within {timeout:.0f}s ({last}).\n{tail}")
