"""Validation SQL, generated from the entity's spec: the per-column checks that send a row to quarantine
with the reason of its first problem (:func:`reason_sql`), and the typed value of a text column.

Both ways through a file use the same expressions: the text path on text staging (fast casts, or regexes
guarding every cast), the direct path on rows already typed by ``COPY``. So their verdicts agree.
"""

from __future__ import annotations

from slm_platform.canonical import BOOL, DATE, ENTITY_BY_NAME, INT, SMALLINT, TSTZ, EntitySpec

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


def lit(value: str) -> str:
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


def typed_expr(name: str, pgtype: str, present: set[str]) -> str:
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
    shapes = "array[" + ", ".join(lit(x) for x in _TS_SHAPES) + "]"
    return (
        f"((translate({e}, '123456789', '000000000') = any({shapes}) or {e} ~ {lit(TS_RE)}) "
        f"and left({e}, 1) <> '0' and substr({e}, 12, 2) <> '24' "
        f"and (substr({e}, 17, 1) <> ':' or substr({e}, 18, 2) <> '60'))"
    )


def reason_sql(
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
    see :mod:`slm_platform.load.scan`); only the checks on values remain. Use the boolean only: the reason
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
        whens.append((f"{_col(k, present)} is null", lit(f"missing key: {k}")))
    for c in spec.required:
        whens.append((f"{_col(c, present)} is null", lit(f"missing value: {c}")))
    for name, pgtype in spec.columns:
        if name not in present:
            continue
        e = _col(name, present)
        if typed and pgtype in (TSTZ, DATE, BOOL):
            pass  # spelled as the text path accepts (checked on the way in), cast by COPY
        elif pgtype == TSTZ:
            bad = (
                f"case when {e} ~ {lit(NAIVE_TS_RE)} then {lit(f'timestamp without offset in {name}: ')} "
                f"else {lit(f'bad timestamp in {name}: ')} end || {_shown(e)}"
            )
            if strict:
                ok = f"(case when {e} ~ {lit(TS_RE)} then {_valid_day(e)} else false end)"
            else:
                ok = f"({_cheap_iso_with_offset(e)} and {cast(name)} is not null)"
            whens.append((f"{e} is not null and not {ok}", bad))
        elif pgtype == DATE:
            if strict:
                ok = f"(case when {e} ~ {lit(DATE_RE)} then {_valid_day(e)} else false end)"
            else:
                shape = f"translate({e}, '123456789', '000000000') = '0000-00-00' and left({e}, 1) <> '0'"
                ok = f"({shape} and {cast(name)} is not null)"
            whens.append((f"{e} is not null and not {ok}", f"{lit(f'bad date in {name}: ')} || {_shown(e)}"))
        elif pgtype == BOOL:
            # The exact spelling first: lower() goes through wide characters under a non-C collation.
            bad_bool = f"{e} not in ('true', 'false') and lower({e}) not in ('true', 'false')"
            whens.append((bad_bool, f"{lit(f'bad boolean in {name}: ')} || {_shown(e)}"))
        elif pgtype in (INT, SMALLINT):
            if strict and not typed:
                whens.append((f"{e} !~ {lit(INT_RE)}", f"{lit(f'bad integer in {name}: ')} || {_shown(e)}"))
            default = (-32768, 32767) if pgtype == SMALLINT else (-2147483648, 2147483647)
            lo, hi = spec.ranges.get(name, default)
            whens.append(
                (
                    f"{cast(name)} not between {lo} and {hi}",
                    f"{lit(f'{name} out of range {lo}..{hi}: ')} || {_shown(e)}",
                )
            )
        if name in spec.enums:
            allowed = spec.enums[name]
            in_list = ", ".join(lit(v) for v in allowed)
            expected = lit(" (expected one of " + ", ".join(allowed) + ")")
            whens.append((f"{e} not in ({in_list})", f"{lit(f'bad {name}: ')} || {_shown(e)} || {expected}"))
        if name in spec.pattern_checks:
            regex, what = spec.pattern_checks[name]
            expected = lit(f" (expected {what})")
            whens.append((f"{e} !~ {lit(regex)}", f"{lit(f'bad {name}: ')} || {_shown(e)} || {expected}"))
    joins = []
    for zi, name in enumerate(c for c in spec.zone_columns if c in present):
        joins.append(f'left join (select name from pg_timezone_names) z{zi} on z{zi}.name = s."{name}"')
        shown = _shown(f's."{name}"')
        whens.append(
            (
                f's."{name}" is not null and z{zi}.name is null',
                f"{lit(f'unknown time zone in {name}: ')} || {shown}",
            )
        )
    for earlier, later in spec.order_checks:
        if earlier in present and later in present:
            whens.append(
                (
                    f"{cast(later)} < {cast(earlier)}",
                    lit(f"{later} before {earlier}"),
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
                f"{lit(f'unknown {ref.column}: ')} || {_shown(f's.{ref.column}')}",
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
