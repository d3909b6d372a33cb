# syntax=docker/dockerfile:1.7
# Superset image of the SLM platform: web server (gunicorn), celery worker and superset-init.
# Build context: the repository root; docker/superset.Dockerfile.dockerignore keeps it small.
FROM python:3.11-slim-bookworm

ARG UV_VERSION=0.13.9
# Must match envs/superset/requirements.lock (tests/test_docker_static.py checks; the build checks too).
ARG SUPERSET_VERSION=6.1.0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_NO_CACHE=1

RUN pip install "uv==${UV_VERSION}"

# Superset pins SQLAlchemy 1.4 / pandas 2.1: its own environment, from its lock file only.
COPY envs/superset/requirements.lock /opt/slm/envs/superset/requirements.lock
RUN uv venv --python /usr/local/bin/python3.11 /opt/venvs/superset \
 && uv pip sync --python /opt/venvs/superset/bin/python /opt/slm/envs/superset/requirements.lock \
 && /opt/venvs/superset/bin/python -c "import importlib.metadata as m, sys; \
v = m.version('apache-superset'); sys.exit(0 if v == '${SUPERSET_VERSION}' else f'apache-superset {v} != ${SUPERSET_VERSION}')"

# The project package, for `python -m slm_platform.ops.prod_check` (standard library only, so --no-deps is
# safe in this environment too); editable like in the Airflow image so both images lay /opt/slm out alike.
COPY pyproject.toml /opt/slm/pyproject.toml
COPY slm_platform/ /opt/slm/slm_platform/
RUN uv pip install --python /opt/venvs/superset/bin/python --no-deps -e /opt/slm

# Configuration (every setting from the environment) and the dashboard bundle sources.
COPY superset/superset_config.py /opt/slm/superset/superset_config.py
# The modules it loads by path from its own folder (the permission cache, the cache warm-up's endpoint).
COPY superset/slm_security.py /opt/slm/superset/slm_security.py
COPY superset/slm_answers.py /opt/slm/superset/slm_answers.py
COPY superset/slm_warmup.py /opt/slm/superset/slm_warmup.py
COPY superset/assets/ /opt/slm/superset/assets/
COPY docker/superset/init.sh /usr/local/bin/slm-superset-init

RUN groupadd --system --gid 50001 superset \
 && useradd --system --uid 50001 --gid superset --home-dir /app/superset_home --create-home \
    --shell /usr/sbin/nologin superset \
 && chmod 0755 /usr/local/bin/slm-superset-init \
 && chown -R superset:superset /app/superset_home

ENV PATH=/opt/venvs/superset/bin:$PATH \
    SUPERSET_CONFIG_PATH=/opt/slm/superset/superset_config.py \
    SUPERSET_HOME=/app/superset_home \
    SLM_ENV=production

USER superset
WORKDIR /app/superset_home
EXPOSE 8088
CMD ["gunicorn", "-w", "2", "-k", "gthread", "--threads", "4", "--timeout", "120", \
     "-b", "0.0.0.0:8088", "superset.app:create_app()"]
