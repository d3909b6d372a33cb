"""Crash and restart: a load killed in the middle of its COPY, PostgreSQL restarted in immediate mode in
the middle of a load and in the middle of the dbt build, and a server crash right after a load reported
success. After a rerun, raw tables, quarantine, load batches, watermarks, the raw tables' keys and the
published marts equal those of a clean run (checksums below).

Everything runs on the test's OWN cluster (slm_platform.ops.pgcluster, the embedded cluster's settings:
fsync, synchronous_commit and full_page_writes off), so that restarting it disturbs no other test.

Checksums: md5 of the rows' text, ordered, per table. Left out, because they differ between any two runs
and say nothing about the data: the bookkeeping columns ``_batch_id`` and ``_loaded_at`` of raw tables,
``batch_id``, ``started_at`` and ``finished_at`` of raw.load_batches, ``quarantine_id``, ``batch_id`` and
``quarantined_at`` of raw.quarantine, ``updated_at`` of raw.watermarks, and in the marts every column in
``VOLATILE_MART_COLUMNS`` (when and how fast a batch ran: fct_load_batch).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest

from slm_platform.canonical import ENTITIES
from slm_platform.contracts.load import load_contracts
from slm_platform.load.loader import load_drop
from slm_platform.ops.pgcluster import Cluster, find_bindir
from slm_platform.sources.demo_data import generate
from slm_platform.transform.dbt_runner import dbt, dbt_env
from slm_platform.transform.publish import publish_marts
from tests.test_loader import CLIENTS, SERVICES, TICKET_HEADER

APP = "slm-crash-test"  # application_name of the process the tests kill or lose
VOLATILE_MART_COLUMNS = {"started_at", "finished_at", "seconds", "loaded_at", "_loaded_at"}
TICKETS = 300_000  # about 60 MB: its COPY lasts long enough to be caught in the middle
REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnCluster:
    def __init__(self) -> None:
        # Under /var/tmp: the unprivileged user the cluster runs as (when the suite is root) can reach it.
        root = Path("/var/tmp") / f"slm-crash-{uuid.uuid4().hex[:10]}"
        self.c = Cluster(root, _free_port(), "postgres", secrets.token_hex(12))

    def dsn(self, db: str) -> str:
        return f"postgresql://postgres:{self.c.password}@127.0.0.1:{self.c.port}/{db}"

    def admin(self):
        conn = psycopg2.connect(self.dsn("postgres"))
        conn.autocommit = True
        return conn

    def create_db(self) -> str:
        name = f"crash_{uuid.uuid4().hex[:8]}"
        conn = self.admin()
        with conn.cursor() as cur:
            cur.execute(f'create database "{name}"')
        conn.close()
        return self.dsn(name)

    def restart_immediate(self) -> None:
        """``pg_ctl stop -m immediate`` (every backend quits at once, no checkpoint), then start: crash
        recovery replays the WAL."""
        pg_ctl = str(find_bindir() / "pg_ctl")
        proc = subprocess.run(
            self.c._cmd([pg_ctl, "-D", str(self.c.datadir), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        self.c.start()

    def set(self, setting: str, value: str) -> None:
        conn = self.admin()
        with conn.cursor() as cur:
            cur.execute(f"alter system set {setting} = '{value}'")
            cur.execute("select pg_reload_conf()")
        conn.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[OwnCluster]:
    own = OwnCluster()
    try:
        own.c.init()
        own.c.start()
        yield own
    finally:
        own.c.stop()
        shutil.rmtree(own.c.root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# drops


@pytest.fixture(scope="module")
def drops(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(reference drop: clients and services; big drop: 300k tickets with refused rows, then checks)."""
    base = tmp_path_factory.mktemp("crash_drops")
    ref, big = base / "ref", base / "big"
    ref.mkdir()
    big.mkdir()
    (ref / "clients.csv").write_text(CLIENTS)
    (ref / "services.csv").write_text(SERVICES)
    with open(big / "tickets.csv", "w") as fh:
        fh.write(TICKET_HEADER + "\n")
        for i in range(TICKETS):
            prio = "P9" if i % 5000 == 17 else f"P{1 + i % 4}"  # 60 rows the loader quarantines
            day, minute = 1 + i % 28, i % 1440
            at = f"2026-10-{day:02d}T{minute // 60:02d}:{minute % 60:02d}:00Z"
            fh.write(f"T{i:07d},ACME,ACME-ERP,incident,{prio},{at},,,,new,ServiceDesk,false,,app,{at}\n")
    with open(big / "checks.csv", "w") as fh:
        fh.write("service_code,checked_at,status,latency_ms\n")
        for i in range(20_000):
            fh.write(
                f"ACME-ERP,2026-10-{1 + i // 1440:02d}T{i % 1440 // 60:02d}:{i % 60:02d}:00Z,up,{i % 300}\n"
            )
    return ref, big


# ---------------------------------------------------------------------------------------------------
# checksums


def _digest(conn, select: str) -> tuple[int, str]:
    with conn.cursor() as cur:
        cur.execute(
            "select count(*), md5(coalesce(string_agg(t::text, E'\\n' order by t::text), '')) "
            f"from ({select}) t"
        )
        return cur.fetchone()


def raw_digest(dsn: str) -> dict[str, object]:
    """Checksums of what a load leaves: every raw table, quarantine, batches, watermarks, keys."""
    conn = psycopg2.connect(dsn)
    try:
        out: dict[str, object] = {}
        for spec in ENTITIES:
            cols = ", ".join([*spec.column_names, "_source"])
            out[spec.table] = _digest(conn, f"select {cols} from {spec.table}")
        out["raw.quarantine"] = _digest(
            conn, "select source, entity, location, reason, raw_record from raw.quarantine"
        )
        # in order of batch: the sequence of loads and their reconciliation
        out["raw.load_batches"] = _digest(
            conn,
            "select row_number() over (order by batch_id) as n, source, entity, file, rows_read, "
            "rows_loaded, rows_unchanged, rows_quarantined, status, error from raw.load_batches",
        )
        out["raw.watermarks"] = _digest(conn, "select source, entity, high_water from raw.watermarks")
        out["keys"] = _digest(
            conn,
            "select conrelid::regclass::text, contype, pg_get_constraintdef(oid) from pg_constraint "
            "where connamespace = 'raw'::regnamespace",
        )
        out["indexes"] = _digest(conn, "select tablename, indexdef from pg_indexes where schemaname = 'raw'")
        return out
    finally:
        conn.close()


def marts_digest(dsn: str, schema: str = "marts") -> dict[str, object]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select table_name, string_agg(quote_ident(column_name), ', ' order by ordinal_position) "
                "from information_schema.columns where table_schema = %s and not column_name = any(%s) "
                "group by table_name order by 1",
                (schema, sorted(VOLATILE_MART_COLUMNS)),
            )
            tables = cur.fetchall()
        return {t: _digest(conn, f"select {cols} from {schema}.{t}") for t, cols in tables}
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------
# the process under test


def _spawn(cmd: list[str], log: Path, **kw) -> subprocess.Popen:
    """Start ``cmd`` with its output in ``log`` (a pipe nobody reads while the test polls would fill up and
    block the process)."""
    env = {**os.environ, "PGAPPNAME": APP, "PYTHONPATH": str(REPO), **kw.pop("env", {})}
    with open(log, "w") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, **kw)


def _load_process(dsn: str, drop: Path, log: Path) -> subprocess.Popen:
    return _spawn([sys.executable, "-c", LOAD, dsn, str(drop)], log)


LOAD = (
    "import sys; from pathlib import Path; from slm_platform.load.loader import load_drop; "
    "load_drop(sys.argv[1], Path(sys.argv[2]))"
)


def _wait_for(what: str, probe: Callable[[], object], proc: subprocess.Popen, limit: float = 300) -> object:
    """Poll until ``probe`` gives something; fail if ``proc`` ends first (it finished before the fault)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        if proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}")
        time.sleep(0.01)
    raise AssertionError(f"never saw {what}")


def _copy_in_progress(cluster: OwnCluster, dbname: str) -> Callable[[], tuple | None]:
    admin = cluster.admin()

    def probe() -> tuple | None:
        with admin.cursor() as cur:
            cur.execute(
                "select a.pid, left(a.query, 200), p.tuples_processed from pg_stat_progress_copy p "
                "join pg_stat_activity a using (pid) where a.application_name = %s and a.datname = %s "
                "and p.tuples_processed > 0",
                (APP, dbname),
            )
            return cur.fetchone()

    return probe


def _dbname(dsn: str) -> str:
    return dsn.rsplit("/", 1)[1]


def _clean_and_crashed(cluster: OwnCluster, ref: Path) -> tuple[str, str]:
    clean, crashed = cluster.create_db(), cluster.create_db()
    for dsn in (clean, crashed):
        load_drop(dsn, ref)  # the same history before the big drop
    return clean, crashed


def test_a_load_killed_in_the_middle_of_its_copy_leaves_nothing_and_a_rerun_equals_a_clean_run(
    cluster: OwnCluster, drops: tuple[Path, Path]
) -> None:
    ref, big = drops
    clean, crashed = _clean_and_crashed(cluster, ref)
    load_drop(clean, big)
    before = raw_digest(crashed)

    proc = _load_process(crashed, big, big.parent / f"load-{uuid.uuid4().hex[:6]}.log")
    pid, query, copied = _wait_for("a COPY of tickets", _copy_in_progress(cluster, _dbname(crashed)), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < copied < TICKETS and "copy raw.tickets" in query, query  # in the tickets COPY
    # the server notices the lost client and rolls its transaction back (the key set aside included)
    admin = cluster.admin()
    _wait_for("the killed load's backend to end", lambda: not _backend_alive(admin, pid), _Never())
    assert raw_digest(crashed) == before

    load_drop(crashed, big)
    assert raw_digest(crashed) == raw_digest(clean)


class _Never:
    """A stand-in process that never ends (for waits that do not watch one)."""

    def poll(self) -> None:
        return None


def _backend_alive(admin, pid: int) -> bool:
    with admin.cursor() as cur:
        cur.execute("select 1 from pg_stat_activity where pid = %s", (pid,))
        return cur.fetchone() is not None


def test_an_immediate_restart_in_the_middle_of_a_load_then_a_rerun_equals_a_clean_run(
    cluster: OwnCluster, drops: tuple[Path, Path]
) -> None:
    ref, big = drops
    clean, crashed = _clean_and_crashed(cluster, ref)
    load_drop(clean, big)
    before = raw_digest(crashed)

    proc = _load_process(crashed, big, big.parent / f"load-{uuid.uuid4().hex[:6]}.log")
    _, query, copied = _wait_for("a COPY of tickets", _copy_in_progress(cluster, _dbname(crashed)), proc)
    cluster.restart_immediate()
    assert proc.wait(timeout=120) != 0  # the load failed loudly
    assert 0 < copied < TICKETS and "copy raw.tickets" in query, query
    assert raw_digest(crashed) == before  # crash recovery: nothing of the file, no 'running' batch

    load_drop(crashed, big)
    assert raw_digest(crashed) == raw_digest(clean)


class _SpyConnection(psycopg2.extensions.connection):
    """Records the synchronous_commit each commit runs with (what decides its durability)."""

    commits: list[str] = []

    def commit(self) -> None:
        with self.cursor() as cur:
            cur.execute("show synchronous_commit")
            _SpyConnection.commits.append(cur.fetchone()[0])
        super().commit()


def test_a_load_reported_done_was_committed_synchronously_and_survives_an_immediate_restart(
    cluster: OwnCluster, drops: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded cluster commits asynchronously (synchronous_commit = off: a commit returns before its
    WAL is written, and a crash in that window loses it). Each file's commit, which moves its watermark and
    is then reported, runs with synchronous_commit = on: it has reached the WAL when load_drop returns. A
    restart in immediate mode right after it finds every reported batch.

    The window itself is too short to hit from a test (an idle WAL writer is woken by the asynchronous
    commit), so the setting of each commit is what is asserted; the restart checks the outcome."""
    ref, _ = drops
    dsn = cluster.create_db()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("show synchronous_commit")
        assert cur.fetchone()[0] == "off"  # the server's default, as the embedded cluster is set up
    conn.close()
    real_connect = psycopg2.connect
    monkeypatch.setattr(
        psycopg2, "connect", lambda *a, **kw: real_connect(*a, connection_factory=_SpyConnection, **kw)
    )
    _SpyConnection.commits = []
    results = load_drop(dsn, ref)  # returned: reported as loaded
    monkeypatch.undo()
    cluster.restart_immediate()  # at once
    # connect, schema, one per file, analyze: the files' own commits were synchronous
    assert _SpyConnection.commits[2:4] == ["on", "on"], _SpyConnection.commits
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("select entity, rows_loaded, status from raw.load_batches order by batch_id")
        assert cur.fetchall() == [(r.entity, r.rows_loaded, "ok") for r in results]
        cur.execute("select count(*) from raw.services")
        assert cur.fetchone()[0] == 1
    conn.close()


# ---------------------------------------------------------------------------------------------------
# dbt build


def _build_and_publish(dsn: str, work: Path) -> None:
    dbt(["build", "--target-path", str(work / "target"), "--log-path", str(work / "logs")], dbt_env(dsn))
    publish_marts(dsn)


def _build_relations(cluster: OwnCluster, dbname: str) -> Callable[[], int | None]:
    """The number of marts dbt has built so far, once five are and a query of dbt is running."""
    conn = psycopg2.connect(cluster.dsn(dbname))  # pg_class is the database's own catalog
    conn.autocommit = True

    def probe() -> int | None:
        with conn.cursor() as cur:
            cur.execute(
                "select (select count(*) from pg_tables where schemaname = 'marts_build'), "
                "(select count(*) from pg_stat_activity where datname = current_database() "
                "and state = 'active' and backend_type = 'client backend' and pid <> pg_backend_pid())"
            )
            built, active = cur.fetchone()
            return built if built >= 5 and active else None

    return probe


def test_an_immediate_restart_in_the_middle_of_the_dbt_build_then_a_rerun_publishes_the_clean_marts(
    cluster: OwnCluster, tmp_path: Path
) -> None:
    drop = tmp_path / "demo"
    generate(drop, months=1)
    clean, crashed = cluster.create_db(), cluster.create_db()
    for dsn in (clean, crashed):
        load_drop(dsn, drop)
        load_contracts(dsn)
    _build_and_publish(clean, tmp_path / "clean")
    expected = marts_digest(clean)
    assert len(expected) >= 15 and sum(n for n, _ in expected.values()) > 1000

    work = tmp_path / "crashed"
    dbt_cmd = [str(REPO / ".venvs/dbt/bin/dbt"), "build", "--project-dir", str(REPO / "dbt_project")]
    dbt_cmd += ["--profiles-dir", str(REPO / "dbt_project"), "--target-path", str(work / "target")]
    dbt_cmd += ["--log-path", str(work / "logs")]
    proc = _spawn(dbt_cmd, tmp_path / "dbt.out", cwd=REPO / "dbt_project", env=dbt_env(crashed))
    built = _wait_for(
        "dbt in the middle of its build", _build_relations(cluster, _dbname(crashed)), proc, 900
    )
    cluster.restart_immediate()
    assert proc.wait(timeout=900) != 0  # the build failed: the DAG's publish step never runs
    assert built >= 5  # restarted in the middle: some marts built, others not yet
    assert marts_digest(crashed) == {}  # nothing was published

    _build_and_publish(crashed, tmp_path / "rerun")
    assert marts_digest(crashed) == expected
