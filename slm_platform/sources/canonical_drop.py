"""Extract step of the canonical source: land a drop's files in a folder keyed on the data interval."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path


def land_drop(drop: str | Path | None, landing_root: Path, interval_start: datetime) -> Path:
    """Copy every file of ``drop`` to ``landing_root/<YYYY-MM-DD>/`` (replacing a previous copy).

    Landing makes the run reproducible: a rerun of the same interval loads exactly what was landed. Every
    file, not only the canonical names: a misspelt one (``Tickets.CSV``) must reach the loader, which
    refuses it with a batch row and a reason, instead of vanishing here.
    """
    if not drop:
        raise ValueError(
            "no source configured: pass a drop folder (`./slm nightly run --drop DIR`, DAG param `drop`) "
            "or set SLM_DROP_DIR"
        )
    src = Path(drop)
    if not src.is_dir():
        raise FileNotFoundError(f"drop folder {src} does not exist")
    files = sorted(p for p in src.iterdir() if p.is_file())
    if not files:
        raise FileNotFoundError(f"drop folder {src} is empty (expected *.csv, *.jsonl, optionally .gz)")
    target = landing_root / interval_start.strftime("%Y-%m-%d")
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in files:
        shutil.copy2(f, tmp / f.name)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target
