"""The files of a drop: the canonical ones in load order, and every other file named with a reason.

Also the near-miss matching that refuses a misspelt file name, column or JSON key (used by the readers).
"""

from __future__ import annotations

import re
from pathlib import Path

from slm_platform.canonical import ENTITY_BY_NAME, FILE_SUFFIXES, LOAD_ORDER, EntitySpec


def drop_files(drop_dir: Path) -> list[tuple[EntitySpec, Path]]:
    """The canonical files present in ``drop_dir``, in load order (referenced entities first)."""
    found = []
    for name in LOAD_ORDER:
        for suffix in FILE_SUFFIXES:
            path = drop_dir / f"{name}{suffix}"
            if path.is_file():
                found.append((ENTITY_BY_NAME[name], path))
    return found


# Files a drop may hold beside the canonical ones, loaded by someone else (named, never silently skipped).
COMPANION_FILES = {
    "contracts.yaml": "the contract catalogue (loaded by slm_platform.contracts.load)",
    "servicenow_made_sla.csv": "ServiceNow's own SLA verdicts, kept for comparison (servicenow.export)",
}


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _normalised(name: str) -> str:
    return re.sub(r"[\s.\-]+", "_", name.strip().lower())


def near_misses(name: str, known: tuple[str, ...] | list[str]) -> list[str]:
    """The known names ``name`` looks like a misspelling of (case, separators, one or two letters).

    Extra columns and keys are allowed by the format (CANONICAL_FORMAT.md: "kept or ignored, never an
    error"), but one that is a misspelt canonical name would silently read as null: those are refused.
    """
    norm = _normalised(name)
    return [k for k in known if norm == k or _edit_distance(norm, k) <= (1 if len(k) < 8 else 2)]


def near_miss(name: str, known: tuple[str, ...] | list[str]) -> str | None:
    return next(iter(near_misses(name, known)), None)


def refused_files(drop_dir: Path, used: list[Path]) -> list[tuple[Path, str | None, str]]:
    """Every other file of the drop: (path, entity it seems meant for, why it is not loaded).

    A misspelt name (case, suffix, a letter) would otherwise be skipped with a log line and no trace: the
    night's tickets missing and nothing failed. Each one gets a failed batch row with the reason.
    """
    out = []
    for p in sorted(drop_dir.iterdir()):
        if not p.is_file() or p in used or p.name in COMPANION_FILES:
            continue
        lower = p.name.lower()
        stem = next(
            (lower[: -len(s)] for s in sorted(FILE_SUFFIXES, key=len, reverse=True) if lower.endswith(s)),
            None,
        )
        guess = near_miss(stem if stem is not None else lower.split(".", 1)[0], LOAD_ORDER)
        if guess is not None:
            names = ", ".join(f"{guess}{s}" for s in FILE_SUFFIXES)
            why = f"{p.name}: not a canonical file name; did you mean one of {names}? (case-sensitive)"
        else:
            why = (
                f"{p.name}: not a canonical file name (expected <entity><suffix>, entity one of "
                f"{', '.join(LOAD_ORDER)}, suffix one of {', '.join(FILE_SUFFIXES)})"
            )
        out.append((p, guess, why))
    return out
