"""The embedded PostgreSQL cluster: initdb, start, stop, on loopback and a free port.

PostgreSQL refuses to run as root, so when invoked as root the cluster runs as an unprivileged user
(``postgres`` if it exists). Binaries (:func:`find_bindir`): ``SLM_PG_BINDIR`` when set (and then only
it), else Debian's newest versioned folder, else ``initdb`` on ``PATH``, else the ``pg`` environment's
(``.venvs/pg``: PostgreSQL 16 from the locked ``pgserver`` wheel, built by ``make envs`` on every machine
so that a machine without server binaries needs no third command).
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from slm_platform.errors import StackError

PG_TOOLS = ("initdb", "pg_ctl", "postgres")


def bindir_candidates() -> list[tuple[str, Path]]:
    """Where server binaries may be, in order of preference, each with where it comes from.

    ``SLM_PG_DEBIAN_DIR`` (default ``/usr/lib/postgresql``) moves Debian's search root: the tests hide the
    machine's binaries with it and ``PATH`` instead of uninstalling them.
    """
    if os.environ.get("SLM_PG_BINDIR"):
        # An explicit choice is not second-guessed: if it is wrong, say so rather than use another.
        return [("SLM_PG_BINDIR", Path(os.environ["SLM_PG_BINDIR"]))]
    debian_root = Path(os.environ.get("SLM_PG_DEBIAN_DIR", "/usr/lib/postgresql"))
    versions = [p for p in debian_root.glob("*/bin") if p.parent.name.isdigit()]
    candidates = [("Debian", p) for p in sorted(versions, key=lambda p: int(p.parent.name), reverse=True)]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(("PATH", Path(on_path).resolve().parent))
    candidates += [("pgserver wheel (.venvs/pg)", p) for p in sorted(pg_env_bindirs())]
    return candidates


def pg_env_bindirs() -> list[Path]:
    """The ``pg`` environment's binaries (pgserver's ``pginstall/bin``), found without importing it."""
    from slm_platform.settings import VENVS

    pattern = VENVS / "pg" / "lib" / "python3*" / "site-packages" / "pgserver" / "pginstall" / "bin"
    return [Path(p) for p in glob.glob(str(pattern))]


def has_tools(bindir: Path) -> bool:
    return all(os.access(bindir / tool, os.X_OK) for tool in PG_TOOLS)


def find_bindir() -> Path:
    candidates = bindir_candidates()
    for _origin, c in candidates:
        if has_tools(c):
            return c
    if os.environ.get("SLM_PG_BINDIR"):
        raise StackError(
            f"SLM_PG_BINDIR={os.environ['SLM_PG_BINDIR']} does not hold PostgreSQL's {', '.join(PG_TOOLS)}: "
            "point it at their folder, or unset it to use the machine's or the pg environment's"
        )
    raise StackError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found.\n"
        "  `make envs` installs them into .venvs/pg (the locked pgserver wheel, no root needed),\n"
        "  or install Debian's (`apt-get install postgresql`), or set SLM_PG_BINDIR to their folder,\n"
        "  or point the project at an existing server with SLM_PG_URL=postgresql://user:pass@host:port/postgres"
    )


def runnable_bindir(bindir: Path, user: str | None) -> Path:
    """``bindir``, or a copy the unprivileged ``user`` can run when it cannot reach ``bindir``.

    As root, the cluster runs as another user, which cannot run binaries inside a checkout it cannot
    traverse (e.g. one under /root, mode 700). The PostgreSQL tree (bin, lib, share: PostgreSQL finds them
    relative to its binaries) and, for the pgserver wheel, the libraries its binaries load through
    ``$ORIGIN/../../../pgserver.libs`` are copied once, in the same layout, to /var/tmp and run from there.
    """
    if user is None:
        return bindir
    if subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(bindir / "initdb")]).returncode == 0:
        return bindir
    tree, top = bindir.parent, bindir.parents[2]
    standin = Path("/var/tmp") / f"slm-pgbin-{hashlib.sha1(str(tree).encode()).hexdigest()[:12]}"
    copied_bin = standin / tree.relative_to(top) / "bin"
    if not has_tools(copied_bin):
        tmp = Path(f"{standin}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(tree, tmp / tree.relative_to(top), symlinks=True)
        if (top / "pgserver.libs").is_dir():
            shutil.copytree(top / "pgserver.libs", tmp / "pgserver.libs", symlinks=True)
        for d in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            d.chmod(0o755)
        shutil.rmtree(standin, ignore_errors=True)
        tmp.rename(standin)  # whole or absent: a copy cut short is never used
    return copied_bin


def _run_as_user() -> str | None:
    """The user the cluster runs as when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "slm-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "slm-pg"], check=True)
    return "slm-pg"


@dataclass
class Cluster:
    """A cluster whose files live under ``root`` (``<SLM_HOME>/pg`` or a reachable stand-in)."""

    root: Path
    port: int
    superuser: str
    password: str

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def sockdir(self) -> Path:
        return self.root / "run"

    @property
    def logfile(self) -> Path:
        return self.root / "postgresql.log"

    def _cmd(self, args: list[str]) -> list[str]:
        user = _run_as_user()
        return ["runuser", "-u", user, "--", *args] if user else args

    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        user = _run_as_user()
        bindir = runnable_bindir(find_bindir(), user)
        self.root.mkdir(parents=True, exist_ok=True)
        self.sockdir.mkdir(exist_ok=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if user:
            for p in (self.root, self.sockdir, pwfile):
                shutil.chown(p, user, user)
        pwfile.chmod(0o600)
        try:
            proc = subprocess.run(
                self._cmd(
                    [
                        str(bindir / "initdb"),
                        "-D",
                        str(self.datadir),
                        "-U",
                        self.superuser,
                        f"--pwfile={pwfile}",
                        "--auth=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                capture_output=True,
                text=True,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise StackError(f"initdb failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        with open(self.datadir / "postgresql.conf", "a") as conf:
            # Loopback only; the port is given at start so a taken port can be swapped for a free one.
            conf.write(
                "\n# slm: embedded cluster\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.sockdir}'\n"
                "max_connections = 200\nshared_buffers = 256MB\nfsync = off\n"
                "synchronous_commit = off\nfull_page_writes = off\ntimezone = 'UTC'\n"
            )

    def running(self) -> bool:
        pidfile = self.datadir / "postmaster.pid"
        if not pidfile.exists():
            return False
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
            os.kill(pid, 0)
            return True
        except (ValueError, ProcessLookupError):
            return False
        except PermissionError:
            return True

    def start(self) -> None:
        if self.running():
            return
        user = _run_as_user()
        bindir = runnable_bindir(find_bindir(), user)
        if user:
            self.logfile.touch()
            shutil.chown(self.logfile, user, user)
        proc = subprocess.run(
            self._cmd(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(self.logfile),
                    "-o",
                    f"-p {self.port}",
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            tail = self.logfile.read_text()[-1500:] if self.logfile.exists() else ""
            raise StackError(f"PostgreSQL did not start on port {self.port}:\n{proc.stderr}\n{tail}")

    def stop(self) -> None:
        if not self.running():
            return
        bindir = runnable_bindir(find_bindir(), _run_as_user())
        subprocess.run(
            self._cmd([str(bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"]),
            capture_output=True,
            text=True,
        )
        deadline = time.time() + 30
        while self.running() and time.time() < deadline:
            time.sleep(0.2)


def cluster_root(home: Path) -> Path:
    """Where the cluster's files go: inside SLM_HOME, unless the unprivileged user cannot reach it.

    When run as root from a folder the ``postgres`` user cannot traverse (e.g. under /root), the data
    directory goes to a stand-in under /var/tmp named after SLM_HOME, and SLM_HOME/pg points to it.
    """
    wanted = home / "pg"
    user = _run_as_user()
    if user is None:
        return wanted
    home.mkdir(parents=True, exist_ok=True)
    reachable = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(home)]).returncode == 0
    if reachable:
        return wanted
    standin = standin_root(home)
    standin.mkdir(mode=0o755, exist_ok=True)
    if not wanted.is_symlink() and not wanted.exists():
        wanted.symlink_to(standin)
    return standin


def standin_root(home: Path) -> Path:
    """Where :func:`cluster_root` puts the cluster of SLM_HOME ``home`` when postgres cannot reach it."""
    return Path("/var/tmp") / f"slm-pg-{hashlib.sha1(str(home).encode()).hexdigest()[:12]}"
