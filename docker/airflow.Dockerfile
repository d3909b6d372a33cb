# syntax=docker/dockerfile:1.7
# Airflow image of the SLM platform: one image for every Airflow component (api-server, scheduler,
# dag-processor, triggerer, celery worker) and for airflow-init. Build context: the repository root
# (docker/compose.yaml sets `context: ..`); docker/airflow.Dockerfile.dockerignore keeps it small.
FROM python:3.11-slim-bookworm

# uv is pinned like in the Makefile (UV_VERSION); environments are built from the committed lock files only.
ARG UV_VERSION=0.13.9
# Must match the lock files (tests/test_docker_static.py checks); the build fails if the env disagrees.
ARG AIRFLOW_VERSION=3.3.2
ARG DBT_VERSION=1.11.16
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_NO_CACHE=1

# Debian's headless chromium prints the service review packs to PDF (slm_platform/reports/pdf.py, the
# nightly's review_packs task); the fonts their CSS names (Liberation), DejaVu as the fallback.
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium fonts-liberation fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/* \
 && chromium --version

RUN pip install "uv==${UV_VERSION}"

# Airflow environment first (the slow layer; it changes only with the lock file).
COPY envs/airflow/requirements.lock /opt/slm/envs/airflow/requirements.lock
RUN uv venv --python /usr/local/bin/python3.11 /opt/venvs/airflow \
 && uv pip sync --python /opt/venvs/airflow/bin/python /opt/slm/envs/airflow/requirements.lock \
 && /opt/venvs/airflow/bin/python -c "import importlib.metadata as m, sys; \
v = m.version('apache-airflow'); sys.exit(0 if v == '${AIRFLOW_VERSION}' else f'apache-airflow {v} != ${AIRFLOW_VERSION}')"

# dbt lives in its own environment: its pydantic/protobuf pins clash with Airflow's.
COPY envs/dbt/requirements.lock /opt/slm/envs/dbt/requirements.lock
RUN uv venv --python /usr/local/bin/python3.11 /opt/venvs/dbt \
 && uv pip sync --python /opt/venvs/dbt/bin/python /opt/slm/envs/dbt/requirements.lock \
 && /opt/venvs/dbt/bin/python -c "import importlib.metadata as m, sys; \
v = m.version('dbt-core'); sys.exit(0 if v == '${DBT_VERSION}' else f'dbt-core {v} != ${DBT_VERSION}')"

# The project. Installed editable (--no-deps: everything is pinned in the lock) so that
# slm_platform.settings.REPO_ROOT is /opt/slm, where dags/, dbt_project/ and expectations/ live.
COPY pyproject.toml /opt/slm/pyproject.toml
COPY slm_platform/ /opt/slm/slm_platform/
COPY dags/ /opt/slm/dags/
COPY dbt_project/ /opt/slm/dbt_project/
COPY expectations/ /opt/slm/expectations/
COPY contracts/ /opt/slm/contracts/
RUN uv pip install --python /opt/venvs/airflow/bin/python --no-deps -e /opt/slm

# Cosmos renders the dbt task group from the manifest (LoadMode.DBT_MANIFEST): build it now. `dbt parse`
# renders profiles.yml without connecting, so placeholder connection settings are enough.
RUN cd /opt/slm/dbt_project \
 && SLM_PG_HOST=postgres SLM_PG_PORT=5432 SLM_PG_USER=slm SLM_PG_PASSWORD= SLM_PG_DBNAME=slm_warehouse \
    SLM_MARTS_BUILD_SCHEMA=marts_build DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    /opt/venvs/dbt/bin/dbt parse --project-dir . --profiles-dir . \
 && rm -rf logs

COPY docker/airflow/init.sh /usr/local/bin/slm-airflow-init

# Non-root, fixed uid so named volumes keep their ownership across rebuilds. dbt (target/) and GX
# (gx/uncommitted/) write inside their project folders at run time.
RUN groupadd --system --gid 50000 airflow \
 && useradd --system --uid 50000 --gid airflow --home-dir /opt/airflow --create-home --shell /usr/sbin/nologin airflow \
 && mkdir -p /opt/airflow/logs /opt/airflow/auth /opt/airflow/slm /data/drops \
 && chmod 0755 /usr/local/bin/slm-airflow-init \
 && chown -R airflow:airflow /opt/airflow /data/drops /opt/slm/dbt_project /opt/slm/expectations \
 && chmod 0700 /opt/airflow/auth

ENV PATH=/opt/venvs/airflow/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow \
    SLM_VENVS=/opt/venvs \
    SLM_HOME=/opt/airflow/slm \
    SLM_DBT_PROJECT=/opt/slm/dbt_project \
    SLM_DBT_EXECUTABLE=/opt/venvs/dbt/bin/dbt

USER airflow
WORKDIR /opt/airflow
EXPOSE 8080
# Each compose service passes its own command (api-server, scheduler, ...).
ENTRYPOINT ["airflow"]
CMD ["version"]
