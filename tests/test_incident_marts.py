"""Incident marts on the demo data: the generator knows what it injected, the marts reproduce it exactly.

slm_platform/sources/demo_data.py makes each outage of a monitored service a major P1 incident opened
2-8 minutes after the outage starts, with 1-3 child incidents on the same service (``_month_tickets``),
besides the P1
incidents it flags major at random. This module recomputes, in Python and straight from the drop's CSV files
(not from the warehouse), what every major incident touched: its window, children, affected services and
clients, the down time its window overlaps inside agreed service time (the service's check statuses held as
CANONICAL_FORMAT.md says, plus the reported outages, minus approved maintenance; all the demo's availability
objectives are on 24x7 calendars), and, for the month, quarter and year containing its opening, the
availability with and without those minutes, the error budget and whether the incident turned the period
from met to breached. fct_major_incident and fct_major_incident_impact must reproduce every figure.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from slm_platform.contracts.catalogue import load_catalogue
from slm_platform.contracts.load import DEFAULT_CATALOGUE, load_contracts
from slm_platform.load.loader import load_drop
from slm_platform.settings import PgServer
from slm_platform.sources.demo_data import generate
from slm_platform.transform.dbt_runner import dbt, dbt_env
from tests.conftest import query_dicts, scratch_database

DEMO_START = date(2026, 3, 1)  # March (DST change in Europe and the US) to May 2026
DEMO_MONTHS = 3
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)  # the drop's end
PERIODS = ("month", "quarter", "year")
CHECK_INTERVAL = timedelta(minutes=5)
INCIDENT_MARTS = ("fct_major_incident", "fct_major_incident_impact")

Intervals = list[tuple[datetime, datetime]]


# -- interval arithmetic (sorted disjoint [start, end) lists)
def union(intervals: Intervals) -> Intervals:
    out: Intervals = []
    for start, end in sorted(i for i in intervals if i[0] < i[1]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def intersect(a: Intervals, b: Intervals) -> Intervals:
    out: Intervals = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Intervals, b: Intervals) -> Intervals:
    out: Intervals = []
    for start, end in a:
        cursor = start
        for b_start, b_end in b:
            if b_end <= cursor or b_start >= end:
                continue
            if b_start > cursor:
                out.append((cursor, b_start))
            cursor = max(cursor, b_end)
        if cursor < end:
            out.append((cursor, end))
    return out


def minutes(intervals: Intervals) -> Decimal:
    return Decimal(sum(int((e - s).total_seconds()) for s, e in intervals)) / 60


def rnd(value: Decimal, places: int) -> Decimal:
    """PostgreSQL's round(numeric): half away from zero."""
    return value.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)


def ts(text: str) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def period_bounds(day: date, period_type: str, tz: str) -> tuple[datetime, datetime, date]:
    """[start, end) instants of the period of ``period_type`` containing local ``day``, and its first day."""
    if period_type == "month":
        first, months = day.replace(day=1), 1
    elif period_type == "quarter":
        first, months = date(day.year, (day.month - 1) // 3 * 3 + 1, 1), 3
    else:
        first, months = date(day.year, 1, 1), 12
    y, m = divmod(first.month - 1 + months, 12)
    after = date(first.year + y, m + 1, 1)
    zone = ZoneInfo(tz)
    return (
        datetime.combine(first, datetime.min.time(), zone),
        datetime.combine(after, datetime.min.time(), zone),
        first,
    )


# -- what the drop says
@dataclass
class Drop:
    tickets: dict[str, dict]
    client_tz: dict[str, str]
    service_client: dict[str, str]
    outages: list[tuple[str, datetime, datetime]]
    down: dict[str, Intervals]
    measured: dict[str, Intervals]
    maintenance: dict[str, Intervals]
    measurement_start: datetime
    objectives: dict[str, tuple[str, Decimal]]  # service -> (objective_id, target %)


def _rows(drop: Path, name: str) -> list[dict]:
    with open(drop / f"{name}.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_drop(drop: Path) -> Drop:
    client_tz = {c["client_code"]: c["timezone"] for c in _rows(drop, "clients")}
    service_client = {s["service_code"]: s["client_code"] for s in _rows(drop, "services")}
    tickets = {t["ticket_id"]: t for t in _rows(drop, "tickets")}
    outages = [
        (o["service_code"], ts(o["started_at"]), ts(o["ended_at"]) or AS_OF) for o in _rows(drop, "outages")
    ]
    maintenance: dict[str, Intervals] = defaultdict(list)
    for m in _rows(drop, "maintenance"):
        if m["approved"] == "true":
            maintenance[m["service_code"]].append((ts(m["starts_at"]), ts(m["ends_at"])))

    # A check's status holds until the service's next check, for at most twice the usual interval (5 min).
    checks: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for c in _rows(drop, "checks"):
        checks[c["service_code"]].append((ts(c["checked_at"]), c["status"]))
    down: dict[str, Intervals] = defaultdict(list)
    measured: dict[str, Intervals] = defaultdict(list)
    for service, rows in checks.items():
        rows.sort()
        spacing = Counter(b[0] - a[0] for a, b in zip(rows, rows[1:], strict=False))
        assert spacing.most_common(1)[0][0] == CHECK_INTERVAL
        for k, (at, status) in enumerate(rows):
            held = at + 2 * CHECK_INTERVAL
            if k + 1 < len(rows):
                held = min(held, rows[k + 1][0])
            hold = (at, min(held, AS_OF))
            measured[service].append(hold)
            if status == "down":
                down[service].append(hold)
    for service, start, end in outages:
        down[service].append((start, min(end, AS_OF)))
        measured[service].append((start, min(end, AS_OF)))
    measurement_start = min(s for iv in measured.values() for s, _ in iv)

    catalogue = load_catalogue(DEFAULT_CATALOGUE)
    first_day, last_day = DEMO_START, (AS_OF - timedelta(days=1)).date()
    objectives: dict[str, tuple[str, Decimal]] = {}
    for service, client in service_client.items():
        found = {
            (a.id, o.calendar, o.target_pct, o.measured_by)
            for a in catalogue.agreements
            if a.kind == "SLA"
            and a.party == client
            and (a.services is None or service in a.services)
            and a.valid_from <= last_day
            and (a.valid_to is None or a.valid_to >= first_day)
            for o in a.objectives
            if o.metric == "availability"
        }
        if not found:
            continue
        # One version over the whole drop, on a 24x7 calendar, measured by checks: what this module can
        # recompute without a calendar reference (a business-hours objective would need business_time.py).
        assert len(found) == 1, (service, found)
        ((agreement_id, calendar, target, measured_by),) = found
        assert calendar == "24x7" and measured_by in (None, "checks"), (service, calendar, measured_by)
        versions = [a for a in catalogue.agreements if a.id == agreement_id]
        assert any(a.in_force(first_day) and a.in_force(last_day) for a in versions)
        objectives[service] = (f"{agreement_id}/availability", Decimal(str(target)))
    return Drop(
        tickets,
        client_tz,
        service_client,
        outages,
        {s: union(iv) for s, iv in down.items()},
        {s: union(iv) for s, iv in measured.items()},
        {s: union(iv) for s, iv in maintenance.items()},
        measurement_start,
        objectives,
    )


def majors_of(drop: Drop) -> dict[str, dict]:
    """Every major incident with its window, children and affected services and clients."""
    out = {}
    for t in drop.tickets.values():
        if t["ticket_type"] != "incident" or t["is_major"] != "true" or ts(t["opened_at"]) >= AS_OF:
            continue
        children = sorted(
            c["ticket_id"]
            for c in drop.tickets.values()
            if c["parent_ticket_id"] == t["ticket_id"] and c["ticket_type"] != "complaint"
        )
        services = sorted({t["service_code"], *(drop.tickets[c]["service_code"] for c in children)})
        resolved = ts(t["resolved_at"])
        out[t["ticket_id"]] = {
            "ticket": t,
            "window": [(ts(t["opened_at"]), resolved or AS_OF)],
            "is_resolved": resolved is not None,
            "children": children,
            "services": services,
            "clients": sorted({drop.service_client[s] for s in services}),
        }
    return out


def availability_period(drop: Drop, service: str, start: datetime, end: datetime) -> dict[str, Decimal]:
    """fct_availability's minutes for [start, end) of a 24x7 objective: AST, unmeasured, downtime."""
    span = [(max(start, drop.measurement_start), min(end, AS_OF))]
    agreed = subtract(span, drop.maintenance.get(service, []))
    return {
        "agreed": rnd(minutes(agreed), 2),
        "unmeasured": rnd(minutes(subtract(agreed, drop.measured.get(service, []))), 2),
        "downtime": rnd(minutes(intersect(agreed, drop.down.get(service, []))), 2),
        "agreed_exact": minutes(agreed),
    }


def expected_impact(drop: Drop, majors: dict[str, dict]) -> dict[tuple, dict]:
    """Availability rows of fct_major_incident_impact, keyed (ticket, service, period type, period start)."""
    out = {}
    for ticket_id, major in majors.items():
        opened = major["window"][0][0]
        for service in major["services"]:
            if service not in drop.objectives:
                continue
            objective_id, target = drop.objectives[service]
            tz = drop.client_tz[drop.service_client[service]]
            for period_type in PERIODS:
                start, end, first = period_bounds(opened.astimezone(ZoneInfo(tz)).date(), period_type, tz)
                fig = availability_period(drop, service, start, end)
                span = [(max(start, drop.measurement_start), min(end, AS_OF))]
                agreed = subtract(span, drop.maintenance.get(service, []))
                down = intersect(agreed, drop.down.get(service, []))
                incident = rnd(minutes(intersect(down, major["window"])), 2)
                budget = rnd((100 - target) / 100 * fig["agreed_exact"], 2)
                measured = fig["agreed"] - fig["unmeasured"]
                # A service without monitoring data (GLOBEX-CRM) is all unmeasured: no availability figure.
                with_exact = 100 * (measured - fig["downtime"]) / measured if measured else None
                without_exact = (
                    100 * (measured - (fig["downtime"] - incident)) / measured if measured else None
                )
                out[(ticket_id, service, period_type, first)] = {
                    "client_code": drop.service_client[service],
                    "objective_id": objective_id,
                    "incident_minutes": incident,
                    "error_budget_minutes": budget,
                    "budget_consumed_pct": rnd(100 * incident / budget, 2),
                    "is_met_with": None if with_exact is None else with_exact >= target,
                    "attainment_without_pct": None if without_exact is None else rnd(without_exact, 4),
                    "is_met_without": None if without_exact is None else without_exact >= target,
                    "turned_breached": without_exact is not None and without_exact >= target > with_exact,
                }
    return out


# -- the warehouse
@dataclass
class Built:
    dsn: str
    drop: Path
    run_results: dict


@pytest.fixture(scope="module")
def built(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    tmp = tmp_path_factory.mktemp("incident")
    with scratch_database(pg_server) as dsn:
        generate(tmp / "drop", start=DEMO_START, months=DEMO_MONTHS)
        load_drop(dsn, tmp / "drop")
        load_contracts(dsn)
        select = ["--select", *(f"+{m}" for m in INCIDENT_MARTS), "--indirect-selection", "cautious"]
        dbt(
            [
                "build",
                *select,
                "--vars",
                json.dumps({"as_of": AS_OF.isoformat()}),
                "--target-path",
                str(tmp / "target"),
                "--log-path",
                str(tmp / "logs"),
            ],
            dbt_env(dsn),
        )
        yield Built(dsn, tmp / "drop", json.loads((tmp / "target" / "run_results.json").read_text()))


@pytest.fixture(scope="module")
def drop(built: Built) -> Drop:
    return read_drop(built.drop)


def test_build_ran_the_incident_models_and_their_tests(built: Built) -> None:
    results = {r["unique_id"]: r["status"] for r in built.run_results["results"]}
    assert all(status in ("success", "pass") for status in results.values()), [
        uid for uid, s in results.items() if s not in ("success", "pass")
    ]
    for model in (*INCIDENT_MARTS, "int_major_incident_downtime"):
        assert results[f"model.slm.{model}"] == "success"
    assert any(uid.startswith("unit_test.slm.fct_major_incident_impact.") for uid in results)


def test_every_injected_outage_is_a_major_incident_with_its_children(built: Built, drop: Drop) -> None:
    majors = majors_of(drop)
    marts = {
        r["ticket_id"]: r for r in query_dicts(built.dsn, "select * from marts_build.fct_major_incident")
    }
    assert set(marts) == set(majors)
    injected = 0
    for service, start, _end in drop.outages:
        # _month_tickets: opened 2-8 minutes after the outage starts, 1-3 P2 children on the same service.
        found = [
            m
            for m in majors.values()
            if m["ticket"]["service_code"] == service
            and timedelta(minutes=2) <= ts(m["ticket"]["opened_at"]) - start <= timedelta(minutes=8)
            and m["children"]
        ]
        assert len(found) == 1, (service, start)
        major = found[0]
        assert 1 <= len(major["children"]) <= 3
        row = marts[major["ticket"]["ticket_id"]]
        assert row["priority"] == "P1"
        assert row["affected_services"] == [service]
        assert row["affected_clients"] == [drop.service_client[service]]
        assert row["child_tickets"] == major["children"]
        injected += 1
    assert injected == len(drop.outages) >= DEMO_MONTHS * 2


def test_fct_major_incident_reproduces_what_was_injected(built: Built, drop: Drop) -> None:
    majors = majors_of(drop)
    impact = expected_impact(drop, majors)
    rows = query_dicts(built.dsn, "select * from marts_build.fct_major_incident")
    turned_ticket_rows = {
        r["ticket_id"]: r["turned"]
        for r in query_dicts(
            built.dsn,
            "select ticket_id, count(*) filter (where turned_breached) as turned"
            " from marts_build.fct_major_incident_impact where metric <> 'availability' group by ticket_id",
        )
    }
    with_downtime = 0
    for row in rows:
        major = majors[row["ticket_id"]]
        ticket = major["ticket"]
        assert row["client_code"] == ticket["client_code"]
        assert row["service_code"] == ticket["service_code"]
        assert row["opened_at"] == ts(ticket["opened_at"])
        assert row["resolved_at"] == (ts(ticket["resolved_at"]) if major["is_resolved"] else None)
        assert row["is_resolved"] == major["is_resolved"]
        start, end = major["window"][0]
        assert row["duration_minutes"] == rnd(Decimal(int((end - start).total_seconds())) / 60, 2)
        assert row["affected_services"] == major["services"]
        assert row["affected_clients"] == major["clients"]
        assert row["child_tickets"] == major["children"]
        # Downtime in AST inside the window, per affected service with an availability objective (24x7: AST
        # = real time minus approved maintenance).
        expected = sum(
            (
                minutes(
                    intersect(
                        subtract(
                            intersect(major["window"], [(drop.measurement_start, AS_OF)]),
                            drop.maintenance.get(service, []),
                        ),
                        drop.down.get(service, []),
                    )
                )
                for service in major["services"]
                if service in drop.objectives
            ),
            Decimal(0),
        )
        assert row["downtime_minutes"] == rnd(expected, 2), row["ticket_id"]
        assert row["error_budget_consumed_minutes"] == row["downtime_minutes"]
        with_downtime += expected > 0
        month_rows = [v for k, v in impact.items() if k[0] == row["ticket_id"] and k[2] == "month"]
        if month_rows and not _crosses_a_month(major, drop):
            assert row["max_budget_consumed_pct"] == max(v["budget_consumed_pct"] for v in month_rows)
        # Availability rows recomputed here, ticket rows checked in the last test of this module.
        assert row["objectives_turned_breached"] == sum(
            v["turned_breached"] for k, v in impact.items() if k[0] == row["ticket_id"]
        ) + turned_ticket_rows.get(row["ticket_id"], 0)
        assert row["sip_actions"] == (1 if major["is_resolved"] and end + timedelta(days=1) < AS_OF else 0)
    # Every injected outage on a service under an availability objective shows as downtime of its incident.
    assert with_downtime >= sum(1 for service, _s, _e in drop.outages if service in drop.objectives) > 0


def _crosses_a_month(major: dict, drop: Drop) -> bool:
    start, end = major["window"][0]
    return any(
        (start.astimezone(ZoneInfo(tz)).year, start.astimezone(ZoneInfo(tz)).month)
        != (end.astimezone(ZoneInfo(tz)).year, end.astimezone(ZoneInfo(tz)).month)
        for tz in drop.client_tz.values()
    )


def test_impact_availability_rows_reproduce_budget_and_breaches(built: Built, drop: Drop) -> None:
    expected = expected_impact(drop, majors_of(drop))
    rows = query_dicts(
        built.dsn, "select * from marts_build.fct_major_incident_impact where metric = 'availability'"
    )
    actual = {(r["ticket_id"], r["service_code"], r["period_type"], r["period_start"]): r for r in rows}
    assert set(actual) == set(expected)
    for key, want in expected.items():
        got = actual[key]
        assert {k: got[k] for k in want} == want, key
    turned = [k for k, v in expected.items() if v["turned_breached"]]
    # Not a vacuous check: this drop has incidents that cost a client the month, and some that did not.
    assert any(k[2] == "month" for k in turned)
    assert any(not v["turned_breached"] and v["incident_minutes"] > 0 for v in expected.values())


def test_impact_with_figures_equal_fct_availability(built: Built) -> None:
    mismatches = query_dicts(
        built.dsn,
        """
        select i.ticket_id, i.service_code, i.period_type, i.period_start
        from marts_build.fct_major_incident_impact as i
        inner join marts_build.fct_availability as a
            using (service_code, objective_id, period_type, period_start)
        where i.metric = 'availability'
            and (i.attainment_with_pct is distinct from a.availability_pct
                 or i.is_met_with is distinct from a.is_met
                 or i.error_budget_minutes is distinct from a.error_budget_minutes)
        """,
    )
    assert mismatches == []


def test_impact_ticket_rows_remove_the_incidents_own_tickets(built: Built, drop: Drop) -> None:
    """Ticket objectives: the period's counted and met (fct_sla_attainment) minus the incident's own tickets
    (itself and its children, as recomputed from the drop) counted there (fct_ticket_sla)."""
    majors = majors_of(drop)
    sla = query_dicts(built.dsn, "select * from marts_build.fct_ticket_sla where period_month is not null")
    by_ticket: dict[str, list[dict]] = defaultdict(list)
    for r in sla:
        by_ticket[r["ticket_id"]].append(r)
    attainment = {
        (r["service_code"], r["objective_id"], r["period_type"], r["period_start"]): r
        for r in query_dicts(built.dsn, "select * from marts_build.fct_sla_attainment")
    }
    rows = query_dicts(
        built.dsn, "select * from marts_build.fct_major_incident_impact where metric <> 'availability'"
    )
    assert rows
    seen = set()
    for row in rows:
        major = majors[row["ticket_id"]]
        tz = drop.client_tz[row["client_code"]]
        _start, _end, first = period_bounds(
            major["window"][0][0].astimezone(ZoneInfo(tz)).date(), row["period_type"], tz
        )
        assert row["period_start"] == first
        own = [
            r
            for t in [row["ticket_id"], *major["children"]]
            for r in by_ticket[t]
            if r["objective_id"] == row["objective_id"]
            and r["service_code"] == row["service_code"]
            and period_bounds(r["period_month"], row["period_type"], tz)[2] == first
        ]
        period = attainment[(row["service_code"], row["objective_id"], row["period_type"], first)]
        counted = period["tickets_counted"] - len(own)
        met = period["tickets_met"] - sum(1 for r in own if r["is_met"])
        assert row["incident_tickets"] == len(own)
        assert row["is_met_with"] == period["is_met"]
        assert row["is_met_without"] == (100 * met >= period["threshold_pct"] * counted)
        assert row["turned_breached"] == (row["is_met_without"] and not row["is_met_with"])
        seen.add(row["ticket_id"])
    assert seen <= {t for t, m in majors.items() if any(by_ticket[x] for x in [t, *m["children"]])}
    assert len(seen) >= len(drop.outages)
