"""fct_ticket_sla on the demo data: every row recomputed in Python from the raw rows and the catalogue, with
the independent business-time reference (slm_platform.reference.business_time)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

from slm_platform.contracts.catalogue import load_catalogue
from slm_platform.contracts.load import DEFAULT_CATALOGUE, load_contracts, objective_id
from slm_platform.load.loader import load_drop
from slm_platform.reference.business_time import business_minutes
from slm_platform.sources.demo_data import generate
from slm_platform.transform.dbt_runner import dbt, dbt_env
from tests.conftest import query_dicts


def _query(dsn: str, sql: str) -> list[dict]:
    return query_dicts(dsn, sql)


def _round2(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal("0.01"), ROUND_HALF_UP)


def test_fct_ticket_sla_matches_python_on_demo_data(fresh_db: str, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    generate(drop)
    load_drop(fresh_db, drop)
    counts = load_contracts(fresh_db)
    assert counts["contract_objectives"] > 40
    dbt(["build", "--select", "+fct_ticket_sla", "--indirect-selection", "buildable",
         "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")], dbt_env(fresh_db))

    catalogue = load_catalogue(DEFAULT_CATALOGUE)
    clients = {r["client_code"]: r["timezone"] for r in _query(fresh_db, "select * from raw.clients")}
    tickets = {r["ticket_id"]: r for r in _query(fresh_db, "select * from raw.tickets")}
    events = defaultdict(list)
    for e in _query(fresh_db, "select * from raw.ticket_events where field = 'status' order by occurred_at"):
        events[e["ticket_id"]].append(e)
    rows = _query(fresh_db, "select * from marts_build.fct_ticket_sla")

    # The cut-off: the latest timestamp loaded (no as_of var given).
    cutoff = max(
        [ts for t in tickets.values() for ts in (t["opened_at"], t["first_response_at"], t["resolved_at"],
                                                 t["closed_at"], t["updated_at"]) if ts is not None]
        + [e["occurred_at"] for evs in events.values() for e in evs]
    )

    # Which (ticket, objective) pairs must exist, straight from the catalogue.
    expected: dict[tuple[str, str], tuple] = {}
    for t in tickets.values():
        opened_on = t["opened_at"].astimezone(ZoneInfo(clients[t["client_code"]])).date()
        for a in catalogue.agreements:
            if a.kind != "SLA" or a.party != t["client_code"] or not a.in_force(opened_on):
                continue
            if a.services is not None and t["service_code"] not in a.services:
                continue
            for o in a.objectives:
                if o.metric in ("response", "resolution") and (o.ticket_type, o.priority) == (
                        t["ticket_type"], t["priority"]):
                    expected[t["ticket_id"], objective_id(a.id, o)] = (a, o)
    assert {(r["ticket_id"], r["objective_id"]) for r in rows} == set(expected)
    assert len(rows) > 300
    metrics = {r["metric"] for r in rows}
    assert metrics == {"response", "resolution"}
    # Every matched ticket whose objective set has both metrics has both rows.
    by_ticket = defaultdict(set)
    for r in rows:
        by_ticket[r["ticket_id"]].add(r["metric"])
    assert sum(1 for m in by_ticket.values() if m == {"response", "resolution"}) > 150

    seen = {"paused": 0, "breached": 0, "open": 0}
    for r in rows:
        t = tickets[r["ticket_id"]]
        agreement, objective = expected[r["ticket_id"], r["objective_id"]]
        calendar = catalogue.calendars[objective.calendar]
        assert r["calendar_code"] == objective.calendar and r["target_minutes"] == objective.target_minutes
        resolved = t["resolved_at"] if t["resolved_at"] is not None and t["resolved_at"] <= cutoff else None
        stop = resolved
        if r["metric"] == "response":
            stop = min((s for s in (t["first_response_at"], resolved) if s is not None), default=None)
        assert r["clock_started_at"] == t["opened_at"] and r["clock_stopped_at"] == stop
        end = stop or cutoff
        status = events[t["ticket_id"]]
        pauses = [(e["occurred_at"], nxt["occurred_at"] if nxt else None)
                  for e, nxt in zip(status, [*status[1:], None], strict=True)
                  if e["to_value"] in agreement.pause_statuses]
        elapsed = business_minutes(calendar, t["opened_at"], end, pauses)
        paused = business_minutes(calendar, t["opened_at"], end) - elapsed
        assert r["elapsed_business_minutes"] == _round2(elapsed), r
        assert r["paused_business_minutes"] == _round2(paused), r
        breached = r["elapsed_business_minutes"] > r["target_minutes"]
        assert r["is_met"] == (not breached if stop is not None else (False if breached else None)), r
        assert r["is_breached_open"] == (stop is None and breached)
        tz = ZoneInfo(clients[t["client_code"]])
        if breached:
            # The earliest instant at which elapsed reached the target.
            b = r["breached_at"]
            at_breach = business_minutes(calendar, t["opened_at"], b, pauses)
            assert abs(at_breach - r["target_minutes"]) < Fraction(1, 600), r  # float seconds in the inverse
            just_before = business_minutes(calendar, t["opened_at"], b - timedelta(seconds=1), pauses)
            assert just_before < r["target_minutes"], r
            seen["breached"] += 1
        else:
            assert r["breached_at"] is None
        counted_at = stop if stop is not None else (r["breached_at"] if breached else None)
        month = None if counted_at is None else date(counted_at.astimezone(tz).year,
                                                     counted_at.astimezone(tz).month, 1)
        assert r["period_month"] == month, r
        seen["paused"] += paused > 0
        seen["open"] += stop is None
    # The demo data exercises pauses, breaches and open tickets.
    assert seen["paused"] > 10 and seen["breached"] > 10 and seen["open"] > 3, seen
    assert isinstance(cutoff, datetime)
