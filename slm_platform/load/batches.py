"""Batch bookkeeping: a file's row in ``raw.load_batches`` (opened, reconciled and closed, or recorded as
failed), its watermark move, and what the load reports (:class:`BatchResult`, the seconds per step)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from slm_platform.canonical import EntitySpec
from slm_platform.load.errors import ReconciliationError


@dataclass(frozen=True)
class BatchResult:
    batch_id: int
    source: str
    entity: str
    file: str
    rows_read: int
    rows_loaded: int
    rows_unchanged: int
    rows_quarantined: int
    high_water: object  # datetime | None: max time column of the rows written
    seconds: float
    status: str = "ok"
    step_seconds: dict[str, float] = field(default_factory=dict)  # where the time went (benchmarks)

    def reconciliation(self) -> dict[str, int | str]:
        """What a DAG keeps in XCom per file: read = loaded + unchanged + quarantined."""
        return {
            "entity": self.entity,
            "batch_id": self.batch_id,
            "read": self.rows_read,
            "loaded": self.rows_loaded,
            "unchanged": self.rows_unchanged,
            "quarantined": self.rows_quarantined,
        }


class Steps:
    """Seconds spent per step of a load (reported by the benchmark)."""

    def __init__(self) -> None:
        self.t0 = self.last = time.monotonic()
        self.seconds: dict[str, float] = {}

    def mark(self, step: str) -> None:
        now = time.monotonic()
        self.seconds[step] = round(now - self.last, 3)
        self.last = now


def record_failure(conn, entity: str, path: Path, source: str, error: str) -> None:
    """Leave a trace of the failed file in raw.load_batches (its data was rolled back)."""
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute(
            "insert into raw.load_batches (source, entity, file, started_at, finished_at, status, error) "
            "values (%s, %s, %s, clock_timestamp(), clock_timestamp(), 'failed', %s)",
            (source, entity, str(path), error),
        )
    conn.commit()


def open_batch(cur, spec: EntitySpec, path: Path, source: str) -> int:
    """The file's batch row, 'running' until :func:`close_batch` (in the same transaction)."""
    cur.execute(
        "insert into raw.load_batches (source, entity, file, started_at, status) "
        "values (%s, %s, %s, clock_timestamp(), 'running') returning batch_id",
        (source, spec.name, str(path)),
    )
    return cur.fetchone()[0]


def close_batch(
    cur,
    batch_id: int,
    spec: EntitySpec,
    path: Path,
    source: str,
    *,
    rows_read: int,
    candidates: int,
    loaded: int,
    n_bad: int,
    quarantined: int,
    high_water: object,
) -> int:
    """Check that the counts add up, move the watermark, mark the batch 'ok'; returns the unchanged rows.

    ``candidates``: the rows that passed validation (loaded or unchanged); ``n_bad``: the rows refused.
    """
    unchanged = candidates - loaded
    # Independently obtained counts must add up: COPY's rows, the quarantine insert, the good rows.
    # Not an assert (python -O drops those): a batch that does not reconcile is rolled back, recorded
    # as failed and stops the run.
    if quarantined != n_bad or not 0 <= loaded <= candidates or rows_read != loaded + unchanged + quarantined:
        raise ReconciliationError(
            f"{path}: the batch does not reconcile: read {rows_read} != loaded {loaded} + unchanged "
            f"{unchanged} + quarantined {quarantined} (refused {n_bad}, candidates {candidates}); "
            f"nothing of it was kept"
        )

    if high_water is not None:
        cur.execute(
            "insert into raw.watermarks (source, entity, high_water) values (%s, %s, %s) "
            "on conflict (source, entity) do update set "
            "high_water = greatest(raw.watermarks.high_water, excluded.high_water), "
            "updated_at = now()",
            (source, spec.name, high_water),
        )
    cur.execute(
        "update raw.load_batches set finished_at = clock_timestamp(), rows_read = %s, "
        "rows_loaded = %s, rows_unchanged = %s, rows_quarantined = %s, status = 'ok' "
        "where batch_id = %s",
        (rows_read, loaded, unchanged, quarantined, batch_id),
    )
    return unchanged
