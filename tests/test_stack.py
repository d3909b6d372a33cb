"""The stack starts, reports status, is idempotent, and stops leaving no process behind."""

from __future__ import annotations

import json
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
