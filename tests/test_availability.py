"""Availability marts on the demo data, recomputed in Python from the raw rows as sets of minutes, and the
incremental check intervals: an incremental nightly run gives what a full rebuild gives.

The Python side shares no code with the dbt models: it reads raw.* and the contract catalogue, expands each
check into the minutes it holds (CANONICAL_FORMAT.md: until the next check, at most twice the usual
interval, here the most frequent spacing within the check's UTC day), and counts minutes per local day with
the independent calendar reference (slm_platform.reference.business_time.open_intervals).
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg2

from slm_platform.contracts.catalogue import load_catalogue
from slm_platform.contracts.load import DEFAULT_CATALOGUE, load_contracts, objective_id
from slm_platform.load.loader import load_drop
from slm_platform.reference.business_time import open_intervals
from slm_platform.sources.demo_data import generate
from slm_platform.transform.dbt_runner import dbt, dbt_env
from tests.conftest import query_dicts

SELECT = ["--select", "+fct_availability", "+fct_outage", "+fct_error_budget_burn"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _minute(ts: datetime) -> int:
    return int((ts - EPOCH).total_seconds() // 60)


def _minutes(start: datetime, end: datetime) -> range:
    return range(_minute(start), _minute(end))


def _dbt(dsn: str, tmp_path: Path, *args: str) -> None:
    dbt(
        [*args, "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")], dbt_env(dsn)
    )


def _q(dsn: str, sql: str) -> list[dict]:
    return query_dicts(dsn, sql)


def _scanned_tables(plan: dict) -> list[tuple[str, str]]:
    """(node type, relation) of every scan in an EXPLAIN (format json) plan tree."""
    found = [(plan["Node Type"], plan["Relation Name"])] if "Relation Name" in plan else []
    for child in plan.get("Plans", []):
        found += _scanned_tables(child)
    return found


def _round(value: Fraction, places: str) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal(places), ROUND_HALF_UP)


def expected_months(dsn: str) -> dict[tuple[str, str, date], dict]:
    """fct_availability's month rows, from raw.* and the catalogue, minute by minute."""
    clients = {r["client_code"]: r["timezone"] for r in _q(dsn, "select * from raw.clients")}
    services = {r["service_code"]: r["client_code"] for r in _q(dsn, "select * from raw.services")}
    checks = defaultdict(list)
    for r in _q(dsn, "select service_code, checked_at, status from raw.checks order by 1, 2"):
        checks[r["service_code"]].append((r["checked_at"], r["status"]))
    outages = _q(dsn, "select * from raw.outages")
    maintenance = _q(dsn, "select * from raw.maintenance where approved")

    cutoff = max(ts for rows in checks.values() for ts, _ in rows)  # default as_of: the latest check
    down: dict[str, set[int]] = defaultdict(set)
    measured: dict[str, set[int]] = defaultdict(set)
    for service, rows in checks.items():
        gaps_by_day: dict[date, Counter] = defaultdict(Counter)
        for (ts, _), (nxt, _) in zip(rows, rows[1:], strict=False):
            if nxt.astimezone(UTC).date() == ts.astimezone(UTC).date():  # spacing within the UTC day
                gaps_by_day[ts.astimezone(UTC).date()][nxt - ts] += 1
        # The usual interval: the most frequent spacing of the day (the smaller one on a tie).
        usual = {d: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for d, c in gaps_by_day.items()}
        for i, (ts, status) in enumerate(rows):
            day = ts.astimezone(UTC).date()
            if day not in usual:
                continue
            held = ts + 2 * usual[day]
            if i + 1 < len(rows):
                held = min(held, rows[i + 1][0])
            span = set(_minutes(ts, min(held, cutoff)))
            measured[service] |= span
            if status == "down":
                down[service] |= span
    for o in outages:
        span = set(_minutes(o["started_at"], min(o["ended_at"] or cutoff, cutoff)))
        down[o["service_code"]] |= span
        measured[o["service_code"]] |= span
    maint: dict[str, set[int]] = defaultdict(set)
    for m in maintenance:
        maint[m["service_code"]] |= set(_minutes(m["starts_at"], m["ends_at"]))
    first = min([rows[0][0] for rows in checks.values()] + [o["started_at"] for o in outages])

    catalogue = load_catalogue(DEFAULT_CATALOGUE)
    open_cache: dict[tuple[str, date], set[int]] = {}

    def open_minutes(code: str, day: date) -> set[int]:
        if (code, day) not in open_cache:
            cal = catalogue.calendars[code]
            open_cache[(code, day)] = {m for s, e in open_intervals(cal, day) for m in _minutes(s, e)}
        return open_cache[(code, day)]

    months: dict[tuple[str, str, date], dict] = {}
    for service, client in services.items():
        tz = ZoneInfo(clients[client])
        for agreement in catalogue.agreements:
            if agreement.kind != "SLA" or agreement.party != client:
                continue
            if agreement.services is not None and service not in agreement.services:
                continue
            for objective in agreement.objectives:
                if objective.metric != "availability":
                    continue
                day = max(agreement.valid_from, first.astimezone(tz).date())
                last = cutoff.astimezone(tz).date()
                if agreement.valid_to is not None:
                    last = min(last, agreement.valid_to)
                while day <= last:
                    start = max(datetime.combine(day, datetime.min.time(), tz), first)
                    end = min(datetime.combine(day + timedelta(days=1), datetime.min.time(), tz), cutoff)
                    day_set = set(_minutes(start, end))
                    cal = catalogue.calendars[objective.calendar]
                    cal_tz = ZoneInfo(cal.timezone)
                    cal_days = {start.astimezone(cal_tz).date() + timedelta(days=k) for k in (-1, 0, 1)}
                    calendar = day_set & set().union(*(open_minutes(cal.code, d) for d in cal_days))
                    agreed = calendar - maint[service]
                    key = (service, objective_id(agreement.id, objective), day.replace(day=1))
                    row = months.setdefault(key, Counter())
                    row["calendar"] += len(calendar)
                    row["agreed"] += len(agreed)
                    row["downtime"] += len(agreed & down[service])
                    row["unmeasured"] += len(agreed - measured[service])
                    row["budget"] += Fraction(100 - Fraction(str(objective.target_pct)), 100) * len(agreed)
                    day += timedelta(days=1)
    return months


def _load_split(dsn: str, tmp_path: Path) -> tuple[Path, date]:
    """Load the demo drop without the checks of its last UTC day; return a drop holding just those."""
    drop = tmp_path / "drop"
    generate(drop)
    with open(drop / "checks.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    last_day = max(datetime.fromisoformat(r[1]).astimezone(UTC).date() for r in body)
    late = [r for r in body if datetime.fromisoformat(r[1]).astimezone(UTC).date() == last_day]
    early = [r for r in body if r not in late]
    for folder, part in ((drop, early), (tmp_path / "increment", late)):
        folder.mkdir(exist_ok=True)
        with open(folder / "checks.csv", "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh, lineterminator="\n").writerows([header, *part])
    load_drop(dsn, drop)
    load_contracts(dsn)
    return tmp_path / "increment", last_day


def test_fct_availability_matches_minute_sets_on_demo_data(fresh_db: str, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    generate(drop)
    load_drop(fresh_db, drop)
    load_contracts(fresh_db)
    _dbt(fresh_db, tmp_path, "build", *SELECT, "--indirect-selection", "buildable")

    expected = expected_months(fresh_db)
    actual = {
        (r["service_code"], r["objective_id"], r["period_start"]): r
        for r in _q(fresh_db, "select * from marts_build.fct_availability where period_type = 'month'")
    }
    assert set(actual) == set(expected)
    # The demo data exercises every part: downtime, maintenance, a monitoring gap, unmonitored services.
    assert sum(e["downtime"] for e in expected.values()) > 0
    assert any(e["unmeasured"] and e["unmeasured"] < e["agreed"] for e in expected.values())
    assert any(e["agreed"] and e["unmeasured"] == e["agreed"] for e in expected.values())
    assert any(e["calendar"] > e["agreed"] for e in expected.values())
    for key, e in expected.items():
        row = actual[key]
        assert row["calendar_minutes"] == e["calendar"], key
        assert row["agreed_minutes"] == e["agreed"], key
        assert row["maintenance_minutes"] == e["calendar"] - e["agreed"], key
        assert row["downtime_minutes"] == e["downtime"], key
        assert row["unmeasured_minutes"] == e["unmeasured"], key
        measured = e["agreed"] - e["unmeasured"]
        if measured:
            assert row["availability_pct"] == _round(
                Fraction(100 * (measured - e["downtime"]), measured), "0.0001"
            ), key
            assert row["coverage_pct"] == _round(Fraction(100 * measured, e["agreed"]), "0.01"), key
        else:
            assert row["availability_pct"] is None and row["is_met"] is None, key
        assert row["error_budget_minutes"] == _round(e["budget"], "0.01"), key
        assert row["error_budget_remaining_minutes"] == _round(e["budget"] - e["downtime"], "0.01"), key
        assert row["coverage_below_99"] == (
            e["agreed"] > 0 and Fraction(measured, e["agreed"]) < Fraction(99, 100)
        )

    # Every downtime minute of a month is in some outage of fct_outage (none of the demo's crosses a month).
    outage_minutes = Counter()
    for o in _q(fresh_db, "select * from marts_build.fct_outage where objective_id is not null"):
        outage_minutes[(o["service_code"], o["objective_id"], o["started_month"])] += o["agreed_minutes"]
    for key, e in expected.items():
        assert outage_minutes.get(key, 0) == e["downtime"], key


def _snapshot(dsn: str) -> dict[str, list[tuple]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            out = {}
            for table, order in (
                (
                    "intermediate.int_check_intervals_merged",
                    "service_code, check_day, interval_start, status, interval_end, last_checked_at,"
                    " checks_count",
                ),
                ("marts_build.fct_availability", "service_code, objective_id, period_type, period_start"),
                ("marts_build.fct_outage", "service_code, outage_start"),
                ("marts_build.fct_error_budget_burn", "service_code, objective_id"),
            ):
                cols = "*" if table.startswith("marts") else order
                cur.execute(f"select {cols} from {table} order by {order}")
                out[table] = cur.fetchall()
            return out
    finally:
        conn.close()


def test_incremental_run_equals_full_rebuild(fresh_db: str, tmp_path: Path) -> None:
    increment, last_day = _load_split(fresh_db, tmp_path)
    _dbt(fresh_db, tmp_path, "run", *SELECT)
    before = _q(fresh_db, "select check_day, xmin::text as xmin from intermediate.int_check_intervals_merged")
    assert max(r["check_day"] for r in before) == last_day - timedelta(days=1)

    # The next night: the last day's checks arrive (a new load batch), and one late correction of an old day.
    load_drop(fresh_db, increment)
    conn = psycopg2.connect(fresh_db)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "update raw.checks set status = 'down',"
                " _batch_id = (select max(batch_id) from raw.load_batches)"
                " where service_code = 'GLOBEX-PORTAL' and checked_at = %s",
                (datetime(2026, 10, 9, 12, 0, tzinfo=UTC),),
            )
            assert cur.rowcount == 1
    finally:
        conn.close()
    _dbt(fresh_db, tmp_path, "run", *SELECT)
    incremental = _snapshot(fresh_db)

    # The increment's query reads raw.checks through indexes only (the new batches through the BRIN index,
    # the changed days through the primary key): a sequential scan would read the whole history every night.
    compiled = next((tmp_path / "target" / "compiled").rglob("int_check_intervals_merged.sql")).read_text()
    assert "batch_id > 0" not in compiled  # compiled as an increment, with the watermark of the first run
    plan = _q(fresh_db, "explain (format json) " + compiled)[0]["QUERY PLAN"][0]["Plan"]
    checks_scans = [node for node, relation in _scanned_tables(plan) if relation == "checks"]
    assert checks_scans and "Seq Scan" not in checks_scans, checks_scans

    # Only the changed days were rewritten; the rest of the history was not touched.
    after = {
        (r["check_day"], r["xmin"])
        for r in _q(
            fresh_db, "select check_day, xmin::text as xmin from intermediate.int_check_intervals_merged"
        )
    }
    kept = {(r["check_day"], r["xmin"]) for r in before}
    rewritten_days = {day for day, xmin in after - kept}
    assert rewritten_days == {last_day, date(2026, 10, 9)}
    assert any(
        r[0] == "GLOBEX-PORTAL" and r[1] == date(2026, 10, 9) and r[3] == "down"
        for r in incremental["intermediate.int_check_intervals_merged"]
    )

    _dbt(fresh_db, tmp_path, "run", *SELECT, "--full-refresh")
    full = _snapshot(fresh_db)
    for table in full:
        assert incremental[table] == full[table], table
    assert len(full["intermediate.int_check_intervals_merged"]) > 100
