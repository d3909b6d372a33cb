"""Shared fixtures: a throw-away stack under its own SLM_HOME, started and stopped by the suite.

Set SLM_TEST_PG_URL to run the database tests against an existing server instead (a superuser URL).

Every test gets one lane marker, from what it needs (``pytest -m unit``, ``make check``):
``unit`` nothing but the code; ``db`` a PostgreSQL cluster; ``stack`` Airflow and/or Superset (the demo stack
or one of its own); ``browser`` is added to tests that drive chromium. The lane follows from the fixtures a
test uses; the modules that start what they need themselves are listed in ``OWN_SERVICES``.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from slm_platform.ops.pgcluster import standin_root
from slm_platform.settings import REPO_ROOT, WAREHOUSE_DB, PgServer

SLM = str(REPO_ROOT / "slm")
STACK_FIXTURES = {"demo_stack"}
DB_FIXTURES = {"pg_server"}
# Modules whose tests start their own cluster or stack (no shared fixture shows it), by lane.
OWN_SERVICES = {
    "test_crash": "db",
    "test_repeats": "stack",
    "test_setup": "stack",
    "test_stack": "stack",
    "test_prometheus_dag": "stack",
    "test_servicenow_dag": "stack",
    "test_dag_params": "stack",
    "test_celery": "stack",
    "test_survey_dag": "stack",
    "test_jira_dag": "stack",
    "test_zabbix_dag": "stack",
    "test_prometheus_real": "db",
}
BROWSER_MODULES = {
    "test_superset_browser",
    "test_dashboard_warm_browser",
    "test_dashboard_warm",
    "test_incident_review_ui",
    "test_superset_incident",
    "test_review_pack",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        needs = set(item.fixturenames)
        lane = OWN_SERVICES.get(module) or (
            "stack" if needs & STACK_FIXTURES else "db" if needs & DB_FIXTURES else "unit"
        )
        item.add_marker(getattr(pytest.mark, lane))
        if module in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)


_HOMES: set[Path] = set()  # every SLM_HOME the suite ran ./slm with (see no_cluster_left_behind)


def slm(home: Path, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the real CLI against the stack in ``home``."""
    _HOMES.add(home.resolve())
    env = dict(os.environ, SLM_HOME=str(home))
    env.pop("SLM_PG_URL", None)
    proc = subprocess.run([SLM, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"./slm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="session", autouse=True)
def no_cluster_left_behind() -> Iterator[None]:
    """At the end of the session, no SLM_HOME the suite used keeps a cluster outside it (see pgcluster)."""
    yield
    left = [str(standin_root(h)) for h in sorted(_HOMES) if standin_root(h).exists()]
    assert left == [], f"PostgreSQL cluster(s) left behind under /var/tmp: {left}"


@pytest.fixture(scope="session")
def stack_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """SLM_HOME of the suite's throw-away stack; everything it started is stopped at the end."""
    home = tmp_path_factory.mktemp("slm_home")
    yield home
    stop_and_remove(home)


def stop_and_remove(home: Path) -> None:
    """Stop a throw-away stack and delete its cluster (which may live outside ``home``, see pgcluster).

    By where pgcluster puts it, not by stack.json: a `stack up` refused after initdb (port taken) has
    already created the cluster but recorded nothing.
    """
    import shutil

    slm(home, "stack", "down", check=False)
    shutil.rmtree(standin_root(home.resolve()), ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(stack_home: Path) -> PgServer:
    url = os.environ.get("SLM_TEST_PG_URL")
    if url:
        u = urlparse(url)
        return PgServer(
            u.hostname or "127.0.0.1",
            u.port or 5432,
            unquote(u.username or "postgres"),
            unquote(u.password or ""),
        )
    slm(stack_home, "stack", "up", "--only", "pg")
    pg = json.loads((stack_home / "stack.json").read_text())["pg"]
    return PgServer(pg["host"], int(pg["port"]), pg["user"], pg["password"])


@contextmanager
def scratch_database(pg_server: PgServer) -> Iterator[str]:
    """A brand-new empty database on ``pg_server`` (its DSN), dropped on exit."""
    import psycopg2

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(pg_server.dsn("postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'create database "{name}"')
    try:
        yield pg_server.dsn(name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
        admin.close()


@pytest.fixture()
def fresh_db(pg_server: PgServer) -> Iterator[str]:
    """DSN of a brand-new empty database, dropped afterwards."""
    with scratch_database(pg_server) as dsn:
        yield dsn


def query_dicts(dsn: str, sql: str, args: tuple = ()) -> list[dict]:
    """Rows of one query as dicts, on a connection of its own."""
    import psycopg2
    import psycopg2.extras

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, args)
            return [dict(r) for r in cur.fetchall()]
    finally:
        conn.close()


@dataclass
class DemoStack:
    home: Path
    airflow_url: str
    superset_url: str
    warehouse_dsn: str
    credentials: dict


@pytest.fixture(scope="session")
def demo_stack(stack_home: Path, pg_server: PgServer) -> DemoStack:
    """The full stack with the demo data run through the nightly DAG and Superset provisioned.

    Built by the same command a person runs (`./slm demo up`), so the suite checks what `make demo` gives.
    """
    if os.environ.get("SLM_TEST_PG_URL"):
        pytest.fail("demo_stack needs the suite's own stack: unset SLM_TEST_PG_URL")
    proc = slm(stack_home, "demo", "up", timeout=1800)
    # What the terminal showed, logins included (the demo prints them): owner-only, like credentials.json.
    out = stack_home / "demo.out"
    out.touch(mode=0o600)
    out.write_text(proc.stdout + proc.stderr)
    state = json.loads((stack_home / "stack.json").read_text())
    creds = json.loads((stack_home / "credentials.json").read_text())
    return DemoStack(
        home=stack_home,
        airflow_url=f"http://127.0.0.1:{state['airflow']['api_port']}",
        superset_url=f"http://127.0.0.1:{state['superset']['port']}",
        warehouse_dsn=pg_server.dsn(WAREHOUSE_DB),
        credentials=creds,
    )


# The Superset test modules' shared fixtures (module scope: a fresh login per module, as a token expires).
@pytest.fixture(scope="module")
def admin(demo_stack: DemoStack):
    from slm_platform.dashboards.superset_api import SupersetClient

    creds = demo_stack.credentials["superset"]["admin"]
    return SupersetClient(demo_stack.superset_url, creds["username"], creds["password"])


@pytest.fixture(scope="module")
def warehouse(demo_stack: DemoStack):
    """A read-only connection to the demo warehouse, for the figures charts are compared with."""
    import psycopg2

    conn = psycopg2.connect(demo_stack.warehouse_dsn)
    conn.set_session(readonly=True, autocommit=True)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def warmed(demo_stack: DemoStack) -> dict:
    """The product's warm-up of the demo stack's dashboards, once per module that asks (the warm-up tests)."""
    from slm_platform.dashboards.warm import warm

    state = (demo_stack.home / "stack.json").read_text()
    assert '"redis"' in state, "the stack's Superset needs its shared cache (Redis) for a warm-up to reach it"
    admin = demo_stack.credentials["superset"]["admin"]
    # The stack's own capture file, which its DAGs' warm-ups use: chromium opens the dashboards once.
    cache = demo_stack.home / "superset" / "warm_requests.json"
    result = warm(
        demo_stack.superset_url, admin["username"], admin["password"], log=print, capture_cache=cache
    )
    return result.summary() | {"errors_text": result.errors}
