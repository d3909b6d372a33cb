"""Load a drop of canonical files into the ``raw`` schema.

Per file, in one transaction: stream the file with ``COPY`` into a temporary staging table of text
columns (a clean file: straight into typed columns), validate it set-based in SQL (bad rows go to
``raw.quarantine`` with file:line, reason and the raw record), upsert the good rows by key, record the
batch and advance the watermark. Memory use does not depend on the file size: Python only ever holds one
chunk of the stream.

Four ways through a file, same verdicts and same result:
- direct (a clean CSV, the usual case): ``COPY`` straight into typed columns (the table itself on a first
  load, a typed temporary table otherwise), the spellings checked on the way by
  :mod:`slm_platform.load_scan`, the other checks set-based on the typed rows; any refusal rolls back to a
  savepoint and the file takes the text path below (see :func:`_direct_load`).
- single pass (first load into an empty table): one statement validates, casts each value once and
  inserts the good rows; the insert's row count is the number of good rows, so the reasons are computed
  only when some rows were refused. Casting is the dearest part of a load; this path does it once, not
  twice. A composite key's index (checks…) is dropped before and built after the insert.
- merge (a filled table: reruns, increments): one statement validates, compares with the stored rows,
  updates the changed keys and inserts the new ones; unchanged rows are read, never written.
- step by step (the fast casts refused a value, or a key occurs twice among the good rows): validate
  into ``bad``, quarantine, mark duplicates, update then insert.

Line numbers: a CSV record's number counts the header as line 1; it equals the physical line as long as
no quoted field holds a line break. JSONL line numbers are exact.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from slm_platform.canonical import (
    BOOL,
    DATE,
    ENTITY_BY_NAME,
    FILE_SUFFIXES,
    INT,
    LOAD_ORDER,
    SMALLINT,
    TSTZ,
    EntitySpec,
)
from slm_platform.load_scan import CheckedCsvStream
from slm_platform.raw_schema import ensure_raw_schema

Log = Callable[[str], None]

COPY_CHUNK = 1 << 20  # bytes per read of the source stream during COPY
BOM = b"\xef\xbb\xbf"
DUPLICATE_REASON = "duplicate key in file"

# ISO-8601 with an offset or Z; field ranges are checked here so that the later cast cannot fail
# (day-of-month beyond 28 is checked separately, see _valid_day).
TS_RE = (
    r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]"
    r"(:[0-5][0-9](\.[0-9]+)?)?([Zz]|[+-](0[0-9]|1[0-5])(:?[0-5][0-9])?)$"
)
# Looks like a date or a date-time but has no zone: refused, never guessed.
NAIVE_TS_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?$"
DATE_RE = r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
INT_RE = r"^[+-]?[0-9]{1,18}$"  # fits bigint; ranges are checked after
# Validation runs the fast path (strict=False) and falls back to the strict one; tests force each alone.
VALIDATION_PATHS: tuple[bool, ...] = (False, True)
# Into an empty table, try the single-pass load (validate, cast, insert in one statement) first.
SINGLE_PASS = True
# A clean CSV goes straight into typed columns (see _direct_load); tests turn it off to force the text path.
DIRECT_COPY = True


class LoadError(Exception):
    """A file could not be loaded at all (unreadable, bad header, malformed CSV). Names the file."""


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


# ---------------------------------------------------------------------------------------------------
# Finding the files of a drop


def drop_files(drop_dir: Path) -> list[tuple[EntitySpec, Path]]:
    """The canonical files present in ``drop_dir``, in load order (referenced entities first)."""
    found = []
    for name in LOAD_ORDER:
        for suffix in FILE_SUFFIXES:
            path = drop_dir / f"{name}{suffix}"
            if path.is_file():
                found.append((ENTITY_BY_NAME[name], path))
    return found


def _ignored_files(drop_dir: Path, used: list[Path]) -> list[str]:
    return sorted(p.name for p in drop_dir.iterdir() if p.is_file() and p not in used)


# ---------------------------------------------------------------------------------------------------
# Readers: turn a file into (staging columns, a byte stream of CSV for COPY)


def _open(path: Path) -> IO[bytes]:
    try:
        return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    except OSError as exc:
        raise LoadError(f"{path}: cannot open: {exc}") from exc


@dataclass
class _Staged:
    columns: list[str]  # staging column names in COPY order (spec columns keep their canonical name)
    stream: IO[bytes] | _JsonlAsCsv
    jsonl: bool
    numbered: bool = False  # staging has its _line column (JSONL: from the reader; CSV: see _number_lines)


def _csv_header(path: Path, fh: IO[bytes], spec: EntitySpec) -> list[str]:
    try:
        first = fh.readline()
    except (OSError, EOFError, zlib.error) as exc:
        raise LoadError(f"{path}: cannot read: {exc}") from exc
    if first.startswith(BOM):
        first = first[len(BOM) :]
    if not first.strip():
        raise LoadError(f"{path}: empty file or empty header row (a CSV file needs a header)")
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError(f"{path}: header is not UTF-8: {exc}") from exc
    header = next(csv.reader([text]))
    names: list[str] = []
    for i, raw_name in enumerate(header, start=1):
        name = raw_name.strip().lower()
        if name in spec.column_names and name not in names:
            names.append(name)
        elif raw_name and raw_name not in names and len(raw_name.encode()) <= 63 and raw_name != "_line":
            names.append(raw_name)  # extra column: kept in the staging row (and so in quarantine records)
        else:
            names.append(f"_extra_{i}")
    missing_key = [c for c in spec.key if c not in names]
    if missing_key:
        raise LoadError(
            f"{path}: header lacks key column(s) {', '.join(missing_key)} of {spec.name} "
            f"(header: {', '.join(header)})"
        )
    missing_req = [c for c in spec.required if c not in names]
    if missing_req:
        raise LoadError(
            f"{path}: header lacks required column(s) {', '.join(missing_req)} of {spec.name} "
            f"(header: {', '.join(header)})"
        )
    return names


class _JsonlAsCsv:
    """File-like object turning JSON lines into CSV rows for COPY, one chunk at a time.

    Columns: _line, _raw (the original object, as JSON text), _error (why the line is unusable), then
    the spec's columns. Blank lines are skipped; a line that is not a JSON object becomes a row with
    ``_error`` set, so that it is quarantined like any other bad row.
    """

    def __init__(self, path: Path, fh: IO[bytes], spec: EntitySpec):
        self.path, self.fh, self.columns = path, fh, spec.column_names
        self._lines = self._rows()

    def _rows(self) -> Iterator[list[str | None]]:
        for lineno, raw in enumerate(self.fh, start=1):
            if lineno == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            if not raw.strip():
                continue
            error, obj = None, None
            try:
                text = raw.decode("utf-8").strip()
                obj = json.loads(text)
                if not isinstance(obj, dict):
                    error = f"not a JSON object: {type(obj).__name__}"
                elif "\\u0000" in text:
                    error = "NUL character in JSON"  # PostgreSQL text and jsonb cannot hold it
            except UnicodeDecodeError as exc:
                text, error = raw.decode("utf-8", "replace").strip(), f"invalid UTF-8: {exc.reason}"
            except ValueError as exc:
                error = f"invalid JSON: {exc}"
            if error:
                unparsed = json.dumps({"_unparsed": text.replace("\x00", "")})
                yield [str(lineno), unparsed, error, *(None for _ in self.columns)]
                continue
            yield [str(lineno), text, None, *(_json_value(obj.get(c)) for c in self.columns)]

    def close(self) -> None:
        self.fh.close()

    def read(self, size: int = -1) -> bytes:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        target = size if size and size > 0 else COPY_CHUNK
        try:
            for row in self._lines:
                writer.writerow(row)
                if buf.tell() >= target:
                    break
        except (OSError, EOFError, zlib.error) as exc:
            raise LoadError(f"{self.path}: cannot read: {exc}") from exc
        return buf.getvalue().encode("utf-8")


def _json_value(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 250.0 is the integer 250
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _stage_source(path: Path, spec: EntitySpec) -> _Staged:
    fh = _open(path)
    if ".jsonl" in path.name:
        columns = ["_line", "_raw", "_error", *spec.column_names]
        return _Staged(columns, _JsonlAsCsv(path, fh, spec), jsonl=True, numbered=True)
    try:
        return _Staged(_csv_header(path, fh, spec), fh, False)
    except BaseException:
        fh.close()
        raise


# ---------------------------------------------------------------------------------------------------
# Validation SQL (generated from the spec)


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _col(name: str, present: set[str]) -> str:
    return f's."{name}"' if name in present else "null::text"


def _shown(expr: str) -> str:
    """The offending value, quoted and shortened, for a reason text."""
    return f"'''' || left({expr}, 60) || ''''"


def _valid_day(expr: str) -> str:
    """Day of month exists (the regex already bounded it to 01–31)."""
    y = f"substr({expr}, 1, 4)::int"
    days = (
        f"case substr({expr}, 6, 2) when '02' then case when ({y} % 4 = 0 and {y} % 100 <> 0) "
        f"or {y} % 400 = 0 then 29 else 28 end when '04' then 30 when '06' then 30 when '09' then 30 "
        f"when '11' then 30 else 31 end"
    )
    return f"(substr({expr}, 9, 2) <= '28' or substr({expr}, 9, 2)::int <= {days})"


def _typed(name: str, pgtype: str, present: set[str]) -> str:
    """Cast expression of a staging column; only evaluated on rows that passed validation."""
    expr = _col(name, present)
    if pgtype == BOOL:
        return f"lower({expr})::boolean"
    return f"{expr}::{pgtype}"


def _ref_alias(i: int) -> str:
    return f"r{i}"


# The digit-blind shapes TS_RE accepts (fractions of 1-9 digits; longer ones go to the regex): a hashed
# ``= any`` of one translate() is a fraction of a regex match per value.
_TS_SHAPES = tuple(
    f"0000-00-00{sep}00:00{sec}{tail}"
    for sep in ("T", "t", " ")
    for sec in ("", ":00", *(":00." + "0" * k for k in range(1, 10)))
    for tail in ("Z", "z", "+00", "-00", "+0000", "-0000", "+00:00", "-00:00")
)


def _cheap_iso_with_offset(e: str) -> str:
    """TS_RE's verdict without a regex per value (only the fast path uses it; its cast follows).

    The shape must be one TS_RE accepts; the digit ranges the cast would not refuse are checked here:
    PostgreSQL reads hour 24 (24:00:00), second 60 and years 0001-0999, TS_RE refuses them. Months, days,
    minutes and offsets out of range make the cast fail (then the strict path decides).
    """
    shapes = "array[" + ", ".join(_lit(x) for x in _TS_SHAPES) + "]"
    return (
        f"((translate({e}, '123456789', '000000000') = any({shapes}) or {e} ~ {_lit(TS_RE)}) "
        f"and left({e}, 1) <> '0' and substr({e}, 12, 2) <> '24' "
        f"and (substr({e}, 17, 1) <> ':' or substr({e}, 18, 2) <> '60'))"
    )


def _reason_sql(
    spec: EntitySpec,
    present: set[str],
    jsonl: bool,
    strict: bool,
    lines: bool = True,
    typed_table: str | None = None,
) -> tuple[str, str, str]:
    """(CASE expression giving a row's first problem or null, FROM clause it needs, the same checks as a
    boolean CASE: true for a good row).

    ``strict=False`` is the fast path: cheap shape tests, then PostgreSQL's own casts decide validity; a
    value the cast rejects raises an error and the caller re-runs with ``strict=True``, where regexes
    guard every cast so that no value can raise. Both paths give the same reasons to the same rows.

    ``typed_table``: the rows are already typed there (a direct COPY, whose stream checked the spellings,
    see :mod:`slm_platform.load_scan`); only the checks on values remain. Use the boolean only: the reason
    texts quote text values.
    """
    typed = typed_table is not None
    whens: list[tuple[str, str]] = []
    cast_cols = [(c, t) for c, t in spec.columns if c in present and t in (TSTZ, DATE, INT, SMALLINT)]

    def cast(name: str) -> str:
        # Fast path: each value is cast once, in the subquery below, and reused by every check.
        pgtype = spec.type_of(name)
        if typed:
            return f's."{name}"'
        if strict:
            return f's."{name}"::{"bigint" if pgtype in (INT, SMALLINT) else pgtype}'
        return f's."__t_{name}"'

    if jsonl:
        whens.append(("s._error is not null", "s._error"))
    for k in spec.key:
        whens.append((f"{_col(k, present)} is null", _lit(f"missing key: {k}")))
    for c in spec.required:
        whens.append((f"{_col(c, present)} is null", _lit(f"missing value: {c}")))
    for name, pgtype in spec.columns:
        if name not in present:
            continue
        e = _col(name, present)
        if typed and pgtype in (TSTZ, DATE, BOOL):
            pass  # spelled as the text path accepts (checked on the way in), cast by COPY
        elif pgtype == TSTZ:
            bad = (
                f"case when {e} ~ {_lit(NAIVE_TS_RE)} then {_lit(f'timestamp without offset in {name}: ')} "
                f"else {_lit(f'bad timestamp in {name}: ')} end || {_shown(e)}"
            )
            if strict:
                ok = f"(case when {e} ~ {_lit(TS_RE)} then {_valid_day(e)} else false end)"
            else:
                ok = f"({_cheap_iso_with_offset(e)} and {cast(name)} is not null)"
            whens.append((f"{e} is not null and not {ok}", bad))
        elif pgtype == DATE:
            if strict:
                ok = f"(case when {e} ~ {_lit(DATE_RE)} then {_valid_day(e)} else false end)"
            else:
                shape = f"translate({e}, '123456789', '000000000') = '0000-00-00' and left({e}, 1) <> '0'"
                ok = f"({shape} and {cast(name)} is not null)"
            whens.append((f"{e} is not null and not {ok}", f"{_lit(f'bad date in {name}: ')} || {_shown(e)}"))
        elif pgtype == BOOL:
            # The exact spelling first: lower() goes through wide characters under a non-C collation.
            bad_bool = f"{e} not in ('true', 'false') and lower({e}) not in ('true', 'false')"
            whens.append((bad_bool, f"{_lit(f'bad boolean in {name}: ')} || {_shown(e)}"))
        elif pgtype in (INT, SMALLINT):
            if strict and not typed:
                whens.append((f"{e} !~ {_lit(INT_RE)}", f"{_lit(f'bad integer in {name}: ')} || {_shown(e)}"))
            default = (-32768, 32767) if pgtype == SMALLINT else (-2147483648, 2147483647)
            lo, hi = spec.ranges.get(name, default)
            whens.append(
                (
                    f"{cast(name)} not between {lo} and {hi}",
                    f"{_lit(f'{name} out of range {lo}..{hi}: ')} || {_shown(e)}",
                )
            )
        if name in spec.enums:
            allowed = spec.enums[name]
            in_list = ", ".join(_lit(v) for v in allowed)
            expected = _lit(" (expected one of " + ", ".join(allowed) + ")")
            whens.append((f"{e} not in ({in_list})", f"{_lit(f'bad {name}: ')} || {_shown(e)} || {expected}"))
        if name in spec.pattern_checks:
            regex, what = spec.pattern_checks[name]
            expected = _lit(f" (expected {what})")
            whens.append((f"{e} !~ {_lit(regex)}", f"{_lit(f'bad {name}: ')} || {_shown(e)} || {expected}"))
    joins = []
    for zi, name in enumerate(c for c in spec.zone_columns if c in present):
        joins.append(f'left join (select name from pg_timezone_names) z{zi} on z{zi}.name = s."{name}"')
        shown = _shown(f's."{name}"')
        whens.append(
            (
                f's."{name}" is not null and z{zi}.name is null',
                f"{_lit(f'unknown time zone in {name}: ')} || {shown}",
            )
        )
    for earlier, later in spec.order_checks:
        if earlier in present and later in present:
            whens.append(
                (
                    f"{cast(later)} < {cast(earlier)}",
                    _lit(f"{later} before {earlier}"),
                )
            )
    for ri, ref in enumerate(spec.references):
        if ref.column not in present:
            continue
        alias = _ref_alias(ri)
        target = ENTITY_BY_NAME[ref.entity].table
        joins.append(f'left join {target} {alias} on {alias}."{ref.target_column}" = s."{ref.column}"')
        whens.append(
            (
                f's."{ref.column}" is not null and {alias}."{ref.target_column}" is null',
                f"{_lit(f'unknown {ref.column}: ')} || {_shown(f's.{ref.column}')}",
            )
        )
        if spec.service_of_client and ref.entity == "services" and "client_code" in present:
            whens.append(
                (
                    f"s.client_code is not null and {alias}.client_code <> s.client_code",
                    f"'service_code ' || {_shown('s.service_code')} || ' belongs to client ' || "
                    f"{_shown(f'{alias}.client_code')} || ', not ' || {_shown('s.client_code')}",
                )
            )
    case = "case\n" + "\n".join(f"  when {cond} then {reason}" for cond, reason in whens) + "\nend"
    # The same checks as a boolean: the planner estimates half the rows good (for ``case … is null`` it
    # guesses 0.5 %, and then probes the stored rows' index once per staged row instead of hashing).
    good = "case\n" + "\n".join(f"  when {cond} then false" for cond, _ in whens) + "\nelse true end"
    if typed:
        source = f"{typed_table} s"
    elif strict or not cast_cols:
        source = "pg_temp.stg s"
    else:
        casts = ", ".join(
            f's."{c}"::{"bigint" if t in (INT, SMALLINT) else t} as "__t_{c}"' for c, t in cast_cols
        )
        # Only the columns the checks and the insert read (copying whole staging rows costs).
        kept_cols = [*(["s._line"] if lines else []), *(["s._error"] if jsonl else [])]
        kept_cols += [f's."{c}"' for c in sorted(present)]
        kept = ", ".join(kept_cols)
        source = f"(select {kept}, {casts} from pg_temp.stg s offset 0) s"  # offset 0: cast once per row
    return case, source + "\n" + "\n".join(joins), good


# ---------------------------------------------------------------------------------------------------
# Loading one file


def _copy_error(path: Path, exc: psycopg2.Error, jsonl: bool) -> LoadError:
    context = getattr(exc.diag, "context", None) or ""
    m = re.search(r"line (\d+)", context)
    where = ""
    if m and not jsonl:
        where = f" at line {int(m.group(1)) + 1}"  # COPY counts from the first data line; the header is 1
    msg = (getattr(exc.diag, "message_primary", None) or str(exc)).strip()
    return LoadError(f"{path}: malformed file{where}: {msg}")


class _Steps:
    """Seconds spent per step of a load (reported by the benchmark)."""

    def __init__(self) -> None:
        self.t0 = self.last = time.monotonic()
        self.seconds: dict[str, float] = {}

    def mark(self, step: str) -> None:
        now = time.monotonic()
        self.seconds[step] = round(now - self.last, 3)
        self.last = now


def _create_staging(cur, conn, staged: _Staged) -> None:
    # CSV: no line column yet (an identity costs a sequence call per row: ~8 % of a clean load); the
    # rows' physical order is the file's order, numbered only when a row must be named (_number_lines).
    defs = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL("bigint" if c == "_line" else "text"))
        for c in staged.columns
    )
    cur.execute(sql.SQL("create temp table stg ({}) on commit drop").format(defs).as_string(conn))
    cur.execute("create temp table bad (_line bigint not null, reason text not null) on commit drop")


def _number_lines(cur, staged: _Staged) -> None:
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


def _copy_into_staging(cur, conn, path: Path, staged: _Staged) -> int:
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


def _validate(cur, spec: EntitySpec, present: set[str], jsonl: bool) -> int:
    """Fill ``bad`` with (line, first problem) of every invalid row; returns how many."""
    cur.execute("savepoint slm_validate")
    n_bad = 0
    for strict in VALIDATION_PATHS:
        case, from_clause, _ = _reason_sql(spec, present, jsonl, strict)
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
    keys = ", ".join(_typed(k, spec.type_of(k), present) for k in spec.key)  # typed: 10:00Z = 12:00+02
    order = f"{_typed(spec.updated_at, TSTZ, present)} desc, " if spec.updated_at else ""
    cur.execute(
        f"insert into bad (_line, reason) select _line, {_lit(DUPLICATE_REASON)} from ("
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


def _upsert(cur, spec: EntitySpec, present: set[str], batch_id: int, source: str):
    """Update the keys that exist and changed, then insert the new keys. Returns (rows, max time)."""
    names = spec.column_names
    typed = {c: _typed(c, t, present) for c, t in spec.columns}
    key_match = " and ".join(f"t.{k} = {typed[k]}" for k in spec.key)
    if spec.updated_at:
        changed = f"{typed[spec.updated_at]} > t.{spec.updated_at}"  # strictly newer replaces
    else:
        old_row = ", ".join(f"t.{c}" for c in names if c not in spec.key)
        new_row = ", ".join(typed[c] for c in names if c not in spec.key)
        changed = f"({old_row}) is distinct from ({new_row})"
    sets = ", ".join(f"{c} = {typed[c]}" for c in names if c not in spec.key)
    ret = f"t.{spec.time_column}" if spec.time_column else "null::timestamptz"
    meta = "_batch_id = %(batch)s, _source = %(source)s, _loaded_at = now()"
    params = {"batch": batch_id, "source": source}
    # An update joins on the key first, so casts run only for rows whose key already exists.
    cur.execute(
        f"with u as (update {spec.table} t set {sets}, {meta} from pg_temp.stg s "
        f"where {key_match} and {changed} returning {ret} as w) select count(*), max(w) from u",
        params,
    )
    updated, hw_u = cur.fetchone()
    cols = ", ".join([*names, "_batch_id", "_source", "_loaded_at"])
    values = ", ".join([typed[c] for c in names] + ["%(batch)s", "%(source)s", "now()"])
    exists = f"exists (select 1 from {spec.table} t where {key_match})"
    where = f"where not {exists}"
    cur.execute(
        f"with i as (insert into {spec.table} as t ({cols}) select {values} from pg_temp.stg s {where} "
        f"returning {ret} as w) select count(*), max(w) from i",
        params,
    )
    inserted, hw_i = cur.fetchone()
    high_water = max((h for h in (hw_u, hw_i) if h is not None), default=None)
    return updated + inserted, high_water


def _select_list(spec: EntitySpec, present: set[str]) -> str:
    return ", ".join(_typed_values(spec, present))


def _typed_values(spec: EntitySpec, present: set[str]) -> list[str]:
    """Typed values of a row of the fast path's source (casts already done once, as ``__t_<col>``)."""
    out = []
    for name, pgtype in spec.columns:
        if name not in present:
            out.append(f"null::{pgtype}")
        elif pgtype in (TSTZ, DATE, INT, SMALLINT):
            out.append(f's."__t_{name}"')  # bigint for integers: assignment cast, range already checked
        elif pgtype == BOOL:
            out.append(f"s.\"{name}\" = 'true' or lower(s.\"{name}\") = 'true'")  # validated: true/false
        else:
            out.append(f's."{name}"')
    return out


def _single_pass(cur, spec: EntitySpec, present: set[str], jsonl: bool, batch_id: int, source: str):
    """Validate, cast and write in one statement; (step name, good rows, rows written, high water), or
    None when the step-by-step path must take over.

    - ``single_pass``, into an empty table (a first load): a plain insert; the primary key itself
      catches a key that occurs twice among the good rows. Every good row is new, so the insert's row
      count is the number of good rows and the high water is the maximum of the (formerly empty) table.
    - ``merge``, into a filled table (reruns, increments): see :func:`_merge`.

    A value the fast casts refuse (data error) or a duplicate key (unique violation, or duplicates found
    by the merge) rolls back to the savepoint: nothing of the attempt remains.
    """
    if False not in VALIDATION_PATHS:
        return None
    cur.execute(f"select exists (select 1 from {spec.table})")
    filled = cur.fetchone()[0]
    case, from_clause, good = _reason_sql(spec, present, jsonl, strict=False, lines=False)
    cur.execute("savepoint slm_single_pass")
    try:
        if filled:
            result = _merge(cur, spec, present, good, from_clause, batch_id, source)
        else:
            cols = ", ".join([*spec.column_names, "_batch_id", "_source", "_loaded_at"])
            typed = dict(zip(spec.column_names, _typed_values(spec, present), strict=True))
            key_aside = _set_key_aside(cur, spec)
            order = "" if key_aside else _key_order(spec, typed)
            # A row is good when no check fires (CASE gives null): the very verdicts reasons come from.
            cur.execute(  # no parameters: the LIKE patterns hold '%'
                f"insert into {spec.table} ({cols}) "
                f"select {_select_list(spec, present)}, {int(batch_id)}, {_lit(source)}, now() "
                f"from {from_clause} where ({case}) is null{order}"
            )
            good = cur.rowcount
            if key_aside:  # a key twice among the good rows: unique violation, as with the key in place
                _restore_key(cur, spec, key_aside)
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


def _set_key_aside(cur, spec: EntitySpec, composite_only: bool = True) -> str | None:
    """First load: drop the primary key, to build it after the insert (``composite_only``: only a key of
    several columns; the direct path sets any key aside, an index built once costs less than one kept).

    Composite-key files come in time order, which scatters the inserts all over the key's index; building the
    index once from the loaded rows costs a fraction (1 M checks, server CPU: 3.0 s inserted in key
    order, 4.4 s in file order, 0.9 + 0.5 s inserted then indexed). The table is empty, and the drop
    holds an exclusive lock until commit: readers of this one table wait for its first load. Returns the
    constraint's name, or None (key kept: a view depending on it, say) to insert in key order instead.
    """
    if composite_only and len(spec.key) < 2:
        return None
    cur.execute(
        "select conname from pg_constraint where conrelid = %s::regclass and contype = 'p'", (spec.table,)
    )
    row = cur.fetchone()
    if row is None:
        return None
    cur.execute("savepoint slm_key_aside")
    try:
        cur.execute(
            sql.SQL("alter table {} drop constraint {}")
            .format(sql.SQL(spec.table), sql.Identifier(row[0]))
            .as_string(cur)
        )
    except psycopg2.Error:
        cur.execute("rollback to savepoint slm_key_aside")
        return None
    cur.execute("release savepoint slm_key_aside")
    return row[0]


def _restore_key(cur, spec: EntitySpec, name: str) -> None:
    """Build the primary key set aside by :func:`_set_key_aside` (a duplicate key: unique violation)."""
    cur.execute(
        sql.SQL("alter table {} add constraint {} primary key ({})")
        .format(
            sql.SQL(spec.table),
            sql.Identifier(name),
            sql.SQL(", ").join(sql.Identifier(k) for k in spec.key),
        )
        .as_string(cur)
    )


def _key_order(spec: EntitySpec, exprs: dict[str, str]) -> str:
    """ORDER BY the primary key, for composite keys (code, time…): their files come in time order, which
    scatters the inserts all over the key's index (measured on 1 M checks: 4.4 s of server CPU unsorted,
    3.0 s sorted, sort included). A single-column key (ticket_id) usually arrives in its own order."""
    if len(spec.key) < 2:
        return ""
    return " order by " + ", ".join(exprs[k] for k in spec.key)  # typed: 10:00Z sorts with 12:00+02


def _merge(
    cur,
    spec: EntitySpec,
    present: set[str],
    is_good: str,
    from_clause: str,
    batch_id: int,
    source: str,
    values: list[str] | None = None,
):
    """Validate, compare with the stored rows, update the changed keys and insert the new ones: one
    statement, each value cast once. None if a key occurs twice among the good rows.

    The good rows are materialized once (typed) with what the stored row says about them: new, changed
    (a newer updated_at; for unversioned entities any value differs) or unchanged. Counting them gives
    the good rows; two of them on one stored row are a duplicate key (then the caller rolls the statement
    back). Unchanged rows are not written: a rerun costs reads only.
    """
    names = spec.column_names
    typed = dict(zip(names, values or _typed_values(spec, present), strict=True))
    key_match = " and ".join(f"t.{k} = {typed[k]}" for k in spec.key)
    if spec.updated_at:
        changed = f"{typed[spec.updated_at]} > t.{spec.updated_at}"  # strictly newer replaces
    else:
        old_row = ", ".join(f"t.{c}" for c in names if c not in spec.key)
        new_row = ", ".join(typed[c] for c in names if c not in spec.key)
        changed = f"({old_row}) is distinct from ({new_row})"
    first_key = spec.key[0]
    compared = (
        f"select {', '.join(f'{typed[c]} as {c}' for c in names)}, t.{first_key} is null as _new, "
        f"coalesce({changed}, false) as _changed, t.ctid as _tid "
        f"from {from_clause} left join {spec.table} t on {key_match} where {is_good} offset 0"
    )
    # Unchanged rows keep their key only: a rerun materializes keys, not whole rows.
    kept = ", ".join(c if c in spec.key else f"case when _new or _changed then {c} end as {c}" for c in names)
    good = f"select {kept}, _new, _changed, _tid from ({compared}) c"
    m_key = " and ".join(f"t.{k} = m.{k}" for k in spec.key)
    sets = ", ".join(f"{c} = m.{c}" for c in names if c not in spec.key)
    meta = f"_batch_id = {int(batch_id)}, _source = {_lit(source)}, _loaded_at = now()"
    ret = f"t.{spec.time_column}" if spec.time_column else "null::timestamptz"
    cols = ", ".join([*names, "_batch_id", "_source", "_loaded_at"])
    new_order = _key_order(spec, {k: f"m.{k}" for k in spec.key})
    cur.execute(
        f"with m as materialized ({good}), "
        # Twice a stored key: twice its row (a new key twice fails the insert with a unique violation).
        f"d as (select count(*) - count(distinct m._tid) as n from m where not m._new), "
        f"u as (update {spec.table} t set {sets}, {meta} from m where {m_key} and not m._new and m._changed "
        f"returning {ret} as w), "
        f"i as (insert into {spec.table} as t ({cols}) select {', '.join(f'm.{c}' for c in names)}, "
        f"{int(batch_id)}, {_lit(source)}, now() from m where m._new{new_order} "
        f"returning {ret} as w) "
        f"select (select count(*) from m), (select n from d), (select count(*) from u), "
        f"(select count(*) from i), greatest((select max(w) from u), (select max(w) from i))"
    )
    n_good, n_dup, updated, inserted, high_water = cur.fetchone()
    if n_dup:
        return None
    return "merge", n_good, updated + inserted, high_water


BOOKKEEPING = ("_batch_id", "_source", "_loaded_at")


def _direct_load(cur, conn, spec: EntitySpec, staged: _Staged, batch_id: int, source: str, steps):
    """The clean-file path: ``COPY`` straight into typed columns, then check the typed rows; (step, rows
    read, rows written, high water), or None when the text path must take the file (nothing remains).

    A CSV whose header holds only the entity's columns is streamed through
    :class:`~slm_platform.load_scan.CheckedCsvStream`, which vouches (in this process, while the server
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
    - filled table: COPY into a typed temporary table, then the merge (:func:`_merge`) reads it: no cast left.
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
            key_aside = _set_key_aside(cur, spec, composite_only=False)
            defaults = (f"{int(batch_id)}", _lit(source), "now()")
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
        _, from_clause, good = _reason_sql(spec, present, False, strict=False, typed_table=target)
        high = f"max(s.{spec.time_column})" if spec.time_column else "null::timestamptz"
        cur.execute(f"select count(*) filter (where not ({good})), {high} from {from_clause}")
        n_bad, high_water = cur.fetchone()
        steps.mark("direct_check")
        if n_bad:
            result = None
        elif filled:
            values = [f's."{c}"' for c in spec.column_names]
            # Every row passed: the merge needs neither the checks nor their joins again.
            merged = _merge(cur, spec, present, "true", f"{target} s", batch_id, source, values=values)
            result = None if merged is None else ("direct_merge", *merged[1:])
        else:
            drops = ", ".join(f"alter column {c} drop default" for c in BOOKKEEPING)
            cur.execute(f"alter table {spec.table} {drops}")
            if key_aside:
                _restore_key(cur, spec, key_aside)
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


def _text_load(cur, conn, spec: EntitySpec, path: Path, staged: _Staged, present, batch_id, source, steps):
    """The text path: COPY into text staging, validate set-based, quarantine with reasons, write the good
    rows. Returns (rows read, candidates, rows written, rows refused, rows quarantined, high water)."""
    _create_staging(cur, conn, staged)
    rows_read = _copy_into_staging(cur, conn, path, staged)
    steps.mark("copy")
    single = _single_pass(cur, spec, present, staged.jsonl, batch_id, source) if SINGLE_PASS else None
    if single is not None:
        step, good, loaded, high_water = single
        steps.mark(step)
        n_bad = quarantined = 0
        if good < rows_read:  # some rows were refused: now (only now) find out why
            _number_lines(cur, staged)
            n_bad = _validate(cur, spec, present, staged.jsonl)
            assert n_bad == rows_read - good, (path, n_bad, rows_read, good)
            quarantined = _quarantine(cur, spec, path, staged.jsonl, batch_id, source)
            steps.mark("quarantine")
        return rows_read, good, loaded, n_bad, quarantined, high_water
    _number_lines(cur, staged)
    n_bad = _validate(cur, spec, present, staged.jsonl)
    quarantined = _quarantine(cur, spec, path, staged.jsonl, batch_id, source) if n_bad else 0
    steps.mark("validate")
    n_dup = _mark_duplicates(cur, spec, present)
    quarantined += _quarantine(cur, spec, path, staged.jsonl, batch_id, source) if n_dup else 0
    n_bad += n_dup
    candidates = rows_read - quarantined  # COPY's count less what left staging
    steps.mark("duplicates")
    loaded, high_water = _upsert(cur, spec, present, batch_id, source)
    steps.mark("upsert")
    return rows_read, candidates, loaded, n_bad, quarantined, high_water


def _load_file(conn, spec: EntitySpec, path: Path, source: str) -> BatchResult:
    steps = _Steps()
    staged = _stage_source(path, spec)
    present = set(staged.columns) & set(spec.column_names)
    try:
        with conn.cursor() as cur:
            # One loader per entity at a time: two concurrent loads of one key would otherwise race.
            cur.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"slm_platform.loader.{spec.name}",))
            # Hash joins, the duplicate check and the key sort of a million-row file stay in memory.
            cur.execute("set local work_mem = '256MB'")
            cur.execute("set local maintenance_work_mem = '256MB'")  # a first load's key index build
            # The load is bound by type input functions: JIT compilation of its big CASE is pure overhead.
            cur.execute("set local jit = off")
            # Durability is per file anyway (a lost commit loses batch, rows and watermark together).
            cur.execute("set local synchronous_commit = off")
            cur.execute(
                "insert into raw.load_batches (source, entity, file, started_at, status) "
                "values (%s, %s, %s, clock_timestamp(), 'running') returning batch_id",
                (source, spec.name, str(path)),
            )
            batch_id = cur.fetchone()[0]
            direct = _direct_load(cur, conn, spec, staged, batch_id, source, steps) if DIRECT_COPY else None
            if direct is not None:
                _, rows_read, loaded, high_water = direct
                candidates, n_bad, quarantined = rows_read, 0, 0
            else:
                if DIRECT_COPY and not staged.jsonl:  # the direct path may have read the stream: start again
                    staged.stream.close()
                    staged = _stage_source(path, spec)
                rows_read, candidates, loaded, n_bad, quarantined, high_water = _text_load(
                    cur, conn, spec, path, staged, present, batch_id, source, steps
                )
            unchanged = candidates - loaded
            # Independently obtained counts must add up: COPY's rows, the quarantine insert, the good rows.
            assert quarantined == n_bad, (path, quarantined, n_bad)
            assert 0 <= loaded <= candidates, (path, loaded, candidates)
            assert rows_read == loaded + unchanged + quarantined, (
                path,
                rows_read,
                loaded,
                unchanged,
                quarantined,
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


def _record_failure(conn, spec: EntitySpec, path: Path, source: str, error: str) -> None:
    """Leave a trace of the failed file in raw.load_batches (its data was rolled back)."""
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute(
            "insert into raw.load_batches (source, entity, file, started_at, finished_at, status, error) "
            "values (%s, %s, %s, clock_timestamp(), clock_timestamp(), 'failed', %s)",
            (source, spec.name, str(path), error),
        )
    conn.commit()


def connect(dsn: str):
    conn = psycopg2.connect(dsn)
    conn.set_client_encoding("UTF8")
    with conn.cursor() as cur:
        # Staging lives in temp tables: keep them in memory (must be set before the first temp access).
        cur.execute("set temp_buffers = '128MB'")
    conn.commit()
    return conn


def load_file(dsn: str, path: Path, entity: str, source: str = "canonical") -> BatchResult:
    """Load one file as the given canonical entity (e.g. a file not named after its entity)."""
    spec = ENTITY_BY_NAME[entity]
    conn = connect(dsn)
    try:
        ensure_raw_schema(conn)
        return _load_guarded(conn, spec, Path(path), source)
    finally:
        conn.close()


def _load_guarded(conn, spec: EntitySpec, path: Path, source: str) -> BatchResult:
    try:
        return _load_file(conn, spec, path, source)
    except LoadError as exc:
        _record_failure(conn, spec, path, source, str(exc))
        raise
    except psycopg2.Error as exc:
        err = LoadError(f"{path}: database error while loading {spec.name}: {str(exc).strip()}")
        _record_failure(conn, spec, path, source, str(err))
        raise err from exc


def load_drop(
    dsn: str, drop_dir: Path, source: str = "canonical", log: Log | None = None
) -> list[BatchResult]:
    """Load every canonical file present in ``drop_dir``; one transaction and one batch per file.

    Stops at the first file that cannot be loaded at all (raising :class:`LoadError` naming it); files
    loaded before it stay committed. Bad rows are not errors: they are quarantined and counted.
    """
    drop_dir = Path(drop_dir)
    if not drop_dir.is_dir():
        raise LoadError(f"{drop_dir}: not a directory")
    files = drop_files(drop_dir)
    say = log or (lambda _msg: None)
    for name in _ignored_files(drop_dir, [p for _, p in files]):
        say(f"{name}: not a canonical data file, ignored")
    if not files:
        say(f"{drop_dir}: no canonical file found")
        return []
    results = []
    conn = connect(dsn)
    try:
        ensure_raw_schema(conn)
        for spec, path in files:
            r = _load_guarded(conn, spec, path, source)
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
    return results
