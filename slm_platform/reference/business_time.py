"""Reference implementation of business time, for tests and benchmarks only (the warehouse uses the
``business_minute_mark`` dbt macro on ``raw.calendar_windows``).

Deliberately written apart from ``contracts_load`` and in the plainest way: walk the local days of the
calendar's zone that touch [start, end), turn each day's open hours into UTC instants with zoneinfo, and add
up the overlaps. Exact: durations are counted in microseconds and returned as a ``Fraction`` of minutes.

Shared conventions (they are the definition, see ``contracts_load``): holidays and closed days are local
dates; wall-clock hours inside a DST gap or overlap are read with ``fold=0``; overlapping hours count once;
an ``always`` calendar is open 00:00-24:00 every local day, i.e. real minutes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import holidays

from slm_platform.contracts.catalogue import DAYS, Calendar

_MICROS_PER_MINUTE = 60_000_000
_holiday_cache: dict[tuple[str, int], set[date]] = {}


def _is_holiday(country: str, day: date) -> bool:
    key = (country, day.year)
    if key not in _holiday_cache:
        _holiday_cache[key] = set(holidays.country_holidays(country, years=day.year))
    return day in _holiday_cache[key]


def open_intervals(calendar: Calendar, day: date) -> list[tuple[datetime, datetime]]:
    """The calendar's open hours on local date ``day``, as UTC (start, end) pairs."""
    if day in calendar.closed or (calendar.holidays and _is_holiday(calendar.holidays, day)):
        return []
    tz = ZoneInfo(calendar.timezone)
    spans = [(time(0), None)] if calendar.hours is None else calendar.hours.get(DAYS[day.weekday()], ())
    out = []
    for opens, closes in spans:
        start = datetime.combine(day, opens, tzinfo=tz)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz) if closes is None \
            else datetime.combine(day, closes, tzinfo=tz)
        out.append((start.astimezone(UTC), end.astimezone(UTC)))
    return out


def _open_union(calendar: Calendar, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Union of the open intervals of every local day that can touch [start, end]."""
    tz = ZoneInfo(calendar.timezone)
    day = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    spans: list[tuple[datetime, datetime]] = []
    while day <= last:
        spans += [(s, e) for s, e in open_intervals(calendar, day) if e > s]
        day += timedelta(days=1)
    spans.sort()
    union: list[tuple[datetime, datetime]] = []
    for s, e in spans:
        if union and s < union[-1][1]:
            union[-1] = (union[-1][0], max(union[-1][1], e))
        else:
            union.append((s, e))
    return union


def _open_micros(calendar: Calendar, start: datetime, end: datetime) -> int:
    if end <= start:
        return 0
    total = timedelta(0)
    for s, e in _open_union(calendar, start, end):
        overlap = min(e, end) - max(s, start)
        if overlap > timedelta(0):
            total += overlap
    return total // timedelta(microseconds=1)


def _utc(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError(f"naive timestamp {ts}: business time needs an offset")
    return ts.astimezone(UTC)


def business_minutes(
    calendar: Calendar,
    start: datetime,
    end: datetime,
    pauses: Iterable[tuple[datetime, datetime | None]] = (),
) -> Fraction:
    """Open minutes of ``calendar`` in [start, end] minus the open minutes of the pauses inside it.

    Pauses must not overlap each other; a pause without an end runs to ``end``. Timestamps must be aware.
    """
    # Python subtracts and compares two datetimes sharing a tzinfo by wall clock (a DST day would look 24 h
    # long): work in UTC only.
    start, end = _utc(start), _utc(end)
    micros = _open_micros(calendar, start, end)
    for p_start, p_end in pauses:
        p_end_utc = end if p_end is None else _utc(p_end)
        micros -= _open_micros(calendar, max(_utc(p_start), start), min(p_end_utc, end))
    return Fraction(micros, _MICROS_PER_MINUTE)


# ----------------------------------------------------------- the warehouse's SQL, rendered without dbt


def render_macro(name: str, *args: str) -> str:
    """The SQL a ``dbt_project/macros/business_time.sql`` macro renders, ``ref()`` pointing at ``staging``."""
    import jinja2

    from slm_platform.transform.dbt_runner import DBT_PROJECT_DIR

    template = jinja2.Environment().from_string(
        (DBT_PROJECT_DIR / "macros" / "business_time.sql").read_text(),
        globals={"ref": lambda model: f"staging.{model}"},
    )
    return str(getattr(template.module, name)(*args))


def install_dbt_business_time(conn) -> None:
    """Create what the macros read, from the real model files, without running dbt: the view
    ``staging.stg_contracts__calendar_windows`` over ``raw.calendar_windows`` and the table
    ``staging.int_calendar_days`` (analysed). Commits."""
    import jinja2

    from slm_platform.transform.dbt_runner import DBT_PROJECT_DIR

    def model(path: str) -> str:
        return jinja2.Environment().from_string((DBT_PROJECT_DIR / "models" / path).read_text()).render(
            source=lambda _source, table: f"raw.{table}", ref=lambda name: f"staging.{name}"
        )

    with conn.cursor() as cur:
        cur.execute("create schema if not exists staging")
        cur.execute("create or replace view staging.stg_contracts__calendar_windows as "
                    + model("staging/contracts/stg_contracts__calendar_windows.sql"))
        cur.execute("drop table if exists staging.int_calendar_days")
        days = model("intermediate/core/int_calendar_days.sql")
        cur.execute(f"create table staging.int_calendar_days as {days}")
        cur.execute("analyze staging.int_calendar_days")
    conn.commit()
