"""The major-incident report: one incident, HTML and PDF, in a manager edition and one client edition per
affected client (docs/design/incident_review.md, "Report and dashboard").

Built with the review pack's machinery (:mod:`.render`'s base layout and figure markers, :mod:`.svg`,
:mod:`.pdf`). Read from the published marts ``fct_major_incident`` and ``fct_major_incident_impact`` and the
rows they summarise (``fct_ticket_sla``, ``fct_complaint``, ``fct_survey_response``, ``fct_sip_action``).

Isolation of the client edition is by construction, as in the review pack: every query of a client edition
is filtered on that client, the incident-wide figures of ``fct_major_incident`` (which add up every affected
client) are not printed in it, its totals are summed from the client's own impact rows, and the OLA/UC
segments (internal teams and suppliers) are read only for the manager edition.

Files: ``<out>/<ticket>_manager.html|.pdf`` and ``<out>/<ticket>_client_<CLIENT>.html|.pdf``, replaced
whole on a rerun.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape
from psycopg2 import sql

from slm_platform.reports import svg
from slm_platform.reports.pdf import count_pages, print_pdf
from slm_platform.reports.render import make_local, render
from slm_platform.reports.review_data import _rows
from slm_platform.reports.review_pack import row

TEMPLATE = "incident.html.j2"
EDITIONS = ("client", "manager")
STAGING_SCHEMA = "staging"
PERIOD_ORDER = {"month": 1, "quarter": 2, "year": 3}
# Lists cut so the report stays a few pages; the totals are printed and the report says what it left out.
MAX_LINKED = 15

Row = dict[str, Any]


class IncidentReportError(LookupError):
    """No such major incident in the marts, or the client was not affected by it."""


@dataclass(frozen=True)
class ReportFiles:
    ticket_id: str
    edition: str  # "manager" or "client"
    client_code: str | None  # the client of a client edition; None for the manager edition
    html_path: Path
    pdf_path: Path
    pages: int
    seconds: float


@dataclass
class IncidentData:
    edition: str
    client_code: str | None
    schema: str
    incident: Row  # fct_major_incident
    owner: Row  # dim_clients row of the incident ticket's client (its time zone prints the manager edition)
    clients: list[Row]  # dim_clients of the affected clients shown (client edition: the client alone)
    services: list[Row]  # dim_services of the affected services shown
    tickets: list[Row]  # the incident ticket and its children shown (staging tickets)
    ticket_slas: list[Row]  # fct_ticket_sla of those tickets
    impact: list[Row]  # fct_major_incident_impact rows shown
    complaints: list[Row]
    complaints_total: int
    survey_answers: list[Row]
    survey_answers_total: int
    sip_actions: list[Row]
    segments: list[Row] = field(default_factory=list)  # OLA/UC segments: manager edition only

    @property
    def manager(self) -> bool:
        return self.edition == "manager"

    @property
    def timezone(self) -> str:
        return self.clients[0]["timezone"] if not self.manager else self.owner["timezone"]

    @property
    def availability(self) -> list[Row]:
        """Availability impact of the month containing the opening: the downtime per service and objective
        and the budget it consumed."""
        return [r for r in self.impact if r["metric"] == "availability" and r["period_type"] == "month"]

    @property
    def turned(self) -> list[Row]:
        return [r for r in self.impact if r["turned_breached"]]

    def client_totals(self) -> Row:
        """The client edition's headline, summed from its own rows (never the incident-wide figures)."""
        avail = self.availability
        pcts = [r["budget_consumed_pct"] for r in avail if r["budget_consumed_pct"] is not None]
        return {
            "downtime_minutes": sum((r["incident_minutes"] or Decimal(0) for r in avail), Decimal(0)),
            "max_budget_consumed_pct": max(pcts) if pcts else None,
            "objectives_turned_breached": len(self.turned),
            "complaints": self.complaints_total,
            "survey_answers": self.survey_answers_total,
            "sip_actions": len(self.sip_actions),
        }


def load_incident(
    conn, ticket_id: str, edition: str = "manager", client_code: str | None = None, schema: str = "marts"
) -> IncidentData:
    """What one report shows (psycopg2 connection, read only). Raises :class:`IncidentReportError`."""
    if edition not in EDITIONS:
        raise ValueError(f"edition must be one of {EDITIONS}, not {edition!r}")
    if (edition == "client") != (client_code is not None):
        raise ValueError("a client edition needs a client_code, the manager edition none")
    s = sql.Identifier(schema)
    stg = sql.Identifier(STAGING_SCHEMA)
    args: dict[str, Any] = {"t": ticket_id, "c": client_code}
    # The client predicate of every client-edition query; the manager edition reads every affected client.
    own = sql.SQL("and client_code = %(c)s") if client_code else sql.SQL("")
    with conn.cursor() as cur:
        found = _rows(
            cur, sql.SQL("select * from {}.fct_major_incident where ticket_id = %(t)s").format(s), args
        )
        if not found:
            raise IncidentReportError(f"no major incident {ticket_id!r} in {schema}.fct_major_incident")
        incident = found[0]
        if client_code is not None and client_code not in incident["affected_clients"]:
            raise IncidentReportError(f"client {client_code!r} was not affected by incident {ticket_id}")
        args["clients"] = [client_code] if client_code else list(incident["affected_clients"])
        args["services"] = list(incident["affected_services"])
        args["tickets"] = [ticket_id, *incident["child_tickets"]]
        args["owner"] = incident["client_code"]
        owner = _rows(
            cur, sql.SQL("select * from {}.dim_clients where client_code = %(owner)s").format(s), args
        )
        clients = _rows(
            cur,
            sql.SQL(
                "select * from {}.dim_clients where client_code = any(%(clients)s) order by client_code"
            ).format(s),
            args,
        )
        services = _rows(
            cur,
            sql.SQL(
                "select * from {}.dim_services where service_code = any(%(services)s) "
                "and client_code = any(%(clients)s) order by client_code, service_code"
            ).format(s),
            args,
        )
        tickets = _rows(
            cur,
            sql.SQL(
                "select ticket_id, client_code, service_code, ticket_type, priority, status, opened_at, "
                "first_response_at, resolved_at, closed_at, ticket_id = %(t)s as is_incident "
                "from {}.stg_canonical__tickets where ticket_id = any(%(tickets)s) {} "
                "order by ticket_id <> %(t)s, opened_at, ticket_id"
            ).format(stg, own),
            args,
        )
        ticket_slas = _rows(
            cur,
            sql.SQL(
                "select * from {}.fct_ticket_sla where ticket_id = any(%(tickets)s) {} "
                "order by ticket_id <> %(t)s, ticket_id, metric desc"
            ).format(s, own),
            args,
        )
        impact = _rows(
            cur,
            sql.SQL(
                "select * from {}.fct_major_incident_impact where ticket_id = %(t)s {} "
                "order by client_code, metric <> 'availability', service_code, objective_id, "
                "case period_type when 'month' then 1 when 'quarter' then 2 else 3 end"
            ).format(s, own),
            args,
        )
        complaint_where = sql.SQL(
            "from {}.fct_complaint where linked_ticket_id = any(%(tickets)s) {}"
        ).format(s, own)
        complaints = _rows(
            cur,
            sql.SQL("select * {} order by opened_at, complaint_id limit {}").format(
                complaint_where, sql.Literal(MAX_LINKED)
            ),
            args,
        )
        count = sql.SQL("select count(*) as n {}")
        complaints_total = _rows(cur, count.format(complaint_where), args)[0]["n"]
        answer_where = sql.SQL("from {}.fct_survey_response where ticket_id = any(%(tickets)s) {}").format(
            s, own
        )
        survey_answers = _rows(
            cur,
            sql.SQL("select * {} order by sent_at, response_id limit {}").format(
                answer_where, sql.Literal(MAX_LINKED)
            ),
            args,
        )
        answers_total = _rows(cur, count.format(answer_where), args)[0]["n"]
        sip_actions = _rows(
            cur,
            sql.SQL(
                "select * from {}.fct_sip_action where source_type = 'incident' and source_ref = %(t)s {} "
                "order by opened_on, action_id"
            ).format(s, own),
            args,
        )
    data = IncidentData(
        edition=edition,
        client_code=client_code,
        schema=schema,
        incident=incident,
        owner=owner[0],
        clients=clients,
        services=services,
        tickets=tickets,
        ticket_slas=ticket_slas,
        impact=impact,
        complaints=complaints,
        complaints_total=complaints_total,
        survey_answers=survey_answers,
        survey_answers_total=answers_total,
        sip_actions=sip_actions,
    )
    if edition == "manager":
        data.segments = list(incident["ola_uc_segments"] or [])
    return data


# ------------------------------------------------------------------------------------------- rendering


def budget_chart(rows: list[Row], *, width: int = 520) -> Markup:
    """Error budget consumed by the incident per availability objective (one bar each, share of the
    period's budget), a dashed line at 100 %: beyond it the incident alone overspent the budget."""
    bar_h, gap, left, top = 16, 8, 150, 22
    height = top + len(rows) * (bar_h + gap) + 18
    pcts = [float(r["budget_consumed_pct"]) for r in rows if r["budget_consumed_pct"] is not None]
    scale = max([100.0, *pcts]) * 1.12
    plot_w = width - left - 150

    def px(v: float) -> float:
        return max(0.0, v) / scale * plot_w

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Error budget consumed" style="{svg.FONT}">',
        '<text x="0" y="13" font-size="11" font-weight="bold" fill="#1f2933">'
        "Error budget consumed by the incident (% of the month's budget)</text>",
    ]
    if not rows:
        out.append(
            f'<text x="0" y="{top + 12}" font-size="10" fill="{svg.TEXT}">no availability objective '
            "touched</text></svg>"
        )
        return Markup("".join(out))
    x100 = left + px(100.0)
    for i, r in enumerate(rows):
        y = top + i * (bar_h + gap)
        pct = r["budget_consumed_pct"]
        v = float(pct) if pct is not None else 0.0
        colour = svg.BAD if v > 100 else "#d68910" if v > 50 else svg.NEUTRAL
        label = f"{r['service_code']}"
        minutes = (
            f"{svg.data_value(r['incident_minutes'])} of {svg.data_value(r['error_budget_minutes'])} min"
        )
        shown = "no budget" if pct is None else f"{v:.2f} %"
        out.append(
            f'<text x="{left - 6}" y="{y + bar_h - 4}" font-size="9" fill="#1f2933" text-anchor="end">'
            f"{escape(label)}</text>"
            f'<rect x="{left}" y="{y}" width="{plot_w:.1f}" height="{bar_h}" fill="#eef1f5"/>'
            f'<rect x="{left}" y="{y}" width="{px(v):.1f}" height="{bar_h}" fill="{colour}" '
            f'data-row="fct_major_incident_impact" data-figure="budget_consumed_pct" '
            f"data-key='{escape(_bar_key(r))}' "
            f'data-value="{escape(svg.data_value(pct))}"/>'
            f'<text x="{left + plot_w + 6}" y="{y + bar_h - 4}" font-size="9" fill="{svg.TEXT}">'
            f"{escape(shown)} · {escape(minutes)}</text>"
        )
    out.append(
        f'<line x1="{x100:.1f}" x2="{x100:.1f}" y1="{top - 4}" y2="{height - 14}" stroke="{svg.BAD}" '
        f'stroke-width="1" stroke-dasharray="4 3"/>'
        f'<text x="{x100:.1f}" y="{height - 3}" font-size="8" fill="{svg.BAD}" text-anchor="middle">'
        "100 % of the budget</text></svg>"
    )
    return Markup("".join(out))


def _bar_key(r: Row) -> str:
    return json.dumps(
        {
            k: svg.data_value(r[k])
            for k in ("client_code", "service_code", "objective_id", "period_type", "period_start")
        },
        sort_keys=True,
    )


def impact_key(r: Row) -> Markup:
    """The row marker of a fct_major_incident_impact row (its key within the incident)."""
    return row(
        "fct_major_incident_impact",
        client_code=r["client_code"],
        service_code=r["service_code"],
        objective_id=r["objective_id"],
        period_type=r["period_type"],
        period_start=r["period_start"],
    )


def render_incident(d: IncidentData, generated_at: datetime) -> str:
    local = make_local(d.timezone)
    inc = d.incident
    as_of_text = local(inc["as_of"], "%Y-%m-%d %H:%M %Z")
    who = "manager edition" if d.manager else f"client edition {d.client_code}"
    footer = f"Major incident {inc['ticket_id']} · {who} · cut-off {as_of_text}"
    return render(
        TEMPLATE,
        d=d,
        inc=inc,
        row=row,
        impact_key=impact_key,
        local=local,
        totals=d.client_totals(),
        budget_chart=budget_chart(d.availability),
        footer=Markup(footer.replace("\\", "").replace('"', "").replace("<", "").replace(">", "")),
        utc=UTC,
        as_of_text=as_of_text,
        generated_text=local(generated_at, "%Y-%m-%d %H:%M %Z"),
    )


def report_stem(ticket_id: str, edition: str, client_code: str | None = None) -> str:
    return f"{ticket_id}_{edition}" + (f"_{client_code}" if client_code else "")


def write_incident_report(
    dsn: str,
    ticket_id: str,
    edition: str,
    client_code: str | None,
    out_dir: Path,
    schema: str = "marts",
    generated_at: datetime | None = None,
) -> ReportFiles:
    """Write one edition (HTML, then PDF printed by chromium) into ``out_dir``.

    Raises IncidentReportError (unknown incident, client not affected), PdfError (chromium)."""
    import psycopg2

    t0 = time.perf_counter()
    conn = psycopg2.connect(dsn)
    try:
        conn.set_session(readonly=True)
        data = load_incident(conn, ticket_id, edition, client_code, schema)
    finally:
        conn.close()
    html = render_incident(data, generated_at or datetime.now(UTC))
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = report_stem(ticket_id, edition, client_code)
    html_path = out_dir / f"{stem}.html"
    pdf_path = out_dir / f"{stem}.pdf"
    tmp = html_path.with_name(html_path.name + ".part")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, html_path)  # a reader never sees half a report; a rerun replaces it whole
    print_pdf(html_path, pdf_path)
    return ReportFiles(
        ticket_id, edition, client_code, html_path, pdf_path, count_pages(pdf_path), time.perf_counter() - t0
    )


def affected_clients(dsn: str, ticket_id: str, schema: str = "marts") -> list[str]:
    """The clients a major incident affected (fct_major_incident.affected_clients)."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("select affected_clients from {}.fct_major_incident where ticket_id = %s").format(
                    sql.Identifier(schema)
                ),
                (ticket_id,),
            )
            found = cur.fetchone()
    finally:
        conn.close()
    if found is None:
        raise IncidentReportError(f"no major incident {ticket_id!r} in {schema}.fct_major_incident")
    return list(found[0])


def write_incident_reports(
    dsn: str,
    ticket_id: str,
    out_dir: Path,
    schema: str = "marts",
    clients: Iterable[str] | None = None,
    log: Callable[[str], None] = print,
) -> list[ReportFiles]:
    """The manager edition and one client edition per affected client (or per client of ``clients``, each
    of which must have been affected). Raises IncidentReportError, PdfError."""
    affected = affected_clients(dsn, ticket_id, schema)
    wanted = sorted(set(clients)) if clients else affected
    for code in wanted:
        if code not in affected:
            raise IncidentReportError(f"client {code!r} was not affected by incident {ticket_id}")
    results = [write_incident_report(dsn, ticket_id, "manager", None, out_dir, schema)]
    results += [write_incident_report(dsn, ticket_id, "client", code, out_dir, schema) for code in wanted]
    for r in results:
        log(f"{r.pdf_path} ({r.pages} pages, {r.seconds:.1f} s)")
    return results
