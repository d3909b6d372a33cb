"""The stack's Redis: Debian's ``redis-server`` on 127.0.0.1, a password, no persistence.

It is a cache (Superset, db 1) and a message broker (Airflow's Celery executor, db 0): nothing in it must
survive a restart, so no RDB snapshot and no AOF (``save ""``, ``appendonly no``). Its settings, password
included, are in an owner-only file under ``SLM_HOME/redis`` (never on the command line, which every user
of the machine can read in /proc).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

from slm_platform.errors import StackError

BINARY_ENV = "SLM_REDIS_SERVER"
DEFAULT_BINARY = "/usr/bin/redis-server"
INSTALL_HINT = "apt-get install redis-server (Debian; as root: tools/ensure_system_packages.sh redis-server)"


def binary() -> str | None:
    """Path of redis-server: SLM_REDIS_SERVER, else Debian's, else one on PATH."""
    fixed = os.environ.get(BINARY_ENV)
    if fixed:
        return fixed if os.access(fixed, os.X_OK) else None
    if os.access(DEFAULT_BINARY, os.X_OK):
        return DEFAULT_BINARY
    return shutil.which("redis-server")


def write_config(data_dir: Path, port: int, password: str) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    conf = data_dir / "redis.conf"
    text = "\n".join(
        [
            "# written by ./slm stack up (slm_platform/ops/redis_server.py); rewritten at every start",
            "bind 127.0.0.1",
            f"port {port}",
            "protected-mode yes",
            f"dir {data_dir}",
            'save ""',
            "appendonly no",
            f"requirepass {password}",
            "daemonize no",
            'logfile ""',
            "databases 4",
            "",
        ]
    )
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return conf


def command(conf: Path) -> list[str]:
    exe = binary()
    if not exe:
        raise StackError(f"redis-server not found: {INSTALL_HINT}")
    return [exe, str(conf)]


def ping(port: int, password: str, timeout: float = 2.0) -> bool:
    """AUTH then PING over the Redis protocol: True when both answer OK/PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(_resp("AUTH", password) + _resp("PING"))
            data = b""
            deadline = time.monotonic() + timeout
            while data.count(b"\r\n") < 2 and time.monotonic() < deadline:
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"+OK\r\n+PONG\r\n")
    except OSError:
        return False


def _resp(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def wait_ready(port: int, password: str, timeout: float, log_file: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ping(port, password):
            return
        time.sleep(0.2)
    tail = ""
    if log_file.exists():
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])
    raise StackError(f"Redis did not answer on 127.0.0.1:{port} within {timeout:.0f}s.\n{tail}")


def url(port: int, password: str, db: int) -> str:
    return f"redis://:{password}@127.0.0.1:{port}/{db}"
