"""The local stack: PostgreSQL (embedded or existing), Redis, Airflow services and Superset, on loopback.

Airflow runs on the LocalExecutor, or on Celery (``up(executor="celery")``: two workers, Redis as broker,
the Airflow metadata database as result backend; settings from docker/airflow/celery.env, shared with the
production compose file). The choice is kept in stack.json, so a later ``up``/``status``/``down`` agree.

State (ports, which parts run) is in ``SLM_HOME/stack.json``; generated secrets in
``SLM_HOME/credentials.json`` (mode 600). Every operation is idempotent.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from base64 import urlsafe_b64encode
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

from slm_platform.errors import StackError
from slm_platform.ops import procs, redis_server
from slm_platform.ops.pgcluster import Cluster, cluster_root
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
EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
# The executor settings shared with docker/compose.yaml (its env_file): one source.
CELERY_ENV_FILE = REPO_ROOT / "docker" / "airflow" / "celery.env"
CELERY_WORKERS = ("worker1", "worker2")
REDIS_BROKER_DB, REDIS_SUPERSET_DB = 0, 1
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
        "redis_password": lambda: secrets.token_urlsafe(24),
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
    _ensure_databases(server, creds["reader_password"], own_cluster=not external)
    return server


# Built-in functions that run SQL text of their own or read whole relations, and those showing other sessions'
# SQL: called from a chart's custom SQL column they would read the marts past Superset's row-level security
# (measured: a client's query_to_xml('select ... from marts.fct_ticket_volume', ...) column returned every
# client's rows). PostgreSQL grants EXECUTE on them to PUBLIC; the reader needs none of them.
SQL_RUNNING_FUNCTIONS = (
    "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema",
    "table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema",
    "cursor_to_xml", "cursor_to_xmlschema",
    "schema_to_xml", "schema_to_xmlschema", "schema_to_xml_and_xmlschema",
    "database_to_xml", "database_to_xmlschema", "database_to_xml_and_xmlschema",
    "ts_stat", "ts_rewrite", "pg_stat_get_activity", "pg_stat_get_backend_activity",
)  # fmt: skip


def _ensure_databases(server: PgServer, reader_password: str, own_cluster: bool = False) -> None:
    """Create the databases and the reader role; the reader may SELECT the published marts and nothing else.

    ``own_cluster``: the stack's embedded cluster, where the maintenance databases are ours to lock too.
    """
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
        # PostgreSQL grants CONNECT and TEMP on every database to PUBLIC: the reader would reach the Airflow
        # and Superset metadata's catalogs and write temporary tables. The stack's other roles own these
        # databases (or are superuser), so nothing else needs PUBLIC's grants.
        maintenance = ["postgres", "template1"] if own_cluster else []
        databases = [WAREHOUSE_DB, AIRFLOW_DB, SUPERSET_DB, *maintenance]
        for db in databases:
            cur.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(db)))
        cur.execute(
            sql.SQL("grant connect on database {} to {}").format(
                sql.Identifier(WAREHOUSE_DB), sql.Identifier(READER_ROLE)
            )
        )
        cur.execute("select rolsuper from pg_roles where rolname = current_user")
        superuser = bool(cur.fetchone()[0])
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
        cur.execute("revoke create on schema public from public")  # PostgreSQL 15's default, made explicit
        if superuser:  # built-in functions belong to the bootstrap superuser (docker: init-databases.sh)
            cur.execute(
                "select oid::regprocedure::text from pg_proc where pronamespace = 'pg_catalog'::regnamespace "
                "and proname = any(%s)",
                (list(SQL_RUNNING_FUNCTIONS),),
            )
            for (signature,) in cur.fetchall():
                cur.execute(sql.SQL("revoke execute on function {} from public").format(sql.SQL(signature)))
    wh.close()


# --- Redis -------------------------------------------------------------------------------------------


def _redis_dir() -> Path:
    return slm_home() / "redis"


def redis_up(log: Log) -> int:
    """Start the stack's Redis (idempotent); its port. Superset's cache (db 1) and Celery's broker (db 0)."""
    state, creds = _state(), credentials()
    rd = state.setdefault("redis", {})
    running = procs.is_running(_run_dir(), "redis")
    rd["port"] = _pick_port(rd.get("port"), running, "SLM_PORT_REDIS")
    _save_state(state)
    if not running:
        conf = redis_server.write_config(_redis_dir(), rd["port"], creds["redis_password"])
        procs.start(_run_dir(), _log_dir(), "redis", redis_server.command(conf), dict(os.environ))
    redis_server.wait_ready(rd["port"], creds["redis_password"], 30, _log_dir() / "redis.log")
    return rd["port"]


def redis_url(db: int, state: dict | None = None, creds: dict | None = None) -> str:
    state = state or _state()
    creds = creds or credentials()
    port = state.get("redis", {}).get("port")
    if not port:
        raise StackError("the stack's Redis has no port yet: run ./slm stack up")
    return redis_server.url(int(port), creds["redis_password"], db)


# --- Airflow -----------------------------------------------------------------------------------------


def celery_settings(path: Path = CELERY_ENV_FILE) -> dict[str, str]:
    """KEY=VALUE lines of docker/airflow/celery.env (comments, blank lines skipped), as compose reads them."""
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise StackError(f"{path}:{n}: expected KEY=VALUE, got {line!r}")
        out[key.strip()] = value.strip()
    return out


def executor(state: dict | None = None) -> str:
    """The executor this stack runs: 'local' (default) or 'celery', as remembered in stack.json."""
    state = state if state is not None else _state()
    return state.get("airflow", {}).get("executor", "local")


def superset_connection(state: dict, creds: dict) -> str | None:
    """The slm_superset Airflow connection (JSON) for the dashboards' cache warm-up, once Superset has a
    port."""
    port = state.get("superset", {}).get("port")
    if not port:
        return None
    return json.dumps(
        {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": int(port),
            "login": "admin",
            "password": creds["superset_admin_password"],
            "schema": "http",
        }
    )


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
    conn = superset_connection(state, creds)
    if conn:
        env["AIRFLOW_CONN_SLM_SUPERSET"] = conn
    if executor(state) == "celery":
        meta = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        env.update(celery_settings())
        env["AIRFLOW__CELERY__BROKER_URL"] = redis_url(REDIS_BROKER_DB, state, creds)
        env["AIRFLOW__CELERY__RESULT_BACKEND"] = f"db+{meta}"
    return env


def worker_env(env: dict[str, str], name: str) -> dict[str, str]:
    """A Celery worker's environment: its task instances record ``<name>@<host>`` as their hostname (both
    workers share one machine, whose name alone would not tell them apart)."""
    return dict(
        env,
        SLM_CELERY_WORKER=name,
        AIRFLOW__CORE__HOSTNAME_CALLABLE="slm_platform.ops.procs.worker_hostname",
    )


def _airflow(args: list[str], env: dict[str, str], log: Log, what: str) -> None:
    proc = subprocess.run(
        [str(venv_bin("airflow", "airflow")), *args], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise StackError(f"{what} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")


def _airflow_processes() -> list[str]:
    return [*(f"airflow-{s}" for s in AIRFLOW_SERVICES), *(f"airflow-celery-{w}" for w in CELERY_WORKERS)]


def airflow_up(log: Log, executor_name: str | None = None, with_superset: bool = False) -> str:
    """Start Airflow's services (and the Celery workers); ``with_superset``: Superset starts after it, so its
    port is chosen now and the slm_superset connection names it (no Superset, no connection: the nightly's
    cache warm-up then has nothing to warm and skips)."""
    state, creds = _state(), credentials()
    af = state.setdefault("airflow", {})
    wanted = executor_name or af.get("executor", "local")
    if wanted not in EXECUTORS:
        raise StackError(f"unknown executor {wanted!r}; choose from {sorted(EXECUTORS)}")
    if af.get("executor", "local") != wanted:
        stopped = [name for name in _airflow_processes() if procs.stop(_run_dir(), name)]
        if stopped:
            log(f"    executor {af.get('executor', 'local')} -> {wanted}: restarted Airflow")
    af["executor"] = wanted
    running = procs.is_running(_run_dir(), "airflow-api-server")
    for key, fixed in (
        ("api_port", "SLM_PORT_AIRFLOW"),
        ("worker_log_port", None),
        ("trigger_log_port", None),
    ):
        af[key] = _pick_port(af.get(key), running, fixed)
    if with_superset:
        ss = state.setdefault("superset", {})
        ss["port"] = _pick_port(ss.get("port"), procs.is_running(_run_dir(), "superset"), "SLM_PORT_SUPERSET")
    env = airflow_env(state, creds)
    # A stack first started without Superset (`--only pg,airflow`) runs Airflow without the slm_superset
    # connection; once Superset joins, restart Airflow so its tasks get it (else the warm-up skips for good).
    has_conn = "AIRFLOW_CONN_SLM_SUPERSET" in env
    if running and has_conn and not af.get("superset_connection"):
        if [name for name in _airflow_processes() if procs.stop(_run_dir(), name)]:
            log("    Superset joined the stack: restarted Airflow with its slm_superset connection")
    af["superset_connection"] = has_conn
    _save_state(state)
    pw_file = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    # Pre-seeded so the generated password is ours, in credentials.json, not printed in a log.
    write_private_json(pw_file, {"admin": creds["airflow_admin_password"]})
    log("    migrating the Airflow metadata database")
    _airflow(["db", "migrate"], env, log, "airflow db migrate")
    from slm_platform.orchestration.incident_review import POOL, POOL_DESCRIPTION

    # The nightly's and the incident review's dbt builds and publishes share it (one slot).
    _airflow(["pools", "set", POOL, "1", POOL_DESCRIPTION], env, log, "airflow pools set")
    from slm_platform.transform import dbt_runner

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
    if wanted == "celery":
        for name in CELERY_WORKERS:
            # No log server (it would bind every interface): the workers write the shared log folder.
            cmd = [str(venv_bin("airflow", "airflow")), "celery", "worker", "--skip-serve-logs"]
            cmd += ["--celery-hostname", f"{name}@%h"]
            procs.start(_run_dir(), _log_dir(), f"airflow-celery-{name}", cmd, worker_env(env, name))
    url = env["AIRFLOW__API__BASE_URL"]
    procs.wait_http(f"{url}/api/v2/monitor/health", 180, "Airflow", _log_dir() / "airflow-api-server.log")
    return url


# --- Superset ----------------------------------------------------------------------------------------


def superset_env() -> dict[str, str]:
    from slm_platform.dashboards import superset_service

    creds = credentials()
    meta = pg_server().dsn(SUPERSET_DB).replace("postgresql://", "postgresql+psycopg2://", 1)
    env = superset_service.superset_env(meta, creds["superset_secret_key"], slm_home() / "superset")
    state = _state()
    if state.get("redis", {}).get("port"):  # superset_config.py keeps its caches in Redis when set
        env["SUPERSET_REDIS_URL"] = redis_url(REDIS_SUPERSET_DB, state, creds)
    return env


def superset_up(log: Log) -> str:
    from slm_platform.dashboards import superset_service

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


def up(components: tuple[str, ...] = COMPONENTS, log: Log = print, executor_name: str | None = None) -> dict:
    """Start PostgreSQL and Redis (always) and the chosen components; ``executor_name`` local|celery
    (None: the one this stack ran last, else local)."""
    _check_disk()
    log(f"==> starting the stack (SLM_HOME={slm_home()})")
    log("--> PostgreSQL")
    pg_up(log)
    log("--> Redis")
    redis_up(log)
    if "airflow" in components:
        wanted = executor_name or executor()
        extra = f", {len(CELERY_WORKERS)} Celery workers" if wanted == "celery" else ""
        log(f"--> Airflow (api-server, scheduler, dag-processor, triggerer{extra}; {EXECUTORS[wanted]})")
        airflow_up(log, wanted, with_superset="superset" in components)
    if "superset" in components:
        log("--> Superset")
        superset_up(log)
    return status()


def down(log: Log = print) -> None:
    state = _state()
    for name in ["superset", *_airflow_processes(), "redis"]:
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
    rd = state.get("redis")
    if rd:
        out["redis"] = {
            "running": procs.is_running(_run_dir(), "redis"),
            "host": "127.0.0.1",
            "port": rd["port"],
            "password": "redis_password in the credentials file",
        }
    af = state.get("airflow")
    if af and af.get("api_port"):
        name = af.get("executor", "local")
        workers = CELERY_WORKERS if name == "celery" else ()
        out["airflow"] = {
            "running": all(procs.is_running(_run_dir(), f"airflow-{s}") for s in AIRFLOW_SERVICES),
            "url": f"http://127.0.0.1:{af['api_port']}",
            "login": "admin (password: airflow_admin_password in the credentials file)",
            "executor": EXECUTORS[name],
            "workers": {w: procs.is_running(_run_dir(), f"airflow-celery-{w}") for w in workers},
        }
    ss = state.get("superset")
    if ss:
        out["superset"] = {
            "running": procs.is_running(_run_dir(), "superset"),
            "url": f"http://127.0.0.1:{ss['port']}",
            "login": "admin (password: superset_admin_password in the credentials file)",
        }
    return out
