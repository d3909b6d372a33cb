# Two commands matter: `make demo` and `make test`. Everything else is a step they call.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY ?= python3
UV_VERSION := 0.13.9
VENVS := .venvs
UV := $(VENVS)/uv/bin/uv
export UV_COMPILE_BYTECODE := 1
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy

.PHONY: help envs demo test down lock lint chromium system-packages

help:
	@echo "make demo   build environments, start the local stack, run the nightly DAG, provision Superset"
	@echo "make test   build what is needed, run the whole suite on a throw-away stack"
	@echo "make down   stop the local stack"
	@echo "make lock   regenerate the lock files (envs/*/requirements.lock)"

$(UV):
	@echo "==> bootstrapping uv $(UV_VERSION)"
	@command -v $(PY) >/dev/null || { echo "ERROR: python3 (3.11) is required"; exit 1; }
	@$(PY) -m venv $(VENVS)/uv
	@$(VENVS)/uv/bin/pip install -q uv==$(UV_VERSION)

# One environment per tool, built from its lock file with bytecode compiled.
$(VENVS)/%/.built: envs/%/requirements.lock $(UV)
	@echo "==> building the $* environment (from envs/$*/requirements.lock)"
	@rm -rf $(VENVS)/$*
	@$(UV) venv -q --python $(PY) $(VENVS)/$*
	@$(UV) pip sync -q --python $(VENVS)/$*/bin/python envs/$*/requirements.lock
	@if [ "$*" = airflow ]; then $(UV) pip install -q --python $(VENVS)/$*/bin/python --no-deps -e .; fi
	@touch $@

envs: $(VENVS)/airflow/.built $(VENVS)/dbt/.built $(VENVS)/superset/.built

lock: $(UV)
	@for e in airflow dbt superset; do \
	  echo "==> locking $$e"; \
	  $(UV) pip compile -q --universal --python-version 3.11 envs/$$e/requirements.in -o envs/$$e/requirements.lock || exit 1; \
	done

chromium:
	@bash tools/ensure_system_packages.sh chromium

# Debian packages the suite drives: chromium (browser tests, review-pack PDFs), prometheus (extractor
# tests), poppler-utils (pdfinfo, pdftoppm: the review-pack tests read the PDFs).
system-packages:
	@bash tools/ensure_system_packages.sh

demo: envs chromium
	@./slm demo

test: envs system-packages
	@$(VENVS)/airflow/bin/python -m pytest $(PYTEST_ARGS)

down:
	@if [ -x $(VENVS)/airflow/bin/python ]; then ./slm stack down; fi

lint: envs
	@$(VENVS)/airflow/bin/ruff check slm_platform dags tests benchmarks tools
	@$(VENVS)/dbt/bin/sqlfluff lint dbt_project/models --disable-progress-bar
