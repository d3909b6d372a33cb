"""The production compose file's Redis, run for real without Docker (none here): its script, its healthcheck
and the client URLs, against Debian's redis-server and redis-cli.

docker/compose.yaml runs the redis service as ``/bin/sh -c <script>``; the script hands its settings (the
password included) to ``docker-entrypoint.sh redis-server -`` on stdin. Here ``docker-entrypoint.sh`` and
``redis-cli`` are small shims on PATH that add what the container gives for free: loopback, a free port and
a private data folder. Everything else is the compose file's text, interpolated as compose would with a
generated REDIS_PASSWORD. The static side (every URL carries the password, prod_check's rules) is in
tests/test_docker_static.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import redis
import yaml
from kombu import Connection

from slm_platform.ops import prod_check, redis_server

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}")

pytestmark = pytest.mark.skipif(
    not redis_server.binary() or not os.access(REDIS_CLI, os.X_OK),
    reason=f"redis-server and redis-cli are needed: {redis_server.INSTALL_HINT}",
)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation of ``${VAR...}`` from docker/.env, then ``$$`` -> ``$``."""
    return REF.sub(lambda m: env[m.group(1)], text).replace("$$", "$")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The redis service's script, run by /bin/sh as in the container, with a generated password."""
    tmp = tmp_path_factory.mktemp("redis")
    port, password = free_port(), prod_check.generate(["REDIS_PASSWORD"])["REDIS_PASSWORD"]
    bin_dir, data = tmp / "bin", tmp / "data"
    bin_dir.mkdir()
    data.mkdir()
    # The image's entrypoint receives `redis-server -` and execs it (after dropping to the redis user).
    (bin_dir / "docker-entrypoint.sh").write_text(
        "#!/bin/sh\n"
        '[ "$1" = redis-server ] || exit 97\n'
        "shift\n"
        f'exec {redis_server.binary()} --bind 127.0.0.1 --port {port} --dir {data} "$@"\n'
    )
    (bin_dir / "redis-cli").write_text(f'#!/bin/sh\nexec {REDIS_CLI} -p {port} "$@"\n')
    for shim in bin_dir.iterdir():
        shim.chmod(0o755)
    svc = SERVICES["redis"]
    container_env = {
        k: interpolate(str(v), {"REDIS_PASSWORD": password}) for k, v in svc["environment"].items()
    }
    argv = [interpolate(a, {}) for a in svc["entrypoint"] + svc["command"]]
    path = f"{bin_dir}:{os.environ['PATH']}"
    log = (tmp / "redis.log").open("w")
    proc = subprocess.Popen(
        argv,
        env={"PATH": path, **container_env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        redis_server.wait_ready(port, password, 30, tmp / "redis.log")
        yield {
            "proc": proc,
            "port": port,
            "password": password,
            "path": path,
            "data": data,
            "log": tmp / "redis.log",
        }
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def test_the_password_is_required_and_on_no_command_line(server):
    proc, port, password = server["proc"], server["port"], server["password"]
    # exec all the way: the process compose started is redis-server itself (PID 1 in the container); it
    # rewrites its title to "<path> <address>", which /proc shows as its command line
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    assert re.split(rb"[\0 ]", cmdline)[0].endswith(b"redis-server"), cmdline
    session = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert session == [str(proc.pid)], session  # no shell left behind
    assert password.encode() not in cmdline
    assert redis_server.ping(port, password)
    assert not redis_server.ping(port, password[:-1] + ("x" if password[-1] != "x" else "y"))
    anonymous = redis.Redis(host="127.0.0.1", port=port)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    client = redis.Redis(host="127.0.0.1", port=port, password=password, decode_responses=True)
    # the compose file's persistence settings arrived too (they travel with the password)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("save") == {"save": "60 1"}


def test_the_healthcheck_passes_only_when_authenticated(server):
    kind, command = SERVICES["redis"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"

    def health(auth: str | None) -> int:
        env = {"PATH": server["path"]} | ({"REDISCLI_AUTH": auth} if auth is not None else {})
        return subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True).returncode

    assert health(server["password"]) == 0
    assert health(None) != 0
    assert health("wrong-password-0123456789") != 0
    # the reason for the grep: redis-cli itself exits 0 on NOAUTH
    bare = subprocess.run(
        ["/bin/sh", "-c", "redis-cli ping"], env={"PATH": server["path"]}, capture_output=True, text=True
    )
    assert "NOAUTH" in bare.stdout + bare.stderr


def test_the_client_urls_of_the_compose_file_connect(server):
    port, password = server["port"], server["password"]
    env = {"REDIS_PASSWORD": password}

    def local(url: str) -> str:
        url = interpolate(url, env)
        assert "@redis:6379/" in url
        return url.replace("@redis:6379/", f"@127.0.0.1:{port}/")

    broker = local(SERVICES["airflow-worker"]["environment"]["AIRFLOW__CELERY__BROKER_URL"])
    with Connection(broker) as conn:  # kombu, as Airflow's Celery workers use it
        queue = conn.SimpleQueue("slm-test-broker")
        queue.put({"task": "probe"})
        message = queue.get(timeout=5)
        assert message.payload == {"task": "probe"}
        message.ack()
        queue.close()
    with Connection(broker.replace(f":{password}@", "@")) as conn:
        with pytest.raises(Exception, match="(?i)auth"):
            conn.ensure_connection(max_retries=1)
            conn.default_channel.client.ping()

    superset_url = local(SERVICES["superset"]["environment"]["SUPERSET_REDIS_URL"])
    cache = redis.Redis.from_url(superset_url)
    assert cache.ping() and cache.connection_pool.connection_kwargs["db"] == 1
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(superset_url.replace(f":{password}@", "@")).ping()


def test_sigterm_reaches_redis_and_it_saves(server):
    """`docker compose stop` sends SIGTERM to PID 1: with the exec chain that is redis-server, which saves.
    Last in the module: it stops the module's server."""
    proc = server["proc"]
    redis.Redis(host="127.0.0.1", port=server["port"], password=server["password"]).set("slm:probe", "1")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    text = server["log"].read_text()
    assert "ready to exit" in text, text[-2000:]
    assert (server["data"] / "dump.rdb").is_file() and (server["data"] / "appendonlydir").is_dir()
    assert server["password"] not in text
