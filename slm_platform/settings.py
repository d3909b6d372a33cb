"""Where things live and how to reach them.

All mutable state sits under one folder, ``SLM_HOME`` (default ``<repo>/.slm``), so that two stacks with
different homes run side by side. Environments are per checkout (``<repo>/.venvs``), shared by stacks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parents[1]
VENVS = Path(os.environ.get("SLM_VENVS", REPO_ROOT / ".venvs"))

WAREHOUSE_DB = "slm_warehouse"
AIRFLOW_DB = "slm_airflow"
SUPERSET_DB = "slm_superset"
READER_ROLE = "slm_reader"


def shared_data_file(name: str) -> Path:
    """A file of the workplace's third-party data folder (``../shared/data`` beside the checkout).

    ``SLM_SHARED_DATA`` names the folder explicitly; otherwise the checkout's sibling ``shared/data``, else
    ``/work/shared/data`` (a checkout cloned elsewhere, e.g. by CI). The first that holds the file wins; when
    none does, the first candidate is returned so the caller's error names a sensible path.
    """
    candidates = [Path(d) for d in [os.environ.get("SLM_SHARED_DATA")] if d]
    candidates += [REPO_ROOT.parent / "shared" / "data", Path("/work/shared/data")]
    for folder in candidates:
        if (folder / name).exists():
            return folder / name
    return candidates[0] / name


def slm_home() -> Path:
    return Path(os.environ.get("SLM_HOME", REPO_ROOT / ".slm")).resolve()


def venv_bin(env: str, tool: str) -> Path:
    return VENVS / env / "bin" / tool


def state_file() -> Path:
    return slm_home() / "stack.json"


def credentials_file() -> Path:
    return slm_home() / "credentials.json"


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def write_private_json(path: Path, data: dict) -> None:
    """Write a JSON file readable by its owner only (it may hold secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # O_CREAT's mode applies only to a new file: a temp file left by an interrupted write keeps its own.
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    tmp.replace(path)


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    password: str

    def dsn(self, dbname: str, user: str | None = None, password: str | None = None) -> str:
        u = quote(user or self.user, safe="")
        p = quote(password if password is not None else self.password, safe="")
        return f"postgresql://{u}:{p}@{self.host}:{self.port}/{dbname}"

    def libpq_env(self, dbname: str) -> dict[str, str]:
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": dbname,
        }


def pg_server() -> PgServer:
    """The PostgreSQL server of the current stack (started by ``slm stack up``)."""
    from slm_platform.errors import StackError

    state = read_json(state_file())
    if "pg" not in state:
        raise StackError(f"the stack is not up (no {state_file()}): run `./slm stack up` first")
    pg = state["pg"]
    return PgServer(pg["host"], int(pg["port"]), pg["user"], pg["password"])


def warehouse_dsn() -> str:
    """The warehouse DSN: ``SLM_WAREHOUSE_DSN`` if set (tasks get it from the stack env), else the stack's."""
    return os.environ.get("SLM_WAREHOUSE_DSN") or pg_server().dsn(WAREHOUSE_DB)
