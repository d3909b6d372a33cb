"""Static checks of the production deployment in docker/ (no Docker engine runs here).

They read docker/compose.yaml, the Dockerfiles, their per-Dockerfile .dockerignore files and .env.example,
and hold them to the repository: files the images COPY, lock files and pinned versions, secrets only from
docker/.env, loopback-only ports, healthchecks, and slm_platform.ops.prod_check's rules.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from slm_platform.ops import prod_check, stack

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"

EXPECTED_SERVICES = {
    "postgres",
    "redis",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "superset-init",
    "superset",
    "superset-worker",
}
ONE_SHOT = {"airflow-init", "superset-init"}
AIRFLOW_SERVICES = {s for s in EXPECTED_SERVICES if s.startswith("airflow-")}
SUPERSET_SERVICES = {s for s in EXPECTED_SERVICES if s.startswith("superset")}
# ${VAR}, ${VAR:-default}, ${VAR:?message}; `$$` is compose's escape for a literal `$`.
VAR_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])[^}]*)?\}")
WHOLE_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}$")
# A Redis client URL of the compose file: the password from docker/.env, host `redis`; group 1 is the db.
REDIS_URL = re.compile(r"^redis://:\$\{REDIS_PASSWORD:\?[^}]*\}@redis:6379/([0-9]+)$")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY|_AUTH$")  # _AUTH: REDISCLI_AUTH, redis-cli's password


# ------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def strings(node) -> list[str]:
    """Every string anywhere in a loaded YAML document."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in strings(k) + strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


def lock_version(env: str, package: str) -> str:
    text = (REPO / "envs" / env / "requirements.lock").read_text()
    m = re.search(rf"^{re.escape(package)}==([^\s;]+)", text, re.MULTILINE)
    assert m, f"{package} not pinned in envs/{env}/requirements.lock"
    return m.group(1)


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def copy_sources(dockerfile: Path) -> list[tuple[str, str]]:
    """(source, destination) of each COPY/ADD from the build context (not --from=stage)."""
    pairs = []
    for word, args in instructions(dockerfile):
        if word not in {"COPY", "ADD"}:
            continue
        if args.startswith("["):
            parts = json.loads(args)
        else:
            parts = shlex.split(args)
        if any(p.startswith("--from") for p in parts):
            continue
        parts = [p for p in parts if not p.startswith("--")]
        *sources, dest = parts
        pairs.extend((s, dest) for s in sources)
    return pairs


def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


class DockerIgnore:
    """Docker's .dockerignore rules: the last matching pattern wins; a pattern matching a folder covers it."""

    def __init__(self, path: Path):
        self.rules: list[tuple[bool, re.Pattern]] = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = line[1:] if include else line
            pattern = pattern.strip().strip("/")
            self.rules.append((include, _pattern_regex(pattern)))

    def excluded(self, rel: str) -> bool:
        parts = rel.strip("/").split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for include, rx in self.rules:
            if any(rx.fullmatch(c) for c in candidates):
                excluded = not include
        return excluded


def dockerfiles(services: dict) -> dict[str, Path]:
    out = {}
    for name, svc in services.items():
        if "build" in svc:
            build = svc["build"]
            context = (DOCKER / build["context"]).resolve()
            out[name] = context / build.get("dockerfile", "Dockerfile")
    return out


# ----------------------------------------------------------------------------------- compose structure


def test_compose_parses_with_the_expected_services(compose, services):
    assert set(services) == EXPECTED_SERVICES
    assert compose.get("name") == "slm"


def test_builds_use_the_repo_root_and_existing_dockerfiles(services):
    files = dockerfiles(services)
    assert set(files) == AIRFLOW_SERVICES | SUPERSET_SERVICES
    for name, svc in services.items():
        if "build" in svc:
            assert (DOCKER / svc["build"]["context"]).resolve() == REPO, name
    for name, path in files.items():
        assert path.is_file(), f"{name}: {path} missing"
        ignore = path.with_name(path.name + ".dockerignore")
        assert ignore.is_file(), f"{name}: per-Dockerfile ignore file {ignore} missing"
    # One image per family, shared by its services.
    assert {files[s].name for s in AIRFLOW_SERVICES} == {"airflow.Dockerfile"}
    assert {files[s].name for s in SUPERSET_SERVICES} == {"superset.Dockerfile"}


@pytest.mark.parametrize("name", ["airflow.Dockerfile", "superset.Dockerfile"])
def test_every_copied_file_exists_and_is_in_the_build_context(name):
    dockerfile = DOCKER / name
    ignore = DockerIgnore(dockerfile.with_name(name + ".dockerignore"))
    pairs = copy_sources(dockerfile)
    assert pairs, "no COPY found: the parser is broken"
    for source, _ in pairs:
        path = REPO / source
        assert path.exists(), f"{name}: COPY {source}: not in the repository"
        assert not ignore.excluded(source), f"{name}: COPY {source}: excluded by the .dockerignore"
        if path.is_dir():
            kept = [
                p for p in path.rglob("*") if p.is_file() and not ignore.excluded(str(p.relative_to(REPO)))
            ]
            assert kept, f"{name}: COPY {source}: every file in it is excluded"


@pytest.mark.parametrize("name", ["airflow.Dockerfile", "superset.Dockerfile"])
def test_build_context_keeps_secrets_and_local_state_out(name):
    ignore = DockerIgnore(DOCKER / (name + ".dockerignore"))
    for rel in [
        "docker/.env",
        ".env",
        ".venvs/airflow/bin/python",
        ".slm/stack.json",
        ".git/config",
        "dbt_project/target/manifest.json",
        "slm_platform/__pycache__/x.pyc",
        "tests/conftest.py",
    ]:
        assert ignore.excluded(rel), f"{name}: {rel} would be sent to the builder"


def test_dockerignore_matcher_semantics(tmp_path):
    # The checks above are only as good as this matcher.
    f = tmp_path / "x.dockerignore"
    f.write_text("*\n!keep/\nkeep/drop\n**/*.pyc\n")
    ig = DockerIgnore(f)
    assert ig.excluded("other.txt") and ig.excluded("deep/er/file")
    assert not ig.excluded("keep/a.py") and ig.excluded("keep/drop/b.py") and ig.excluded("keep/c.pyc")


def test_lock_files_referenced_exist_and_are_synced():
    for name, envs in {"airflow.Dockerfile": {"airflow", "dbt"}, "superset.Dockerfile": {"superset"}}.items():
        text = (DOCKER / name).read_text()
        locks = set(re.findall(r"envs/([a-z]+)/requirements\.lock", text))
        assert locks == envs, name
        for env in locks:
            assert (REPO / "envs" / env / "requirements.lock").is_file()
            sync = rf"uv pip sync --python /opt/venvs/{env}/bin/python /opt/slm/envs/{env}/requirements\.lock"
            assert re.search(sync, text), f"{name}: envs/{env}/requirements.lock not synced"
        assert "UV_COMPILE_BYTECODE=1" in text


def test_images_base_uv_pin_and_non_root():
    makefile_uv = re.search(r"^UV_VERSION := (\S+)", (REPO / "Makefile").read_text(), re.MULTILINE).group(1)
    for name in ("airflow.Dockerfile", "superset.Dockerfile"):
        ins = instructions(DOCKER / name)
        assert [a for w, a in ins if w == "FROM"] == ["python:3.11-slim-bookworm"], name
        args = dict(a.split("=", 1) for w, a in ins if w == "ARG" and "=" in a)
        assert args["UV_VERSION"] == makefile_uv == "0.13.9", name
        assert any(w == "RUN" and 'pip install "uv==${UV_VERSION}"' in a for w, a in ins), name
        users = [a for w, a in ins if w == "USER"]
        assert users and users[-1] not in {"root", "0", "0:0"}, f"{name} runs as root"
        last_user = max(i for i, (w, _) in enumerate(ins) if w == "USER")
        assert not any(w == "RUN" for w, _ in ins[last_user:]), f"{name}: RUN after the final USER"
    airflow = (DOCKER / "airflow.Dockerfile").read_text()
    assert "--no-deps" in airflow and "/opt/venvs/airflow" in airflow and "/opt/venvs/dbt" in airflow
    for folder in ("dags/", "dbt_project/", "expectations/", "slm_platform/"):
        assert folder in {s for s, _ in copy_sources(DOCKER / "airflow.Dockerfile")}, folder


def test_pinned_versions_agree_with_the_lock_files():
    truth = {
        "apache-airflow": lock_version("airflow", "apache-airflow"),
        "apache-superset": lock_version("superset", "apache-superset"),
        "dbt-core": lock_version("dbt", "dbt-core"),
    }
    arg_names = {
        "AIRFLOW_VERSION": "apache-airflow",
        "SUPERSET_VERSION": "apache-superset",
        "DBT_VERSION": "dbt-core",
    }
    found: dict[str, set[str]] = {p: set() for p in truth}
    for path in DOCKER.rglob("*"):
        if not path.is_file() or path.name == ".env":
            continue
        text = path.read_text()
        for package in truth:
            found[package] |= set(re.findall(rf"{re.escape(package)}==([0-9][^\s\"'`;]*)", text))
        for arg, package in arg_names.items():
            found[package] |= set(re.findall(rf"\b{arg}[=:]\s*\"?([0-9][0-9A-Za-z.+-]*)", text))
    assert found["apache-airflow"] and found["apache-superset"], "no version pinned in docker/: vacuous"
    for package, versions in found.items():
        assert versions <= {truth[package]}, f"{package}: docker/ pins {versions}, lock has {truth[package]}"


def env_files_of(service: dict) -> dict[str, str]:
    """The variables a service gets from its env_file(s) (relative to docker/), as compose reads them."""
    files = service.get("env_file") or []
    files = [files] if isinstance(files, str) else files
    out: dict[str, str] = {}
    for f in files:
        path = f["path"] if isinstance(f, dict) else f
        out |= stack.celery_settings(DOCKER / path)
    return out


def test_executor_settings_have_one_source(services):
    """Every Airflow service reads docker/airflow/celery.env, the file ./slm stack up --executor celery reads;
    none overrides one of its keys in `environment` (compose would let the service's value win)."""
    assert stack.CELERY_ENV_FILE == DOCKER / "airflow" / "celery.env"
    shared = stack.celery_settings()
    assert shared["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert {"AIRFLOW__CELERY__WORKER_CONCURRENCY", "AIRFLOW__CELERY__TASK_ACKS_LATE"} <= set(shared)
    for name in AIRFLOW_SERVICES:
        assert env_files_of(services[name]) == shared, name
        assert not set(env_of(services[name])) & set(shared), name
    # host-bound settings are not in the shared file: each deployment names its own broker and backend
    assert not {"AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND"} & set(shared)


def test_airflow_gets_the_superset_connection(services):
    for name in AIRFLOW_SERVICES:
        conn = env_of(services[name])["AIRFLOW_CONN_SLM_SUPERSET"]
        parsed = json.loads(conn)
        assert parsed["conn_type"] == "http" and parsed["host"] == "superset" and parsed["port"] == 8088, name
        assert WHOLE_REF.match(parsed["password"]).group(1) == "SUPERSET_ADMIN_PASSWORD", name


def test_airflow_runs_celery_executor(services):
    for name in AIRFLOW_SERVICES:
        env = env_files_of(services[name]) | env_of(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert REDIS_URL.match(env["AIRFLOW__CELERY__BROKER_URL"]).group(1) == "0", name
        assert re.match(
            r"^db\+postgresql(\+psycopg2)?://[^@]+@postgres:5432/slm_airflow$",
            env["AIRFLOW__CELERY__RESULT_BACKEND"],
        ), name
        assert re.match(
            r"^postgresql\+psycopg2://[^@]+@postgres:5432/slm_airflow$",
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        ), name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert services["airflow-worker"]["command"][:2] == ["celery", "worker"]
    assert services["airflow-worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    commands = {n: services[n].get("command") for n in AIRFLOW_SERVICES - {"airflow-init"}}
    assert commands["airflow-apiserver"][0] == "api-server"
    assert commands["airflow-scheduler"] == ["scheduler"]
    assert commands["airflow-dag-processor"] == ["dag-processor"]
    assert commands["airflow-triggerer"] == ["triggerer"]


def test_dbt_profile_and_superset_config_get_the_variables_they_read(services):
    # In Airflow, dbt's profile is Cosmos' mapping of the slm_warehouse connection
    # (slm_platform/orchestration/warehouse.py); profiles.yml's SLM_PG_* are the CLI's, not passed here.
    profile = (REPO / "dbt_project" / "profiles.yml").read_text()
    profile_vars = set(re.findall(r"env_var\('([A-Z_]+)'", profile))
    assert profile_vars, "profiles.yml reads no env_var: check the parser"
    for name in AIRFLOW_SERVICES:
        assert not profile_vars & set(env_of(services[name])), (name, profile_vars)
    nightly = (REPO / "dags" / "slm_nightly.py").read_text()
    assert "profile_config=dbt_profile(DBT_PROJECT)" in nightly
    warehouse = (REPO / "slm_platform" / "orchestration" / "warehouse.py").read_text()
    assert 'WAREHOUSE_CONN_ID = "slm_warehouse"' in warehouse
    assert "PostgresUserPasswordProfileMapping(" in warehouse
    project = (REPO / "dbt_project" / "dbt_project.yml").read_text()
    project_vars = set(re.findall(r"env_var\('([A-Z_]+)'", project))
    assert project_vars <= set(env_of(services["airflow-worker"])), project_vars
    config = (REPO / "superset" / "superset_config.py").read_text()
    read = set(re.findall(r"os\.environ\.get\(\s*\"([A-Z_]+)\"", config))
    for name in SUPERSET_SERVICES:
        env = env_of(services[name])
        passed = {k for k in env if k.startswith("SUPERSET_")}
        passed -= {"SUPERSET_CONFIG_PATH", "SUPERSET_ADMIN_PASSWORD"}
        assert passed <= read, f"{name} passes {passed - read}, which superset_config.py never reads"
        assert {"SUPERSET_SECRET_KEY", "SUPERSET_METADATA_DSN"} <= passed
        assert env["SUPERSET_CONFIG_PATH"] == "/opt/slm/superset/superset_config.py"
    dests = dict(copy_sources(DOCKER / "superset.Dockerfile"))
    assert dests["superset/superset_config.py"] == "/opt/slm/superset/superset_config.py"
    # Every module the config loads from its own folder by path is in the image beside it, or the config
    # fails on import there (it once shipped without them).
    siblings = set(re.findall(r'with_name\(\s*"(\w+)\.py"\s*\)', config))
    siblings |= {f"{n}.py" for n in re.findall(r'_load_sibling\(\s*"(\w+)"\s*\)', config)}
    siblings = {s if s.endswith(".py") else f"{s}.py" for s in siblings}
    assert {"slm_security.py", "slm_warmup.py"} <= siblings, siblings
    for name in siblings:
        assert dests.get(f"superset/{name}") == f"/opt/slm/superset/{name}", f"image lacks superset/{name}"


# -------------------------------------------------------------------------------------- secrets, ports


def test_no_secret_literal_in_compose(compose):
    checked = 0
    for name, svc in compose["services"].items():
        for key, value in env_of(svc).items():
            if not SECRET_NAME.search(key):
                continue
            if key.endswith("_FILE") and value.startswith("/"):
                continue  # a path to a secret file, not a secret
            m = WHOLE_REF.match(value)
            assert m, f"{name}: {key} must be a ${{VAR}} reference to docker/.env, got a literal"
            assert m.group(1) in prod_check.ALL, f"{name}: {key} -> {m.group(1)} is not checked by prod_check"
            checked += 1
    assert checked >= 10
    # Credentials inside URLs are references too (a `${VAR:?message}` holds spaces: matched whole).
    with_credentials = 0
    for text in strings(compose):
        for scheme, password in re.findall(r"([a-z0-9+]+)://[^:/@\s]*:(\$\{[^}]*\}|[^@\s]*)@", text):
            assert WHOLE_REF.match(password), f"literal password in URL {text!r}"
            expected = "REDIS_PASSWORD" if scheme == "redis" else "POSTGRES_PASSWORD"
            assert WHOLE_REF.match(password).group(1) == expected, text
            with_credentials += 1
    # the x- anchors' URLs, as written once: 4 to PostgreSQL, 2 to Redis
    assert with_credentials >= 6, (
        f"only {with_credentials} URLs with credentials found: the pattern is broken"
    )


def test_warehouse_password_is_spelt_once_for_airflow(services):
    """The Airflow services get the warehouse's password in one variable, the slm_warehouse connection:
    no SLM_WAREHOUSE_DSN or SLM_PG_PASSWORD beside it (airflow-init's POSTGRES_PASSWORD is prod_check's)."""
    for name in AIRFLOW_SERVICES:
        env = env_of(services[name])
        spelt = [k for k, v in env.items() if "slm_warehouse" in v and "PASSWORD" in v]
        assert spelt == ["AIRFLOW_CONN_SLM_WAREHOUSE"], (name, spelt)
        assert not {"SLM_WAREHOUSE_DSN", "SLM_PG_PASSWORD"} & set(env), name
        with_password = [k for k, v in env.items() if "POSTGRES_PASSWORD" in v]
        expected = {"AIRFLOW_CONN_SLM_WAREHOUSE", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"}
        expected |= {"AIRFLOW__CELERY__RESULT_BACKEND"}  # the metadata database, not the warehouse
        if name == "airflow-init":
            expected.add("POSTGRES_PASSWORD")
        assert set(with_password) == expected, (name, with_password)


def test_every_redis_url_carries_the_password(compose, services):
    """Redis requires REDIS_PASSWORD (issue 13): every client URL in the compose file carries it, from
    docker/.env. Airflow's Celery broker is db 0, Superset's cache, query results and Celery broker db 1."""
    urls = [text for text in strings(compose) if "redis://" in text]
    assert urls, "no Redis URL in compose.yaml: check the parser"
    for text in urls:
        assert REDIS_URL.match(text), f"Redis URL without the password (or not whole): {text!r}"
    for name in AIRFLOW_SERVICES:
        env = env_of(services[name])
        assert REDIS_URL.match(env["AIRFLOW__CELERY__BROKER_URL"]).group(1) == "0", name
        # the result backend is the metadata database, not Redis (test_airflow_runs_celery_executor)
        assert not any("redis://" in v for k, v in env.items() if k != "AIRFLOW__CELERY__BROKER_URL"), name
    for name in SUPERSET_SERVICES:
        assert REDIS_URL.match(env_of(services[name])["SUPERSET_REDIS_URL"]).group(1) == "1", name
    # Superset's cache, Celery broker and Celery result backend all take that one URL, password included.
    config = (REPO / "superset" / "superset_config.py").read_text()
    assert '_REDIS_URL = os.environ.get("SUPERSET_REDIS_URL", "")' in config
    for setting in (
        '"CACHE_REDIS_URL": _REDIS_URL',
        "broker_url = _REDIS_URL",
        "result_backend = _REDIS_URL",
    ):
        assert setting in config, setting
    assert "redis://" not in config, "superset_config.py spells a Redis URL of its own"


def redis_script(services) -> str:
    """The shell script the redis service runs, as the container's /bin/sh gets it (compose's `$$` -> `$`)."""
    svc = services["redis"]
    assert svc["entrypoint"] == ["/bin/sh", "-c"]
    assert isinstance(svc["command"], list) and len(svc["command"]) == 1
    script = svc["command"][0]
    # no ${VAR} left for compose to interpolate: the password must not be written into the script (sh's argv)
    assert not VAR_REF.search(script), script
    return script.replace("$$", "$")


def test_redis_requires_the_password_given_on_stdin_not_argv(services):
    svc = services["redis"]
    env = env_of(svc)
    # One variable for the server and for redis-cli (healthcheck), and only that one.
    assert set(env) == {"REDISCLI_AUTH"}
    assert re.fullmatch(r"\$\{REDIS_PASSWORD:\?[^}]+\}", env["REDISCLI_AUTH"])
    script = redis_script(services)
    lines = script.splitlines()
    # exec: redis-server replaces the shell (PID 1, via the image's entrypoint and gosu); settings on stdin
    assert lines[0] == "exec docker-entrypoint.sh redis-server - <<EOF", lines[0]  # unquoted: $VAR expands
    assert lines[-1] == "EOF"
    settings = dict(line.split(" ", 1) for line in lines[1:-1])
    assert settings == {"requirepass": "${REDISCLI_AUTH}", "appendonly": "yes", "save": "60 1"}
    # nothing password-like on any command line: the script's first line is all that argv shows
    assert "requirepass" not in lines[0] and "REDISCLI_AUTH" not in lines[0]
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0


def test_redis_healthcheck_authenticates(services):
    # `redis-cli ping` exits 0 on "NOAUTH Authentication required" (measured with Debian's redis-cli 7.0):
    # healthy only on a PONG, which needs REDISCLI_AUTH (the service's environment) to be right.
    hc = services["redis"]["healthcheck"]
    assert hc["test"] == ["CMD-SHELL", "redis-cli ping | grep -qx PONG"]
    assert "REDISCLI_AUTH" in env_of(services["redis"])
    assert "-a" not in hc["test"][1].split(), "redis-cli -a puts the password on the command line"


def test_prod_check_knows_the_redis_password():
    assert "REDIS_PASSWORD" in prod_check.PASSWORDS and "REDIS_PASSWORD" in prod_check.URL_EMBEDDED
    assert (
        "REDIS_PASSWORD" in prod_check.GROUPS["airflow"] and "REDIS_PASSWORD" in prod_check.GROUPS["superset"]
    )
    assert "CHANGE_ME" in prod_check.read_env_file(ENV_EXAMPLE)["REDIS_PASSWORD"]
    for bad, why in [
        ("CHANGE_ME", "placeholder"),
        ("foobared", "placeholder"),  # redis.conf's example password
        ("redis", "placeholder"),
        ("Xk9-mP2_vL7.qR4", "too short"),
        ("Xk9-mP2_vL7.qR4w@x", "URLs"),
    ]:
        problems = prod_check.check_secrets({**strong(), "REDIS_PASSWORD": bad})
        assert len(problems) == 1 and problems[0].startswith("REDIS_PASSWORD ") and why in problems[0], bad
    env = strong()
    env["REDIS_PASSWORD"] = env["POSTGRES_PASSWORD"]
    assert prod_check.check_secrets(env) == [
        "REDIS_PASSWORD reuses the value of POSTGRES_PASSWORD: each secret must be distinct"
    ]


def test_ports_publish_on_loopback_only(services):
    published = {}
    for name, svc in services.items():
        for port in svc.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
                published[name] = str(port.get("published"))
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is published on every interface"
                published[name] = str(port).split(":")[1]
        assert "network_mode" not in svc, name
    assert published == {"airflow-apiserver": "8080", "superset": "8088"}


def test_env_example_lists_every_variable_compose_uses(compose):
    refs = [m for text in strings(compose) for m in VAR_REF.finditer(text)]  # comments excluded
    used = {m.group(1) for m in refs}
    assert set(prod_check.ALL) <= used
    listed = prod_check.read_env_file(ENV_EXAMPLE)
    assert used <= set(listed), f"missing from .env.example: {sorted(used - set(listed))}"
    for name in prod_check.ALL:
        assert "CHANGE_ME" in listed[name], f"{name}: .env.example must hold a placeholder, not a value"
    # A secret referenced without `:?` would silently become empty.
    for m in refs:
        if m.group(1) in prod_check.ALL:
            assert m.group(2) == ":?", f"${{{m.group(1)}}} must use :? so compose stops when it is unset"


def test_env_file_is_git_ignored_and_example_is_not():
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=REPO)
    assert ignored.returncode == 0, "docker/.env must be ignored by git"
    kept = subprocess.run(["git", "check-ignore", "-q", "docker/.env.example"], cwd=REPO)
    assert kept.returncode == 1, "docker/.env.example must be committable"


# ------------------------------------------------------------------------------ health and start order


def test_healthchecks_dependencies_and_volumes(compose, services):
    for name, svc in services.items():
        if name in ONE_SHOT:
            assert svc.get("restart") == "no", name
            continue
        hc = svc.get("healthcheck")
        assert hc and hc.get("test"), f"{name} has no healthcheck"
    for name in EXPECTED_SERVICES - {"postgres", "redis"}:
        deps = services[name]["depends_on"]
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["redis"]["condition"] == "service_healthy", name
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    for name in SUPERSET_SERVICES - {"superset-init"}:
        assert services[name]["depends_on"]["superset-init"]["condition"] == "service_completed_successfully"
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith((".", "/")):
                assert (DOCKER / source).exists() or source.startswith("/"), f"{name}: bind {source} missing"
                continue
            used.add(source)
    assert used and used <= declared, f"undeclared named volumes: {used - declared}"
    assert {"postgres-data", "redis-data"} <= used


def test_postgres_init_script_creates_databases_and_reader_role(services):
    mounts = services["postgres"]["volumes"]
    script_mount = next(v for v in mounts if "docker-entrypoint-initdb.d" in v)
    script = DOCKER / script_mount.split(":")[0]
    text = script.read_text()
    for db in ("slm_warehouse", "slm_airflow", "slm_superset"):
        assert f"CREATE DATABASE {db};" in text
    assert re.search(r"CREATE ROLE slm_reader LOGIN PASSWORD :'reader_password'", text)
    assert "SLM_READER_PASSWORD" in env_of(services["postgres"])
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


@pytest.mark.parametrize(
    ("service", "script", "first_real_step"),
    [
        ("airflow-init", "airflow/init.sh", "airflow db migrate"),
        ("superset-init", "superset/init.sh", "superset db upgrade"),
    ],
)
def test_init_services_run_prod_check_first(services, service, script, first_real_step):
    svc = services[service]
    command = (svc.get("entrypoint") or []) + (svc.get("command") or [])
    installed = command[0]
    dockerfile = DOCKER / ("airflow.Dockerfile" if service.startswith("airflow") else "superset.Dockerfile")
    assert dict(copy_sources(dockerfile))[f"docker/{script}"] == installed
    text = (DOCKER / script).read_text()
    assert "set -euo pipefail" in text
    check = text.index("python -m slm_platform.ops.prod_check")
    assert check < text.index(first_real_step)
    assert subprocess.run(["bash", "-n", str(DOCKER / script)]).returncode == 0
    # The package is installed in both images, so `python -m slm_platform.ops.prod_check` resolves.
    assert "-e /opt/slm" in dockerfile.read_text()


# --------------------------------------------------------------------------------------- prod_check


def strong() -> dict[str, str]:
    return prod_check.generate()


def test_generated_secrets_are_accepted():
    env = strong()
    assert set(env) == set(prod_check.ALL)
    assert prod_check.check_secrets(env) == []
    assert len(base64.urlsafe_b64decode(env["AIRFLOW__CORE__FERNET_KEY"])) == 32


def test_env_example_values_are_refused_one_by_one():
    example = prod_check.read_env_file(ENV_EXAMPLE)
    problems = prod_check.check_secrets(example)
    for name in prod_check.ALL:
        assert any(p.startswith(name + " ") for p in problems), f"{name} from .env.example accepted"


@pytest.mark.parametrize("name", prod_check.ALL)
@pytest.mark.parametrize(
    "bad",
    [
        "",
        "CHANGE_ME",
        "change_me",
        "admin",
        "secret",
        "CHANGE_ME_TO_A_COMPLEX_RANDOM_SECRET",
        "thisISaSECRET_1234",
        "CHANGE_ME_0123456789abcdefghijklmnopqrstuvwxyz",
    ],
)
def test_defaults_and_placeholders_are_refused(name, bad):
    env = {**strong(), name: bad}
    problems = prod_check.check_secrets(env)
    assert problems and all(p.startswith(name) for p in problems), problems


@pytest.mark.parametrize("name", prod_check.ALL)
def test_missing_secret_is_refused(name):
    env = strong()
    del env[name]
    assert prod_check.check_secrets(env) == [f"{name} is missing or empty"]


@pytest.mark.parametrize("name", [k for k in prod_check.KEYS if k != "AIRFLOW__CORE__FERNET_KEY"])
def test_keys_need_32_characters(name):
    env = strong()
    env[name] = "Zq8-" * 7 + "abc"  # 31 random-looking characters
    problems = prod_check.check_secrets(env)
    assert len(problems) == 1 and "too short" in problems[0] and name in problems[0]
    env[name] = "Zq8-" * 8  # 32
    assert prod_check.check_secrets(env) == []


@pytest.mark.parametrize("name", prod_check.PASSWORDS)
def test_passwords_need_16_characters(name):
    env = {**strong(), name: "Xk9-mP2_vL7.qR4"}  # 15
    assert any("too short" in p for p in prod_check.check_secrets(env))
    env[name] = "Xk9-mP2_vL7.qR4w"  # 16
    assert prod_check.check_secrets(env) == []


@pytest.mark.parametrize(
    "key",
    [
        base64.urlsafe_b64encode(b"x" * 31).decode() + "AAAA",  # 35 bytes: wrong length
        base64.urlsafe_b64encode(b"y" * 24).decode() + "=" * 8,  # padding in the middle of nowhere
        "not base64 at all, but long enough to pass the length rule!!",
        base64.b64encode(bytes([251, 255] * 16)).decode(),  # standard alphabet (+ /), not url-safe
        base64.urlsafe_b64encode(b"z" * 48).decode(),  # 48 bytes
    ],
)
def test_fernet_key_must_be_32_urlsafe_base64_bytes(key):
    env = {**strong(), "AIRFLOW__CORE__FERNET_KEY": key}
    problems = prod_check.check_secrets(env)
    assert any("not a valid Fernet key" in p for p in problems), (key, problems)


def test_fernet_key_check_agrees_with_cryptography_when_available():
    # cryptography ships with Airflow: the stdlib check must accept exactly what Fernet accepts.
    from cryptography.fernet import Fernet

    good = Fernet.generate_key().decode()
    assert prod_check.check_secrets({**strong(), "AIRFLOW__CORE__FERNET_KEY": good}) == []
    bad = good[:-2] + "=="  # 31 bytes
    with pytest.raises(ValueError):
        Fernet(bad)
    assert prod_check.check_secrets({**strong(), "AIRFLOW__CORE__FERNET_KEY": bad})


@pytest.mark.parametrize("name", prod_check.URL_EMBEDDED)
@pytest.mark.parametrize("char", ["@", ":", "/", "%", "#", "?", " "])
def test_database_passwords_must_be_url_safe(name, char):
    env = {**strong(), name: "Abcdefgh12345678" + char + "xyz"}
    assert any("URLs" in p or "whitespace" in p for p in prod_check.check_secrets(env))


def test_reused_and_padded_values_are_refused():
    env = strong()
    env["SUPERSET_SECRET_KEY"] = env["AIRFLOW__API__SECRET_KEY"]
    problems = prod_check.check_secrets(env)
    assert problems == [
        "SUPERSET_SECRET_KEY reuses the value of AIRFLOW__API__SECRET_KEY: each secret must be distinct"
    ]
    env = {**strong(), "AIRFLOW_ADMIN_PASSWORD": " " + strong()["AIRFLOW_ADMIN_PASSWORD"]}
    assert prod_check.check_secrets(env) == ["AIRFLOW_ADMIN_PASSWORD has leading or trailing whitespace"]


def test_groups_check_only_what_each_container_receives():
    env = {k: v for k, v in strong().items() if k in prod_check.GROUPS["airflow"]}
    assert prod_check.check_secrets(env, prod_check.GROUPS["airflow"]) == []
    assert prod_check.check_secrets(env, prod_check.GROUPS["superset"])  # superset's are absent
    assert set(prod_check.GROUPS["airflow"]) | set(prod_check.GROUPS["superset"]) == set(prod_check.ALL)


def test_compose_gives_each_init_container_its_group(services):
    for service, group in (("airflow-init", "airflow"), ("superset-init", "superset")):
        env = env_of(services[service])
        # prod_check reads each secret under its own name: a reference inside another variable is not enough.
        for name in prod_check.GROUPS[group]:
            assert name in env, f"{service} does not receive {name}, so prod_check --for {group} would refuse"
            assert WHOLE_REF.match(env[name]).group(1) == name
        script = "airflow/init.sh" if group == "airflow" else "superset/init.sh"
        assert f"python -m slm_platform.ops.prod_check --for {group}" in (DOCKER / script).read_text()


def test_main_refuses_the_example_and_accepts_a_generated_file(tmp_path, capsys):
    assert prod_check.main(["--env-file", str(ENV_EXAMPLE)]) == 1
    err = capsys.readouterr().err
    assert "REFUSED" in err and "AIRFLOW__CORE__FERNET_KEY" in err and "--generate" in err

    assert prod_check.main(["--generate"]) == 0
    generated = capsys.readouterr().out
    env_file = tmp_path / ".env"
    env_file.write_text(generated)
    assert prod_check.main(["--env-file", str(env_file)]) == 0
    out, err = capsys.readouterr()
    assert f"{len(prod_check.ALL)} secrets OK" in out and len(prod_check.ALL) == 9 and err == ""

    # Messages never echo a secret's value.
    values = prod_check.read_env_file(env_file)
    values["SUPERSET_ADMIN_PASSWORD"] = "short-Pw"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    assert prod_check.main(["--env-file", str(env_file)]) == 1
    err = capsys.readouterr().err
    assert "SUPERSET_ADMIN_PASSWORD is too short" in err
    assert not any(v in err for v in values.values())

    assert prod_check.main(["--env-file", str(tmp_path / "absent.env")]) == 2


def test_main_reads_the_process_environment(monkeypatch, capsys):
    for name in prod_check.ALL:
        monkeypatch.delenv(name, raising=False)
    assert prod_check.main(["--for", "superset"]) == 1
    assert "SUPERSET_SECRET_KEY is missing" in capsys.readouterr().err
    for k, v in strong().items():
        monkeypatch.setenv(k, v)
    assert prod_check.main(["--for", "superset"]) == 0


def test_read_env_file_follows_compose_syntax(tmp_path):
    f = tmp_path / ".env"
    f.write_text("# comment\n\nA=1\nexport B=two\nC='quoted # not a comment'\nD=\"dq\"\nE=val # trailing\n")
    assert prod_check.read_env_file(f) == {
        "A": "1",
        "B": "two",
        "C": "quoted # not a comment",
        "D": "dq",
        "E": "val",
    }


def test_airflow_init_creates_every_pool_the_dags_use():
    """A task in a pool that does not exist is never scheduled: every pool the DAGs name must be created by
    the production init (the local stack creates it in stack.py)."""
    dag_sources = "\n".join(p.read_text() for p in sorted((REPO / "dags").glob("*.py")))
    from slm_platform.orchestration.incident_review import POOL

    assert "pool=" in dag_sources or '"pool"' in dag_sources, "no pool in the DAGs: drop this test"
    init = (DOCKER / "airflow" / "init.sh").read_text()
    created = set(re.findall(r"^airflow pools set (\S+) 1 ", init, re.M))
    assert POOL in created, f"docker/airflow/init.sh does not create the pool {POOL!r}"
    # ... and after the metadata database exists.
    assert init.index("airflow db migrate") < init.index(f"airflow pools set {POOL}")
