"""Review periods: parse `2026-10` / `2026-Q4` / `2026`, step back through periods of the same type, and say
which periods a nightly run closes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

PERIOD_TYPES = ("month", "quarter", "year")
_MONTHS = {"month": 1, "quarter": 3, "year": 12}
_PATTERN = re.compile(r"^(?P<year>\d{4})(?:-(?:(?P<month>\d{2})|Q(?P<quarter>[1-4])))?$")


class PeriodError(ValueError):
    """A period that cannot be parsed."""


def _add_months(d: date, months: int) -> date:
    y, m = divmod(d.month - 1 + months, 12)
    return date(d.year + y, m + 1, 1)


@dataclass(frozen=True, order=True)
class Period:
    period_type: str  # month, quarter, year
    start: date  # first day (in the client's time zone, like the marts' period_start)

    @property
    def end(self) -> date:
        """The first day after the period (exclusive end)."""
        return _add_months(self.start, _MONTHS[self.period_type])

    @property
    def last_day(self) -> date:
        return date.fromordinal(self.end.toordinal() - 1)

    @property
    def label(self) -> str:
        if self.period_type == "month":
            return f"{self.start:%Y-%m}"
        if self.period_type == "quarter":
            return f"{self.start.year}-Q{(self.start.month - 1) // 3 + 1}"
        return f"{self.start.year}"

    def previous(self, n: int = 1) -> Period:
        return Period(self.period_type, _add_months(self.start, -n * _MONTHS[self.period_type]))


def parse_period(text: str) -> Period:
    """`2026-10` (month), `2026-Q4` (quarter) or `2026` (year)."""
    m = _PATTERN.match(text.strip())
    if not m or (m["month"] and not 1 <= int(m["month"]) <= 12):
        raise PeriodError(
            f"malformed period {text!r}: expected YYYY-MM, YYYY-Qn or YYYY (e.g. 2026-10, 2026-Q4)"
        )
    year = int(m["year"])
    if m["month"]:
        return Period("month", date(year, int(m["month"]), 1))
    if m["quarter"]:
        return Period("quarter", date(year, (int(m["quarter"]) - 1) * 3 + 1, 1))
    return Period("year", date(year, 1, 1))


def periods_closed_by(interval_end: date) -> list[Period]:
    """The periods a nightly run closes: the run whose data interval ends on the 1st of a month closes that
    month; on the 1st of a quarter, the quarter too; on 1 January, the year too. Other runs close nothing.

    The cut is the run's data interval end (UTC midnight), as for every figure of the run: a client west of
    UTC still has a few hours of the period left then, and its pack says "in progress" (the marts'
    is_period_complete) rather than waiting a day.
    """
    if interval_end.day != 1:
        return []
    month = Period("month", _add_months(interval_end, -1))
    closed = [month]
    if interval_end.month in (1, 4, 7, 10):
        closed.append(Period("quarter", _add_months(interval_end, -3)))
    if interval_end.month == 1:
        closed.append(Period("year", date(interval_end.year - 1, 1, 1)))
    return closed
