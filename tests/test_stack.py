"""The stack starts, reports status, is idempotent, and stops leaving no process behind."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import slm, stop_and_remove


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
    stop_and_remove(home)


def _redis(port: int, *commands: tuple[str, ...]) -> bytes:
    """Raw RESP round trip with the stack's Redis: what a client without the redis package sees."""
    from slm_platform.ops.redis_server import _resp

    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"".join(_resp(*c) for c in commands))
        time.sleep(0.3)
        return s.recv(65536)


def test_pg_stack_lifecycle(own_home: Path) -> None:
    up = slm(own_home, "stack", "up", "--only", "pg")
    assert "PostgreSQL:   running" in up.stdout
    assert "Redis:        running on 127.0.0.1:" in up.stdout
    state = json.loads((own_home / "stack.json").read_text())
    port = state["pg"]["port"]

    # Redis starts with PostgreSQL, always: loopback, a password, no persistence, its data dir in SLM_HOME
    rport = state["redis"]["port"]
    password = json.loads((own_home / "credentials.json").read_text())["redis_password"]
    assert _redis(rport, ("PING",)).startswith(b"-NOAUTH"), "Redis must refuse a client without the password"
    answer = _redis(
        rport, ("AUTH", password), ("CONFIG", "GET", "save"), ("CONFIG", "GET", "appendonly"),
        ("CONFIG", "GET", "bind"), ("CONFIG", "GET", "dir"),
    )  # fmt: skip
    assert answer.startswith(b"+OK\r\n"), answer
    assert b"$4\r\nsave\r\n$0\r\n\r\n" in answer and b"appendonly\r\n$2\r\nno" in answer, answer
    assert b"127.0.0.1" in answer and str(own_home / "redis").encode() in answer, answer
    assert oct((own_home / "redis" / "redis.conf").stat().st_mode & 0o777) == "0o600"
    assert password not in " ".join(_processes_mentioning("redis-server")), "password on a command line"

    # status, JSON status and the DSN agree; the DSN connects and the three databases exist
    st = json.loads(slm(own_home, "stack", "status", "--json").stdout)
    assert st["postgresql"]["running"] is True and st["postgresql"]["port"] == port
    assert "********" in st["postgresql"]["warehouse_dsn"]
    dsn = slm(own_home, "stack", "dsn").stdout.strip()
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
    assert json.loads(slm(own_home, "stack", "status", "--json").stdout)["redis"]["running"] is True
    slm(own_home, "stack", "down")
    assert _processes_mentioning(datadir) == []
    assert _processes_mentioning(str(own_home / "redis")) == []
    st = json.loads(slm(own_home, "stack", "status", "--json").stdout)
    assert st["postgresql"]["running"] is False and st["redis"]["running"] is False


def test_airflow_env_per_executor(tmp_path: Path, monkeypatch) -> None:
    """The Celery settings come from docker/airflow/celery.env (compose's env_file), the broker is the
    stack's Redis (db 0), the result backend the Airflow metadata database; LocalExecutor gets none of them.
    The slm_superset connection exists once the stack has a Superset port."""
    from slm_platform.ops import stack

    monkeypatch.setenv("SLM_HOME", str(tmp_path))
    creds = stack.credentials()
    state = {
        "pg": {"host": "127.0.0.1", "port": 5999, "user": "slm", "password": "pw"},
        "redis": {"port": 6999},
        "airflow": {"api_port": 8999, "executor": "local"},
    }
    local = stack.airflow_env(state, creds)
    assert local["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert not any(k.startswith("AIRFLOW__CELERY") for k in local)
    assert "AIRFLOW_CONN_SLM_SUPERSET" not in local

    state["airflow"]["executor"] = "celery"
    state["superset"] = {"port": 7999}
    env = stack.airflow_env(state, creds)
    shared = stack.celery_settings()
    assert {k: env[k] for k in shared} == shared and env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == f"redis://:{creds['redis_password']}@127.0.0.1:6999/0"
    assert (
        env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql+psycopg2://slm:pw@127.0.0.1:5999/slm_airflow"
    )
    conn = json.loads(env["AIRFLOW_CONN_SLM_SUPERSET"])
    assert conn == {
        "conn_type": "http", "host": "127.0.0.1", "port": 7999, "login": "admin",
        "password": creds["superset_admin_password"], "schema": "http",
    }  # fmt: skip
    worker = stack.worker_env(env, "worker2")
    assert worker["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == "slm_platform.ops.procs.worker_hostname"
    monkeypatch.setenv("SLM_CELERY_WORKER", "worker2")
    from slm_platform.ops import procs

    assert procs.worker_hostname().startswith("worker2@")


def test_the_celery_provider_imports() -> None:
    """celery 5.7 removed ``celery.backends.database.retry``, which apache-airflow-providers-celery 3.26
    imports: no worker or CeleryExecutor scheduler started. The lock pins celery<5.7 (envs/airflow)."""
    import subprocess

    from slm_platform.settings import venv_bin

    code = "import airflow.providers.celery.executors.celery_executor_utils"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["AIRFLOW_HOME"] = tempfile.mkdtemp()
    py = str(venv_bin("airflow", "python"))
    proc = subprocess.run([py, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_two_stacks_side_by_side(own_home: Path, stack_home: Path, pg_server) -> None:
    """A second SLM_HOME gets its own cluster on another free port while the suite's stack runs."""
    slm(own_home, "stack", "up", "--only", "pg")
    other = json.loads((own_home / "stack.json").read_text())["pg"]["port"]
    assert other != pg_server.port
    for dsn in (slm(own_home, "stack", "dsn").stdout.strip(), slm(stack_home, "stack", "dsn").stdout.strip()):
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


def test_a_port_left_in_time_wait_counts_as_free() -> None:
    """A stopped server's closed connections keep its port in TIME_WAIT for a minute; the stack must still
    find the port free, or a quick `stack down` / `stack up` moves PostgreSQL elsewhere while Superset's
    warehouse connection keeps the old port (measured before the fix)."""
    from slm_platform.ops.procs import port_is_free

    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL, Redis and gunicorn do
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not port_is_free(port)  # a listener: taken
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server closes first: its side of the connection goes to TIME_WAIT
            client.recv(1)
    states = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    assert any(int(f[1].split(":")[1], 16) == port and f[3] == "06" for f in states), "no TIME_WAIT to test"
    assert port_is_free(port)


def _listening_sockets() -> dict[int, str]:
    """inode -> local address of every listening TCP socket (IPv4 and IPv6)."""
    out: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A":  # LISTEN
                addr_hex, port_hex = f[1].split(":")
                if len(addr_hex) == 8:
                    addr = ".".join(str(int(addr_hex[i : i + 2], 16)) for i in (6, 4, 2, 0))
                elif addr_hex == "0" * 32:
                    addr = "::"
                elif addr_hex == "00000000000000000000000001000000":
                    addr = "::1"
                else:
                    addr = addr_hex
                out[int(f[9])] = f"{addr}:{int(port_hex, 16)}"
    return out


def _pids_in_groups(pgids: set[int]) -> set[int]:
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pgids:
            pids.add(int(stat.parent.name))
    return pids


def test_every_service_listens_on_loopback_only(demo_stack) -> None:
    """Airflow, Superset and PostgreSQL of the stack: no socket bound beyond 127.0.0.1 / ::1."""
    pgids = {int(p.read_text()) for p in (demo_stack.home / "run").glob("*.pid")}
    state = json.loads((demo_stack.home / "stack.json").read_text())
    postmaster = Path(state["pg"]["root"]) / "data" / "postmaster.pid"
    pgids.add(int(postmaster.read_text().split()[0]))
    listening = _listening_sockets()
    found = []
    for pid in _pids_in_groups(pgids) | pgids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = fd.readlink().as_posix()
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in listening:
                    found.append(listening[inode])
    assert len(found) >= 3, found  # postgres, airflow api-server, superset at least
    exposed = [a for a in found if not (a.startswith("127.") or a.startswith("::1:"))]
    assert exposed == [], f"listening beyond loopback: {exposed}"
