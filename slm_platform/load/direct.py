"""The direct path: a clean CSV goes by ``COPY`` straight into typed columns (see :func:`direct_load`)."""

from __future__ import annotations

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from slm_platform.canonical import EntitySpec
from slm_platform.load.merge import merge, restore_key, set_key_aside
from slm_platform.load.readers import COPY_CHUNK, Staged
from slm_platform.load.scan import CheckedCsvStream
from slm_platform.load.validation import DATE_RE, INT_RE, TS_RE, lit, reason_sql

BOOKKEEPING = ("_batch_id", "_source", "_loaded_at")


def direct_load(cur, conn, spec: EntitySpec, staged: Staged, batch_id: int, source: str, steps):
    """The clean-file path: ``COPY`` straight into typed columns, then check the typed rows; (step, rows
    read, rows written, high water), or None when the text path must take the file (nothing remains).

    A CSV whose header holds only the entity's columns is streamed through
    :class:`~slm_platform.load.scan.CheckedCsvStream`, which vouches (in this process, while the server
    parses the chunks already sent) that every timestamp, date, boolean and integer is spelled as the text
    path accepts. The rows' other checks (keys and required values present, ranges, enums, patterns,
    zones, order, references) run set-based on the typed rows, with the text path's own expressions. Any
    refusal (a spelling, a cast, a check, a duplicate key) rolls back to the savepoint: a file with one bad
    row costs a wasted COPY, then the text path quarantines it with its reason. So the verdicts are the
    text path's by construction.

    - empty table (a first load): COPY into the table itself, its primary key set aside and built after
      (an index built once costs less than one maintained row by row), the bookkeeping columns filled by
      defaults set for this transaction only. The table is locked (exclusive) until commit: readers wait for
      the first load of an empty table.
    - filled table: COPY into a typed temporary table, then the merge (:func:`merge`) reads it: no cast left.
    """
    present = set(staged.columns)
    if staged.jsonl or not present <= set(spec.column_names) or len(present) != len(staged.columns):
        return None
    cur.execute(f"select exists (select 1 from {spec.table})")
    filled = cur.fetchone()[0]
    stream = CheckedCsvStream(staged.stream, staged.columns, spec, TS_RE, DATE_RE, INT_RE)
    cur.execute("savepoint slm_direct")
    try:
        if filled:
            defs = ", ".join(f'"{c}" {t}' for c, t in spec.columns)
            cur.execute(f"create temp table stg_typed ({defs}) on commit drop")
            target, key_aside = "pg_temp.stg_typed", None
        else:
            key_aside = set_key_aside(cur, spec, composite_only=False)
            defaults = (f"{int(batch_id)}", lit(source), "now()")
            sets = ", ".join(
                f"alter column {c} set default {d}" for c, d in zip(BOOKKEEPING, defaults, strict=True)
            )
            cur.execute(f"alter table {spec.table} {sets}")
            target = spec.table
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in staged.columns)
        copy = sql.SQL("copy {} ({}) from stdin with (format csv, force_null ({}))").format(
            sql.SQL(target), cols, cols
        )
        cur.copy_expert(copy.as_string(conn), stream, size=COPY_CHUNK)
        rows_read = cur.rowcount
        steps.mark("direct_copy")
        _, from_clause, good = reason_sql(spec, present, False, strict=False, typed_table=target)
        high = f"max(s.{spec.time_column})" if spec.time_column else "null::timestamptz"
        cur.execute(f"select count(*) filter (where not ({good})), {high} from {from_clause}")
        n_bad, high_water = cur.fetchone()
        steps.mark("direct_check")
        if n_bad:
            result = None
        elif filled:
            values = [f's."{c}"' for c in spec.column_names]
            # Every row passed: the merge needs neither the checks nor their joins again.
            merged = merge(cur, spec, present, "true", f"{target} s", batch_id, source, values=values)
            result = None if merged is None else ("direct_merge", *merged[1:])
        else:
            drops = ", ".join(f"alter column {c} drop default" for c in BOOKKEEPING)
            cur.execute(f"alter table {spec.table} {drops}")
            if key_aside:
                restore_key(cur, spec, key_aside)
            result = ("direct_key", rows_read, rows_read, high_water if rows_read else None)
    except (
        psycopg2.DataError,
        psycopg2.IntegrityError,
        psycopg2.ProgrammingError,
        psycopg2.errors.QueryCanceled,
    ):
        # A spelling the stream refused (QueryCanceled), a cast, a null key, a duplicate key; or a role that
        # may not alter the table (ProgrammingError: insufficient privilege). The text path decides.
        result = None
    if result is None or result[1] != rows_read:
        cur.execute("rollback to savepoint slm_direct")
        steps.mark("direct_refused")
        return None
    cur.execute("release savepoint slm_direct")
    steps.mark(result[0])
    return (result[0], rows_read, result[2], result[3])
