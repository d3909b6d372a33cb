"""Acceptance figure of issue 4: busiest component under the 99.9 % sample objective.

Runs tools/statuspage_availability_report.py (real import, real contract load, real dbt build on a scratch
database) on the real file and checks every month of GH-ACTIONS against an independent computation from the
raw CSV: the mapping's title patterns and impacts read here with ``re``, windows as sets of UTC minutes
(overlaps count once), maintenance taken out of agreed time, measured from the client's first imported window.
"""

from __future__ import annotations

import csv
import re
import sys
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import statuspage_availability_report as report  # noqa: E402

MAPPING = REPO / "config" / "sources" / "statuspage_github.yaml"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _minute(ts: str) -> int | None:
    try:
        moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    assert moment.second == 0 and moment.microsecond == 0, ts  # the file's windows are whole minutes
    return int((moment - EPOCH).total_seconds()) // 60


def _round(value: Fraction, places: str) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal(places), ROUND_HALF_UP)


def independent_months(service: str, as_of: datetime) -> dict[str, dict]:
    mapping = yaml.safe_load(MAPPING.read_text())
    patterns = {
        s["service_code"]: [re.compile(p, re.IGNORECASE) for p in s["match"]] for s in mapping["services"]
    }
    impacts = mapping["impacts"]
    cutoff = int((as_of - EPOCH).total_seconds()) // 60
    history_start = None
    outage: set[int] = set()
    maintenance: set[int] = set()
    with report.HISTORY.open(newline="") as fh:
        for row in csv.DictReader(fh):
            start, end = _minute(row["downtime_start"]), _minute(row["downtime_end"])
            kind = impacts.get(row["impact"])
            matched = {code for code, pats in patterns.items() if any(p.search(row["title"]) for p in pats)}
            if start is None or end is None or end < start or kind is None or not matched:
                continue  # quarantined by the import: not part of the history
            history_start = start if history_start is None else min(history_start, start)
            if service in matched:
                (outage if kind == "outage" else maintenance).update(range(start, end))
    assert history_start is not None
    months: dict[str, dict] = {}
    month = (EPOCH + timedelta(minutes=history_start)).replace(day=1, hour=0, minute=0)
    while int((month - EPOCH).total_seconds()) // 60 < cutoff:
        nxt = (month + timedelta(days=32)).replace(day=1)
        lo = max(int((month - EPOCH).total_seconds()) // 60, history_start)
        hi = min(int((nxt - EPOCH).total_seconds()) // 60, cutoff)
        window = range(lo, hi)
        maint = sum(1 for m in maintenance if lo <= m < hi)
        down = sum(1 for m in outage if lo <= m < hi and m not in maintenance)
        agreed = len(window) - maint
        exact = Fraction(100 * (agreed - down), agreed)
        months[f"{month:%Y-%m}"] = {
            "agreed_minutes": Decimal(agreed).quantize(Decimal("0.01")),
            "maintenance_minutes": Decimal(maint).quantize(Decimal("0.01")),
            "downtime_minutes": Decimal(down).quantize(Decimal("0.01")),
            "availability_pct": _round(exact, "0.0001"),
            "is_met": exact >= Fraction(999, 10),
            "error_budget_remaining_minutes": _round(Fraction(agreed, 1000) - down, "0.01"),
            "unmeasured_minutes": Decimal("0.00"),
            "coverage_pct": Decimal("100.00"),
        }
        month = nxt
    return months


def test_busiest_component_matches_independent_computation(pg_server) -> None:
    as_of = datetime(2026, 8, 21, tzinfo=UTC)
    service, rows = report.run(pg_server.dsn("postgres"), as_of.isoformat())
    assert service == "GH-ACTIONS"
    expected = independent_months(service, as_of)
    got = {f"{r['period_start']:%Y-%m}": {k: r[k] for k in next(iter(expected.values()))} for r in rows}
    assert list(got) == list(expected)
    for month, figures in expected.items():
        assert got[month] == figures, month
    met = sum(1 for f in expected.values() if f["is_met"])
    lines = report.table(service, rows, as_of.isoformat())
    assert f"Months met: {met} / {len(expected)}." in lines[-1]
