"""What the loader may be told: which path a file may take, and how its commit is made.

The defaults are the production behaviour; tests and benchmarks pass other values to force one path
(``load_drop(..., options=LoadOptions(direct_copy=False))``) instead of flipping module globals.
"""

from __future__ import annotations

from dataclasses import dataclass

SYNCHRONOUS_COMMIT_VALUES = ("on", "off", "local", "remote_write", "remote_apply")


@dataclass(frozen=True)
class LoadOptions:
    # A clean CSV goes straight into typed columns (see direct.direct_load); False forces the text path.
    direct_copy: bool = True
    # Into an empty or a filled table, try the one-statement load (validate, cast, write) first; False
    # forces the step-by-step path (see text_path.text_load).
    single_pass: bool = True
    # Validation runs the fast path (strict=False) and falls back to the strict one; tests force each alone.
    validation_paths: tuple[bool, ...] = (False, True)
    # Each file's commit (rows, batch row, watermark move) waits for its WAL: see loader._load_file;
    # benchmarks compare (docs/design/loading.md, section 4).
    synchronous_commit: str = "on"

    def __post_init__(self) -> None:
        if self.synchronous_commit not in SYNCHRONOUS_COMMIT_VALUES:
            raise ValueError(f"synchronous_commit: one of {', '.join(SYNCHRONOUS_COMMIT_VALUES)}")
        if not self.validation_paths or not set(self.validation_paths) <= {False, True}:
            raise ValueError("validation_paths: False (fast), True (strict) or both, in the order to try")


DEFAULT_OPTIONS = LoadOptions()
