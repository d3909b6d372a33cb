"""The code style is enforced, not just documented: ruff for Python, sqlfluff for the dbt models."""

from __future__ import annotations

import hashlib
import json
import subprocess

from slm_platform.settings import REPO_ROOT, venv_bin


def test_ruff_clean() -> None:
    proc = subprocess.run(
        [str(venv_bin("airflow", "ruff")), "check", "slm_platform", "dags", "tests", "benchmarks", "tools"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sqlfluff_clean() -> None:
    """Every model lints clean. A model found clean is remembered (.slm/cache, keyed on its bytes and on
    everything else the lint reads: configuration, macros, sqlfluff's version), so a rerun lints only what
    changed; a fresh clone lints everything."""
    models = sorted((REPO_ROOT / "dbt_project" / "models").rglob("*.sql"))
    context = hashlib.sha256()
    for path in [REPO_ROOT / ".sqlfluff", *sorted((REPO_ROOT / "dbt_project" / "macros").rglob("*"))]:
        if path.is_file():
            context.update(path.read_bytes())
    context.update((REPO_ROOT / "envs" / "dbt" / "requirements.lock").read_bytes())
    cache_file = REPO_ROOT / ".slm" / "cache" / f"sqlfluff-{context.hexdigest()[:16]}.json"
    clean = set(json.loads(cache_file.read_text())) if cache_file.exists() else set()
    digest = {m: hashlib.sha256(m.read_bytes()).hexdigest() for m in models}
    todo = [m for m in models if digest[m] not in clean]
    if not todo:
        return
    proc = subprocess.run(
        [
            str(venv_bin("dbt", "sqlfluff")),
            "lint",
            *map(str, todo),
            "--disable-progress-bar",
            "--processes",
            "0",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write_text(json.dumps(sorted(clean | {digest[m] for m in todo})))
