"""Run Superset's own commands (metadata migration, admin, init) and describe its web server.

The stack module starts and stops the processes; this module only builds environments and commands.
Superset lives in its own virtualenv (``.venvs/superset``): it pins SQLAlchemy 1.4, which the rest of the
platform does not use, so everything goes through subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import requests

from slm_platform.settings import REPO_ROOT, venv_bin

CONFIG_PATH = REPO_ROOT / "superset" / "superset_config.py"
ASSETS_DIR = REPO_ROOT / "superset" / "assets"

Log = Callable[[str], None]


def superset_env(metadata_dsn: str, secret_key: str, home: Path) -> dict[str, str]:
    """Environment for every superset command and for gunicorn."""
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # The platform's own venv must not leak into Superset's interpreter.
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(key, None)
    env.update(
        {
            "SUPERSET_CONFIG_PATH": str(CONFIG_PATH),
            "SUPERSET_HOME": str(home),
            "SUPERSET_SECRET_KEY": secret_key,
            "SUPERSET_METADATA_DSN": metadata_dsn,
            "FLASK_APP": "superset.app:create_app()",
            "SUPERSET_LOAD_EXAMPLES": "no",
            "PATH": f"{venv_bin('superset', 'python').parent}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    return env


def _run(args: list[str], env: dict[str, str], log: Log, tail: int = 40) -> str:
    started = time.monotonic()
    proc = subprocess.run(
        args, env=env, cwd=env["SUPERSET_HOME"], capture_output=True, text=True, check=False
    )
    log(f"{' '.join(args[1:3])} took {time.monotonic() - started:.1f}s (rc={proc.returncode})")
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).splitlines()
        shown = ["***" if prev == "--password" else a for prev, a in zip(["", *args[:-1]], args, strict=True)]
        raise RuntimeError(f"{' '.join(shown)} failed (rc={proc.returncode}):\n" + "\n".join(lines[-tail:]))
    return proc.stdout + proc.stderr


def init_metadata(env: dict[str, str], admin_user: str, admin_password: str, log: Log = print) -> None:
    """Migrate the metadata DB, create the admin (once) and sync roles/permissions. Idempotent."""
    superset = str(venv_bin("superset", "superset"))
    _run([superset, "db", "upgrade"], env, log)
    # FAB's create-admin exits 0 and changes nothing when the user exists: rerunning is safe.
    out = _run(
        [
            superset, "fab", "create-admin",
            "--username", admin_user,
            "--firstname", "SLM",
            "--lastname", "Admin",
            "--email", f"{admin_user}@slm.invalid",
            "--password", admin_password,
        ],
        env,
        log,
    )  # fmt: skip
    if "already exists" in out:
        log(f"superset admin {admin_user!r} exists: left unchanged")
    _run([superset, "init"], env, log)


# Two cores: a cached chart spends about a third of its time waiting on the metadata database, so more
# processes than cores keep both busy while one worker's GIL is held; four processes share one Redis cache
# (SUPERSET_REDIS_URL), so none of them is a cold cache (docs/design/dashboards_under_load.md).
WORKERS = 4
THREADS = 2


def gunicorn_command(port: int, workers: int = WORKERS, threads: int = THREADS) -> list[str]:
    """The web server command (run it with ``superset_env``); loopback only."""
    return [
        str(venv_bin("superset", "gunicorn")),
        "-w", str(workers),
        "-k", "gthread",
        "--threads", str(threads),
        "--timeout", "120",
        "--graceful-timeout", "20",
        "--limit-request-line", "0",
        "--limit-request-field_size", "0",
        "-b", f"127.0.0.1:{port}",
        "superset.app:create_app()",
    ]  # fmt: skip


def wait_healthy(url: str, timeout: float = 120.0) -> None:
    """Poll ``<url>/health`` until it answers 200 ``OK``; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            resp = requests.get(url.rstrip("/") + "/health", timeout=5)
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(1)
    raise TimeoutError(f"Superset at {url} not healthy after {timeout:.0f}s ({last})")
