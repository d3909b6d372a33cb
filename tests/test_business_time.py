"""Business time: the window table + the ``business_minute_mark`` macro's SQL against hand-computed figures
(worked examples 1-3 and edge cases) and against ``slm_platform.reference.business_time`` (an independent
day-by-day walk) on thousands of random tickets; then the clock rules
of ``fct_ticket_sla`` on hand-made tickets."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg2
import pytest
import yaml

from slm_platform.contracts.catalogue import load_catalogue
from slm_platform.contracts.load import load_contracts
from slm_platform.reference.business_time import business_minutes, install_dbt_business_time, render_macro
from slm_platform.settings import REPO_ROOT
from slm_platform.transform.dbt_runner import dbt, dbt_env

SAMPLE = REPO_ROOT / "contracts" / "catalogue.yaml"
PARIS, NEW_YORK, BERLIN = ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin")
# Extra calendars that put DST changes inside open hours (the sample's business hours never touch 02:00).
EXTRA_CALENDARS = [
    {"code": "PARIS-NIGHT", "timezone": "Europe/Paris",
     "hours": {d: ["01:00-04:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}},
    {"code": "NY-ALLDAY", "timezone": "America/New_York",
     "hours": {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
     "holidays": "US"},
]
LOAD_START, LOAD_END = date(2024, 1, 1), date(2028, 12, 31)


def extended_catalogue(tmp_path: Path) -> Path:
    data = yaml.safe_load(SAMPLE.read_text())
    data["calendars"] += EXTRA_CALENDARS
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture()
def windows_db(fresh_db: str, tmp_path: Path) -> Iterator[psycopg2.extensions.connection]:
    counts = load_contracts(fresh_db, extended_catalogue(tmp_path), LOAD_START, LOAD_END)
    assert counts["contract_calendars"] == 6 and counts["calendar_windows"] > 10_000
    conn = psycopg2.connect(fresh_db)
    install_dbt_business_time(conn)  # the real model files: the windows view and the day table
    yield conn
    conn.close()


def sql_business_minutes(conn, tickets: list[tuple]) -> list[Decimal]:
    """elapsed = M(stop) - M(start) - sum(M(pause_to) - M(pause_from)), pauses clipped: the mart's formula,
    with the mart's macros (day table join + mark)."""
    mark = lambda day, ts: render_macro("business_minute_mark_on_day", day, "t.calendar_code", ts)  # noqa: E731
    join = lambda day, ts: render_macro("business_day_join", day, "t.calendar_code", ts)  # noqa: E731
    with conn.cursor() as cur:
        cur.execute("create temp table t (id int, calendar_code text, s timestamptz, e timestamptz)"
                    " on commit drop")
        cur.execute("create temp table p (id int, ps timestamptz, pe timestamptz) on commit drop")
        cur.executemany("insert into t values (%s, %s, %s, %s)", [(i, c, s, e) for i, (c, s, e, _) in
                                                                   enumerate(tickets)])
        cur.executemany("insert into p values (%s, %s, %s)",
                        [(i, ps, pe) for i, (_, _, _, ps_) in enumerate(tickets) for ps, pe in ps_])
        cur.execute(f"""
            with clipped as (
                select t.id, t.calendar_code, greatest(p.ps, t.s) as pf, least(p.pe, t.e) as pt
                from t join p using (id) where p.ps < t.e and p.pe > t.s
            ), paused as (
                select t.id, sum({mark('dt', 't.pt')} - {mark('df', 't.pf')}) as minutes
                from clipped as t {join('df', 't.pf')} {join('dt', 't.pt')} group by t.id
            )
            select {mark('de', 't.e')} - {mark('ds', 't.s')} - coalesce(paused.minutes, 0)
            from t {join('ds', 't.s')} {join('de', 't.e')} left join paused using (id) order by t.id
        """)
        result = [row[0] for row in cur.fetchall()]
    conn.commit()
    return result


def _p(y, mo, d, h, mi, tz=PARIS) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=tz)


# (calendar, start, end, pauses, expected business minutes worked out by hand, why)
CASES = [
    ("FR-BUSINESS", _p(2026, 5, 13, 16, 0), _p(2026, 5, 15, 11, 0),
     [(_p(2026, 5, 15, 9, 0), _p(2026, 5, 15, 10, 0))], 240,
     "worked example 1: Ascension closed, pause inside hours"),
    ("24x7", _p(2026, 3, 29, 1, 30), _p(2026, 3, 29, 4, 30), [], 120, "worked example 2: DST, 24x7"),
    ("FR-BUSINESS", _p(2026, 5, 29, 17, 30), _p(2026, 6, 1, 8, 30), [], 60, "worked example 3: weekend"),
    ("PARIS-NIGHT", _p(2026, 3, 29, 0, 0), _p(2026, 3, 29, 5, 0), [], 120,
     "01:00-04:00 on the spring-forward night lasts 2 real hours"),
    ("PARIS-NIGHT", _p(2026, 10, 25, 0, 0), _p(2026, 10, 25, 5, 0), [], 240,
     "01:00-04:00 on the fall-back night lasts 4 real hours"),
    ("NY-ALLDAY", _p(2026, 11, 1, 0, 0, NEW_YORK), _p(2026, 11, 2, 0, 0, NEW_YORK), [], 1500,
     "a local day of 25 hours (US fall back)"),
    ("NY-ALLDAY", _p(2026, 7, 2, 12, 0, NEW_YORK), _p(2026, 7, 3, 12, 0, NEW_YORK), [], 720,
     "a 00:00-24:00 calendar still closes on a public holiday (Independence Day observed, Fri 3 Jul)"),
    ("FR-BUSINESS", _p(2026, 3, 27, 17, 0), _p(2026, 3, 30, 9, 0), [], 120,
     "business hours across the spring-forward weekend: 07:00Z before, 06:00Z after"),
    ("US-BUSINESS", _p(2026, 3, 6, 17, 0, NEW_YORK), _p(2026, 3, 9, 9, 0, NEW_YORK), [], 120,
     "US DST weekend (8 Mar)"),
    ("FR-BUSINESS", _p(2026, 7, 13, 17, 0), _p(2026, 7, 15, 9, 0), [], 120, "Bastille Day closed"),
    ("FR-BUSINESS", _p(2026, 12, 23, 17, 0), _p(2026, 12, 28, 9, 0), [], 120,
     "24 Dec closed (catalogue), 25 Dec holiday, weekend"),
    ("FR-BUSINESS", _p(2026, 5, 29, 16, 0), _p(2026, 6, 1, 12, 0),
     [(_p(2026, 5, 29, 17, 0), _p(2026, 6, 1, 9, 0))], 240,
     "a pause spanning the weekend only removes its open minutes (60 + 60)"),
    ("FR-BUSINESS", _p(2026, 5, 30, 10, 0), _p(2026, 6, 1, 8, 45), [], 45, "opened on a Saturday"),
    ("FR-BUSINESS", _p(2026, 5, 14, 10, 0), _p(2026, 5, 15, 8, 30), [], 30, "opened on Ascension Day"),
    ("FR-BUSINESS", _p(2026, 5, 12, 19, 0), _p(2026, 5, 12, 23, 0), [], 0, "entirely outside hours"),
    ("DE-BUSINESS", _p(2026, 6, 8, 11, 30, BERLIN), _p(2026, 6, 8, 13, 30, BERLIN), [], 60, "lunch excluded"),
    ("DE-BUSINESS", _p(2026, 6, 12, 15, 30, BERLIN), _p(2026, 6, 15, 8, 30, BERLIN), [], 60,
     "Friday closes at 16:00"),
    ("DE-BUSINESS", _p(2026, 6, 8, 9, 0, BERLIN), _p(2026, 6, 8, 15, 0, BERLIN),
     [(_p(2026, 6, 8, 11, 0, BERLIN), _p(2026, 6, 8, 14, 0, BERLIN))], 180,
     "a pause over the lunch break: 6 h - 1 h lunch - (3 h pause - 1 h lunch)"),
]


def test_worked_examples_and_edge_cases_in_sql_and_reference(windows_db, tmp_path: Path) -> None:
    catalogue = load_catalogue(extended_catalogue(tmp_path))
    got = sql_business_minutes(windows_db, [(c, s, e, p) for c, s, e, p, _, _ in CASES])
    for (cal, start, end, pauses, expected, why), sql_value in zip(CASES, got, strict=True):
        assert sql_value == expected, f"SQL: {why}: {sql_value} != {expected}"
        assert business_minutes(catalogue.calendars[cal], start, end, pauses) == expected, f"reference: {why}"


def test_window_table_shape(windows_db) -> None:
    with windows_db.cursor() as cur:
        # minutes_before is the running sum of the earlier windows, and windows never overlap.
        cur.execute("""
            select count(*) from (
                select minutes_before,
                       coalesce(sum(extract(epoch from window_end - window_start) / 60) over w, 0) as running,
                       lag(window_end) over (partition by calendar_code order by window_start) as prev_end,
                       window_start
                from raw.calendar_windows
                window w as (partition by calendar_code order by window_start
                             rows between unbounded preceding and 1 preceding)
            ) x where minutes_before <> running or prev_end > window_start
        """)
        assert cur.fetchone()[0] == 0
        cur.execute("select indexdef from pg_indexes where tablename = 'calendar_windows'")
        indexes = " ".join(r[0] for r in cur.fetchall())
        assert "(calendar_code, window_start)" in indexes and "(calendar_code, minutes_before)" in indexes
        # Summer and winter hours of FR-BUSINESS in UTC; no window on Ascension Day.
        cur.execute("select window_start, window_end from raw.calendar_windows"
                    " where calendar_code = 'FR-BUSINESS'"
                    " and window_start::date in ('2026-05-13', '2026-05-14', '2026-12-01') order by 1")
        assert cur.fetchall() == [
            (datetime(2026, 5, 13, 6, tzinfo=UTC), datetime(2026, 5, 13, 16, tzinfo=UTC)),
            (datetime(2026, 12, 1, 7, tzinfo=UTC), datetime(2026, 12, 1, 17, tzinfo=UTC)),
        ]


def test_day_table_mark_equals_index_mark(windows_db) -> None:
    """The fast mark (day table) equals the index lookup (business_minute_mark) to the microsecond: on every
    window edge of 2026 and 1 microsecond either side, on random sub-second instants, and outside the loaded
    range (before the first window: 0; after the last: the calendar's total), where it falls back."""
    day = render_macro("business_minute_mark_on_day", "d", "i.calendar_code", "i.ts")
    index = render_macro("business_minute_mark", "i.calendar_code", "i.ts")
    with windows_db.cursor() as cur:
        cur.execute(f"""
            with edges as (
                select calendar_code, unnest(array[window_start, window_end]) as ts
                from raw.calendar_windows where window_start >= '2026-01-01' and window_start < '2027-01-01'
            ), instants as (
                select calendar_code, ts + shift as ts
                from edges cross join unnest(array[interval '-1 microsecond', interval '0',
                                                   interval '1 microsecond']) as shift
                union all
                select c.calendar_code, '2023-06-01'::timestamptz + random() * interval '2400 days'
                from raw.contract_calendars as c cross join generate_series(1, 3000)
                union all
                select c.calendar_code, unnest(array['1990-01-01', '2023-12-31 23:59:59.999999', '2029-01-02',
                                                     '2099-01-01']::timestamptz[])
                from raw.contract_calendars as c
            )
            select count(*), count(*) filter (where day_mark is distinct from index_mark),
                   count(*) filter (where day_calendar is null), min(day_mark)
            from (select d.calendar_code as day_calendar, {day} as day_mark, {index} as index_mark
                  from instants as i {render_macro("business_day_join", "d", "i.calendar_code", "i.ts")}) as x
        """)
        total, differ, outside, lowest = cur.fetchone()
    assert differ == 0, f"{differ} of {total} instants differ"
    assert total > 25_000 and outside >= 4 * 6 and lowest == 0


def test_load_is_idempotent_and_refuses_invalid_catalogue(fresh_db: str, tmp_path: Path) -> None:
    first = load_contracts(fresh_db, SAMPLE, LOAD_START, LOAD_END)
    conn = psycopg2.connect(fresh_db)
    conn.autocommit = True  # an open read transaction would block the loader's truncate
    try:
        with conn.cursor() as cur:
            cur.execute("select md5(string_agg(t::text, '|' order by t::text)) from raw.calendar_windows t")
            digest = cur.fetchone()[0]
        assert load_contracts(fresh_db, SAMPLE, LOAD_START, LOAD_END) == first
        with conn.cursor() as cur:
            cur.execute("select md5(string_agg(t::text, '|' order by t::text)) from raw.calendar_windows t")
            assert cur.fetchone()[0] == digest
            cur.execute("select objective_id, target_minutes, calendar_code from raw.contract_objectives"
                        " where agreement_id = 'SLA-ACME-2026' and valid_from = '2026-07-01'"
                        " and objective_id like '%resolution/incident/P2'")
            assert cur.fetchall() == [("SLA-ACME-2026/resolution/incident/P2", 360, "FR-BUSINESS")]
        bad = tmp_path / "bad.yaml"
        bad.write_text(SAMPLE.read_text().replace("timezone: Europe/Berlin", "timezone: Europe/Nowhere"))
        with pytest.raises(ValueError, match="Europe/Nowhere"):
            load_contracts(fresh_db, bad, LOAD_START, LOAD_END)
        with conn.cursor() as cur:  # the refused catalogue wrote nothing
            cur.execute("select count(*) from raw.contract_calendars where calendar_code = 'DE-BUSINESS'")
            assert cur.fetchone()[0] == 1
    finally:
        conn.close()


def random_tickets(n: int, seed: int = 7) -> list[tuple[str, datetime, datetime, list]]:
    """Whole-minute tickets over 2025-2026, lengths from minutes to weeks, 0-3 non-overlapping pauses."""
    rnd = random.Random(seed)
    calendars = ["FR-BUSINESS", "US-BUSINESS", "DE-BUSINESS", "24x7", "PARIS-NIGHT", "NY-ALLDAY"]
    base = datetime(2025, 1, 1, tzinfo=UTC)
    out = []
    for _ in range(n):
        start = base + timedelta(minutes=rnd.randrange(2 * 365 * 1440))
        length = rnd.choice([rnd.randrange(1, 600), rnd.randrange(1, 5 * 1440), rnd.randrange(1, 40 * 1440)])
        end = start + timedelta(minutes=length)
        cuts = sorted(rnd.sample(range(length), 2 * min(length // 2, rnd.randrange(4))))
        pauses = [(start + timedelta(minutes=a), start + timedelta(minutes=b))
                  for a, b in zip(cuts[::2], cuts[1::2], strict=True) if b > a]
        if pauses and rnd.random() < 0.2:  # a pause that began before the clock started is clipped
            pauses[0] = (pauses[0][0] - timedelta(minutes=rnd.randrange(1, 3000)), pauses[0][1])
        out.append((rnd.choice(calendars), start, end, pauses))
    return out


def test_random_tickets_agree_with_reference(windows_db, tmp_path: Path) -> None:
    catalogue = load_catalogue(extended_catalogue(tmp_path))
    tickets = random_tickets(2500)
    got = sql_business_minutes(windows_db, tickets)
    mismatches = []
    for (cal, start, end, pauses), sql_value in zip(tickets, got, strict=True):
        expected = business_minutes(catalogue.calendars[cal], start, end, pauses)
        if Fraction(sql_value) != expected:
            mismatches.append((cal, start, end, pauses, sql_value, expected))
    assert not mismatches, f"{len(mismatches)} disagree, first: {mismatches[:3]}"
    # The sample is not degenerate: most tickets have business time, many have paused time.
    assert sum(1 for v in got if v > 0) > 2000


# ------------------------------------------------------------------------ clock rules, through dbt

CLIENTS = [{"client_code": "ACME", "client_name": "Acme", "timezone": "Europe/Paris", "country": "FR"}]
SERVICES = [{"service_code": "ACME-ERP", "client_code": "ACME", "service_name": "ERP"}]


def _ticket(tid: str, priority: str, opened: datetime, response: datetime | None,
            resolved: datetime | None, status: str) -> dict:
    return {"ticket_id": tid, "client_code": "ACME", "service_code": "ACME-ERP", "ticket_type": "incident",
            "priority": priority, "opened_at": opened, "first_response_at": response, "resolved_at": resolved,
            "status": status, "updated_at": resolved or response or opened}


def _insert(conn, table: str, rows: list[dict]) -> None:
    with conn.cursor() as cur:
        for row in rows:
            cols = [*row, "_batch_id", "_source", "_loaded_at"]
            marks = ", ".join(["%s"] * len(cols))
            cur.execute(f"insert into raw.{table} ({', '.join(cols)}) values ({marks})",
                        [*row.values(), 1, "test", datetime.now(UTC)])
    conn.commit()


def test_clock_rules_in_fct_ticket_sla(fresh_db: str, tmp_path: Path) -> None:
    """Priority change, reopen, pause, breach time, open ticket and cut-off, through the real models."""
    from slm_platform.load.raw_schema import ensure_raw_schema

    # SLA-ACME-2026 v2 (from 2026-07-01) on FR-BUSINESS: P2 response 30, resolution 360; P3 response 120.
    tickets = [
        # Opened P3, raised to P2 later: measured against the P2 objectives from the opening.
        _ticket("PRIO", "P2", _p(2026, 9, 7, 9, 0), _p(2026, 9, 7, 9, 20), _p(2026, 9, 7, 16, 0), "resolved"),
        # Resolved Tue 10:00, reopened Tue 12:00, resolved again Wed 10:00: the clock stops Wed 10:00 and the
        # two resolved hours count: Mon 09-18 (540) + Tue 08-18 (600) + Wed 08-10 (120) = 1260 > 360.
        _ticket("REOPEN", "P2", _p(2026, 9, 7, 9, 0), _p(2026, 9, 7, 9, 10), _p(2026, 9, 9, 10, 0),
                "resolved"),
        # Reopened and still open at the cut-off: no clock stop.
        _ticket("REOPENED-OPEN", "P2", _p(2026, 9, 7, 9, 0), _p(2026, 9, 7, 9, 10), _p(2026, 9, 7, 10, 0),
                "in_progress"),
        # Pending customer Mon 10:00 -> Tue 10:00 (600 open min paused); resolved Tue 17:00.
        # elapsed = (Mon 09-18 540 + Tue 08-17 540) - (Mon 10-18 480 + Tue 08-10 120) = 480 > 360:
        # breached when working minutes reach 360: 60 before the pause, 300 after Tue 10:00 -> Tue 15:00.
        _ticket("PAUSED", "P2", _p(2026, 9, 7, 9, 0), _p(2026, 9, 7, 9, 5), _p(2026, 9, 8, 17, 0),
                "resolved"),
    ]
    events = [
        {"ticket_id": "PRIO", "occurred_at": _p(2026, 9, 7, 10, 0), "field": "priority", "from_value": "P3",
         "to_value": "P2"},
        *[{"ticket_id": "REOPEN", "occurred_at": at, "field": "status", "from_value": a, "to_value": b}
          for at, a, b in [(_p(2026, 9, 8, 10, 0), "in_progress", "resolved"),
                           (_p(2026, 9, 8, 12, 0), "resolved", "in_progress"),
                           (_p(2026, 9, 9, 10, 0), "in_progress", "resolved")]],
        *[{"ticket_id": "REOPENED-OPEN", "occurred_at": at, "field": "status", "from_value": a, "to_value": b}
          for at, a, b in [(_p(2026, 9, 7, 10, 0), "in_progress", "resolved"),
                           (_p(2026, 9, 7, 11, 0), "resolved", "in_progress")]],
        *[{"ticket_id": "PAUSED", "occurred_at": at, "field": "status", "from_value": a, "to_value": b}
          for at, a, b in [(_p(2026, 9, 7, 10, 0), "in_progress", "pending_customer"),
                           (_p(2026, 9, 8, 10, 0), "pending_customer", "in_progress"),
                           (_p(2026, 9, 8, 17, 0), "in_progress", "resolved")]],
    ]
    conn = psycopg2.connect(fresh_db)
    try:
        ensure_raw_schema(conn)
        _insert(conn, "clients", CLIENTS)
        _insert(conn, "services", SERVICES)
        _insert(conn, "tickets", tickets)
        _insert(conn, "ticket_events", events)
    finally:
        conn.close()
    load_contracts(fresh_db, SAMPLE, LOAD_START, LOAD_END)
    as_of = _p(2026, 9, 14, 12, 0)  # Mon 12:00: after every event
    dbt(["build", "--select", "+fct_ticket_sla", "--indirect-selection", "buildable",
         "--vars", json.dumps({"as_of": as_of.isoformat()}),
         "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")], dbt_env(fresh_db))

    conn = psycopg2.connect(fresh_db)
    try:
        with conn.cursor() as cur:
            cur.execute("select ticket_id, objective_id, elapsed_business_minutes, paused_business_minutes,"
                        " is_met, is_breached_open, clock_stopped_at, breached_at, period_month"
                        " from marts_build.fct_ticket_sla")
            fetched = cur.fetchall()
            rows = {(r[0], r[1].split("/")[1]): r[2:] for r in fetched}
            objectives = {r[0]: r[1] for r in fetched if "/resolution/" in r[1]}
    finally:
        conn.close()

    assert set(rows) == {(t, m) for t in ("PRIO", "REOPEN", "REOPENED-OPEN", "PAUSED")
                         for m in ("response", "resolution")}
    assert objectives["PRIO"] == "SLA-ACME-2026/resolution/incident/P2"  # the current priority
    assert rows["PRIO", "resolution"][:3] == (Decimal("420.00"), Decimal("0.00"), False)  # 09:00-16:00 > 360
    assert rows["PRIO", "response"][:3] == (Decimal("20.00"), Decimal("0.00"), True)
    reopen = rows["REOPEN", "resolution"]
    assert reopen[0] == 1260 and reopen[2] is False and reopen[4] == _p(2026, 9, 9, 10, 0)
    assert reopen[5] == _p(2026, 9, 7, 15, 0)  # 360 business minutes after Mon 09:00
    still_open = rows["REOPENED-OPEN", "resolution"]
    # Mon 09-18 (540) + Tue..Fri (4 x 600) + Mon 08-12 (240) to the cut-off, past 360 since Mon 15:00.
    assert still_open[0] == 540 + 4 * 600 + 240
    assert (still_open[2], still_open[3], still_open[4]) == (False, True, None)
    assert still_open[5] == _p(2026, 9, 7, 15, 0) and still_open[6] == date(2026, 9, 1)
    paused = rows["PAUSED", "resolution"]
    assert paused[:3] == (Decimal("480.00"), Decimal("600.00"), False)
    assert paused[5] == _p(2026, 9, 8, 15, 0)
    assert rows["PAUSED", "response"][:3] == (Decimal("5.00"), Decimal("0.00"), True)
