"""Read what a review pack shows, for one client and period, from the published marts.

Every query is filtered on the client (isolation is by construction: nothing of another client is ever
read), and the OLA/UC view and the manager findings are read only for the manager edition. Rows come back
as dicts with the marts' own column names, so the template prints the marts' figures unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg2 import sql

from slm_platform.reports.periods import Period

EDITIONS = ("client", "manager")
TREND_PERIODS = 12
# Long lists are cut so that every section fits its page (the pack's page count is then known in advance,
# docs/design/review_pack.md); the totals are always printed, and the pack says what was left out.
MAX_BREACHES = 20
MAX_OUTAGES = 10
MAX_VERBATIMS = 10
MAX_COMPLAINTS = 10
MAX_MAJOR_INCIDENTS = 8
MAX_SIP_ACTIONS = 14
MAX_FINDINGS = 12
STAGING_SCHEMA = "staging"

Row = dict[str, Any]


class ReviewDataError(LookupError):
    """The review cannot be built: unknown client, future period, or no data for the period."""


@dataclass
class ReviewData:
    client: Row
    period: Period
    edition: str
    as_of: datetime
    schema: str
    review: Row  # fct_service_review: the headline row
    freshness: list[Row]
    objectives: list[Row]
    trend: list[Row]  # fct_service_review, the last TREND_PERIODS periods of the type, oldest first
    breaches: list[Row]
    breaches_total: int
    outages: list[Row]
    outages_total: int
    availability: list[Row]
    verbatims: list[Row]
    verbatims_total: int
    complaints: list[Row]
    major_incidents: list[Row]
    major_incidents_total: int
    sip_actions: list[Row]
    sip_actions_total: int
    findings: list[Row]
    findings_total: int
    ola_uc: list[Row] = field(default_factory=list)  # manager edition only
    agreement_support: list[Row] = field(default_factory=list)  # manager edition only

    @property
    def in_progress(self) -> bool:
        return not self.review["is_period_complete"]


def _rows(cur, query: sql.Composable, args: dict) -> list[Row]:
    cur.execute(query, args)
    cols = [d.name for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _one(cur, query: sql.Composable, args: dict) -> Row | None:
    rows = _rows(cur, query, args)
    return rows[0] if rows else None


def load_review(
    conn, client_code: str, period: Period, edition: str = "client", schema: str = "marts"
) -> ReviewData:
    """Everything one pack shows (psycopg2 connection, read only). Raises :class:`ReviewDataError`."""
    if edition not in EDITIONS:
        raise ValueError(f"edition must be one of {EDITIONS}, not {edition!r}")
    s = sql.Identifier(schema)
    stg = sql.Identifier(STAGING_SCHEMA)
    args = {
        "client": client_code,
        "ptype": period.period_type,
        "start": period.start,
        "end": period.end,
        "trend_from": period.previous(TREND_PERIODS - 1).start,
    }
    with conn.cursor() as cur:
        client = _one(
            cur, sql.SQL("select * from {}.dim_clients where client_code = %(client)s").format(s), args
        )
        if client is None:
            raise ReviewDataError(f"unknown client {client_code!r}")
        cutoff = _one(cur, sql.SQL("select max(as_of) as as_of from {}.fct_service_review").format(s), args)
        as_of = cutoff["as_of"] if cutoff else None
        if as_of is None:
            raise ReviewDataError("no service review data in the marts yet (has the nightly run published?)")
        if period.start > as_of.date():
            raise ReviewDataError(
                f"period {period.label} is in the future: it starts after the data's cut-off "
                f"({as_of:%Y-%m-%d %H:%M %Z})"
            )
        review = _one(
            cur,
            sql.SQL(
                "select * from {}.fct_service_review where client_code = %(client)s "
                "and period_type = %(ptype)s and period_start = %(start)s"
            ).format(s),
            args,
        )
        if review is None:
            raise ReviewDataError(f"no review data for {client_code} in {period.label}")
        args["as_of"] = as_of
        args["tz"] = client["timezone"]

        freshness = _rows(
            cur,
            sql.SQL(
                "select source, entity, max(finished_at) as last_loaded_at, count(*) as batches "
                "from raw.load_batches where status = 'ok' group by source, entity order by source, entity"
            ),
            args,
        )
        objectives = _rows(
            cur,
            sql.SQL(
                "select * from {}.fct_service_review_objective where client_code = %(client)s "
                "and period_type = %(ptype)s and period_start = %(start)s "
                "order by agreement_id, case metric when 'availability' then 3 when 'csat' then 4 "
                "when 'response' then 1 else 2 end, service_code nulls last, ticket_type, priority, "
                "objective_id"
            ).format(s),
            args,
        )
        trend = _rows(
            cur,
            sql.SQL(
                "select * from {}.fct_service_review where client_code = %(client)s "
                "and period_type = %(ptype)s "
                "and period_start between %(trend_from)s and %(start)s order by period_start"
            ).format(s),
            args,
        )
        # A ticket counts in the period its clock stopped (or it breached while open): period_month, as
        # fct_sla_attainment counts it.
        breach_where = sql.SQL(
            "from {}.fct_ticket_sla where client_code = %(client)s and is_met = false "
            "and period_month >= %(start)s and period_month < %(end)s"
        ).format(s)
        breaches = _rows(
            cur,
            sql.SQL(
                "select ticket_id, service_code, ticket_type, priority, metric, objective_id, "
                "target_minutes, "
                "elapsed_business_minutes, elapsed_business_minutes - target_minutes as overrun_minutes, "
                "is_breached_open, breached_at {} order by elapsed_business_minutes - target_minutes desc, "
                "ticket_id, metric limit {}"
            ).format(breach_where, sql.Literal(MAX_BREACHES)),
            args,
        )
        breaches_total = _one(cur, sql.SQL("select count(*) as n {}").format(breach_where), args)["n"]
        outage_where = sql.SQL(
            "from {}.fct_outage where client_code = %(client)s and agreed_minutes > 0 "
            "and (outage_start at time zone %(tz)s)::date >= %(start)s "
            "and (outage_start at time zone %(tz)s)::date < %(end)s"
        ).format(s)
        outages = _rows(
            cur,
            sql.SQL(
                "select service_code, objective_id, outage_start, outage_end, duration_minutes, "
                "maintenance_minutes, agreed_minutes, source, is_ongoing {} "
                "order by agreed_minutes desc, outage_start, service_code limit {}"
            ).format(outage_where, sql.Literal(MAX_OUTAGES)),
            args,
        )
        outages_total = _one(cur, sql.SQL("select count(*) as n {}").format(outage_where), args)["n"]
        availability = _rows(
            cur,
            sql.SQL(
                "select * from {}.fct_availability where client_code = %(client)s "
                "and period_type = %(ptype)s "
                "and period_start = %(start)s order by service_code, objective_id"
            ).format(s),
            args,
        )
        verbatim_where = sql.SQL(
            "from {}.fct_survey_response where client_code = %(client)s and answered_at is not null "
            "and nullif(btrim(comment), '') is not null "
            "and period_month >= %(start)s and period_month < %(end)s"
        ).format(s)
        verbatims = _rows(
            cur,
            sql.SQL(
                "select response_id, service_code, survey_type, answered_at, csat_score, nps_score, comment, "
                "ticket_sla_outcome {} order by answered_at desc, response_id limit {}"
            ).format(verbatim_where, sql.Literal(MAX_VERBATIMS)),
            args,
        )
        verbatims_total = _one(cur, sql.SQL("select count(*) as n {}").format(verbatim_where), args)["n"]
        complaints = _rows(
            cur,
            sql.SQL(
                "select complaint_id, service_code, category, priority, status, opened_at, closed_at, "
                "business_minutes_to_close, linked_ticket_id, linked_ticket_sla_outcome, linked_outages "
                "from {}.fct_complaint where client_code = %(client)s "
                "and period_month >= %(start)s and period_month < %(end)s "
                "order by opened_at, complaint_id limit {}"
            ).format(s, sql.Literal(MAX_COMPLAINTS)),
            args,
        )
        # Major incidents: their ids live in the tickets (staging view over raw, cut at the run's cut-off so
        # that the list matches the marts' count of fct_ticket_volume).
        major_where = sql.SQL(
            "from {}.stg_canonical__tickets where client_code = %(client)s and is_major "
            "and opened_at < %(as_of)s "
            "and (opened_at at time zone %(tz)s)::date >= %(start)s "
            "and (opened_at at time zone %(tz)s)::date < %(end)s"
        ).format(stg)
        major_incidents = _rows(
            cur,
            sql.SQL(
                "select m.ticket_id, m.service_code, m.priority, m.opened_at, m.resolved_at, "
                "(select string_agg(t.metric || case when t.is_met then ' met' when t.is_met = false "
                "then ' breached' else ' pending' end, ', ' order by t.metric) from {}.fct_ticket_sla t "
                "where t.ticket_id = m.ticket_id and t.client_code = m.client_code) as sla_outcome "
                "from (select * {}) m order by m.opened_at, m.ticket_id limit {}"
            ).format(s, major_where, sql.Literal(MAX_MAJOR_INCIDENTS)),
            args,
        )
        major_incidents_total = _one(cur, sql.SQL("select count(*) as n {}").format(major_where), args)["n"]
        # The register as it stands at the period's end: actions opened before it ends and not closed
        # before it starts.
        sip_where = sql.SQL(
            "from {}.fct_sip_action where client_code = %(client)s and opened_on < %(end)s "
            "and (closed_on is null or closed_on >= %(start)s)"
        ).format(s)
        sip_actions = _rows(
            cur,
            sql.SQL("select * {} order by is_overdue desc, due_on nulls last, action_id limit {}").format(
                sip_where, sql.Literal(MAX_SIP_ACTIONS)
            ),
            args,
        )
        sip_actions_total = _one(cur, sql.SQL("select count(*) as n {}").format(sip_where), args)["n"]
        audience = sql.SQL("") if edition == "manager" else sql.SQL("and audience = 'client'")
        finding_where = sql.SQL(
            "from {}.fct_review_finding where client_code = %(client)s and period_type = %(ptype)s "
            "and period_start = %(start)s {}"
        ).format(s, audience)
        findings = _rows(
            cur,
            sql.SQL(
                "select * {} order by case severity when 'high' then 1 when 'medium' then 2 else 3 end, "
                "finding_kind, subject, finding_id limit {}"
            ).format(finding_where, sql.Literal(MAX_FINDINGS)),
            args,
        )
        findings_total = _one(cur, sql.SQL("select count(*) as n {}").format(finding_where), args)["n"]

        data = ReviewData(
            client=client,
            period=period,
            edition=edition,
            as_of=as_of,
            schema=schema,
            review=review,
            freshness=freshness,
            objectives=objectives,
            trend=trend,
            breaches=breaches,
            breaches_total=breaches_total,
            outages=outages,
            outages_total=outages_total,
            availability=availability,
            verbatims=verbatims,
            verbatims_total=verbatims_total,
            complaints=complaints,
            major_incidents=major_incidents,
            major_incidents_total=major_incidents_total,
            sip_actions=sip_actions,
            sip_actions_total=sip_actions_total,
            findings=findings,
            findings_total=findings_total,
        )
        if edition == "manager":
            # The OLAs and UCs on the client's SLAs in force during the period (their chains), judged over
            # all the tickets they held in the period (the marts do not split an OLA/UC by client).
            chain = sql.SQL(
                "select distinct trim(p) from {s}.dim_agreements a, "
                "unnest(string_to_array(a.supported_by, ',')) as p "
                "where a.kind = 'SLA' and a.party = %(client)s and a.valid_from < %(end)s "
                "and (a.valid_to is null or a.valid_to >= %(start)s)"
            ).format(s=s)
            data.ola_uc = _rows(
                cur,
                sql.SQL(
                    "select * from {}.fct_ola_uc_attainment where period_type = %(ptype)s "
                    "and period_start = %(start)s and agreement_id in ({}) "
                    "order by agreement_kind, agreement_id, metric desc, ticket_type, priority"
                ).format(s, chain),
                args,
            )
            data.agreement_support = _rows(
                cur,
                sql.SQL(
                    "select f.* from {s}.fct_agreement_support f where f.sla_agreement_id in "
                    "(select agreement_id from {s}.dim_agreements where kind = 'SLA' and party = %(client)s) "
                    "and f.sla_valid_from < %(end)s "
                    "and (f.sla_valid_to is null or f.sla_valid_to >= %(start)s) "
                    "order by f.is_supported, f.ticket_type, f.priority"
                ).format(s=s),
                args,
            )
    return data
