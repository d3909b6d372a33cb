"""Load a drop of canonical files into the ``raw`` schema: the public entry (:func:`load_drop`,
:func:`load_file`) and the orchestration of one file's transaction (:func:`_load_file`).

Per file, in one transaction: stream the file with ``COPY`` into a temporary staging table of text
columns (a clean file: straight into typed columns), validate it set-based in SQL (bad rows go to
``raw.quarantine`` with file:line, reason and the raw record), upsert the good rows by key, record the
batch and advance the watermark. Memory use does not depend on the file size: Python only ever holds one
chunk of the stream.

Four ways through a file, same verdicts and same result:
- direct (a clean CSV, the usual case): ``COPY`` straight into typed columns (the table itself on a first
  load, a typed temporary table otherwise), the spellings checked on the way by
  :mod:`slm_platform.load.scan`, the other checks set-based on the typed rows; any refusal rolls back to a
  savepoint and the file takes the text path below (see :mod:`slm_platform.load.direct`).
- single pass (first load into an empty table): one statement validates, casts each value once and
  inserts the good rows; the insert's row count is the number of good rows, so the reasons are computed
  only when some rows were refused. Casting is the dearest part of a load; this path does it once, not
  twice. A composite key's index (checks…) is dropped before and built after the insert.
- merge (a filled table: reruns, increments): one statement validates, compares with the stored rows,
  updates the changed keys and inserts the new ones; unchanged rows are read, never written.
- step by step (the fast casts refused a value, or a key occurs twice among the good rows): validate
  into ``bad``, quarantine, mark duplicates, update then insert (see :mod:`slm_platform.load.text_path`).

Which paths a load may take is a parameter (:class:`~slm_platform.load.options.LoadOptions`), not a
module setting. The parts, in the order a file meets them: :mod:`~slm_platform.load.drop` (the files of a
drop), :mod:`~slm_platform.load.readers` (a file as a CSV stream), :mod:`~slm_platform.load.validation`
(the checks as SQL), :mod:`~slm_platform.load.direct` and :mod:`~slm_platform.load.text_path` (the two
ways in), :mod:`~slm_platform.load.merge` (writing the good rows), :mod:`~slm_platform.load.batches`
(batch row, reconciliation, watermark).

Line numbers: a CSV record's number counts the header as line 1; it equals the physical line as long as
no quoted field holds a line break. JSONL line numbers are exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psycopg2

from slm_platform.canonical import ENTITY_BY_NAME, LOAD_ORDER, EntitySpec
from slm_platform.load.batches import BatchResult, Steps, close_batch, open_batch, record_failure
from slm_platform.load.direct import direct_load
from slm_platform.load.drop import COMPANION_FILES, drop_files, near_miss, near_misses, refused_files
from slm_platform.load.errors import LoadError, ReconciliationError, RefusedFilesError
from slm_platform.load.options import DEFAULT_OPTIONS, LoadOptions
from slm_platform.load.raw_schema import ensure_raw_schema
from slm_platform.load.readers import stage_source
from slm_platform.load.text_path import text_load
from slm_platform.load.validation import DATE_RE, INT_RE, TS_RE

__all__ = [  # what the loader's callers import from here (the parts live in the modules named above)
    "COMPANION_FILES",
    "DATE_RE",
    "DEFAULT_OPTIONS",
    "ENTITY_BY_NAME",
    "INT_RE",
    "LOAD_ORDER",
    "TS_RE",
    "BatchResult",
    "LoadError",
    "LoadOptions",
    "ReconciliationError",
    "RefusedFilesError",
    "connect",
    "drop_files",
    "ensure_raw_schema",
    "load_drop",
    "load_file",
    "near_miss",
    "near_misses",
]

Log = Callable[[str], None]


def _begin(cur, spec: EntitySpec, options: LoadOptions) -> None:
    """The file's transaction: its entity's lock and its settings (all local to the transaction)."""
    # One loader per entity at a time: two concurrent loads of one key would otherwise race.
    cur.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"slm_platform.loader.{spec.name}",))
    # Hash joins, the duplicate check and the key sort of a million-row file stay in memory.
    cur.execute("set local work_mem = '256MB'")
    cur.execute("set local maintenance_work_mem = '256MB'")  # a first load's key index build
    # The load is bound by type input functions: JIT compilation of its big CASE is pure overhead.
    cur.execute("set local jit = off")
    # The rows, the batch row and the watermark move commit together, and once the commit returns
    # the batch is reported (log, XCom) and the run moves on: the commit must survive a server crash
    # by then, or a window reported loaded is lost and never extracted again. The embedded cluster
    # runs with synchronous_commit = off (pgcluster): on for this transaction (design: loading.md).
    cur.execute(f"set local synchronous_commit = {options.synchronous_commit}")


def _load_file(
    conn, spec: EntitySpec, path: Path, source: str, options: LoadOptions = DEFAULT_OPTIONS
) -> BatchResult:
    steps = Steps()
    staged = stage_source(path, spec)
    present = set(staged.columns) & set(spec.column_names)
    try:
        with conn.cursor() as cur:
            _begin(cur, spec, options)
            batch_id = open_batch(cur, spec, path, source)
            direct = (
                direct_load(cur, conn, spec, staged, batch_id, source, steps) if options.direct_copy else None
            )
            if direct is not None:
                _, rows_read, loaded, high_water = direct
                candidates, n_bad, quarantined = rows_read, 0, 0
            else:
                if options.direct_copy and not staged.jsonl:  # the direct path may have read the stream
                    staged.stream.close()
                    staged = stage_source(path, spec)
                rows_read, candidates, loaded, n_bad, quarantined, high_water = text_load(
                    cur, conn, spec, path, staged, present, batch_id, source, steps, options
                )
            unchanged = close_batch(
                cur,
                batch_id,
                spec,
                path,
                source,
                rows_read=rows_read,
                candidates=candidates,
                loaded=loaded,
                n_bad=n_bad,
                quarantined=quarantined,
                high_water=high_water,
            )
        conn.commit()
    finally:
        staged.stream.close()
    steps.mark("commit")
    return BatchResult(
        batch_id,
        source,
        spec.name,
        str(path),
        rows_read,
        loaded,
        unchanged,
        quarantined,
        high_water,
        round(time.monotonic() - steps.t0, 3),
        step_seconds=steps.seconds,
    )


def connect(dsn: str):
    conn = psycopg2.connect(dsn)
    conn.set_client_encoding("UTF8")
    with conn.cursor() as cur:
        # Staging lives in temp tables: keep them in memory (must be set before the first temp access).
        cur.execute("set temp_buffers = '128MB'")
    conn.commit()
    return conn


def load_file(
    dsn: str,
    path: Path,
    entity: str,
    source: str = "canonical",
    *,
    options: LoadOptions = DEFAULT_OPTIONS,
) -> BatchResult:
    """Load one file as the given canonical entity (e.g. a file not named after its entity)."""
    spec = ENTITY_BY_NAME[entity]
    conn = connect(dsn)
    try:
        ensure_raw_schema(conn)
        return _load_guarded(conn, spec, Path(path), source, options)
    finally:
        conn.close()


def _load_guarded(conn, spec: EntitySpec, path: Path, source: str, options: LoadOptions) -> BatchResult:
    try:
        return _load_file(conn, spec, path, source, options)
    except LoadError as exc:
        record_failure(conn, spec.name, path, source, str(exc))
        raise
    except psycopg2.Error as exc:
        err = LoadError(f"{path}: database error while loading {spec.name}: {str(exc).strip()}")
        record_failure(conn, spec.name, path, source, str(err))
        raise err from exc


def load_drop(
    dsn: str,
    drop_dir: Path,
    source: str = "canonical",
    log: Log | None = None,
    *,
    options: LoadOptions = DEFAULT_OPTIONS,
) -> list[BatchResult]:
    """Load every canonical file present in ``drop_dir``; one transaction and one batch per file.

    Stops at the first file that cannot be loaded at all or whose batch does not reconcile (raising
    :class:`LoadError` naming it); files loaded before it stay committed. Every other file of the folder
    (a misspelt name: case, suffix, a letter) gets a failed batch row with the reason, the canonical ones
    are loaded, then :class:`RefusedFilesError` names them: nothing in a drop is skipped silently
    (companion files, :data:`COMPANION_FILES`, are named in the log). Bad rows are not errors: they are
    quarantined and counted. ``options``: which paths a file may take (tests and benchmarks force one).
    """
    drop_dir = Path(drop_dir)
    if not drop_dir.is_dir():
        raise LoadError(f"{drop_dir}: not a directory")
    files = drop_files(drop_dir)
    say = log or (lambda _msg: None)
    refused = refused_files(drop_dir, [p for _, p in files])
    for p in sorted(drop_dir.iterdir()):
        if p.name in COMPANION_FILES:
            say(f"{p.name}: {COMPANION_FILES[p.name]}, not loaded here")
    if not files and not refused:
        say(f"{drop_dir}: no canonical file found")
        return []
    results = []
    conn = connect(dsn)
    try:
        ensure_raw_schema(conn)
        for path, guess, why in refused:
            # Recorded first, so that a file that fails below cannot hide them.
            record_failure(conn, guess or "unknown", path, source, f"refused: {why}")
            say(f"REFUSED {why}")
        for spec, path in files:
            r = _load_guarded(conn, spec, path, source, options)
            say(
                f"{path.name}: read {r.rows_read}, loaded {r.rows_loaded}, unchanged {r.rows_unchanged}, "
                f"quarantined {r.rows_quarantined} ({r.seconds:.2f} s)"
            )
            results.append(r)
        # Fresh statistics after a bulk load: without them the planner takes a just-filled table for
        # empty and picks nested loops that turn the dbt models quadratic (seen: minutes on 25k tickets).
        with conn.cursor() as cur:
            for table in sorted({f"raw.{r.entity}" for r in results if r.rows_loaded}):
                cur.execute(f"analyze {table}")
        conn.commit()
    finally:
        conn.close()
    if refused:
        raise RefusedFilesError(
            f"{drop_dir}: {len(refused)} file(s) refused (each has a failed batch row; the "
            f"{len(results)} canonical file(s) were loaded): " + "; ".join(why for _, _, why in refused)
        )
    return results
