"""What the loads did, for an operator: recent load batches and what was quarantined, and why.

Reads ``raw.load_batches`` and ``raw.quarantine`` (written by :mod:`slm_platform.load.loader`);
``./slm loads list`` and
``./slm quarantine list`` print them. A quarantine reason quotes the offending value (``bad priority: 'P9'
(expected one of …)``): the summary groups reasons by their kind, the reason with every quoted value
replaced by ``'…'``, so that a thousand bad priorities make one line with their count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# The reason with its quoted values blanked: the kind of problem, whatever the value.
REASON_KIND_SQL = r"regexp_replace(q.reason, '''[^'']*''', '''…''', 'g')"


@dataclass(frozen=True)
class Batch:
    batch_id: int
    started_at: datetime
    source: str
    entity: str
    file: str
    status: str
    rows_read: int | None
    rows_loaded: int | None
    rows_unchanged: int | None
    rows_quarantined: int | None
    seconds: float | None
    error: str | None


@dataclass(frozen=True)
class ReasonCount:
    entity: str
    kind: str
    rows: int
    batches: int
    first_location: str  # file:line of the first such row (lowest batch, then line)


def _filters(entity: str | None, source: str | None, batch: int | None, alias: str) -> tuple[str, list]:
    where, args = [], []
    for column, value in (("entity", entity), ("source", source), ("batch_id", batch)):
        if value is not None:
            where.append(f"{alias}.{column} = %s")
            args.append(value)
    return (" where " + " and ".join(where)) if where else "", args


def recent_batches(conn, last: int = 20, entity: str | None = None, source: str | None = None) -> list[Batch]:
    """The ``last`` load batches (newest first), failed ones included."""
    where, args = _filters(entity, source, None, "b")
    with conn.cursor() as cur:
        cur.execute(
            "select b.batch_id, b.started_at, b.source, b.entity, b.file, b.status, b.rows_read,"
            " b.rows_loaded, b.rows_unchanged, b.rows_quarantined,"
            " extract(epoch from b.finished_at - b.started_at)::float8, b.error"
            f" from raw.load_batches b{where} order by b.batch_id desc limit %s",
            [*args, last],
        )
        return [Batch(*row) for row in cur.fetchall()]


def quarantine_summary(
    conn, batch: int | None = None, entity: str | None = None, source: str | None = None
) -> list[ReasonCount]:
    """Quarantined rows per entity and kind of reason, most frequent first."""
    where, args = _filters(entity, source, batch, "q")
    with conn.cursor() as cur:
        cur.execute(
            f"select q.entity, {REASON_KIND_SQL} as kind, count(*), count(distinct q.batch_id),"
            " (array_agg(q.location order by q.batch_id, q.quarantine_id))[1]"
            f" from raw.quarantine q{where} group by 1, 2 order by 3 desc, 1, 2",
            args,
        )
        return [ReasonCount(*row) for row in cur.fetchall()]


def quarantine_rows(
    conn,
    batch: int | None = None,
    entity: str | None = None,
    source: str | None = None,
    limit: int = 50,
) -> list[tuple[int, str, str, str, dict]]:
    """(batch, entity, location, reason, raw record) of quarantined rows, in load order."""
    where, args = _filters(entity, source, batch, "q")
    with conn.cursor() as cur:
        cur.execute(
            "select q.batch_id, q.entity, q.location, q.reason, q.raw_record"
            f" from raw.quarantine q{where} order by q.batch_id, q.quarantine_id limit %s",
            [*args, limit],
        )
        return list(cur.fetchall())


def format_batches(batches: list[Batch]) -> list[str]:
    head = (
        f"{'batch':>7}  {'started (UTC)':19}  {'source':18} {'entity':14} {'status':6} "
        f"{'read':>9} {'loaded':>9} {'unchanged':>9} {'quarant.':>8} {'seconds':>8}  file"
    )
    lines = [head]
    for b in batches:

        def n(v: int | None) -> str:
            return "" if v is None else str(v)

        lines.append(
            f"{b.batch_id:>7}  {b.started_at:%Y-%m-%d %H:%M:%S}  {b.source[:18]:18} {b.entity[:14]:14} "
            f"{b.status:6} {n(b.rows_read):>9} {n(b.rows_loaded):>9} {n(b.rows_unchanged):>9} "
            f"{n(b.rows_quarantined):>8} {'' if b.seconds is None else f'{b.seconds:.2f}':>8}  "
            f"{b.file.rsplit('/', 1)[-1]}"
        )
        if b.error:
            lines.append(f"{'':9}error: {b.error[:300]}")
    return lines


def format_summary(counts: list[ReasonCount]) -> list[str]:
    if not counts:
        return ["nothing quarantined"]
    lines = [f"{'rows':>7} {'batches':>7}  {'entity':14} reason (first at)"]
    for c in counts:
        lines.append(f"{c.rows:>7} {c.batches:>7}  {c.entity[:14]:14} {c.kind}  ({c.first_location})")
    lines.append(f"{sum(c.rows for c in counts):>7} rows in total")
    return lines
