"""Service review packs (HTML + PDF) on a scratch warehouse built from four months of demo data (July-October
2026, cut-off 2026-11-01 as the demo's nightly), published like the nightly does.

Every figure a pack prints carries its marker (data-figure, data-value, inside a row marked with the mart
and key it comes from): the HTML is parsed back with html.parser and each figure compared with SQL written
here on the marts, for two clients, a month and a quarter. The client edition is searched for every string
that belongs only to another client or to an internal team or supplier (taken from the warehouse); the PDF
is read with poppler (pdfinfo, pdftoppm, pdftotext); the CLI's refusals and the registry are checked through
the real command.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import psycopg2
import pytest

from slm_platform.contracts.load import load_contracts
from slm_platform.load.loader import load_drop
from slm_platform.reports.periods import Period, PeriodError, parse_period, periods_closed_by
from slm_platform.reports.review_data import (
    MAX_BREACHES,
    MAX_FINDINGS,
    MAX_OUTAGES,
    MAX_VERBATIMS,
    TREND_PERIODS,
)
from slm_platform.reports.review_pack import PackResult, build_closed_period_packs, build_pack, build_packs
from slm_platform.settings import READER_ROLE, PgServer
from slm_platform.sources.demo_data import generate
from slm_platform.transform.dbt_runner import dbt, dbt_env
from slm_platform.transform.publish import publish_marts
from tests.conftest import query_dicts, scratch_database, slm

DEMO_START = date(2026, 7, 1)
DEMO_MONTHS = 4
AS_OF = "2026-11-01T00:00:00+00:00"
CASES = [("ACME", "2026-10"), ("GLOBEX", "2026-10"), ("ACME", "2026-Q3"), ("GLOBEX", "2026-Q3")]
# One printed page per section of the template (cover, objectives, trends, breaches, availability,
# satisfaction, incidents and actions, findings; the manager edition adds the OLA/UC page): lists are cut
# so that each section fits its page, so a pack has exactly this many pages whatever the data.
PAGES = {"client": 8, "manager": 9}
PACK_MARTS = (
    "fct_service_review",
    "fct_service_review_objective",
    "fct_sip_action",
    "fct_review_finding",
    "fct_ticket_sla",
    "fct_outage",
    "fct_availability",
    "fct_survey_response",
    "fct_complaint",
    "fct_ola_uc_attainment",
    "fct_agreement_support",
    "dim_clients",
    "dim_services",
    "dim_agreements",
    "fct_review_pack",
    "stg_canonical__tickets",
)


@dataclass
class Warehouse:
    dsn: str
    out: Path


@pytest.fixture(scope="module")
def wh(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    tmp = tmp_path_factory.mktemp("review_pack")
    with scratch_database(pg_server) as dsn:
        generate(tmp / "drop", start=DEMO_START, months=DEMO_MONTHS)
        load_drop(dsn, tmp / "drop")
        load_contracts(dsn)
        # The marts a pack reads and what they are built from (run: their own tests are other modules').
        dbt(
            [
                "run",
                "--select",
                *(f"+{m}" for m in PACK_MARTS),
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
        yield Warehouse(dsn, tmp / "packs")


@pytest.fixture(scope="module")
def packs(wh: Warehouse) -> dict[tuple[str, str, str], PackResult]:
    """The packs the nightly of 2026-11-01 builds (October, every client, both editions), and 2026-Q3's of
    ACME and GLOBEX: built once, read by the tests."""
    built = build_closed_period_packs(wh.dsn, date(2026, 11, 1), wh.out, log=lambda _: None)
    conn = psycopg2.connect(wh.dsn)
    try:
        built += build_packs(
            conn, [parse_period("2026-Q3")], wh.out, clients=["ACME", "GLOBEX"], log=lambda _: None
        )
    finally:
        conn.close()
    return {(r.client_code, r.period.label, r.edition): r for r in built}


# ------------------------------------------------------------------------------------ reading a pack


@dataclass
class Figure:
    row: str  # the mart (or "pack_counts")
    key: dict
    name: str
    value: str  # data-value: the exact value
    text: str | None  # what is printed (None: a dot of a chart)


class _PackParser(HTMLParser):
    VOID = {"meta", "br", "img", "hr", "input", "link", "col", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict] = []
        self.figures: list[Figure] = []
        self.open_figures: list[tuple[int, dict, list[str]]] = []
        self.sections = 0

    def _context(self, attrs: dict) -> tuple[str, dict]:
        row, key = attrs.get("data-row"), attrs.get("data-key")
        for a in reversed(self.stack):
            row = row or a.get("data-row")
            key = key or a.get("data-key")
        return row or "", json.loads(key) if key else {}

    def handle_starttag(self, tag: str, attrs_list: list) -> None:
        attrs = dict(attrs_list)
        if tag == "section" and "page" in (attrs.get("class") or "").split():
            self.sections += 1
        if tag in self.VOID:
            return
        if "data-figure" in attrs:
            self.open_figures.append((len(self.stack), attrs, []))
        self.stack.append(attrs)

    def handle_startendtag(self, tag: str, attrs_list: list) -> None:
        attrs = dict(attrs_list)
        if "data-figure" in attrs:  # an SVG dot of a trend chart
            row, key = self._context(attrs)
            self.figures.append(Figure(row, key, attrs["data-figure"], attrs["data-value"], None))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID or not self.stack:
            return
        attrs = self.stack.pop()
        if self.open_figures and self.open_figures[-1][0] == len(self.stack):
            _, fattrs, text = self.open_figures.pop()
            row, key = self._context(fattrs)
            self.figures.append(Figure(row, key, fattrs["data-figure"], fattrs["data-value"], "".join(text)))
        del attrs

    def handle_data(self, data: str) -> None:
        for _, _, text in self.open_figures:
            text.append(data)


def parse_pack(html: str) -> _PackParser:
    p = _PackParser()
    p.feed(html)
    p.close()
    return p


def as_value(v: object) -> str:
    """A SQL value as the pack's data-value writes it (slm_platform.reports.svg.data_value)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def same(printed: str, expected: object) -> bool:
    if expected is None or printed == "":
        return printed == as_value(expected)
    if isinstance(expected, bool):
        return printed == as_value(expected)
    return Decimal(printed) == Decimal(str(expected))


def shown_matches(f: Figure) -> bool:
    """The printed text is the exact value rounded to the decimals shown (or '–' for null)."""
    if f.text is None:
        return True
    if f.value == "" or f.text == "":
        return f.value == "" and f.text.strip() in ("", "–")
    digits = re.sub(r"[^0-9.\-−]", "", f.text.replace("−", "-"))
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return Decimal(digits) == Decimal(f.value).quantize(Decimal(1).scaleb(-decimals))


# ------------------------------------------------------------------------------ the marts, independently


def expected_rows(dsn: str, client: str, period: Period) -> dict[str, dict[tuple, dict]]:
    """Per mart, the rows a pack of this client and period may print, keyed like the pack keys them."""
    a = {"c": client, "t": period.period_type, "s": period.start, "e": period.end}
    tz = query_dicts(dsn, "select timezone from marts.dim_clients where client_code = %(c)s", a)[0][
        "timezone"
    ]
    a["tz"] = tz
    first = period.previous(TREND_PERIODS - 1).start
    out: dict[str, dict[tuple, dict]] = {}

    def keyed(name: str, rows: list[dict], *cols: str) -> None:
        out[name] = {tuple(sorted((c, as_value(r[c])) for c in cols)): r for r in rows}

    keyed(
        "fct_service_review",
        query_dicts(
            dsn,
            "select * from marts.fct_service_review where client_code = %(c)s and period_type = %(t)s "
            "and period_start between %(f)s and %(s)s",
            {**a, "f": first},
        ),
        "period_start",
    )
    keyed(
        "fct_service_review_objective",
        query_dicts(
            dsn,
            "select * from marts.fct_service_review_objective where client_code = %(c)s "
            "and period_type = %(t)s and period_start = %(s)s",
            a,
        ),
        "objective_id",
        "service_code",
    )
    keyed(
        "fct_ticket_sla",
        query_dicts(
            dsn,
            "select *, elapsed_business_minutes - target_minutes as overrun_minutes "
            "from marts.fct_ticket_sla where client_code = %(c)s and is_met = false "
            "and period_month >= %(s)s and period_month < %(e)s",
            a,
        ),
        "ticket_id",
        "metric",
    )
    keyed(
        "fct_outage",
        query_dicts(
            dsn,
            "select * from marts.fct_outage where client_code = %(c)s and agreed_minutes > 0 "
            "and (outage_start at time zone %(tz)s) >= %(s)s and (outage_start at time zone %(tz)s) < %(e)s",
            a,
        ),
        "service_code",
        "objective_id",
        "outage_start",
    )
    keyed(
        "fct_availability",
        query_dicts(
            dsn,
            "select * from marts.fct_availability where client_code = %(c)s and period_type = %(t)s "
            "and period_start = %(s)s",
            a,
        ),
        "service_code",
        "objective_id",
    )
    keyed(
        "fct_survey_response",
        query_dicts(
            dsn,
            "select * from marts.fct_survey_response where client_code = %(c)s and answered_at is not null "
            "and btrim(coalesce(comment, '')) <> '' and period_month >= %(s)s and period_month < %(e)s",
            a,
        ),
        "response_id",
    )
    keyed(
        "fct_complaint",
        query_dicts(
            dsn,
            "select * from marts.fct_complaint where client_code = %(c)s "
            "and period_month >= %(s)s and period_month < %(e)s",
            a,
        ),
        "complaint_id",
    )
    keyed(
        "fct_sip_action",
        query_dicts(
            dsn,
            "select * from marts.fct_sip_action where client_code = %(c)s and opened_on < %(e)s "
            "and (closed_on is null or closed_on >= %(s)s)",
            a,
        ),
        "action_id",
    )
    keyed(
        "fct_review_finding",
        query_dicts(
            dsn,
            "select * from marts.fct_review_finding where client_code = %(c)s and period_type = %(t)s "
            "and period_start = %(s)s",
            a,
        ),
        "finding_id",
    )
    keyed(
        "fct_agreement_support",
        query_dicts(
            dsn,
            "select * from marts.fct_agreement_support where sla_agreement_id in (select agreement_id "
            "from marts.dim_agreements where kind = 'SLA' and party = %(c)s) and sla_valid_from < %(e)s "
            "and (sla_valid_to is null or sla_valid_to >= %(s)s)",
            a,
        ),
        "sla_objective_id",
        "sla_valid_from",
    )
    keyed(
        "fct_ola_uc_attainment",
        query_dicts(
            dsn,
            "select * from marts.fct_ola_uc_attainment where period_type = %(t)s and period_start = %(s)s",
            a,
        ),
        "objective_id",
    )
    return out


def expected_counts(rows: dict[str, dict], manager: bool) -> dict[str, int]:
    findings = rows["fct_review_finding"].values()
    return {
        "breached_ticket_objectives": len(rows["fct_ticket_sla"]),
        "outages": len(rows["fct_outage"]),
        "verbatims": len(rows["fct_survey_response"]),
        "findings": sum(1 for f in findings if manager or f["audience"] == "client"),
    }


# ------------------------------------------------------------------------------------------- the tests


def test_periods_closed_by_a_run() -> None:
    m, q, y = "month", "quarter", "year"
    assert periods_closed_by(date(2026, 11, 1)) == [Period(m, date(2026, 10, 1))]
    assert periods_closed_by(date(2026, 10, 1)) == [Period(m, date(2026, 9, 1)), Period(q, date(2026, 7, 1))]
    assert periods_closed_by(date(2027, 1, 1)) == [
        Period(m, date(2026, 12, 1)),
        Period(q, date(2026, 10, 1)),
        Period(y, date(2026, 1, 1)),
    ]
    assert periods_closed_by(date(2026, 4, 1)) == [Period(m, date(2026, 3, 1)), Period(q, date(2026, 1, 1))]
    for day in (date(2026, 11, 2), date(2026, 10, 31), date(2026, 12, 15)):
        assert periods_closed_by(day) == []
    # every month-start of two years: months always, quarters four times a year, the year once
    starts = [date(y, mo, 1) for y in (2026, 2027) for mo in range(1, 13)]
    closed = [p for d in starts for p in periods_closed_by(d)]
    assert sum(p.period_type == "month" for p in closed) == 24
    assert sum(p.period_type == "quarter" for p in closed) == 8
    assert [p.label for p in closed if p.period_type == "year"] == ["2025", "2026"]


def test_period_parsing() -> None:
    assert parse_period("2026-10") == Period("month", date(2026, 10, 1))
    assert parse_period("2026-Q4") == Period("quarter", date(2026, 10, 1))
    assert parse_period("2026") == Period("year", date(2026, 1, 1))
    assert parse_period("2026-Q4").end == date(2027, 1, 1)
    assert parse_period("2026-01").previous(12).label == "2025-01"
    assert [parse_period(t).label for t in ("2026-10", "2026-Q4", "2026")] == ["2026-10", "2026-Q4", "2026"]
    for bad in ("2026-13", "2026-Q5", "26-10", "2026/10", "2026-1", "october", ""):
        with pytest.raises(PeriodError):
            parse_period(bad)


@pytest.mark.parametrize(("client", "period_text"), CASES)
@pytest.mark.parametrize("edition", ["manager", "client"])
def test_every_printed_figure_equals_the_marts(
    wh: Warehouse, packs: dict, client: str, period_text: str, edition: str
) -> None:
    period = parse_period(period_text)
    res = packs[(client, period_text, edition)]
    pack = parse_pack(res.html_path.read_text())
    rows = expected_rows(wh.dsn, client, period)
    counts = expected_counts(rows, edition == "manager")
    assert len(pack.figures) > 100

    printed: dict[str, set[tuple]] = defaultdict(set)
    for f in pack.figures:
        assert shown_matches(f), f
        if f.row == "pack_counts":
            assert int(f.value) == counts[f.name], f
            continue
        key = tuple(sorted(f.key.items()))
        assert key in rows[f.row], f"{f.row} row {f.key} printed but not in the marts"
        expected = rows[f.row][key][f.name]
        assert same(f.value, expected), f"{f.row} {f.key} {f.name}: printed {f.value}, marts {expected}"
        printed[f.row].add(key)

    # Complete where the pack is complete, cut where it says so.
    assert printed["fct_service_review_objective"] == set(rows["fct_service_review_objective"])
    assert printed["fct_availability"] == set(rows["fct_availability"])
    assert printed["fct_service_review"] == set(rows["fct_service_review"])  # the trend: every period
    assert len(printed["fct_ticket_sla"]) == min(MAX_BREACHES, counts["breached_ticket_objectives"])
    assert len(printed["fct_outage"]) == min(MAX_OUTAGES, counts["outages"])
    assert len(printed["fct_survey_response"]) == min(MAX_VERBATIMS, counts["verbatims"])
    assert len(printed["fct_review_finding"]) == min(MAX_FINDINGS, counts["findings"])
    if edition == "manager":
        assert printed["fct_agreement_support"] == set(rows["fct_agreement_support"])
        assert printed["fct_ola_uc_attainment"], "the manager edition shows the OLA/UC view"
    else:
        assert not printed["fct_agreement_support"] and not printed["fct_ola_uc_attainment"]
        shown = {k for k in printed["fct_review_finding"]}
        assert all(rows["fct_review_finding"][k]["audience"] == "client" for k in shown)
    # the largest overruns are the ones listed
    overruns = sorted((r["overrun_minutes"] for r in rows["fct_ticket_sla"].values()), reverse=True)
    listed = sorted(
        (rows["fct_ticket_sla"][k]["overrun_minutes"] for k in printed["fct_ticket_sla"]), reverse=True
    )
    assert listed == overruns[: len(listed)]
    assert pack.sections == PAGES[edition]


def _forbidden_for(dsn: str, client: str, shared: frozenset[str] = frozenset()) -> dict[str, set[str]]:
    """Strings that belong only to other clients, and the internal teams' and suppliers' names. ``shared``:
    strings the edition may print although another client owns them (an incident report's own ticket id)."""

    def strings(query: str, args: tuple = ()) -> set[str]:
        return {str(v) for r in query_dicts(dsn, query, args) for v in r.values() if v not in (None, "")}

    own = strings(
        "select client_code, client_name from marts.dim_clients where client_code = %s "
        "union all select service_code, service_name from marts.dim_services where client_code = %s",
        (client, client),
    ) | set(shared)
    others = {
        "clients": strings(
            "select client_code, client_name from marts.dim_clients where client_code <> %s", (client,)
        ),
        "services": strings(
            "select service_code, service_name from marts.dim_services where client_code <> %s", (client,)
        ),
        "tickets": strings("select ticket_id from raw.tickets where client_code <> %s", (client,)),
        "agreements": strings(
            "select agreement_id from marts.dim_agreements where kind = 'SLA' and party <> %s", (client,)
        ),
        "teams and suppliers": strings(
            "select party, agreement_id from marts.dim_agreements where kind in ('OLA', 'UC') "
            "union select distinct assignment_group, null from raw.tickets "
            "union select distinct to_value, null from raw.ticket_events where field = 'assignment_group'"
        ),
        "sip actions": strings("select action_id from raw.sip_actions where client_code <> %s", (client,)),
    }
    return {kind: values - own for kind, values in others.items()}


def _leaks(text: str, forbidden: dict[str, set[str]]) -> dict[str, list[str]]:
    found = {}
    for kind, values in forbidden.items():
        hits = sorted(v for v in values if re.search(rf"(?<![\w-]){re.escape(v)}(?![\w-])", text))
        if hits:
            found[kind] = hits
    return found


def _pdftotext(pdf: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize("period_text", ["2026-10", "2026-Q3"])
def test_client_edition_holds_nothing_of_other_clients_or_internal_teams(
    wh: Warehouse, packs: dict, period_text: str
) -> None:
    client_pack, manager_pack = (
        packs[("ACME", period_text, "client")],
        packs[("ACME", period_text, "manager")],
    )
    forbidden = _forbidden_for(wh.dsn, "ACME")
    assert len(forbidden["tickets"]) > 100 and forbidden["teams and suppliers"] >= {
        "ServiceDesk",
        "Carrier-X",
    }
    html = client_pack.html_path.read_text()
    assert _leaks(html, forbidden) == {}
    assert _leaks(_pdftotext(client_pack.pdf_path), forbidden) == {}
    # The search does find what is there: the manager edition names ACME's OLA/UC parties (and nothing of
    # another client).
    manager_leaks = _leaks(manager_pack.html_path.read_text(), forbidden)
    assert set(manager_leaks) == {"teams and suppliers"}, manager_leaks
    assert "ACME" in html and "ACME-ERP" in html


def _pdfinfo_pages(pdf: Path) -> int:
    out = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", out, re.MULTILINE).group(1))


def _first_page_ink(pdf: Path, tmp: Path) -> tuple[float, int]:
    """Share of non-white pixels of page 1 rendered by pdftoppm (greyscale), and the darkest pixel."""
    subprocess.run(
        ["pdftoppm", "-f", "1", "-l", "1", "-r", "30", "-gray", str(pdf), str(tmp / "page")], check=True
    )
    (pgm,) = tmp.glob("page*.pgm")
    data = pgm.read_bytes()
    # binary PGM: P5 <width> <height> <maxval> then one byte per pixel
    header = re.match(rb"P5\s+(\d+)\s+(\d+)\s+(\d+)\s", data)
    w, h = int(header.group(1)), int(header.group(2))
    pixels = data[header.end() : header.end() + w * h]
    return sum(1 for p in pixels if p < 235) / len(pixels), min(pixels)


@pytest.mark.parametrize("edition", ["client", "manager"])
def test_pdf_opens_with_the_expected_pages_and_a_first_page_that_is_not_blank(
    packs: dict, edition: str, tmp_path: Path
) -> None:
    res = packs[("GLOBEX", "2026-10", edition)]
    pages = _pdfinfo_pages(res.pdf_path)
    assert pages == res.sections == PAGES[edition] == res.pages
    ink, darkest = _first_page_ink(res.pdf_path, tmp_path)
    assert ink > 0.05 and darkest < 80, (ink, darkest)
    text = _pdftotext(res.pdf_path)
    assert "Globex Corporation" in text and f"page 1 of {pages}" in text
    # GLOBEX's October (New York) ends at 04:00 UTC on 1 November, after the cut-off: in progress
    assert "in progress, figures as of 2026-10-31 20:00 EDT" in res.html_path.read_text()


def test_cli_refuses_what_cannot_be_a_pack_with_exit_2(wh: Warehouse, tmp_path: Path) -> None:
    cases = {
        ("--client", "NOPE", "--period", "2026-10"): "unknown client 'NOPE'",
        ("--client", "ACME", "--period", "2026-13"): "malformed period '2026-13'",
        ("--client", "ACME", "--period", "10-2026"): "malformed period '10-2026'",
        ("--client", "ACME", "--period", "2026-12"): "period 2026-12 is in the future",
        ("--client", "ACME", "--period", "2027"): "period 2027 is in the future",
        ("--client", "ACME", "--period", "2025-03"): "no review data for ACME in 2025-03",
    }
    for args, message in cases.items():
        proc = slm(
            tmp_path / "home",
            "review-pack",
            "build",
            *args,
            "--dsn",
            wh.dsn,
            "--out",
            str(tmp_path),
            check=False,
        )
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ERROR: ") and message in lines[0], (args, proc.stderr)
        assert proc.stdout == ""
    assert list(tmp_path.glob("*.pdf")) == []

    # a period in progress is a pack, marked as such
    proc = slm(
        tmp_path / "home",
        "review-pack", "build",
        "--client",
        "ACME",
        "--period",
        "2026-Q4",
        "--dsn",
        wh.dsn,
        "--out",
        str(tmp_path),
    )
    html, pdf = proc.stdout.split()
    assert html == str(tmp_path / "ACME_2026-Q4_client.html") and pdf == str(
        tmp_path / "ACME_2026-Q4_client.pdf"
    )
    assert "in progress, figures as of 2026-11-01 01:00 CET" in Path(html).read_text()


def test_rerun_overwrites_and_the_registry_has_one_row_per_pack(wh: Warehouse, packs: dict) -> None:
    """The nightly of 2026-11-01 built October's packs of every client, both editions (the packs fixture);
    run again, it replaces the same files and upserts the same registry rows."""
    first = [r for r in packs.values() if r.period.label == "2026-10"]
    clients = {r["client_code"] for r in query_dicts(wh.dsn, "select client_code from marts.dim_clients")}
    assert {(r.client_code, r.period.label, r.edition) for r in first} == {
        (c, "2026-10", e) for c in clients for e in ("client", "manager")
    }
    before = {p: p.stat().st_mtime_ns for r in first for p in (r.html_path, r.pdf_path)}
    files_before = sorted(p.name for p in wh.out.iterdir())
    registry_sql = (
        "select client_code, period_label, edition, html_path, pdf_path, pages, generated_at "
        "from marts.fct_review_pack where period_label = '2026-10' order by 1, 2, 3"
    )
    rows_before = query_dicts(wh.dsn, registry_sql)
    assert [(r["client_code"], r["edition"], r["pdf_path"]) for r in rows_before] == sorted(
        (r.client_code, r.edition, str(r.pdf_path)) for r in first
    )

    second = build_closed_period_packs(wh.dsn, date(2026, 11, 1), wh.out, log=lambda _: None)
    assert len(second) == len(first)
    assert sorted(p.name for p in wh.out.iterdir()) == files_before  # the same files, nothing more
    assert all(p.stat().st_mtime_ns > t for p, t in before.items())
    rows_after = query_dicts(wh.dsn, registry_sql)

    def stable(rows: list[dict]) -> list[tuple]:
        return [tuple(v for k, v in r.items() if k != "generated_at") for r in rows]

    assert stable(rows_after) == stable(rows_before)
    assert all(a["generated_at"] > b["generated_at"] for a, b in zip(rows_after, rows_before, strict=True))
    dupes = query_dicts(
        wh.dsn,
        "select client_code, period_type, period_start, edition, count(*) as n from raw.review_packs "
        "group by 1, 2, 3, 4 having count(*) > 1",
    )
    assert dupes == []
    # a run that closes nothing builds nothing
    assert build_closed_period_packs(wh.dsn, date(2026, 11, 2), wh.out, log=lambda _: None) == []


def test_registry_view_is_published_readable_and_survives_the_next_build(
    wh: Warehouse, tmp_path: Path
) -> None:
    """fct_review_pack is a view in marts: the publish grants the reader select on it (ALL TABLES includes
    views), and the next dbt build + publish keep it (its staging model is ephemeral: nothing under it is
    dropped with cascade by the build)."""
    kind = query_dicts(
        wh.dsn,
        "select table_type from information_schema.tables "
        "where table_schema = 'marts' and table_name = 'fct_review_pack'",
    )
    assert kind == [{"table_type": "VIEW"}]
    has_reader = bool(query_dicts(wh.dsn, "select 1 as x from pg_roles where rolname = %s", (READER_ROLE,)))
    if has_reader:
        priv = query_dicts(
            wh.dsn, "select has_table_privilege(%s, 'marts.fct_review_pack', 'select') as ok", (READER_ROLE,)
        )
        assert priv == [{"ok": True}]
    conn = psycopg2.connect(wh.dsn)
    try:
        build_pack(conn, "INITECH", parse_period("2026-Q3"), "client", tmp_path)
    finally:
        conn.close()
    listed = (
        "select count(*) as n from marts.fct_review_pack "
        "where client_code = 'INITECH' and period_label = '2026-Q3' and edition = 'client'"
    )
    assert query_dicts(wh.dsn, listed) == [{"n": 1}]
    # the next nightly's dbt part (the registry's models): the published view is not dropped by the build
    dbt(
        [
            "run",
            "--select",
            "+fct_review_pack",
            "--vars",
            json.dumps({"as_of": AS_OF}),
            "--target-path",
            str(tmp_path / "target"),
            "--log-path",
            str(tmp_path / "logs"),
        ],
        dbt_env(wh.dsn),
    )
    assert query_dicts(wh.dsn, listed) == [{"n": 1}]
    # and its publish (into a schema of its own here, not to replace the module's marts with this partial
    # build): the view moves with the schema and the reader may read it
    publish_marts(wh.dsn, target="marts_review_pack_check")
    try:
        assert query_dicts(wh.dsn, listed.replace("marts.", "marts_review_pack_check.")) == [{"n": 1}]
        if has_reader:
            priv = query_dicts(
                wh.dsn,
                "select has_table_privilege(%s, 'marts_review_pack_check.fct_review_pack', 'select') as ok",
                (READER_ROLE,),
            )
            assert priv == [{"ok": True}]
    finally:
        with psycopg2.connect(wh.dsn) as conn, conn.cursor() as cur:
            cur.execute("drop schema if exists marts_review_pack_check cascade")
        conn.close()
