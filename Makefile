# Two commands matter: `make demo` and `make test`. Everything else is a step they call.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY ?= python3
UV_VERSION := 0.13.9
VENVS := $(or $(SLM_VENVS),.venvs)
UV := $(VENVS)/uv/bin/uv
export UV_COMPILE_BYTECODE := 1
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy

.PHONY: help envs demo test check down lock lint chromium system-packages doctor bench

help:
	@echo "make demo   build environments, start the local stack, run the nightly DAG, provision Superset"
	@echo "make test   build what is needed, run the whole suite on a throw-away stack"
	@echo "make check  lint + the unit lane (pytest -m unit): no PostgreSQL, Airflow or Superset, a few minutes"
	@echo "make down   stop the local stack"
	@echo "make doctor what is missing or broken in the set-up, and the command that fixes it (= ./slm doctor)"
	@echo "make lock   regenerate the lock files (envs/*/requirements.lock)"
	@echo "make bench  every benchmark beside its baseline -> docs/benchmarks.md (BENCH_ARGS=--full); needs ./slm stack up"

# The environments (.venvs/uv, airflow, dbt, superset, pg), each built from its lock file into a temporary
# folder, checked (its interpreter imports its main packages: envs/NAME/check.py), then moved into place;
# concurrent runs wait for each other. tools/build_env.sh says how; it is a no-op (milliseconds) when every
# environment's marker still matches its lock and its files, and rebuilds one that does not.
# ENVS="pg dbt" builds only those (default: all).
envs:
	@PY=$(PY) UV_VERSION=$(UV_VERSION) SLM_VENVS=$(VENVS) bash tools/build_env.sh $(ENVS)

$(UV):
	@PY=$(PY) UV_VERSION=$(UV_VERSION) SLM_VENVS=$(VENVS) bash tools/build_env.sh uv

lock: $(UV)
	@for e in airflow dbt superset pg; do \
	  echo "==> locking $$e"; \
	  $(UV) pip compile -q --universal --python-version 3.11 envs/$$e/requirements.in -o envs/$$e/requirements.lock || exit 1; \
	done

# What `make demo` needs from Debian: chromium (review-pack PDFs) and redis-server (every stack's cache).
chromium:
	@bash tools/ensure_system_packages.sh chromium redis-server

# Debian packages the suite drives: chromium (browser tests, review-pack PDFs), prometheus (extractor
# tests), poppler-utils (pdfinfo, pdftoppm: the review-pack tests read the PDFs), redis-server (the stacks),
# php-cli (the Zabbix connector against the real Zabbix API).
system-packages:
	@bash tools/ensure_system_packages.sh

# The doctor runs first, with plain python3 (it needs nothing else), and stops early with its advice.
demo:
	@$(PY) -m slm_platform.ops.doctor --before-envs --for demo
	@$(MAKE) --no-print-directory envs chromium
	@./slm demo up

test:
	@$(PY) -m slm_platform.ops.doctor --before-envs --for test
	@$(MAKE) --no-print-directory envs system-packages
	@$(VENVS)/airflow/bin/python -m pytest $(PYTEST_ARGS)

# The fast lane for a one-line change: lint (tests/test_lint.py) and every test that needs no service. Lanes
# are pytest markers set in tests/conftest.py (unit, db, stack, browser): `PYTEST_ARGS="-m db"` etc. with
# `make test` runs another lane.
check:
	@$(MAKE) --no-print-directory envs
	@$(VENVS)/airflow/bin/python -m pytest -m unit -q $(PYTEST_ARGS)

doctor:
	@$(PY) -m slm_platform.ops.doctor

down:
	@if [ -x $(VENVS)/airflow/bin/python ]; then ./slm stack down; fi

lint: envs
	@$(VENVS)/airflow/bin/ruff check slm_platform dags tests benchmarks tools
	@$(VENVS)/dbt/bin/sqlfluff lint dbt_project/models --disable-progress-bar

# Performance is measured here, never asserted in the suite: each benchmark beside its baseline, as ratios.
bench:
	@$(MAKE) --no-print-directory envs
	@$(VENVS)/airflow/bin/python benchmarks/run_all.py $(BENCH_ARGS)
