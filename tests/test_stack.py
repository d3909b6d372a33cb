"""The stack starts, reports status, is idempotent, and stops leaving no process behind."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import slm


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


@pytest.fixture()
def own_home(tmp_path: Path):
    home = tmp_path / "stack"
    yield home
    slm(home, "stack", "down", check=False)


def test_pg_stack_lifecycle(own_home: Path) -> None:
    up = slm(own_home, "stack", "up", "--only", "pg")
    assert "PostgreSQL:   running" in up.stdout
    state = json.loads((own_home / "stack.json").read_text())
    port = state["pg"]["port"]

    # status, JSON status and the DSN agree; the DSN connects and the three databases exist
    st = json.loads(slm(own_home, "stack", "status", "--json").stdout)
    assert st["postgresql"]["running"] is True and st["postgresql"]["port"] == port
    assert "********" in st["postgresql"]["warehouse_dsn"]
    dsn = slm(own_home, "dsn").stdout.strip()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("select datname from pg_database where datname like 'slm_%' order by 1")
        assert [r[0] for r in cur.fetchall()] == ["slm_airflow", "slm_superset", "slm_warehouse"]
        cur.execute("show listen_addresses")
        assert cur.fetchone()[0] == "127.0.0.1"
    conn.close()

    # a second `up` is a no-op on the same port; credentials are private
    slm(own_home, "stack", "up", "--only", "pg")
    assert json.loads((own_home / "stack.json").read_text())["pg"]["port"] == port
    assert oct((own_home / "credentials.json").stat().st_mode & 0o777) == "0o600"

    datadir = str(Path(state["pg"]["root"]) / "data")
    assert _processes_mentioning(datadir), "postgres should be running"
    slm(own_home, "stack", "down")
    assert _processes_mentioning(datadir) == []
    st = json.loads(slm(own_home, "stack", "status", "--json").stdout)
    assert st["postgresql"]["running"] is False


def test_two_stacks_side_by_side(own_home: Path, stack_home: Path, pg_server) -> None:
    """A second SLM_HOME gets its own cluster on another free port while the suite's stack runs."""
    slm(own_home, "stack", "up", "--only", "pg")
    other = json.loads((own_home / "stack.json").read_text())["pg"]["port"]
    assert other != pg_server.port
    for dsn in (slm(own_home, "dsn").stdout.strip(), slm(stack_home, "dsn").stdout.strip()):
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("select 1")
        conn.close()


def test_clear_error_on_bad_component(own_home: Path) -> None:
    proc = slm(own_home, "stack", "up", "--only", "pg,kafka", check=False)
    assert proc.returncode == 1
    assert "unknown component" in proc.stderr and "Traceback" not in proc.stderr


def test_port_in_use_is_a_clear_error(own_home: Path) -> None:
    import os
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        os.environ["SLM_PORT_PG"] = str(port)
        try:
            proc = slm(own_home, "stack", "up", "--only", "pg", check=False)
        finally:
            del os.environ["SLM_PORT_PG"]
    assert proc.returncode == 1
    assert f"port {port} (SLM_PORT_PG) is in use" in proc.stderr and "Traceback" not in proc.stderr
