"""Set-up on a fresh machine: PostgreSQL binaries, atomic environment builds, ``./slm doctor``.

The machine's PostgreSQL binaries are hidden, never uninstalled: ``PATH`` without the folders holding
``initdb`` and ``SLM_PG_DEBIAN_DIR`` pointing at an empty folder. Environments are built into scratch
folders (``SLM_VENVS``) with the checkout's uv (``SLM_UV``): the checkout's ``.venvs`` is only read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slm_platform.settings import REPO_ROOT
from tests.conftest import slm, stop_and_remove

UV = REPO_ROOT / ".venvs" / "uv" / "bin" / "uv"
AIRFLOW_PY = REPO_ROOT / ".venvs" / "airflow" / "bin" / "python"
BUILD_ENV = REPO_ROOT / "tools" / "build_env.sh"
PG_HIDING = {"SLM_PG_DEBIAN_DIR": "/nonexistent/postgresql"}


def _path_without_pg() -> str:
    dirs = os.environ["PATH"].split(os.pathsep)
    return os.pathsep.join(d for d in dirs if not (Path(d) / "initdb").exists())


def _env(**extra: str) -> dict[str, str]:
    """The test's environment: the caller's, without the overrides that would change what is checked."""
    env = dict(os.environ, SLM_UV=str(UV))
    overrides = ("SLM_PG_BINDIR", "SLM_PG_URL", "SLM_CHROMIUM")
    for name in [*overrides, *(k for k in env if k.startswith("SLM_PORT_"))]:
        env.pop(name, None)
    return {**env, **extra}


def _doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``./slm doctor``: the wrapper runs it with plain python3, whatever the environments' state."""
    return subprocess.run(
        [str(REPO_ROOT / "slm"), "doctor", *args], env=env, capture_output=True, text=True, timeout=900
    )


def _lines(out: str, what: str) -> list[str]:
    """The doctor's lines about ``what`` (each finding, with its fix line when it has one)."""
    lines = out.splitlines()
    found = []
    for i, line in enumerate(lines):
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("ok", "note", "FAIL") and " ".join(parts[1:]).startswith(what):
            found.append(line)
            if i + 1 < len(lines) and lines[i + 1].strip().startswith("fix:"):
                found.append(lines[i + 1])
    return found


# --- PostgreSQL binaries ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hidden_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An environment in which the machine has no PostgreSQL binaries and no environment is built."""
    venvs = tmp_path_factory.mktemp("venvs")
    env = _env(PATH=_path_without_pg(), SLM_VENVS=str(venvs), **PG_HIDING)
    probe = subprocess.run(
        [sys.executable, "-c", "from slm_platform.ops import pgcluster as p; print(p.bindir_candidates())"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert probe.stdout.strip() == "[]", f"binaries still visible: {probe.stdout}{probe.stderr}"
    yield env
    # As root, the cluster's user cannot reach pytest's tmp folder: pgcluster ran a copy from /var/tmp.
    pginstall = next(venvs.glob("pg/lib/python3*/site-packages/pgserver/pginstall"), None)
    if pginstall is not None:
        digest = hashlib.sha1(str(pginstall).encode()).hexdigest()[:12]
        shutil.rmtree(Path("/var/tmp") / f"slm-pgbin-{digest}", ignore_errors=True)


def test_setup_path_installs_postgresql_when_the_machine_has_none(hidden_pg: dict[str, str]) -> None:
    """make demo's set-up path (doctor, make envs) with the binaries hidden ends with a working server."""
    # 1. The doctor run first by make demo says where PostgreSQL will come from and does not stop.
    pre = _doctor(hidden_pg, "--before-envs", "--for", "demo")
    pg_lines = _lines(pre.stdout, "postgresql")
    assert pg_lines and pg_lines[0].split()[0] == "note", pre.stdout
    assert "pgserver" in pg_lines[0]
    assert not [line for line in pre.stdout.splitlines() if line.split()[:1] == ["FAIL"]], pre.stdout
    assert pre.returncode == 0

    # 2. make envs (only the pg environment: the others are not what this test is about).
    build = subprocess.run(
        ["make", "-C", str(REPO_ROOT), "--no-print-directory", "envs", "ENVS=pg"],
        env=hidden_pg,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "building the pg environment" in build.stderr

    # 3. The embedded cluster is made and served by those binaries.
    script = """
import os, sys, tempfile
from pathlib import Path
import psycopg2
from slm_platform.ops import pgcluster
from slm_platform.ops import procs
bindir = pgcluster.find_bindir()
print("bindir", bindir)
print("runs", pgcluster.runnable_bindir(bindir, pgcluster._run_as_user()))
root = Path(tempfile.mkdtemp(prefix="slm-setup-test-", dir="/var/tmp"))
os.chmod(root, 0o755)  # the cluster's user (as root: postgres) writes in it
c = pgcluster.Cluster(root=root / "pg", port=procs.free_port(), superuser="slm", password="pw")
try:
    c.init()
    c.start()
    conn = psycopg2.connect(host="127.0.0.1", port=c.port, user="slm", password="pw", dbname="postgres")
    with conn.cursor() as cur:
        cur.execute("select current_setting('server_version')")
        print("version", cur.fetchone()[0])
    conn.close()
finally:
    c.stop()
    print("stopped", not c.running())
    import shutil
    shutil.rmtree(root)
"""
    run = subprocess.run(
        [str(AIRFLOW_PY), "-c", script],
        env=hidden_pg,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = dict(line.split(" ", 1) for line in run.stdout.splitlines())
    assert out["bindir"].startswith(hidden_pg["SLM_VENVS"] + "/pg/"), out
    if os.geteuid() == 0:  # the cluster's user cannot reach pytest's tmp folder (0700): it runs a copy
        assert out["runs"].startswith("/var/tmp/slm-pgbin-"), out
    else:
        assert out["runs"] == out["bindir"], out
    assert out["version"].startswith("16."), out  # pgserver 0.1.4 ships 16.2; the machine's is another
    assert out["stopped"] == "True"

    # 4. The doctor now finds them (full mode: no note, a real finding).
    post = _doctor(hidden_pg, "--for", "demo")
    pg_lines = _lines(post.stdout, "postgresql")
    assert pg_lines[0].split()[0] == "ok" and "pgserver wheel" in pg_lines[0], post.stdout
    assert "16.2" in pg_lines[0]


def test_doctor_says_how_to_get_postgresql_when_nothing_provides_it(tmp_path: Path) -> None:
    env = _env(PATH=_path_without_pg(), SLM_VENVS=str(tmp_path / "venvs"), **PG_HIDING)
    proc = _doctor(env)
    pg_lines = _lines(proc.stdout, "postgresql")
    assert pg_lines[0].split()[0] == "FAIL", proc.stdout
    assert "fix: make -C" in pg_lines[1] and "envs" in pg_lines[1] and "apt-get install" in pg_lines[1]
    assert proc.returncode == 1


def test_an_explicit_bindir_is_not_second_guessed(tmp_path: Path) -> None:
    """SLM_PG_BINDIR without the binaries is an error naming it, not a silent switch to other binaries."""
    env = _env(SLM_PG_BINDIR=str(tmp_path))
    run = subprocess.run(
        [sys.executable, "-c", "from slm_platform.ops import pgcluster; pgcluster.find_bindir()"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert run.returncode != 0
    assert f"SLM_PG_BINDIR={tmp_path} does not hold" in run.stderr


# --- atomic, locked environment builds ----------------------------------------------------------------


@pytest.fixture()
def tiny(tmp_path: Path) -> dict[str, str]:
    """A one-package environment ``tiny`` (fasteners) with its check, built by the real build script."""
    envs = tmp_path / "envs"
    (envs / "tiny").mkdir(parents=True)
    (envs / "tiny" / "requirements.lock").write_text("fasteners==0.20\n")
    # HOLD: while that file exists, the check waits (the tests interrupt or race a build at that point).
    (envs / "tiny" / "check.py").write_text(
        "import os, sys, time\n"
        "import fasteners\n"
        "hold = os.environ.get('HOLD')\n"
        "while hold and os.path.exists(hold):\n"
        "    time.sleep(0.05)\n"
        "open(sys.argv[1], 'w').write(os.path.relpath(fasteners.__file__, sys.prefix) + '\\n')\n"
    )
    return _env(SLM_VENVS=str(tmp_path / "venvs"), SLM_ENVS_DIR=str(envs))


def _build(env: dict[str, str], *names: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(BUILD_ENV), *names], env=env, capture_output=True, text=True, timeout=600
    )


def _imports(env: dict[str, str]) -> bool:
    py = Path(env["SLM_VENVS"]) / "tiny" / "bin" / "python"
    return py.exists() and subprocess.run([str(py), "-c", "import fasteners"]).returncode == 0


def test_build_marks_only_a_working_environment(tiny: dict[str, str]) -> None:
    first = _build(tiny, "tiny")
    assert first.returncode == 0, first.stderr
    assert "building the tiny environment" in first.stderr
    marker = (Path(tiny["SLM_VENVS"]) / "tiny" / ".built").read_text().splitlines()
    assert marker[0] == "lock " + hashlib.sha256(b"fasteners==0.20\n").hexdigest()
    assert any(
        line.startswith("file lib/python3") and line.endswith("fasteners/__init__.py") for line in marker
    )
    assert _imports(tiny)
    again = _build(tiny, "tiny")
    assert again.returncode == 0 and again.stderr == ""  # a valid marker: nothing to do, nothing said


@pytest.mark.parametrize(
    "damage",
    ["package files gone, marker kept", "folder without its marker", "empty folder marked built"],
)
def test_a_half_built_environment_is_rebuilt_not_trusted(tiny: dict[str, str], damage: str) -> None:
    assert _build(tiny, "tiny").returncode == 0
    env_dir = Path(tiny["SLM_VENVS"]) / "tiny"
    if damage == "package files gone, marker kept":
        for p in env_dir.glob("lib/python3*/site-packages/fasteners"):
            shutil.rmtree(p)
    elif damage == "folder without its marker":
        (env_dir / ".built").unlink()
    else:  # the case: two concurrent builds left it empty and marked
        shutil.rmtree(env_dir)
        env_dir.mkdir()
        (env_dir / ".built").touch()
    assert _build(tiny, "--status", "tiny").stdout.strip() == "tiny stale"
    rebuilt = _build(tiny, "tiny")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilding the tiny environment" in rebuilt.stderr
    assert _imports(tiny)
    assert _build(tiny, "--status", "tiny").stdout.strip() == "tiny ok"


def test_a_new_check_is_run_on_the_installed_environment_not_a_rebuild(tiny: dict[str, str]) -> None:
    """Same lock, new check.py (e.g. reformatted): the check runs in place; the folder is kept."""
    assert _build(tiny, "tiny").returncode == 0
    env_dir = Path(tiny["SLM_VENVS"]) / "tiny"
    inode = env_dir.stat().st_ino
    check = Path(tiny["SLM_ENVS_DIR"]) / "tiny" / "check.py"
    check.write_text("# the same check, said differently\n" + check.read_text())
    assert _build(tiny, "--status", "tiny").stdout.strip() == "tiny stale"
    rechecked = _build(tiny, "tiny")
    assert rechecked.returncode == 0 and rechecked.stderr == "", rechecked.stderr
    assert env_dir.stat().st_ino == inode  # not swapped for a new build
    marker = (env_dir / ".built").read_text().splitlines()
    assert "check " + hashlib.sha256(check.read_bytes()).hexdigest() in marker
    assert _build(tiny, "--status", "tiny").stdout.strip() == "tiny ok"


def test_an_environment_whose_check_fails_is_not_marked(tiny: dict[str, str]) -> None:
    assert _build(tiny, "tiny").returncode == 0
    env_dir = Path(tiny["SLM_VENVS"]) / "tiny"
    before = (env_dir / ".built").read_text()
    check = Path(tiny["SLM_ENVS_DIR"]) / "tiny" / "check.py"
    check.write_text("import no_such_package_in_the_lock\n")
    failed = _build(tiny, "tiny")
    assert failed.returncode != 0
    assert "cannot import its packages" in failed.stderr and "no_such_package_in_the_lock" in failed.stderr
    # The previous environment stays in place, untouched; the failed build left nothing behind.
    assert (env_dir / ".built").read_text() == before and _imports(tiny)
    assert sorted(p.name for p in Path(tiny["SLM_VENVS"]).iterdir()) == [".lock", "tiny"]


def _wait_for(predicate, what: str, limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def test_an_interrupted_build_leaves_no_environment(tiny: dict[str, str], tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    venvs = Path(tiny["SLM_VENVS"])
    proc = subprocess.Popen(
        ["bash", str(BUILD_ENV), "tiny"], env={**tiny, "HOLD": str(hold)}, start_new_session=True
    )
    try:
        # Interrupted while checking: everything is installed, nothing is in place yet.
        _wait_for(
            lambda: any(venvs.glob(".build-tiny-*/lib/python3*/site-packages/fasteners")), "the install"
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        hold.unlink(missing_ok=True)
    assert not (venvs / "tiny").exists()
    assert _build(tiny, "--status", "tiny").stdout.strip() == "tiny missing"
    after = _build(tiny, "tiny")
    assert after.returncode == 0 and "building the tiny environment" in after.stderr
    assert _imports(tiny)
    assert not list(venvs.glob(".build-*"))  # the interrupted build's leftovers were removed


def test_concurrent_builds_wait_for_each_other(tiny: dict[str, str], tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    venvs = Path(tiny["SLM_VENVS"])
    env = {**tiny, "HOLD": str(hold)}
    first = subprocess.Popen(
        ["bash", str(BUILD_ENV), "tiny"], env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    second = None
    try:
        _wait_for(
            lambda: any(venvs.glob(".build-tiny-*/lib/python3*/site-packages/fasteners")), "the install"
        )
        second = subprocess.Popen(
            ["bash", str(BUILD_ENV), "tiny"], env=env, stderr=subprocess.PIPE, text=True
        )
        _wait_for(lambda: second.poll() is not None or _pid_waits_on_lock(second.pid), "the second build")
        assert second.poll() is None, "the second build did not wait for the first"
        hold.unlink()
        first_err = first.communicate(timeout=300)[1]
        second_err = second.communicate(timeout=300)[1]
    finally:
        hold.unlink(missing_ok=True)
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
    assert first.returncode == 0 and second.returncode == 0, (first_err, second_err)
    assert "building the tiny environment" in first_err
    assert "another build of the environments is running: waiting for it" in second_err
    assert "building" not in second_err.replace("another build", "")  # it found the first one's result
    assert _imports(tiny) and _build(tiny, "--status", "tiny").stdout.strip() == "tiny ok"


def _pid_waits_on_lock(pid: int) -> bool:
    """The build script (or its flock child) announced that it waits: its stderr pipe is not readable
    here without consuming it, so look for the blocking ``flock 9`` child instead."""
    children = subprocess.run(
        ["ps", "-o", "args=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout
    return any(line.strip() == "flock 9" for line in children.splitlines())


# --- ./slm doctor ----------------------------------------------------------------------------------------


def test_doctor_on_a_healthy_setup() -> None:
    """This checkout's environments (read only), the machine's binaries, no stack under a fresh SLM_HOME."""
    with tempfile.TemporaryDirectory() as home:
        proc = _doctor(_env(SLM_HOME=home))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    statuses = {
        line.split()[0] for line in proc.stdout.splitlines()[1:-1] if not line.strip().startswith("fix:")
    }
    assert statuses == {"ok"}, proc.stdout
    for name in ("airflow", "dbt", "superset", "pg"):
        assert "imports its packages" in _lines(proc.stdout, f"env {name}")[0]
    assert proc.stdout.rstrip().endswith("nothing blocks the set-up.")


def test_doctor_hidden_chromium(tmp_path: Path) -> None:
    proc = _doctor(_env(SLM_HOME=str(tmp_path), SLM_CHROMIUM=str(tmp_path / "no-chromium")), "--before-envs")
    lines = _lines(proc.stdout, "chromium")
    assert lines[0].split()[0] == "FAIL" and str(tmp_path / "no-chromium") in lines[0], proc.stdout
    assert lines[1].strip().startswith("fix:")
    assert proc.returncode == 1
    assert "1 problem to fix first" in proc.stdout


def test_doctor_occupied_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _doctor(_env(SLM_HOME=str(tmp_path), SLM_PORT_AIRFLOW=str(port)), "--before-envs")
    lines = _lines(proc.stdout, "ports")
    assert lines[0].split()[0] == "FAIL" and f"{port} (SLM_PORT_AIRFLOW) is in use" in lines[0], proc.stdout
    assert f"sport = :{port}" in lines[1] and "unset SLM_PORT_AIRFLOW" in lines[1]
    assert proc.returncode == 1
    # Released, the same port is fine.
    free = _doctor(_env(SLM_HOME=str(tmp_path), SLM_PORT_AIRFLOW=str(port)), "--before-envs")
    assert _lines(free.stdout, "ports")[0].split()[0] == "ok", free.stdout


def test_doctor_missing_environment(tmp_path: Path) -> None:
    """Before make builds them, missing environments are notes; after, they are problems with the fix."""
    env = _env(SLM_HOME=str(tmp_path / "home"), SLM_VENVS=str(tmp_path / "venvs"))
    before = _doctor(env, "--before-envs")
    assert _lines(before.stdout, "env airflow")[0].split()[0] == "note", before.stdout
    after = _doctor(env)
    lines = _lines(after.stdout, "env airflow")
    assert lines[0].split()[0] == "FAIL" and "not built yet" in lines[0], after.stdout
    assert lines[1].strip() == f"fix: make -C {REPO_ROOT} envs"
    assert after.returncode == 1


def test_doctor_environment_that_no_longer_imports(hidden_pg: dict[str, str], tmp_path: Path) -> None:
    """A marker can look right while the interpreter fails: the doctor imports, and says how to rebuild."""
    venvs = Path(hidden_pg["SLM_VENVS"])
    if not (venvs / "pg" / ".built").exists():  # this test alone: build the scratch pg environment
        assert (
            subprocess.run(["bash", str(BUILD_ENV), "pg"], env=hidden_pg, capture_output=True).returncode == 0
        )
    copy = tmp_path / "venvs"
    shutil.copytree(venvs / "pg", copy / "pg", symlinks=True)
    init = next(copy.glob("pg/lib/python3*/site-packages/pgserver/__init__.py"))
    init.write_text("raise ImportError('damaged on purpose')\n")
    env = {**hidden_pg, "SLM_VENVS": str(copy), "SLM_HOME": str(tmp_path / "home")}
    assert _build(env, "--status", "pg").stdout.strip() == "pg ok"  # the cheap check cannot see it
    proc = _doctor(env)
    lines = _lines(proc.stdout, "env pg")
    assert lines[0].split()[0] == "FAIL" and "damaged on purpose" in lines[0], proc.stdout
    assert lines[1].strip().startswith(f"fix: rm -f {copy / 'pg'}/.built && make -C {REPO_ROOT} envs")
    assert proc.returncode == 1


def test_make_demo_stops_early_with_the_doctors_advice(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = _env(SLM_HOME=str(tmp_path / "home"), SLM_VENVS=str(tmp_path / "venvs"), SLM_PORT_PG=str(port))
        proc = subprocess.run(
            ["make", "-C", str(REPO_ROOT), "--no-print-directory", "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert proc.returncode != 0
    assert f"{port} (SLM_PORT_PG) is in use" in proc.stdout
    assert "then run `make demo` again" in proc.stdout
    # Nothing was built or started.
    assert not (tmp_path / "venvs").exists() and not (tmp_path / "home").exists()
    assert "==>" not in proc.stdout + proc.stderr


def test_doctor_running_stack_health(tmp_path: Path) -> None:
    """A running embedded PostgreSQL answers (ok); a Superset process that does not answer is a problem."""
    home = tmp_path / "home"
    env = _env(SLM_HOME=str(home))
    try:
        slm(home, "stack", "up", "--only", "pg")
        proc = _doctor(env, "--before-envs")
        assert _lines(proc.stdout, "stack pg")[0].split()[0] == "ok", proc.stdout
        assert "running, answers on 127.0.0.1:" in _lines(proc.stdout, "stack pg")[0]
        assert proc.returncode == 0
        # A hung Superset: its process is alive (a sleeper stands in) but its port answers nothing.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead_port = s.getsockname()[1]
        state_file = home / "stack.json"
        state = json.loads(state_file.read_text())
        state["superset"] = {"port": dead_port}
        state_file.write_text(json.dumps(state))
        sleeper = subprocess.Popen(["sleep", "600"])
        try:
            (home / "run").mkdir(exist_ok=True)
            (home / "run" / "superset.pid").write_text(str(sleeper.pid))
            hung = _doctor(env, "--before-envs")
        finally:
            sleeper.kill()
            sleeper.wait()
            (home / "run" / "superset.pid").unlink()
        lines = _lines(hung.stdout, "stack superset")
        assert lines[0].split()[0] == "FAIL" and "/health answers 0" in lines[0], hung.stdout
        assert lines[1].strip() == "fix: ./slm stack down && ./slm stack up"
        assert hung.returncode == 1
    finally:
        stop_and_remove(home)
    stopped = _doctor(env, "--before-envs")
    assert _lines(stopped.stdout, "stack pg")[0].split()[0] == "note", stopped.stdout
