"""The code style is enforced, not just documented: ruff for Python, sqlfluff for the dbt models."""

from __future__ import annotations

import subprocess

from slm_platform.settings import REPO_ROOT, venv_bin


def test_ruff_clean() -> None:
    proc = subprocess.run(
        [str(venv_bin("airflow", "ruff")), "check", "slm_platform", "dags", "tests", "benchmarks", "tools"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sqlfluff_clean() -> None:
    proc = subprocess.run(
        [str(venv_bin("dbt", "sqlfluff")), "lint", "dbt_project/models", "--disable-progress-bar"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
