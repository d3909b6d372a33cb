"""Major-incident reports (HTML + PDF) on a scratch warehouse built from two months of demo data
(September-October 2026, cut-off 2026-11-01), published like the nightly does.

The demo's major incidents each touch one client. To have an incident that affected two clients (the case
the client edition must isolate), the module loads, through the real loader, a child ticket of GLOBEX
under one of ACME's outage incidents and an outage of GLOBEX's portal inside its window, before dbt builds
the marts.

Every figure a report prints carries its marker (data-figure, data-value, inside an element marked with the
mart and key it comes from, as in the review pack): the HTML is parsed back and each figure compared with SQL
written here on the marts, for the manager edition and both clients' editions. The client editions are
searched for every string that belongs only to another client or to an internal team or supplier; the PDF is
read with poppler (pdfinfo, pdftoppm, pdftotext).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from slm_platform.contracts.load import load_contracts
from slm_platform.load.loader import load_drop, load_file
from slm_platform.reports.incident_report import (
    IncidentReportError,
    write_incident_report,
    write_incident_reports,
)
from slm_platform.settings import PgServer
from slm_platform.sources.demo_data import generate
from slm_platform.transform.dbt_runner import dbt, dbt_env
from slm_platform.transform.publish import publish_marts
from tests.conftest import query_dicts, scratch_database
from tests.test_review_pack import (
    _first_page_ink,
    _forbidden_for,
    _leaks,
    _pdfinfo_pages,
    _pdftotext,
    as_value,
    parse_pack,
    same,
    shown_matches,
)

DEMO_START = date(2026, 9, 1)
DEMO_MONTHS = 2
AS_OF = "2026-11-01T00:00:00+00:00"
REPORT_MARTS = (
    "fct_major_incident",
    "fct_major_incident_impact",
    "fct_ticket_sla",
    "fct_complaint",
    "fct_survey_response",
    "fct_sip_action",
    "dim_clients",
    "dim_services",
    "dim_agreements",
    "stg_canonical__tickets",
)
OTHER = "GLOBEX"  # the second client the shared incident affects
OTHER_SERVICE = "GLOBEX-PORTAL"
SHARED_CHILD = "INCTEST0001"
TICKET_HEADER = (
    "ticket_id,client_code,service_code,ticket_type,priority,opened_at,first_response_at,resolved_at,"
    "closed_at,status,assignment_group,is_major,parent_ticket_id,category,updated_at"
)


@dataclass
class Warehouse:
    dsn: str
    out: Path
    incident: str  # ACME's outage incident that also affected GLOBEX
    single: str  # another of ACME's incidents, of ACME only


def _iso(ts) -> str:
    return ts.isoformat()


@pytest.fixture(scope="module")
def wh(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    tmp = tmp_path_factory.mktemp("incident_report")
    with scratch_database(pg_server) as dsn:
        generate(tmp / "drop", start=DEMO_START, months=DEMO_MONTHS)
        load_drop(dsn, tmp / "drop")
        # ACME's longest outage incident (the generator opens one per outage, with child tickets).
        (inc,) = query_dicts(
            dsn,
            "select t.ticket_id, t.opened_at, t.resolved_at from raw.tickets t where t.client_code = 'ACME' "
            "and t.is_major and t.resolved_at < '2026-10-25' "
            "and exists (select 1 from raw.tickets c where c.parent_ticket_id = t.ticket_id) "
            "order by t.resolved_at - t.opened_at desc, t.ticket_id limit 1",
        )
        (single,) = query_dicts(
            dsn,
            "select ticket_id from raw.tickets where client_code = 'ACME' and is_major and ticket_id <> %s "
            "and exists (select 1 from raw.tickets c where c.parent_ticket_id = raw.tickets.ticket_id) "
            "order by ticket_id limit 1",
            (inc["ticket_id"],),
        )
        opened, resolved = inc["opened_at"], inc["resolved_at"]
        child = tmp / "shared" / "tickets.csv"
        child.parent.mkdir()
        child.write_text(
            TICKET_HEADER
            + "\n"
            + ",".join(
                [
                    SHARED_CHILD,
                    OTHER,
                    OTHER_SERVICE,
                    "incident",
                    "P2",
                    _iso(opened + timedelta(minutes=6)),
                    _iso(opened + timedelta(minutes=9)),
                    _iso(resolved),
                    _iso(resolved + timedelta(hours=1)),
                    "closed",
                    "ServiceDesk",
                    "false",
                    inc["ticket_id"],
                    "network",
                    _iso(resolved + timedelta(hours=1)),
                ]
            )
            + "\n"
        )
        outage = tmp / "shared" / "outages.csv"
        outage.write_text(
            "service_code,started_at,ended_at,source_ref\n"
            f"{OTHER_SERVICE},{_iso(opened + timedelta(minutes=5))},{_iso(opened + timedelta(minutes=35))},"
            "incident-test\n"
        )
        assert load_file(dsn, child, "tickets", source="incident_test").rows_loaded == 1
        assert load_file(dsn, outage, "outages", source="incident_test").rows_loaded == 1
        load_contracts(dsn)
        dbt(
            [
                "run",
                "--select",
                *(f"+{m}" for m in REPORT_MARTS),
                "--vars",
                json.dumps({"as_of": AS_OF}),
                "--target-path",
                str(tmp / "target"),
                "--log-path",
                str(tmp / "logs"),
            ],
            dbt_env(dsn),
        )
        publish_marts(dsn)
        yield Warehouse(dsn, tmp / "reports", inc["ticket_id"], single["ticket_id"])


# ------------------------------------------------------------------------------ the marts, independently


def _key(row: dict, *cols: str) -> tuple:
    return tuple(sorted((c, as_value(row[c])) for c in cols))


def expected(dsn: str, ticket: str, client: str | None) -> dict[str, dict[tuple, dict]]:
    """Per marked source, the rows a report of this incident (and client) may print, keyed as it keys them."""
    (incident,) = query_dicts(dsn, "select * from marts.fct_major_incident where ticket_id = %s", (ticket,))
    tickets = [ticket, *incident["child_tickets"]]
    own = "and client_code = %s" if client else ""
    args = (client,) if client else ()
    out: dict[str, dict[tuple, dict]] = {"fct_major_incident": {(): incident}}
    impact = query_dicts(
        dsn, f"select * from marts.fct_major_incident_impact where ticket_id = %s {own}", (ticket, *args)
    )
    out["fct_major_incident_impact"] = {
        _key(r, "client_code", "service_code", "objective_id", "period_type", "period_start"): r
        for r in impact
    }
    slas = query_dicts(
        dsn, f"select * from marts.fct_ticket_sla where ticket_id = any(%s) {own}", (tickets, *args)
    )
    out["fct_ticket_sla"] = {_key(r, "ticket_id", "metric"): r for r in slas}
    complaints = query_dicts(
        dsn, f"select * from marts.fct_complaint where linked_ticket_id = any(%s) {own}", (tickets, *args)
    )
    out["fct_complaint"] = {_key(r, "complaint_id"): r for r in complaints}
    answers = query_dicts(
        dsn, f"select * from marts.fct_survey_response where ticket_id = any(%s) {own}", (tickets, *args)
    )
    out["fct_survey_response"] = {_key(r, "response_id"): r for r in answers}
    actions = query_dicts(
        dsn,
        f"select * from marts.fct_sip_action where source_type = 'incident' and source_ref = %s {own}",
        (ticket, *args),
    )
    out["fct_sip_action"] = {_key(r, "action_id"): r for r in actions}
    out["fct_major_incident.ola_uc_segments"] = {
        _key(s, "agreement_id", "metric", "party"): s for s in incident["ola_uc_segments"]
    }
    # The client edition's headline, summed here from the client's impact rows.
    month_avail = [r for r in impact if r["metric"] == "availability" and r["period_type"] == "month"]
    pcts = [r["budget_consumed_pct"] for r in month_avail if r["budget_consumed_pct"] is not None]
    out["incident_client_totals"] = {
        (): {
            "downtime_minutes": sum((r["incident_minutes"] for r in month_avail), Decimal(0)),
            "max_budget_consumed_pct": max(pcts) if pcts else None,
            "objectives_turned_breached": sum(1 for r in impact if r["turned_breached"]),
            "complaints": len(complaints),
            "survey_answers": len(answers),
            "sip_actions": len(actions),
        }
    }
    return out


def _check_report(dsn: str, html: str, ticket: str, client: str | None) -> dict[str, set[tuple]]:
    report = parse_pack(html)
    rows = expected(dsn, ticket, client)
    assert len(report.figures) > 5
    printed: dict[str, set[tuple]] = defaultdict(set)
    for f in report.figures:
        if f.text:  # chart bars carry the exact value only
            assert shown_matches(f), f
        key = tuple(sorted(f.key.items()))
        assert key in rows[f.row], f"{f.row} row {f.key} printed but not in the marts"
        value = rows[f.row][key][f.name]
        assert same(f.value, value), f"{f.row} {f.key} {f.name}: printed {f.value}, marts {value}"
        printed[f.row].add(key)
    for source in ("fct_major_incident_impact", "fct_ticket_sla", "fct_complaint", "fct_survey_response"):
        assert printed[source] == set(rows[source]), source  # every row, and only those
    return printed


# ------------------------------------------------------------------------------------------- the tests


def test_the_shared_incident_affected_two_clients(wh: Warehouse) -> None:
    (inc,) = query_dicts(
        wh.dsn, "select * from marts.fct_major_incident where ticket_id = %s", (wh.incident,)
    )
    assert inc["client_code"] == "ACME" and inc["affected_clients"] == ["ACME", OTHER]
    assert OTHER_SERVICE in inc["affected_services"] and SHARED_CHILD in inc["child_tickets"]
    other = query_dicts(
        wh.dsn,
        "select sum(incident_minutes) as m from marts.fct_major_incident_impact where ticket_id = %s "
        "and client_code = %s and metric = 'availability' and period_type = 'month'",
        (wh.incident, OTHER),
    )
    assert other[0]["m"] and other[0]["m"] > 0  # GLOBEX's portal was down inside the window


def test_manager_edition_prints_the_marts(wh: Warehouse) -> None:
    res = write_incident_report(wh.dsn, wh.incident, "manager", None, wh.out)
    assert res.html_path.name == f"{wh.incident}_manager.html" and res.pdf_path.exists()
    printed = _check_report(wh.dsn, res.html_path.read_text(), wh.incident, None)
    rows = expected(wh.dsn, wh.incident, None)
    assert {k[0][1] for k in printed["fct_major_incident_impact"]} == {"ACME", OTHER}
    assert printed["fct_major_incident.ola_uc_segments"] == set(rows["fct_major_incident.ola_uc_segments"])
    assert printed["fct_major_incident.ola_uc_segments"], "the manager edition shows who held it"
    headline = {
        f.name for f in parse_pack(res.html_path.read_text()).figures if f.row == "fct_major_incident"
    }
    assert {
        "downtime_minutes",
        "max_budget_consumed_pct",
        "objectives_turned_breached",
        "complaints",
    } <= headline
    assert "incident_client_totals" not in printed


@pytest.mark.parametrize("client", ["ACME", OTHER])
def test_client_edition_prints_only_its_own_rows(wh: Warehouse, client: str) -> None:
    res = write_incident_report(wh.dsn, wh.incident, "client", client, wh.out)
    assert res.html_path.name == f"{wh.incident}_client_{client}.html"
    printed = _check_report(wh.dsn, res.html_path.read_text(), wh.incident, client)
    assert printed["fct_major_incident_impact"] and all(
        dict(k)["client_code"] == client for k in printed["fct_major_incident_impact"]
    )
    assert all(dict(k)["ticket_id"] in query_own_tickets(wh.dsn, client) for k in printed["fct_ticket_sla"])
    assert not printed["fct_major_incident.ola_uc_segments"]
    # Of the incident-wide row only its duration (shared by every affected client) is printed.
    figures = parse_pack(res.html_path.read_text()).figures
    assert {f.name for f in figures if f.row == "fct_major_incident"} == {"duration_minutes"}
    assert printed["incident_client_totals"] == {()}


def query_own_tickets(dsn: str, client: str) -> set[str]:
    return {
        r["ticket_id"]
        for r in query_dicts(dsn, "select ticket_id from raw.tickets where client_code = %s", (client,))
    }


@pytest.mark.parametrize("client", ["ACME", OTHER])
def test_client_edition_holds_nothing_of_other_clients_or_internal_teams(wh: Warehouse, client: str) -> None:
    res = write_incident_report(wh.dsn, wh.incident, "client", client, wh.out)
    # The incident's own id is the subject of every edition (the reference a client quotes): not forbidden.
    forbidden = _forbidden_for(wh.dsn, client, frozenset({wh.incident}))
    assert forbidden["teams and suppliers"] >= {"ServiceDesk", "Carrier-X"}
    assert _leaks(res.html_path.read_text(), forbidden) == {}
    assert _leaks(_pdftotext(res.pdf_path), forbidden) == {}
    # The search finds what is there: the manager edition names both clients and the OLA/UC parties.
    manager = write_incident_report(wh.dsn, wh.incident, "manager", None, wh.out)
    leaks = _leaks(manager.html_path.read_text(), forbidden)
    assert {"clients", "teams and suppliers"} <= set(leaks), leaks


def test_write_incident_reports_writes_every_edition_and_refuses_what_is_no_report(
    wh: Warehouse, tmp_path: Path
) -> None:
    written = write_incident_reports(wh.dsn, wh.incident, tmp_path, log=lambda _: None)
    assert [(r.edition, r.client_code) for r in written] == [
        ("manager", None),
        ("client", "ACME"),
        ("client", OTHER),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{wh.incident}_{s}.{ext}"
        for s in ("manager", "client_ACME", f"client_{OTHER}")
        for ext in ("html", "pdf")
    )
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    again = write_incident_reports(wh.dsn, wh.incident, tmp_path, clients=[OTHER], log=lambda _: None)
    assert [(r.edition, r.client_code) for r in again] == [("manager", None), ("client", OTHER)]
    assert set(tmp_path.iterdir()) == set(before)  # replaced whole, nothing added
    single = write_incident_reports(wh.dsn, wh.single, tmp_path / "single", log=lambda _: None)
    assert [(r.edition, r.client_code) for r in single] == [("manager", None), ("client", "ACME")]
    _check_report(wh.dsn, single[1].html_path.read_text(), wh.single, "ACME")
    with pytest.raises(IncidentReportError, match="client 'INITECH' was not affected"):
        write_incident_reports(wh.dsn, wh.incident, tmp_path, clients=["INITECH"], log=lambda _: None)
    with pytest.raises(IncidentReportError, match="no major incident 'INC9999999'"):
        write_incident_reports(wh.dsn, "INC9999999", tmp_path, log=lambda _: None)
    assert set(tmp_path.iterdir()) == set(before) | {tmp_path / "single"}


@pytest.mark.parametrize(("edition", "client"), [("manager", None), ("client", OTHER)])
def test_pdf_opens_and_its_first_page_is_not_blank(
    wh: Warehouse, edition: str, client: str | None, tmp_path: Path
) -> None:
    res = write_incident_report(wh.dsn, wh.incident, edition, client, wh.out)
    sections = res.html_path.read_text().count('<section class="page')
    pages = _pdfinfo_pages(res.pdf_path)
    assert pages == res.pages >= sections == (4 if edition == "manager" else 3)
    ink, darkest = _first_page_ink(res.pdf_path, tmp_path)
    assert ink > 0.05 and darkest < 80, (ink, darkest)
    text = _pdftotext(res.pdf_path)
    assert f"Incident {wh.incident}" in text and f"page 1 of {pages}" in text
    print(f"{res.pdf_path.name}: {pages} pages, {res.seconds:.1f} s, first page ink {ink:.1%}")
