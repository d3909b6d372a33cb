"""Service-review marts (docs/design/service_review.md) on a real PostgreSQL and dbt.

1. On four months of demo data (July-October 2026, cut-off 1 November: Q4 and the year in progress), every
   figure of fct_service_review and fct_service_review_objective is recomputed here in Python from the marts
   they are built from (fct_sla_attainment, fct_availability, fct_satisfaction, fct_complaint,
   fct_ticket_volume) and raw.sip_actions; fct_sip_action from raw.sip_actions; and the findings of
   fct_review_finding from the same marts (plus fct_agreement_support, fct_ticket_sla and the per-ticket
   OLA/UC holds), for every client and period type.
2. A small hand-made drop in which each of the seven kinds of finding is planted once (in the month reviews)
   gives exactly those findings.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from slm_platform.contracts.load import load_contracts
from slm_platform.load.loader import load_drop
from slm_platform.settings import PgServer
from slm_platform.sources.demo_data import generate
from slm_platform.transform.dbt_runner import dbt, dbt_env
from tests.conftest import query_dicts, scratch_database

DEMO_START = date(2026, 7, 1)
DEMO_MONTHS = 4
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
PERIODS = ("month", "quarter", "year")
PERIOD_MONTHS = {"month": 1, "quarter": 3, "year": 12}
MIN_RESPONSE_RATE = 20  # dbt var review_min_response_rate_pct, default
REVIEW_MARTS = ("fct_service_review", "fct_service_review_objective", "fct_sip_action", "fct_review_finding")
MARTS = "marts_build"

UNIT_TESTS = {
    "test_fct_service_review_objective_worked_example_9",
    "test_fct_service_review_objective_previous_by_date_not_by_row",
    "test_fct_sip_action_overdue_closed_late_days_open",
    "test_fct_review_finding_breached_two_running",
    "test_fct_review_finding_sla_not_supported",
    "test_fct_review_finding_ola_uc_breach_cause",
    "test_fct_review_finding_satisfaction_below_target",
    "test_fct_review_finding_response_rate_too_low",
    "test_fct_review_finding_coverage_below_threshold",
    "test_fct_review_finding_sip_action_overdue",
    "test_fct_service_review_overall_from_summed_counts",
    "test_int_review_satisfaction_summed_rates_from_summed_counts",
    "test_int_review_ola_uc_breach_causes_share_of_breaches",
}


@dataclass
class Built:
    dsn: str
    run_results: dict


def _build(dsn: str, tmp: Path, as_of: datetime, command: str = "build") -> dict:
    """dbt ``command`` on the review marts and everything they are built from, at the cut-off ``as_of``."""
    select = ["--select", *(f"+{m}" for m in REVIEW_MARTS), "--indirect-selection", "cautious"]
    dbt(
        [
            command,
            *select,
            "--vars",
            json.dumps({"as_of": as_of.isoformat()}),
            "--target-path",
            str(tmp / "target"),
            "--log-path",
            str(tmp / "logs"),
        ],
        dbt_env(dsn),
    )
    return json.loads((tmp / "target" / "run_results.json").read_text())


@pytest.fixture(scope="module")
def built(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    tmp = tmp_path_factory.mktemp("review")
    with scratch_database(pg_server) as dsn:
        generate(tmp / "drop", start=DEMO_START, months=DEMO_MONTHS)
        load_drop(dsn, tmp / "drop")
        load_contracts(dsn)
        yield Built(dsn, _build(dsn, tmp, AS_OF))


# ---------------------------------------------------------------------------------------------- helpers


def _round(value: Fraction | Decimal | int, places: int) -> Decimal:
    """PostgreSQL's round(numeric, n): half away from zero."""
    if isinstance(value, Fraction):
        value = Decimal(value.numerator) / Decimal(value.denominator)
    return Decimal(value).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)


def _add_months(d: date, n: int) -> date:
    y, m = divmod(d.month - 1 + n, 12)
    return date(d.year + y, m + 1, 1)


def _period_start(d: date, period_type: str) -> date:
    if period_type == "month":
        return date(d.year, d.month, 1)
    if period_type == "quarter":
        return date(d.year, (d.month - 1) // 3 * 3 + 1, 1)
    return date(d.year, 1, 1)


def _period_end(start: date, period_type: str) -> date:
    return _add_months(start, PERIOD_MONTHS[period_type]) - timedelta(days=1)


def _previous(start: date, period_type: str) -> date:
    return _add_months(start, -PERIOD_MONTHS[period_type])


def _local_day(ts: datetime, tz: str) -> date:
    return ts.astimezone(ZoneInfo(tz)).date()


def _local_midnight(d: date, tz: str) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz))


def _mart(dsn: str, name: str, where: str = "") -> list[dict]:
    return query_dicts(dsn, f"select * from {MARTS}.{name} {where}")


def _timezones(dsn: str) -> dict[str, str]:
    return {c["client_code"]: c["timezone"] for c in query_dicts(dsn, "select * from raw.clients")}


# ---------------------------------------------------------------------------- independent computations


def expected_sip_actions(dsn: str, as_of: datetime) -> dict[str, dict]:
    """raw.sip_actions as of the cut-off: later actions unseen, later closings not yet happened."""
    tzs = _timezones(dsn)
    out = {}
    for a in query_dicts(dsn, "select * from raw.sip_actions"):
        if a["opened_at"] > as_of:
            continue
        tz = tzs[a["client_code"]]
        closed_later = a["closed_at"] is not None and a["closed_at"] > as_of
        status = "open" if a["status"] == "open" or closed_later else a["status"]
        closed_at = a["closed_at"] if status != "open" else None
        opened_on = _local_day(a["opened_at"], tz)
        closed_on = _local_day(closed_at, tz) if closed_at else None
        as_of_on = _local_day(as_of, tz)
        out[a["action_id"]] = {
            "client_code": a["client_code"],
            "source_type": a["source_type"],
            "source_ref": a["source_ref"],
            "title": a["title"],
            "owner": a["owner"],
            "opened_at": a["opened_at"],
            "opened_on": opened_on,
            "due_on": a["due_on"],
            "status": status,
            "closed_at": closed_at,
            "closed_on": closed_on,
            "is_overdue": status == "open" and a["due_on"] is not None and a["due_on"] < as_of_on,
            "is_closed_late": status != "open"
            and closed_on is not None
            and a["due_on"] is not None
            and closed_on > a["due_on"],
            "days_open": ((closed_on or as_of_on) - opened_on).days,
            "as_of": as_of,
        }
    return out


def _csat_objectives(dsn: str) -> list[dict]:
    return query_dicts(
        dsn,
        """
        select a.party as client_code, a.valid_from, a.valid_to, o.agreement_id, o.objective_id
        from raw.contract_objectives o
        join raw.contract_agreements a on a.agreement_id = o.agreement_id and a.valid_from = o.valid_from
        where o.metric = 'csat' and a.kind = 'SLA'
        """,
    )


def expected_objective_lines(dsn: str) -> dict[tuple, dict]:
    """Key (client, period_type, period_start, objective_id, service_code) -> the line, previous included."""
    lines: dict[tuple, dict] = {}
    for r in _mart(dsn, "fct_sla_attainment"):
        key = (r["client_code"], r["period_type"], r["period_start"], r["objective_id"], r["service_code"])
        lines[key] = {
            "agreement_id": r["agreement_id"],
            "metric": r["metric"],
            "ticket_type": r["ticket_type"],
            "priority": r["priority"],
            "counted": r["tickets_counted"],
            "met": r["tickets_met"],
            "attainment_pct": r["attainment_pct"],
            "target_pct": r["threshold_pct"],
            "is_met": r["is_met"],
        }
    for r in _mart(dsn, "fct_availability", "where period_type <> 'day'"):
        key = (r["client_code"], r["period_type"], r["period_start"], r["objective_id"], r["service_code"])
        lines[key] = {
            "agreement_id": r["agreement_id"],
            "metric": "availability",
            "ticket_type": None,
            "priority": None,
            "counted": int(_round(r["agreed_minutes"], 0)),
            "met": None,
            "attainment_pct": r["availability_pct"],
            "target_pct": r["target_pct"],
            "is_met": r["is_met"],
        }
    judged: dict[tuple, list[dict]] = defaultdict(list)
    for r in _mart(dsn, "fct_satisfaction", "where is_met is not null"):
        judged[(r["client_code"], r["period_type"], r["period_start"])].append(r)
    objectives = _csat_objectives(dsn)
    for (client, pt, start), rows in judged.items():
        end = _period_end(start, pt)
        in_force = [
            o
            for o in objectives
            if o["client_code"] == client
            and o["valid_from"] <= end
            and (o["valid_to"] is None or o["valid_to"] >= start)
        ]
        answers = sum(r["csat_answers"] for r in rows)
        satisfied = sum(r["csat_satisfied"] for r in rows)
        target = max(r["target_pct"] for r in rows)
        key = (client, pt, start, min(o["objective_id"] for o in in_force), None)
        lines[key] = {
            "agreement_id": min(o["agreement_id"] for o in in_force),
            "metric": "csat",
            "ticket_type": None,
            "priority": None,
            "counted": answers,
            "met": satisfied,
            "attainment_pct": _round(Fraction(100 * satisfied, answers), 2),
            "target_pct": target,
            "is_met": 100 * satisfied >= target * answers,
        }
    for (client, pt, start, objective, service), line in lines.items():
        prev = lines.get((client, pt, _previous(start, pt), objective, service))
        line["period_end"] = _period_end(start, pt)
        line["previous_attainment_pct"] = prev["attainment_pct"] if prev else None
        line["previous_is_met"] = prev["is_met"] if prev else None
        line["attainment_change_pts"] = (
            line["attainment_pct"] - prev["attainment_pct"]
            if prev and prev["attainment_pct"] is not None and line["attainment_pct"] is not None
            else None
        )
        line["is_breached_two_running"] = line["is_met"] is False and bool(prev) and prev["is_met"] is False
    return lines


def expected_review_periods(dsn: str, as_of: datetime) -> dict[tuple, dict]:
    """(client, period_type, period_start) of every review: periods with figures, started by the cut-off."""
    tzs = _timezones(dsn)
    months: set[tuple[str, date]] = set()
    for mart, column, where in (
        ("fct_sla_attainment", "period_start", "where period_type = 'month'"),
        ("fct_availability", "period_start", "where period_type = 'month'"),
        ("fct_satisfaction", "period_start", "where period_type = 'month'"),
        ("fct_ticket_volume", "period_month", ""),
        ("fct_complaint", "period_month", ""),
    ):
        months |= {(r["client_code"], r[column]) for r in _mart(dsn, mart, where)}
    for a in query_dicts(dsn, "select client_code, opened_at from raw.sip_actions"):
        if a["opened_at"] <= as_of:
            months.add(
                (a["client_code"], _period_start(_local_day(a["opened_at"], tzs[a["client_code"]]), "month"))
            )
    out = {}
    for client, month in months:
        tz = tzs[client]
        for pt in PERIODS:
            start = _period_start(month, pt)
            if _local_midnight(start, tz) >= as_of:
                continue
            end = _period_end(start, pt)
            end_at = _local_midnight(end + timedelta(days=1), tz)
            state_at = min(end_at, as_of)
            out[(client, pt, start)] = {
                "period_end": end,
                "is_period_complete": end_at <= as_of,
                "state_at": state_at,
                "state_on": _local_day(state_at, tz),
                "tz": tz,
            }
    return out


def expected_findings(dsn: str, as_of: datetime) -> dict[tuple, dict]:
    """Key (client, period_type, period_start, finding_kind, subject) -> audience, figure, threshold."""
    reviews = expected_review_periods(dsn, as_of)
    lines = expected_objective_lines(dsn)
    out: dict[tuple, dict] = {}

    def add(key: tuple, audience: str, figure: Decimal | None, threshold: Decimal | None) -> None:
        if key[:3] in reviews:
            assert key not in out, key
            out[key] = {"audience": audience, "figure": figure, "threshold": threshold}

    for (client, pt, start, objective, service), line in lines.items():
        if line["is_breached_two_running"]:
            subject = objective + (f" {service}" if service else "")
            add(
                (client, pt, start, "breached_two_running", subject),
                "client",
                line["attainment_pct"],
                line["target_pct"],
            )
        if line["metric"] == "csat" and line["is_met"] is False:
            add(
                (client, pt, start, "satisfaction_below_target", objective),
                "client",
                line["attainment_pct"],
                line["target_pct"],
            )

    # sla_not_supported: every SLA version in force during the review; the latest one's chain.
    support = query_dicts(
        dsn,
        f"""
        select s.*, a.party from {MARTS}.fct_agreement_support s
        join raw.contract_agreements a
            on a.agreement_id = s.sla_agreement_id and a.valid_from = s.sla_valid_from
        where a.kind = 'SLA'
        """,
    )
    latest: dict[tuple, dict] = {}
    for (client, pt, start), review in reviews.items():
        for s in support:
            if s["party"] != client or s["sla_valid_from"] > review["period_end"]:
                continue
            if s["sla_valid_to"] is not None and s["sla_valid_to"] < start:
                continue
            key = (client, pt, start, s["sla_objective_id"])
            if key not in latest or s["sla_valid_from"] > latest[key]["sla_valid_from"]:
                latest[key] = s
    for (client, pt, start, objective), s in latest.items():
        if not s["is_supported"]:
            add(
                (client, pt, start, "sla_not_supported", objective),
                "manager",
                Decimal(s["chain_target_minutes"]),
                Decimal(s["sla_target_minutes"]),
            )

    # ola_uc_breach_cause: breached resolution tickets per period, parties whose hold exceeded their target.
    breaches: dict[tuple, set[str]] = defaultdict(set)
    for t in query_dicts(
        dsn,
        f"select client_code, ticket_id, period_month from {MARTS}.fct_ticket_sla "
        "where metric = 'resolution' and period_month is not null and coalesce(is_met, false) = false",
    ):
        for pt in PERIODS:
            breaches[(t["client_code"], pt, _period_start(t["period_month"], pt))].add(t["ticket_id"])
    over_target: dict[str, set[str]] = defaultdict(set)
    for h in query_dicts(
        dsn,
        "select ticket_id, party from intermediate.int_ola_uc_ticket_attainment "
        "where metric = 'resolution' and held_business_minutes > target_minutes",
    ):
        over_target[h["party"]].add(h["ticket_id"])
    for (client, pt, start), tickets in breaches.items():
        for party, held in over_target.items():
            caused = tickets & held
            if caused:
                add(
                    (client, pt, start, "ola_uc_breach_cause", party),
                    "manager",
                    _round(Fraction(100 * len(caused), len(tickets)), 2),
                    None,
                )

    # response_rate_too_low: all survey types summed.
    invitations: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for r in _mart(dsn, "fct_satisfaction"):
        key = (r["client_code"], r["period_type"], r["period_start"])
        invitations[key][0] += r["invitations"]
        invitations[key][1] += r["answers"]
    for (client, pt, start), (sent, answered) in invitations.items():
        if sent > 0 and 100 * answered < MIN_RESPONSE_RATE * sent:
            add(
                (client, pt, start, "response_rate_too_low", "survey response rate"),
                "client",
                _round(Fraction(100 * answered, sent), 2),
                Decimal(MIN_RESPONSE_RATE),
            )

    for r in _mart(dsn, "fct_availability", "where period_type <> 'day' and coverage_below_99"):
        add(
            (
                r["client_code"],
                r["period_type"],
                r["period_start"],
                "coverage_below_threshold",
                f"{r['objective_id']} {r['service_code']}",
            ),
            "client",
            r["coverage_pct"],
            Decimal(99),
        )

    actions = expected_sip_actions(dsn, as_of)
    for (client, pt, start), review in reviews.items():
        for action_id, a in actions.items():
            if a["client_code"] != client or a["due_on"] is None or a["opened_at"] > review["state_at"]:
                continue
            still_open = a["status"] == "open" or a["closed_at"] > review["state_at"]
            if still_open and a["due_on"] < review["state_on"]:
                add(
                    (client, pt, start, "sip_action_overdue", action_id),
                    "client",
                    Decimal((review["state_on"] - a["due_on"]).days),
                    Decimal(0),
                )
    return out


def expected_reviews(dsn: str, as_of: datetime) -> dict[tuple, dict]:
    reviews = expected_review_periods(dsn, as_of)
    lines = expected_objective_lines(dsn)
    findings = expected_findings(dsn, as_of)
    actions = expected_sip_actions(dsn, as_of)
    names = {c["client_code"]: c["client_name"] for c in query_dicts(dsn, "select * from raw.clients")}

    availability: dict[tuple, list[dict]] = defaultdict(list)
    for r in _mart(dsn, "fct_availability", "where period_type <> 'day'"):
        availability[(r["client_code"], r["period_type"], r["period_start"])].append(r)
    satisfaction: dict[tuple, list[dict]] = defaultdict(list)
    for r in _mart(dsn, "fct_satisfaction"):
        satisfaction[(r["client_code"], r["period_type"], r["period_start"])].append(r)
    complaints = _mart(dsn, "fct_complaint")
    volume = _mart(dsn, "fct_ticket_volume")

    out: dict[tuple, dict] = {}
    for key, review in reviews.items():
        client, pt, start = key
        end, tz = review["period_end"], review["tz"]
        mine = [line for k, line in lines.items() if k[:3] == key]
        judged = [line for line in mine if line["is_met"] is not None]
        tickets = [line for line in mine if line["metric"] in ("response", "resolution")]
        counted = sum(line["counted"] for line in tickets)
        met = sum(line["met"] for line in tickets)
        e: dict = {
            "client_name": names[client],
            "period_end": end,
            "period_label": {
                "month": f"{start:%Y-%m}",
                "quarter": f"{start.year}-Q{(start.month + 2) // 3}",
                "year": f"{start.year}",
            }[pt],
            "is_period_complete": review["is_period_complete"],
            "as_of": as_of,
            "objectives_counted": len(judged),
            "objectives_met": sum(1 for line in judged if line["is_met"]),
            "objectives_breached": sum(1 for line in judged if not line["is_met"]),
            "ticket_objectives_met": sum(1 for line in tickets if line["is_met"] is True),
            "ticket_objectives_breached": sum(1 for line in tickets if line["is_met"] is False),
            "availability_objectives_met": sum(
                1 for line in mine if line["metric"] == "availability" and line["is_met"] is True
            ),
            "availability_objectives_breached": sum(
                1 for line in mine if line["metric"] == "availability" and line["is_met"] is False
            ),
            "tickets_counted": counted,
            "tickets_met": met,
            "sla_attainment_pct": _round(Fraction(100 * met, counted), 2) if counted else None,
        }
        av = availability.get(key, [])
        if av:
            agreed = sum(r["agreed_minutes"] for r in av)
            down = sum(r["downtime_minutes"] for r in av)
            unmeasured = sum(r["unmeasured_minutes"] for r in av)
            measured = agreed - unmeasured
            e |= {
                "agreed_minutes": agreed,
                "downtime_minutes": down,
                "unmeasured_minutes": unmeasured,
                "availability_pct": _round(Fraction(100 * (measured - down)) / Fraction(measured), 4)
                if measured
                else None,
                "coverage_pct": _round(Fraction(100 * measured) / Fraction(agreed), 2) if agreed else None,
                "error_budget_minutes": sum(r["error_budget_minutes"] for r in av),
                "error_budget_remaining_minutes": sum(r["error_budget_remaining_minutes"] for r in av),
            }
        else:
            e |= dict.fromkeys(
                (
                    "agreed_minutes",
                    "downtime_minutes",
                    "unmeasured_minutes",
                    "availability_pct",
                    "coverage_pct",
                    "error_budget_minutes",
                    "error_budget_remaining_minutes",
                )
            )
        sat = satisfaction.get(key, [])
        sent = sum(r["invitations"] for r in sat)
        answered = sum(r["answers"] for r in sat)
        csat_n = sum(r["csat_answers"] for r in sat)
        csat_ok = sum(r["csat_satisfied"] for r in sat)
        nps_n = sum(r["nps_answers"] for r in sat)
        nps_net = sum(r["promoters"] - r["detractors"] for r in sat)
        targets = [r["target_pct"] for r in sat if r["target_pct"] is not None]
        e |= {
            "invitations": sent,
            "answers": answered,
            "response_rate_pct": _round(Fraction(100 * answered, sent), 2) if sent else None,
            "csat_answers": csat_n,
            "csat_pct": _round(Fraction(100 * csat_ok, csat_n), 2) if csat_n else None,
            "nps_answers": nps_n,
            "nps": _round(Fraction(100 * nps_net, nps_n), 2) if nps_n else None,
            "csat_target_pct": max(targets) if targets else None,
            "min_response_rate_pct": Decimal(MIN_RESPONSE_RATE),
            "is_response_rate_too_low": sent > 0 and 100 * answered < MIN_RESPONSE_RATE * sent,
        }

        def in_period(d: date | None) -> bool:
            return d is not None and start <= d <= end  # noqa: B023 (used at once, inside this iteration)

        e["complaints_opened"] = sum(
            1 for c in complaints if c["client_code"] == client and in_period(_local_day(c["opened_at"], tz))
        )
        e["complaints_closed"] = sum(
            1
            for c in complaints
            if c["client_code"] == client
            and c["closed_at"] is not None
            and c["closed_at"] <= as_of
            and in_period(_local_day(c["closed_at"], tz))
        )
        e["major_incidents"] = sum(
            v["major_incidents"]
            for v in volume
            if v["client_code"] == client and in_period(v["period_month"])
        )
        state_at, state_on = review["state_at"], review["state_on"]
        client_actions = [a for a in actions.values() if a["client_code"] == client]
        open_then = [
            a
            for a in client_actions
            if a["opened_at"] <= state_at and (a["status"] == "open" or a["closed_at"] > state_at)
        ]
        e |= {
            "sip_actions_opened": sum(1 for a in client_actions if in_period(a["opened_on"])),
            "sip_actions_closed": sum(1 for a in client_actions if in_period(a["closed_on"])),
            "sip_actions_open": len(open_then),
            "sip_actions_overdue": sum(
                1 for a in open_then if a["due_on"] is not None and a["due_on"] < state_on
            ),
            "findings_client": sum(
                1 for k, f in findings.items() if k[:3] == key and f["audience"] == "client"
            ),
            "findings_manager": sum(
                1 for k, f in findings.items() if k[:3] == key and f["audience"] == "manager"
            ),
        }
        out[key] = e
    for (client, pt, start), e in out.items():
        prev = out.get((client, pt, _previous(start, pt)))
        for figure, change in (
            ("sla_attainment_pct", "sla_attainment_change_pts"),
            ("availability_pct", "availability_change_pts"),
            ("csat_pct", "csat_change_pts"),
            ("nps", "nps_change"),
        ):
            before = prev[figure] if prev else None
            e[f"previous_{figure}"] = before
            e[change] = e[figure] - before if before is not None and e[figure] is not None else None
        e["previous_objectives_breached"] = prev["objectives_breached"] if prev else None
    return out


# ------------------------------------------------------------------------------------------ demo data


def test_build_ran_the_review_unit_tests(built: Built) -> None:
    statuses = {r["unique_id"]: r["status"] for r in built.run_results["results"]}
    assert set(statuses.values()) <= {"success", "pass"}, {
        k: v for k, v in statuses.items() if v not in ("success", "pass")
    }
    ran = {uid.rsplit(".", 1)[-1] for uid in statuses if uid.startswith("unit_test.")}
    assert UNIT_TESTS <= ran, UNIT_TESTS - ran


def test_fct_service_review_objective_matches_an_independent_computation(built: Built) -> None:
    rows = _mart(built.dsn, "fct_service_review_objective")
    actual = {
        (r["client_code"], r["period_type"], r["period_start"], r["objective_id"], r["service_code"]): r
        for r in rows
    }
    assert len(actual) == len(rows)
    expected = expected_objective_lines(built.dsn)
    assert actual.keys() == expected.keys()
    for key, e in expected.items():
        a = actual[key]
        assert {c: a[c] for c in e} == e, key
    # The demo's shape: every client, metric and period type is there, and some lines breach twice running.
    assert {k[0] for k in actual} == {"ACME", "GLOBEX", "INITECH"}
    assert {r["metric"] for r in rows} == {"response", "resolution", "availability", "csat"}
    assert {k[1] for k in actual} == set(PERIODS)
    assert any(r["is_breached_two_running"] for r in rows)


def test_fct_service_review_matches_an_independent_computation(built: Built) -> None:
    rows = _mart(built.dsn, "fct_service_review")
    actual = {(r["client_code"], r["period_type"], r["period_start"]): r for r in rows}
    assert len(actual) == len(rows)
    expected = expected_reviews(built.dsn, AS_OF)
    assert actual.keys() == expected.keys()
    mismatches = {
        key: {c: (actual[key][c], v) for c, v in e.items() if actual[key][c] != v}
        for key, e in expected.items()
    }
    assert not {k: v for k, v in mismatches.items() if v}
    # Periods are cut in each client's time zone: the cut-off (1 November 00:00 UTC) is already November in
    # Paris (ACME's availability has its first hour) and still 31 October in New York (GLOBEX's October is in
    # progress; its first checks, at 00:00 UTC on 1 July, fall on 30 June there).
    labels = defaultdict(set)
    for r in rows:
        labels[r["client_code"]].add((r["period_label"], r["is_period_complete"]))
    assert labels["ACME"] == {
        ("2026-07", True),
        ("2026-08", True),
        ("2026-09", True),
        ("2026-10", True),
        ("2026-11", False),
        ("2026-Q3", True),
        ("2026-Q4", False),
        ("2026", False),
    }
    assert labels["GLOBEX"] == {
        ("2026-06", True),
        ("2026-07", True),
        ("2026-08", True),
        ("2026-09", True),
        ("2026-10", False),
        ("2026-Q2", True),
        ("2026-Q3", True),
        ("2026-Q4", False),
        ("2026", False),
    }
    assert any(r["sip_actions_overdue"] for r in rows) and any(r["findings_manager"] for r in rows)


def test_fct_review_finding_matches_an_independent_computation(built: Built) -> None:
    rows = _mart(built.dsn, "fct_review_finding")
    actual = {
        (r["client_code"], r["period_type"], r["period_start"], r["finding_kind"], r["subject"]): r
        for r in rows
    }
    assert len(actual) == len(rows)
    expected = expected_findings(built.dsn, AS_OF)
    assert actual.keys() == expected.keys()
    for key, e in expected.items():
        assert {c: actual[key][c] for c in e} == e, key
    assert len({r["finding_id"] for r in rows}) == len(rows)
    assert all(r["evidence"] and r["suggested_action"] for r in rows)


def test_fct_sip_action_matches_raw_sip_actions(built: Built) -> None:
    rows = _mart(built.dsn, "fct_sip_action")
    actual = {r.pop("action_id"): r for r in rows}
    expected = expected_sip_actions(built.dsn, AS_OF)
    assert actual == expected
    # The demo has actions of each kind of state at the cut-off.
    assert {r["status"] for r in rows} == {"open", "done", "cancelled"}
    assert any(r["is_overdue"] for r in rows) and any(r["is_closed_late"] for r in rows)


# --------------------------------------------------------------------------- planted findings, small drop

PLANTED_AS_OF = datetime(2026, 5, 1, tzinfo=UTC)

PLANTED_CONTRACTS = """
calendars:
  - code: 24x7
    timezone: UTC
    hours: always
agreements:
  # Version 1 (March): P1 resolution 240 min backed by the team's 300 min: not supported.
  - id: SLA-PLT
    kind: SLA
    party: PLT
    valid_from: 2026-01-01
    valid_to: 2026-03-31
    services: [PLT-APP]
    supported_by: [OLA-TEAM]
    objectives:
      - {metric: resolution, ticket_type: incident, priority: P1,
         target_minutes: 240, calendar: 24x7, threshold_pct: 50}
      - {metric: resolution, ticket_type: incident, priority: P2,
         target_minutes: 240, calendar: 24x7, threshold_pct: 50}
      - {metric: availability, target_pct: 99.0, calendar: 24x7, period: month}
      - {metric: csat, target_pct: 85, period: month}
  # Version 2 (from April): P1 relaxed to 480 min, the chain fits.
  - id: SLA-PLT
    kind: SLA
    party: PLT
    valid_from: 2026-04-01
    valid_to: null
    services: [PLT-APP]
    supported_by: [OLA-TEAM]
    objectives:
      - {metric: resolution, ticket_type: incident, priority: P1,
         target_minutes: 480, calendar: 24x7, threshold_pct: 50}
      - {metric: resolution, ticket_type: incident, priority: P2,
         target_minutes: 240, calendar: 24x7, threshold_pct: 50}
      - {metric: availability, target_pct: 99.0, calendar: 24x7, period: month}
      - {metric: csat, target_pct: 85, period: month}
  - id: OLA-TEAM
    kind: OLA
    party: Team
    valid_from: 2026-01-01
    valid_to: null
    objectives:
      - {metric: resolution, ticket_type: incident, priority: P1,
         target_minutes: 300, calendar: 24x7, threshold_pct: 90}
      - {metric: resolution, ticket_type: incident, priority: P2,
         target_minutes: 60, calendar: 24x7, threshold_pct: 90}
"""

# (period_start of the month review, finding_kind, subject): each kind once.
PLANTED = {
    # P2 resolution breached in March (0 of 1) and April (0 of 1).
    (date(2026, 4, 1), "breached_two_running", "SLA-PLT/resolution/incident/P2 PLT-APP"),
    # Version 1 of the SLA is in force in March only.
    (date(2026, 3, 1), "sla_not_supported", "SLA-PLT/resolution/incident/P1"),
    # The team held March's breached P1 ticket 360 min > its 300; no OLA party held the P2 tickets.
    (date(2026, 3, 1), "ola_uc_breach_cause", "Team"),
    # April: 2 answers, both unsatisfied (0 % < 85 %).
    (date(2026, 4, 1), "satisfaction_below_target", "SLA-PLT/csat"),
    # March: 1 answer to 10 invitations (10 % < 20 %), satisfied.
    (date(2026, 3, 1), "response_rate_too_low", "survey response rate"),
    # April: no check on 15 April (coverage 96.81 %).
    (date(2026, 4, 1), "coverage_below_threshold", "SLA-PLT/availability PLT-APP"),
    # Due 20 March, done 10 April: overdue at March's end only.
    (date(2026, 3, 1), "sip_action_overdue", "SIP-1"),
}


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([["" if v is None else v for v in row] for row in rows])


def _planted_drop(drop: Path) -> None:
    drop.mkdir()
    _write_csv(
        drop / "clients.csv",
        ["client_code", "client_name", "timezone", "country"],
        [["PLT", "Planted Ltd", "UTC", "GB"]],
    )
    _write_csv(
        drop / "services.csv",
        ["service_code", "client_code", "service_name", "calendar_code", "criticality"],
        [["PLT-APP", "PLT", "Planted app", "24x7", "high"]],
    )
    ticket_header = [
        "ticket_id",
        "client_code",
        "service_code",
        "ticket_type",
        "priority",
        "opened_at",
        "first_response_at",
        "resolved_at",
        "closed_at",
        "status",
        "assignment_group",
        "is_major",
        "parent_ticket_id",
        "category",
        "updated_at",
    ]
    tickets = [  # each resolved 6 h (360 min) after opening: over the 240-minute targets
        ("T-P1-MAR", "P1", "2026-03-10", "Team"),
        ("T-P2-MAR", "P2", "2026-03-12", "Desk"),
        ("T-P2-APR", "P2", "2026-04-14", "Desk"),
    ]
    _write_csv(
        drop / "tickets.csv",
        ticket_header,
        [
            [
                tid,
                "PLT",
                "PLT-APP",
                "incident",
                prio,
                f"{day}T08:00:00Z",
                f"{day}T08:05:00Z",
                f"{day}T14:00:00Z",
                f"{day}T15:00:00Z",
                "closed",
                group,
                "false",
                None,
                None,
                f"{day}T15:00:00Z",
            ]
            for tid, prio, day, group in tickets
        ],
    )
    _write_csv(
        drop / "ticket_events.csv",
        ["ticket_id", "occurred_at", "field", "from_value", "to_value"],
        [
            row
            for tid, _, day, group in tickets
            for row in (
                [tid, f"{day}T08:00:00Z", "assignment_group", None, group],
                [tid, f"{day}T14:00:00Z", "status", "in_progress", "resolved"],
            )
        ],
    )
    # Hourly checks, all up, from 1 March to the cut-off, except the whole of 15 April.
    checks = []
    t = datetime(2026, 3, 1, tzinfo=UTC)
    while t < PLANTED_AS_OF:
        if t.date() != date(2026, 4, 15):
            checks.append(["PLT-APP", t.strftime("%Y-%m-%dT%H:%M:%SZ"), "up", 120])
        t += timedelta(hours=1)
    _write_csv(drop / "checks.csv", ["service_code", "checked_at", "status", "latency_ms"], checks)
    survey_header = [
        "response_id",
        "client_code",
        "survey_type",
        "ticket_id",
        "service_code",
        "sent_at",
        "answered_at",
        "csat",
        "nps",
        "ces",
        "comment",
    ]
    surveys = [
        [
            f"S-MAR-{i}",
            "PLT",
            "relationship",
            None,
            "PLT-APP",
            "2026-03-16T09:00:00Z",
            "2026-03-16T10:00:00Z" if i == 0 else None,
            5 if i == 0 else None,
            None,
            None,
            None,
        ]
        for i in range(10)
    ] + [
        [
            f"S-APR-{i}",
            "PLT",
            "relationship",
            None,
            "PLT-APP",
            "2026-04-16T09:00:00Z",
            "2026-04-16T10:00:00Z",
            score,
            None,
            None,
            None,
        ]
        for i, score in enumerate((2, 3))
    ]
    _write_csv(drop / "surveys.csv", survey_header, surveys)
    _write_csv(
        drop / "sip_actions.csv",
        [
            "action_id",
            "client_code",
            "source_type",
            "source_ref",
            "title",
            "owner",
            "opened_at",
            "due_on",
            "status",
            "closed_at",
        ],
        [
            [
                "SIP-1",
                "PLT",
                "incident",
                "T-P1-MAR",
                "Root cause of T-P1-MAR",
                "Ana",
                "2026-03-11T09:00:00Z",
                "2026-03-20",
                "done",
                "2026-04-10T09:00:00Z",
            ],
            [
                "SIP-2",
                "PLT",
                "review",
                "REVIEW-PLT-2026-03",
                "Review actions",
                "Tom",
                "2026-03-02T09:00:00Z",
                "2026-04-30",
                "done",
                "2026-04-20T09:00:00Z",
            ],
        ],
    )


@pytest.fixture(scope="module")
def planted(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("planted")
    _planted_drop(tmp / "drop")
    (tmp / "contracts.yaml").write_text(PLANTED_CONTRACTS)
    with scratch_database(pg_server) as dsn:
        results = load_drop(dsn, tmp / "drop")
        assert all(r.rows_quarantined == 0 for r in results), [
            (r.entity, r.rows_quarantined) for r in results
        ]
        load_contracts(dsn, tmp / "contracts.yaml", start=date(2026, 1, 1), end=date(2026, 12, 31))
        # Models only: the data and unit tests ran on the demo build already.
        _build(dsn, tmp, PLANTED_AS_OF, "run")
        yield dsn


def test_planted_drop_gives_exactly_the_planted_findings(planted: str) -> None:
    months = query_dicts(
        planted, f"select * from {MARTS}.fct_review_finding where period_type = 'month' order by period_start"
    )
    assert {(r["period_start"], r["finding_kind"], r["subject"]) for r in months} == PLANTED
    assert len(months) == len(PLANTED)
    by_kind = {r["finding_kind"]: r for r in months}
    assert by_kind["ola_uc_breach_cause"]["figure"] == Decimal("50.0000")  # 1 of March's 2 breaches
    assert by_kind["sla_not_supported"]["party"] == "OLA-TEAM"
    # The 23:00 check of 14 April holds two intervals (to 01:00): 1,380 of 43,200 minutes unmeasured.
    assert by_kind["coverage_below_threshold"]["figure"] == Decimal("96.8100")
    assert by_kind["sip_action_overdue"]["figure"] == Decimal(12)  # due 20 March, open on 1 April
    assert {r["finding_kind"] for r in months if r["audience"] == "manager"} == {
        "sla_not_supported",
        "ola_uc_breach_cause",
    }
    # The review rows count them.
    reviews = {
        r["period_start"]: r
        for r in query_dicts(planted, f"select * from {MARTS}.fct_service_review where period_type = 'month'")
    }
    assert set(reviews) == {date(2026, 3, 1), date(2026, 4, 1)}
    assert (reviews[date(2026, 3, 1)]["findings_client"], reviews[date(2026, 3, 1)]["findings_manager"]) == (
        2,
        2,
    )
    assert (reviews[date(2026, 4, 1)]["findings_client"], reviews[date(2026, 4, 1)]["findings_manager"]) == (
        3,
        0,
    )
    assert reviews[date(2026, 3, 1)]["is_response_rate_too_low"] is True
    assert (
        reviews[date(2026, 3, 1)]["sip_actions_overdue"] == 1
        and reviews[date(2026, 4, 1)]["sip_actions_overdue"] == 0
    )
