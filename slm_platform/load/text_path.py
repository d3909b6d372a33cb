"""The text path: ``COPY`` into text staging, validate set-based, quarantine the bad rows with file:line,
reason and the raw record, write the good ones (see :func:`text_load`).

Two ways through it, same verdicts and same result:
- single pass (the usual case): one statement validates, casts each value once and writes the good rows
  (into an empty table a plain insert, into a filled one :func:`~slm_platform.load.merge.merge`); the
  reasons are computed only when some rows were refused.
- step by step (the fast casts refused a value, or a key occurs twice among the good rows): validate into
  ``bad``, quarantine, mark duplicates, update then insert (:func:`~slm_platform.load.merge.upsert`).
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg2
from psycopg2 import sql

from slm_platform.canonical import TSTZ, EntitySpec
from slm_platform.load.errors import LoadError
from slm_platform.load.merge import (
    key_order,
    merge,
    restore_key,
    select_list,
    set_key_aside,
    typed_values,
    upsert,
)
from slm_platform.load.options import LoadOptions
from slm_platform.load.readers import COPY_CHUNK, Staged
from slm_platform.load.validation import lit, reason_sql, typed_expr

DUPLICATE_REASON = "duplicate key in file"


def _copy_error(path: Path, exc: psycopg2.Error, jsonl: bool) -> LoadError:
    context = getattr(exc.diag, "context", None) or ""
    m = re.search(r"line (\d+)", context)
    where = ""
    if m and not jsonl:
        where = f" at line {int(m.group(1)) + 1}"  # COPY counts from the first data line; the header is 1
    msg = (getattr(exc.diag, "message_primary", None) or str(exc)).strip()
    return LoadError(f"{path}: malformed file{where}: {msg}")


def _create_staging(cur, conn, staged: Staged) -> None:
    # CSV: no line column yet (an identity costs a sequence call per row: ~8 % of a clean load); the
    # rows' physical order is the file's order, numbered only when a row must be named (_number_lines).
    defs = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL("bigint" if c == "_line" else "text"))
        for c in staged.columns
    )
    cur.execute(sql.SQL("create temp table stg ({}) on commit drop").format(defs).as_string(conn))
    cur.execute("create temp table bad (_line bigint not null, reason text not null) on commit drop")


def _number_lines(cur, staged: Staged) -> None:
    """Give CSV staging rows their line numbers (the header is line 1), once, before any row leaves.

    One COPY into a fresh table appends its rows in the file's order (heap pages filled in turn, line
    pointers in order), so the order of ``ctid`` is the order of the records. Only the paths that must
    name rows (some refused, or a duplicate key) pay for this copy of the staging table.
    """
    if staged.numbered:
        return
    cur.execute(
        "create temp table stg_numbered on commit drop as "
        "select (row_number() over (order by s.ctid) + 1)::bigint as _line, s.* from pg_temp.stg s"
    )
    cur.execute("drop table pg_temp.stg")
    cur.execute("alter table pg_temp.stg_numbered rename to stg")
    staged.numbered = True


def _copy_into_staging(cur, conn, path: Path, staged: Staged) -> int:
    data_cols = [c for c in staged.columns if c != "_line"]  # _line: JSONL only
    copy = sql.SQL("copy pg_temp.stg ({}) from stdin with (format csv, force_null ({}))").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in staged.columns),
        sql.SQL(", ").join(sql.Identifier(c) for c in data_cols),
    )
    try:
        cur.copy_expert(copy.as_string(conn), staged.stream, size=COPY_CHUNK)
    except psycopg2.Error as exc:
        raise _copy_error(path, exc, staged.jsonl) from exc
    return cur.rowcount


def _validate(cur, spec: EntitySpec, present: set[str], jsonl: bool, paths: tuple[bool, ...]) -> int:
    """Fill ``bad`` with (line, first problem) of every invalid row; returns how many.

    ``paths``: the validation paths to try in turn (fast: False, strict: True; see reason_sql)."""
    cur.execute("savepoint slm_validate")
    n_bad = 0
    for strict in paths:
        case, from_clause, _ = reason_sql(spec, present, jsonl, strict)
        try:
            cur.execute(
                f"insert into bad (_line, reason) select _line, reason from "
                f"(select s._line, {case} as reason from {from_clause}) r where reason is not null"
            )
            n_bad = cur.rowcount
            break
        except psycopg2.DataError:
            if strict:
                raise
            cur.execute("rollback to savepoint slm_validate")  # a value the fast path's casts refused
    cur.execute("release savepoint slm_validate")
    return n_bad


def _mark_duplicates(cur, spec: EntitySpec, present: set[str]) -> int:
    """All but the newest (tickets: highest updated_at, then last line) or last row of a key.

    Runs on valid rows only (the invalid ones are gone from staging), so the typed casts cannot fail.
    """
    keys = ", ".join(typed_expr(k, spec.type_of(k), present) for k in spec.key)  # typed: 10:00Z = 12:00+02
    order = f"{typed_expr(spec.updated_at, TSTZ, present)} desc, " if spec.updated_at else ""
    cur.execute(
        f"insert into bad (_line, reason) select _line, {lit(DUPLICATE_REASON)} from ("
        f" select s._line, row_number() over (partition by {keys} order by {order}s._line desc) rn"
        f" from pg_temp.stg s where ({keys}) in ("
        f"  select {keys} from pg_temp.stg s group by {keys} having count(*) > 1)"
        f") d where rn > 1"
    )
    return cur.rowcount


def _quarantine(cur, spec: EntitySpec, path: Path, jsonl: bool, batch_id: int, source: str) -> int:
    """Move the rows listed in ``bad`` from staging to raw.quarantine; returns how many moved."""
    raw_record = "s._raw::jsonb" if jsonl else "to_jsonb(s) - '_line'"
    cur.execute(
        f"insert into raw.quarantine (batch_id, source, entity, location, reason, raw_record) "
        f"select %s, %s, %s, %s || ':' || b._line, b.reason, {raw_record} "
        f"from bad b join pg_temp.stg s on s._line = b._line order by b._line",
        (batch_id, source, spec.name, path.name),
    )
    moved = cur.rowcount
    cur.execute("delete from pg_temp.stg s using bad b where s._line = b._line")
    assert cur.rowcount == moved, (path, cur.rowcount, moved)
    cur.execute("truncate bad")
    return moved


def _single_pass(
    cur, spec: EntitySpec, present: set[str], jsonl: bool, batch_id: int, source: str, fast: bool
):
    """Validate, cast and write in one statement; (step name, good rows, rows written, high water), or
    None when the step-by-step path must take over.

    - ``single_pass``, into an empty table (a first load): a plain insert; the primary key itself
      catches a key that occurs twice among the good rows. Every good row is new, so the insert's row
      count is the number of good rows and the high water is the maximum of the (formerly empty) table.
    - ``merge``, into a filled table (reruns, increments): see :func:`merge`.

    A value the fast casts refuse (data error) or a duplicate key (unique violation, or duplicates found
    by the merge) rolls back to the savepoint: nothing of the attempt remains.
    """
    if not fast:  # the fast validation path is not allowed: the single pass is built on it
        return None
    cur.execute(f"select exists (select 1 from {spec.table})")
    filled = cur.fetchone()[0]
    case, from_clause, good = reason_sql(spec, present, jsonl, strict=False, lines=False)
    cur.execute("savepoint slm_single_pass")
    try:
        if filled:
            result = merge(cur, spec, present, good, from_clause, batch_id, source)
        else:
            cols = ", ".join([*spec.column_names, "_batch_id", "_source", "_loaded_at"])
            typed = dict(zip(spec.column_names, typed_values(spec, present), strict=True))
            key_aside = set_key_aside(cur, spec)
            order = "" if key_aside else key_order(spec, typed)
            # A row is good when no check fires (CASE gives null): the very verdicts reasons come from.
            cur.execute(  # no parameters: the LIKE patterns hold '%'
                f"insert into {spec.table} ({cols}) "
                f"select {select_list(spec, present)}, {int(batch_id)}, {lit(source)}, now() "
                f"from {from_clause} where ({case}) is null{order}"
            )
            good = cur.rowcount
            if key_aside:  # a key twice among the good rows: unique violation, as with the key in place
                restore_key(cur, spec, key_aside)
            high_water = None
            if spec.time_column and good:
                cur.execute(f"select max({spec.time_column}) from {spec.table}")
                high_water = cur.fetchone()[0]
            result = ("single_pass", good, good, high_water)
    except (psycopg2.DataError, psycopg2.IntegrityError):
        result = None
    if result is None:
        cur.execute("rollback to savepoint slm_single_pass")
        return None
    cur.execute("release savepoint slm_single_pass")
    return result


def text_load(
    cur,
    conn,
    spec: EntitySpec,
    path: Path,
    staged: Staged,
    present,
    batch_id,
    source,
    steps,
    options: LoadOptions,
):
    """The text path: COPY into text staging, validate set-based, quarantine with reasons, write the good
    rows. Returns (rows read, candidates, rows written, rows refused, rows quarantined, high water).

    ``options.single_pass`` (default) tries the one-statement load first; ``options.validation_paths``
    are the validation paths allowed (the single pass needs the fast one)."""
    paths = options.validation_paths
    _create_staging(cur, conn, staged)
    rows_read = _copy_into_staging(cur, conn, path, staged)
    steps.mark("copy")
    fast = False in paths
    single = (
        _single_pass(cur, spec, present, staged.jsonl, batch_id, source, fast)
        if options.single_pass
        else None
    )
    if single is not None:
        step, good, loaded, high_water = single
        steps.mark(step)
        n_bad = quarantined = 0
        if good < rows_read:  # some rows were refused: now (only now) find out why
            _number_lines(cur, staged)
            n_bad = _validate(cur, spec, present, staged.jsonl, paths)
            assert n_bad == rows_read - good, (path, n_bad, rows_read, good)
            quarantined = _quarantine(cur, spec, path, staged.jsonl, batch_id, source)
            steps.mark("quarantine")
        return rows_read, good, loaded, n_bad, quarantined, high_water
    _number_lines(cur, staged)
    n_bad = _validate(cur, spec, present, staged.jsonl, paths)
    quarantined = _quarantine(cur, spec, path, staged.jsonl, batch_id, source) if n_bad else 0
    steps.mark("validate")
    n_dup = _mark_duplicates(cur, spec, present)
    quarantined += _quarantine(cur, spec, path, staged.jsonl, batch_id, source) if n_dup else 0
    n_bad += n_dup
    candidates = rows_read - quarantined  # COPY's count less what left staging
    steps.mark("duplicates")
    loaded, high_water = upsert(cur, spec, present, batch_id, source)
    steps.mark("upsert")
    return rows_read, candidates, loaded, n_bad, quarantined, high_water
