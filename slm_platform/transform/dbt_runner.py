"""Run the dbt project (``dbt_project/``) from the DAG and the CLI.

dbt lives in its own environment (``.venvs/dbt``: its pins clash with Airflow's), so it is always run as a
subprocess; connection settings reach ``dbt_project/profiles.yml`` through environment variables only.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from slm_platform.settings import REPO_ROOT, WAREHOUSE_DB, PgServer, venv_bin

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DBT_PROFILES_DIR = DBT_PROJECT_DIR  # profiles.yml is committed inside the project folder
DBT_TARGET_DIR = DBT_PROJECT_DIR / "target"
MANIFEST_PATH = DBT_TARGET_DIR / "manifest.json"
MARTS_BUILD_SCHEMA = "marts_build"
OUTPUT_TAIL_LINES = 60


class DbtError(RuntimeError):
    """A dbt command failed; the message carries the tail of its output."""


def dbt_executable() -> Path:
    return venv_bin("dbt", "dbt")


def dbt_env(
    pg: PgServer | str, dbname: str = WAREHOUSE_DB, marts_schema: str = MARTS_BUILD_SCHEMA
) -> dict[str, str]:
    """The variables ``profiles.yml`` and ``dbt_project.yml`` read, from a server or a DSN.

    A DSN's own database name wins over ``dbname``.
    """
    if isinstance(pg, PgServer):
        host, port, user, password = pg.host, pg.port, pg.user, pg.password
    else:
        parts = urlsplit(pg)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 5432
        user = unquote(parts.username or "postgres")
        password = unquote(parts.password or "")
        dbname = parts.path.lstrip("/") or dbname
    return {
        "SLM_PG_HOST": host,
        "SLM_PG_PORT": str(port),
        "SLM_PG_USER": user,
        "SLM_PG_PASSWORD": password,
        "SLM_PG_DBNAME": dbname,
        "SLM_MARTS_BUILD_SCHEMA": marts_schema,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def _parse_env() -> dict[str, str]:
    """What ``dbt parse`` needs when no stack is given: the process's own SLM_PG_* values, else placeholders.

    Parsing renders profiles.yml but never connects. Using the same values as at run time keeps dbt's
    partial-parse cache valid (it is dropped whenever the rendered profile changes).
    """
    placeholders = dbt_env(PgServer("127.0.0.1", 5432, "postgres", ""), dbname=WAREHOUSE_DB)
    return {key: os.environ.get(key, value) for key, value in placeholders.items()}


def dbt(args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 1800) -> str:
    """Run ``dbt <args>`` on the project; return its output, raise :class:`DbtError` on failure.

    ``env`` (usually :func:`dbt_env`) is laid over this process's environment; without it the SLM_PG_*
    variables must already be set, or dbt stops with a clear "env var required" error.
    """
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    full_env.setdefault("DBT_USE_COLORS", "false")  # plain text in task logs and in DbtError messages
    cmd = [
        str(dbt_executable()),
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROFILES_DIR),
    ]
    proc = subprocess.run(
        cmd,
        cwd=DBT_PROJECT_DIR,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-OUTPUT_TAIL_LINES:])
        raise DbtError(f"dbt {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def dbt_parse(env: Mapping[str, str] | None = None) -> Path:
    """Write ``dbt_project/target/manifest.json`` (what Cosmos' DBT_MANIFEST load mode reads)."""
    dbt(["parse"], env if env is not None else _parse_env())
    if not MANIFEST_PATH.exists():
        raise DbtError(f"dbt parse succeeded but wrote no manifest at {MANIFEST_PATH}")
    return MANIFEST_PATH
