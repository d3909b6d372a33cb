"""The extract window of the hourly source DAGs (slm_servicenow, slm_prometheus), and its catch-up mark.

A run extracts from the DAG's *mark* (the end of the last window it extracted and loaded) or its data
interval's start, whichever is earlier, up to the interval's end. Intervals missed while the scheduler was
down (catchup=False: only the latest interval gets a run) are therefore extracted by the next run, in one
window; a rerun of an old interval finds the mark past it and extracts exactly the interval again. Loads are
upserts, so a window that overlaps one already loaded duplicates nothing.

The mark is this DAG's own record (raw.extract_windows, written after the load), not the loader's
raw.watermarks: an incident review loads the same sources over an arbitrary past window, which moves the
loader's watermark but says nothing about which hours the hourly runs have covered.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    notes: list[str] = field(default_factory=list)  # why the window differs from the interval, for the log

    def to_xcom(self) -> dict[str, str]:
        return {"window_start": self.start.isoformat(), "window_end": self.end.isoformat()}


def _align(ts: datetime, step_seconds: int | None) -> datetime:
    """Down to the step grid (Prometheus samples sit on it), so a rerun asks for exactly the same points."""
    if not step_seconds:
        return ts
    return datetime.fromtimestamp(math.floor(ts.timestamp() / step_seconds) * step_seconds, UTC)


def plan(
    interval_start: datetime,
    interval_end: datetime,
    mark: datetime | None,
    since: datetime | None = None,
    max_back_seconds: int | None = None,
    step_seconds: int | None = None,
) -> Window:
    """The window of a run: from the earliest of the interval start, the mark and ``since``, to the
    interval end. ``max_back_seconds`` bounds how far before the interval a catch-up reaches (a source's
    retention): an older mark is cut there, with a note; an older ``since`` is refused (ValueError)."""
    start, notes = interval_start, []
    floor = (
        datetime.fromtimestamp(interval_start.timestamp() - max_back_seconds, UTC)
        if max_back_seconds is not None
        else None
    )
    if mark is not None and mark < start:
        if floor is not None and mark < floor:
            notes.append(
                f"catch-up: the last extracted window ended at {mark.isoformat()}, more than the maximum"
                f" catch-up before this interval; [{mark.isoformat()}, {floor.isoformat()}) is NOT extracted"
            )
            start = floor
        else:
            notes.append(
                f"catch-up: missed intervals since {mark.isoformat()} (the last extracted window's end)"
            )
            start = mark
    if since is not None and since < start:
        if floor is not None and since < floor:
            raise ValueError(
                f"since {since.isoformat()} is more than the maximum catch-up before the interval"
                f" (earliest {floor.isoformat()})"
            )
        notes.append(f"since {since.isoformat()} (requested)")
        start = since
    return Window(_align(start, step_seconds), interval_end, notes)


def mark(conn, dag_id: str) -> datetime | None:
    """The end of the latest window ``dag_id`` extracted and loaded, or None before its first run."""
    with conn.cursor() as cur:
        cur.execute("select to_regclass('raw.extract_windows') is not null")
        if not cur.fetchone()[0]:
            return None
        cur.execute("select max(window_end) from raw.extract_windows where dag_id = %s", (dag_id,))
        return cur.fetchone()[0]


def record(
    conn, dag_id: str, run_id: str, interval: tuple[datetime, datetime], window: tuple[datetime, datetime]
) -> None:
    """Record a window as extracted and loaded (after the load committed); commits.

    synchronous_commit on for this transaction: the loader commits asynchronously, and a mark that
    survived a crash while the batches it covers did not would make the next run skip them. A synchronous
    commit flushes the WAL up to its own record, so the earlier load commits are durable with it.
    """
    from slm_platform.load.raw_schema import ensure_raw_schema

    ensure_raw_schema(conn)  # raw.extract_windows with the other bookkeeping tables (commits)
    with conn.cursor() as cur:
        cur.execute("set local synchronous_commit = on")
        cur.execute(
            "insert into raw.extract_windows"
            " (dag_id, run_id, interval_start, interval_end, window_start, window_end)"
            " values (%s, %s, %s, %s, %s, %s)"
            " on conflict (dag_id, run_id) do update set window_start = excluded.window_start,"
            " window_end = excluded.window_end, interval_start = excluded.interval_start,"
            " interval_end = excluded.interval_end, recorded_at = now()",
            (dag_id, run_id, *interval, *window),
        )
    conn.commit()


def load_and_record(
    dsn: str,
    landing: str | Path,
    source: str,
    dag_id: str,
    run_id: str,
    interval: tuple[datetime, datetime],
    window: tuple[datetime, datetime],
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Load a window's drop, then record the window as covered (the next run's catch-up mark).

    In that order: a load that fails leaves the mark where it was, so the next run extracts the window
    again. Returns each batch's reconciliation (the task's XCom).
    """
    import psycopg2

    from slm_platform.load.loader import load_drop

    results = load_drop(dsn, Path(landing), source=source, log=log)
    conn = psycopg2.connect(dsn)
    try:
        record(conn, dag_id, run_id, interval, window)
    finally:
        conn.close()
    return [r.reconciliation() for r in results]
