"""The local stack: PostgreSQL (embedded or existing), Airflow services and Superset, on loopback.

State (ports, which parts run) is in ``SLM_HOME/stack.json``; generated secrets in
``SLM_HOME/credentials.json`` (mode 600). Every operation is idempotent.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from base64 import urlsafe_b64encode
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

from slm_platform import procs
from slm_platform.errors import StackError
from slm_platform.pgcluster import Cluster, cluster_root
from slm_platform.settings import (
    AIRFLOW_DB,
    READER_ROLE,
    REPO_ROOT,
    SUPERSET_DB,
    WAREHOUSE_DB,
    PgServer,
    credentials_file,
    pg_server,
    read_json,
    slm_home,
    state_file,
    venv_bin,
    write_private_json,
)

Log = Callable[[str], None]
COMPONENTS = ("pg", "airflow", "superset")
AIRFLOW_SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
PG_SUPERUSER = "slm"
MIN_FREE_DISK = 2 * 1024**3


def _run_dir() -> Path:
    return slm_home() / "run"


def _log_dir() -> Path:
    return slm_home() / "logs"


def credentials() -> dict:
    """Load the stack's secrets, generating any that are missing (never stored in the repo)."""
    creds = read_json(credentials_file())
    wanted = {
        "pg_password": lambda: secrets.token_urlsafe(24),
        "reader_password": lambda: secrets.token_urlsafe(24),
        "airflow_admin_password": lambda: secrets.token_urlsafe(12),
        "airflow_fernet_key": lambda: urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "airflow_jwt_secret": lambda: secrets.token_urlsafe(32),
        "airflow_api_secret": lambda: secrets.token_urlsafe(32),
        "superset_secret_key": lambda: secrets.token_urlsafe(42),
        "superset_admin_password": lambda: secrets.token_urlsafe(12),
    }
    changed = False
    for key, make in wanted.items():
        if key not in creds:
            creds[key] = make()
            changed = True
    if changed:
        write_private_json(credentials_file(), creds)
    return creds


def save_credentials(update: dict) -> None:
    creds = credentials()
    creds.update(update)
    write_private_json(credentials_file(), creds)


def _state() -> dict:
    return read_json(state_file())


def _save_state(state: dict) -> None:
    write_private_json(state_file(), state)


def _pick_port(current: int | None, running: bool, fixed_env: str | None = None) -> int:
    """Keep the port a service already has; else a free one, or the one fixed by ``fixed_env``."""
    fixed = os.environ.get(fixed_env) if fixed_env else None
    if fixed:
        port = int(fixed)
        if not running and not procs.port_is_free(port):
            raise StackError(
                f"port {port} ({fixed_env}) is in use by another program on 127.0.0.1: stop it, choose "
                f"another port, or unset {fixed_env} to let the stack pick a free one"
            )
        return port
    if current and (running or procs.port_is_free(current)):
        return current
    return procs.free_port()


# --- PostgreSQL -------------------------------------------------------------------------------------


def _cluster(state: dict, creds: dict) -> Cluster:
    root = Path(state.get("pg", {}).get("root") or cluster_root(slm_home()))
    port = int(state.get("pg", {}).get("port") or 0)
    return Cluster(root=root, port=port, superuser=PG_SUPERUSER, password=creds["pg_password"])


def pg_up(log: Log) -> PgServer:
    state, creds = _state(), credentials()
    external = os.environ.get("SLM_PG_URL")
    if external:
        url = urlparse(external)
        state["pg"] = {
            "external": True,
            "host": url.hostname or "127.0.0.1",
            "port": url.port or 5432,
            "user": unquote(url.username or "postgres"),
            "password": unquote(url.password or ""),
        }
        log(f"    using the existing PostgreSQL server at {url.hostname}:{url.port or 5432} (SLM_PG_URL)")
    else:
        cluster = _cluster(state, creds)
        running = cluster.initialised() and cluster.running()
        # The port first: a taken SLM_PORT_PG fails before initdb writes a cluster nobody will start.
        cluster.port = _pick_port(cluster.port or None, running, "SLM_PORT_PG")
        if not cluster.initialised():
            log(f"    initialising a PostgreSQL cluster in {cluster.root}")
            cluster.init()
        if not running:
            cluster.start()
        state["pg"] = {
            "external": False,
            "host": "127.0.0.1",
            "port": cluster.port,
            "user": PG_SUPERUSER,
            "password": creds["pg_password"],
            "root": str(cluster.root),
        }
    _save_state(state)
    server = PgServer(state["pg"]["host"], state["pg"]["port"], state["pg"]["user"], state["pg"]["password"])
    _ensure_databases(server, creds["reader_password"])
    return server


def _ensure_databases(server: PgServer, reader_password: str) -> None:
    import psycopg2
    from psycopg2 import sql

    try:
        conn = psycopg2.connect(server.dsn("postgres"), connect_timeout=10)
    except psycopg2.OperationalError as exc:
        raise StackError(f"cannot connect to PostgreSQL at {server.host}:{server.port}: {exc}") from exc
    conn.autocommit = True
    with conn.cursor() as cur:
        for db in (WAREHOUSE_DB, AIRFLOW_DB, SUPERSET_DB):
            cur.execute("select 1 from pg_database where datname = %s", (db,))
            if not cur.fetchone():
                cur.execute(sql.SQL("create database {}").format(sql.Identifier(db)))
        cur.execute("select 1 from pg_roles where rolname = %s", (READER_ROLE,))
        verb = "alter" if cur.fetchone() else "create"
        cur.execute(
            sql.SQL(verb + " role {} login password {}").format(
                sql.Identifier(READER_ROLE), sql.Literal(reader_password)
            )
        )
    conn.close()
    with psycopg2.connect(server.dsn(WAREHOUSE_DB)) as wh, wh.cursor() as cur:
        # Superset reads the published marts only; publish re-grants after each swap.
        cur.execute("create schema if not exists marts")
        cur.execute(sql.SQL("grant usage on schema marts to {}").format(sql.Identifier(READER_ROLE)))
        cur.execute(
            sql.SQL("alter default privileges in schema marts grant select on tables to {}").format(
                sql.Identifier(READER_ROLE)
            )
        )
    wh.close()


# --- Airflow -----------------------------------------------------------------------------------------


def airflow_env(state: dict | None = None, creds: dict | None = None) -> dict[str, str]:
    """Environment for every Airflow process of this stack (services, `dags test`, CLI)."""
    state = state or _state()
    creds = creds or credentials()
    server = PgServer(state["pg"]["host"], state["pg"]["port"], state["pg"]["user"], state["pg"]["password"])
    af = state.get("airflow", {})
    home = slm_home() / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    api = f"http://127.0.0.1:{af.get('api_port', 8080)}"
    warehouse = server.dsn(WAREHOUSE_DB)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__FERNET_KEY": creds["airflow_fernet_key"],
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": server.dsn(AIRFLOW_DB).replace(
                "postgresql://", "postgresql+psycopg2://", 1
            ),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(af.get("api_port", 8080)),
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__SECRET_KEY": creds["airflow_api_secret"],
            "AIRFLOW__API_AUTH__JWT_SECRET": creds["airflow_jwt_secret"],
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(af.get("worker_log_port", 8793)),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(af.get("trigger_log_port", 8794)),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "AIRFLOW__COSMOS__PROPAGATE_LOGS": "False",
            "GX_ANALYTICS_ENABLED": "false",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "AIRFLOW_CONN_SLM_WAREHOUSE": warehouse,
            "SLM_WAREHOUSE_DSN": warehouse,
            "SLM_PG_HOST": server.host,
            "SLM_PG_PORT": str(server.port),
            "SLM_PG_USER": server.user,
            "SLM_PG_PASSWORD": server.password,
            "SLM_PG_DBNAME": WAREHOUSE_DB,
            "SLM_HOME": str(slm_home()),
            "SLM_DBT_EXECUTABLE": str(venv_bin("dbt", "dbt")),
            "PATH": f"{venv_bin('airflow', 'python').parent}:{os.environ.get('PATH', '')}",
        }
    )
    return env


def _airflow(args: list[str], env: dict[str, str], log: Log, what: str) -> None:
    proc = subprocess.run(
        [str(venv_bin("airflow", "airflow")), *args], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise StackError(f"{what} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")


def airflow_up(log: Log) -> str:
    state, creds = _state(), credentials()
    af = state.setdefault("airflow", {})
    running = procs.is_running(_run_dir(), "airflow-api-server")
    for key, fixed in (
        ("api_port", "SLM_PORT_AIRFLOW"),
        ("worker_log_port", None),
        ("trigger_log_port", None),
    ):
        af[key] = _pick_port(af.get(key), running, fixed)
    _save_state(state)
    env = airflow_env(state, creds)
    pw_file = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    # Pre-seeded so the generated password is ours, in credentials.json, not printed in a log.
    write_private_json(pw_file, {"admin": creds["airflow_admin_password"]})
    log("    migrating the Airflow metadata database")
    _airflow(["db", "migrate"], env, log, "airflow db migrate")
    from slm_platform.incident_review import POOL, POOL_DESCRIPTION

    # The nightly's and the incident review's dbt builds and publishes share it (one slot).
    _airflow(["pools", "set", POOL, "1", POOL_DESCRIPTION], env, log, "airflow pools set")
    from slm_platform import dbt_runner

    # Cosmos renders the dbt task group from this manifest; parsing with the tasks' own env
    # keeps dbt's partial-parse cache valid for them.
    dbt_runner.dbt_parse(dbt_runner.dbt_env(pg_server()))
    for svc in AIRFLOW_SERVICES:
        cmd = [str(venv_bin("airflow", "airflow")), svc]
        if svc in ("scheduler", "triggerer"):
            # Their log servers would bind every interface; here all components share one log folder,
            # so the api-server reads task logs from disk and nothing listens beyond loopback.
            cmd.append("--skip-serve-logs")
        procs.start(_run_dir(), _log_dir(), f"airflow-{svc}", cmd, env)
    url = env["AIRFLOW__API__BASE_URL"]
    procs.wait_http(f"{url}/api/v2/monitor/health", 180, "Airflow", _log_dir() / "airflow-api-server.log")
    return url


# --- Superset ----------------------------------------------------------------------------------------


def superset_env() -> dict[str, str]:
    from slm_platform import superset_service

    creds = credentials()
    meta = pg_server().dsn(SUPERSET_DB).replace("postgresql://", "postgresql+psycopg2://", 1)
    return superset_service.superset_env(meta, creds["superset_secret_key"], slm_home() / "superset")


def superset_up(log: Log) -> str:
    from slm_platform import superset_service

    state, creds = _state(), credentials()
    ss = state.setdefault("superset", {})
    running = procs.is_running(_run_dir(), "superset")
    ss["port"] = _pick_port(ss.get("port"), running, "SLM_PORT_SUPERSET")
    _save_state(state)
    env = superset_env()
    marker = slm_home() / "superset" / ".initialised"
    if not marker.exists():
        log("    initialising Superset's metadata (first start: about a minute)")
        superset_service.init_metadata(env, "admin", creds["superset_admin_password"], log)
        marker.touch()
    procs.start(_run_dir(), _log_dir(), "superset", superset_service.gunicorn_command(ss["port"]), env)
    url = f"http://127.0.0.1:{ss['port']}"
    procs.wait_http(f"{url}/health", 180, "Superset", _log_dir() / "superset.log")
    return url


# --- the whole stack -----------------------------------------------------------------------------------


def _check_disk() -> None:
    home = slm_home()
    home.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(home).free
    if free < MIN_FREE_DISK:
        raise StackError(
            f"only {free / 1024**3:.1f} GiB free under {home}: the stack needs at least 2 GiB. "
            "Free some space or set SLM_HOME to a larger disk."
        )


def up(components: tuple[str, ...] = COMPONENTS, log: Log = print) -> dict:
    _check_disk()
    log(f"==> starting the stack (SLM_HOME={slm_home()})")
    log("--> PostgreSQL")
    pg_up(log)
    if "airflow" in components:
        log("--> Airflow (api-server, scheduler, dag-processor, triggerer)")
        airflow_up(log)
    if "superset" in components:
        log("--> Superset")
        superset_up(log)
    return status()


def down(log: Log = print) -> None:
    state = _state()
    for name in ["superset", *(f"airflow-{s}" for s in AIRFLOW_SERVICES)]:
        if procs.stop(_run_dir(), name):
            log(f"    stopped {name}")
    pg = state.get("pg")
    if pg and not pg.get("external"):
        cluster = _cluster(state, credentials())
        if cluster.running():
            cluster.stop()
            log("    stopped PostgreSQL")


def status() -> dict:
    state = _state()
    out: dict = {"slm_home": str(slm_home()), "credentials_file": str(credentials_file())}
    pg = state.get("pg")
    if pg:
        running = True if pg.get("external") else _cluster(state, credentials()).running()
        server = PgServer(pg["host"], int(pg["port"]), pg["user"], pg["password"])
        out["postgresql"] = {
            "running": running,
            "external": bool(pg.get("external")),
            "host": pg["host"],
            "port": pg["port"],
            "warehouse_dsn": f"postgresql://{server.user}:********@{server.host}:{server.port}/{WAREHOUSE_DB}",
        }
    af = state.get("airflow")
    if af:
        out["airflow"] = {
            "running": all(procs.is_running(_run_dir(), f"airflow-{s}") for s in AIRFLOW_SERVICES),
            "url": f"http://127.0.0.1:{af['api_port']}",
            "login": "admin (password: airflow_admin_password in the credentials file)",
        }
    ss = state.get("superset")
    if ss:
        out["superset"] = {
            "running": procs.is_running(_run_dir(), "superset"),
            "url": f"http://127.0.0.1:{ss['port']}",
            "login": "admin (password: superset_admin_password in the credentials file)",
        }
    return out
