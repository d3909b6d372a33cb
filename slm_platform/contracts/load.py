"""Put the contract catalogue into the warehouse: calendars, their open windows, agreements, objectives.

``load_contracts(dsn)`` validates the catalogue (an invalid one is refused before anything is written) and
replaces four ``raw`` tables in one transaction, so dbt never sees half a catalogue:

- ``raw.contract_calendars``   one row per calendar;
- ``raw.calendar_windows``     one row per open interval, in UTC, with ``minutes_before`` = the open minutes
                               of all earlier windows of the calendar (a running sum: the business-minute
                               mark);
- ``raw.contract_agreements``  one row per agreement version;
- ``raw.contract_objectives``  one row per objective of each version, ``objective_id`` stable across versions.

Windows are computed here, in Python with zoneinfo, because the weekly hours are wall-clock times of the
calendar's own zone: each local day's intervals are converted to UTC separately, so DST days come out right
(a Paris 08:00-18:00 day is 06:00-16:00Z in summer, 07:00-17:00Z in winter). Conventions:
- Public holidays (``holidays.country_holidays``, national ones) and ``closed`` days are local dates with no
  window at all.
- An ``always`` calendar gets one window per local day 00:00-24:00 of its zone, so it counts real minutes
  (23 or 25 h on DST days); with the usual ``timezone: UTC`` that is one window per UTC day. Holidays and
  closed days, if a 24x7 calendar names any, are honoured the same way.
- A wall-clock endpoint that does not exist or exists twice (inside a DST gap or overlap) is read with
  ``fold=0`` (Python's default). Windows that would then overlap are merged, so the running sum never counts
  a minute twice. ``slm_platform.reference.business_time`` (the reference the tests compare with) follows
  the same rules.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg2

from slm_platform.contracts.catalogue import DAYS, Agreement, Calendar, Catalogue, Objective, load_catalogue
from slm_platform.settings import REPO_ROOT

DEFAULT_CATALOGUE = REPO_ROOT / "contracts" / "catalogue.yaml"
DEFAULT_START = date(2010, 1, 1)
DEFAULT_END = date(2035, 12, 31)

DDL = """
create schema if not exists raw;
create table if not exists raw.contract_calendars (
    calendar_code    text primary key,
    timezone         text not null,
    is_always        boolean not null,
    holiday_country  text
);
create table if not exists raw.calendar_windows (
    calendar_code   text not null,
    window_start    timestamptz not null,
    window_end      timestamptz not null,
    minutes_before  bigint not null,
    primary key (calendar_code, window_start),
    check (window_end > window_start)
);
-- The primary key is the (calendar_code, window_start) index the business-minute mark looks up; this one
-- serves the inverse (mark -> instant) used for breach times.
create index if not exists calendar_windows_mark_idx on raw.calendar_windows (calendar_code, minutes_before);
create table if not exists raw.contract_agreements (
    agreement_id    text not null,
    valid_from      date not null,
    valid_to        date,
    kind            text not null check (kind in ('SLA', 'OLA', 'UC')),
    party           text not null,
    services        text[],
    pause_statuses  text[] not null,
    supported_by    text[] not null,
    primary key (agreement_id, valid_from)
);
create table if not exists raw.contract_objectives (
    agreement_id    text not null,
    valid_from      date not null,
    objective_id    text not null,
    metric          text not null,
    ticket_type     text,
    priority        text,
    target_minutes  integer,
    target_pct      numeric,
    calendar_code   text,
    threshold_pct   numeric,
    period          text,
    measured_by     text,
    primary key (agreement_id, valid_from, objective_id)
);
-- Warehouses created before measured_by existed (null for non-availability objectives).
alter table raw.contract_objectives add column if not exists measured_by text;
"""

TABLES = ("contract_calendars", "calendar_windows", "contract_agreements", "contract_objectives")

Window = tuple[datetime, datetime]


# ------------------------------------------------------------------------------------------ windows


@lru_cache(maxsize=256)
def _holiday_dates(country: str, year: int) -> frozenset[date]:
    import holidays  # ~0.3 s to import; only needed when windows are built

    return frozenset(holidays.country_holidays(country, years=year).keys())


def is_closed_day(calendar: Calendar, day: date) -> bool:
    """A public holiday of the calendar's country or one of its extra closed days (local date)."""
    if day in calendar.closed:
        return True
    return calendar.holidays is not None and day in _holiday_dates(calendar.holidays, day.year)


def _local(day: date, at: time | None, tz: ZoneInfo) -> datetime:
    """Wall-clock ``at`` on ``day`` (None = 24:00, i.e. next midnight) as an aware UTC instant (fold=0)."""
    if at is None:
        day, at = day + timedelta(days=1), time(0, 0)
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def day_intervals(calendar: Calendar, day: date) -> list[Window]:
    """Open intervals of one local day, in UTC, unmerged (empty on holidays and closed days)."""
    if is_closed_day(calendar, day):
        return []
    tz = ZoneInfo(calendar.timezone)
    if calendar.hours is None:
        spans: Iterable[tuple[time, time | None]] = ((time(0, 0), None),)
    else:
        spans = calendar.hours.get(DAYS[day.weekday()], ())
    return [(s, e) for s, e in ((_local(day, a, tz), _local(day, b, tz)) for a, b in spans) if e > s]


def merge(windows: Iterable[Window]) -> list[Window]:
    """Sorted union of intervals; touching intervals stay separate (it changes no count)."""
    merged: list[list[datetime]] = []
    for start, end in sorted(windows):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def calendar_windows(calendar: Calendar, start: date, end: date) -> Iterator[tuple[datetime, datetime, int]]:
    """(window_start, window_end, minutes_before) for the local days start..end inclusive."""
    raw: list[Window] = []
    day = start
    while day <= end:
        raw.extend(day_intervals(calendar, day))
        day += timedelta(days=1)
    before = 0
    for w_start, w_end in merge(raw):
        yield w_start, w_end, before
        # Whole minutes: hours are HH:MM and every zone offset since 1970 is a whole number of minutes.
        before += (w_end - w_start) // timedelta(minutes=1)


# ------------------------------------------------------------------------------------------- rows


def objective_id(agreement_id: str, o: Objective) -> str:
    """``<agreement_id>/<metric>[/<ticket_type>][/<priority>]``: the same in every version of an agreement."""
    return "/".join(p for p in (agreement_id, o.metric, o.ticket_type, o.priority) if p)


def _pg_array(values: Iterable[str] | None) -> str | None:
    if values is None:
        return None
    quoted = ['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
    return "{" + ",".join(quoted) + "}"


def _target_minutes(agreement: Agreement, o: Objective) -> int | None:
    if o.target_minutes is None:
        return None
    if not float(o.target_minutes).is_integer():
        raise ValueError(f"{agreement.id} ({agreement.valid_from}): {objective_id(agreement.id, o)}: "
                         f"target_minutes must be whole minutes, got {o.target_minutes}")
    return int(o.target_minutes)


def catalogue_rows(catalogue: Catalogue, start: date, end: date) -> dict[str, list[tuple]]:
    calendars = sorted(catalogue.calendars.values(), key=lambda c: c.code)
    rows: dict[str, list[tuple]] = {t: [] for t in TABLES}
    for cal in calendars:
        rows["contract_calendars"].append((cal.code, cal.timezone, cal.always_open, cal.holidays))
        rows["calendar_windows"].extend(
            (cal.code, ws.isoformat(), we.isoformat(), before)
            for ws, we, before in calendar_windows(cal, start, end)
        )
    for a in sorted(catalogue.agreements, key=lambda a: (a.id, a.valid_from)):
        rows["contract_agreements"].append((
            a.id, a.valid_from, a.valid_to, a.kind, a.party, _pg_array(a.services),
            _pg_array(a.pause_statuses), _pg_array(a.supported_by),
        ))
        for o in a.objectives:
            rows["contract_objectives"].append((
                a.id, a.valid_from, objective_id(a.id, o), o.metric, o.ticket_type, o.priority,
                _target_minutes(a, o), o.target_pct, o.calendar, o.threshold_pct, o.period,
                o.measured_by,
            ))
    return rows


def _copy(cur, table: str, rows: list[tuple]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for row in rows:
        writer.writerow(["\\N" if v is None else v for v in row])
    buf.seek(0)
    cur.copy_expert(f"copy raw.{table} from stdin with (format csv, null '\\N')", buf)


def load_contracts(
    dsn: str,
    catalogue_path: Path | str = DEFAULT_CATALOGUE,
    start: date = DEFAULT_START,
    end: date = DEFAULT_END,
) -> dict[str, int]:
    """Replace the contract tables from the catalogue in one transaction; returns rows written per table.

    Raises ``contracts.CatalogueError`` (nothing written) when the catalogue is invalid. Idempotent: the same
    catalogue gives the same tables. Business minutes are only defined inside [start, end] (local days).
    """
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    catalogue = load_catalogue(catalogue_path)
    rows = catalogue_rows(catalogue, start, end)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:  # commits on success, rolls back on any error
            # Serialise concurrent loads: "create ... if not exists" and the truncate would otherwise race.
            cur.execute("select pg_advisory_xact_lock(hashtext('slm_platform.contracts_load'))")
            cur.execute(DDL)
            cur.execute("truncate " + ", ".join(f"raw.{t}" for t in TABLES))
            for table in TABLES:
                _copy(cur, table, rows[table])
            cur.execute("analyze raw.calendar_windows")
    finally:
        conn.close()
    return {table: len(rows[table]) for table in TABLES}


def main(argv: list[str] | None = None) -> int:
    import argparse

    from slm_platform.settings import warehouse_dsn

    parser = argparse.ArgumentParser(description="Load the contract catalogue into the warehouse.")
    parser.add_argument("catalogue", nargs="?", default=str(DEFAULT_CATALOGUE))
    parser.add_argument("--dsn", default=None)
    args = parser.parse_args(argv)
    counts = load_contracts(args.dsn or warehouse_dsn(), args.catalogue)
    print(", ".join(f"{t}: {n}" for t, n in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
