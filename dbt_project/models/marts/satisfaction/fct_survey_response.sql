-- One row per survey answer, with the SLA outcome of the ticket it is about (fct_ticket_sla, over all the
-- ticket's objectives), so that "did breached tickets score lower?" is one group by.

with

surveys as (
    select * from {{ ref('int_surveys_joined_to_tickets') }}
),

outcomes as (
    select * from {{ ref('int_ticket_sla_outcomes_summarised') }}
),

final as (
    select
        surveys.response_id,
        surveys.client_code,
        surveys.service_code,
        surveys.survey_type,
        surveys.ticket_id,
        surveys.sent_at,
        surveys.answered_at,
        surveys.period_month,
        surveys.csat_score,
        surveys.is_satisfied,
        surveys.nps_score,
        surveys.nps_category,
        surveys.ces_score,
        surveys.comment,
        outcomes.sla_outcome as ticket_sla_outcome,
        outcomes.sla_objectives as ticket_sla_objectives,
        outcomes.sla_objectives_breached as ticket_sla_objectives_breached,
        outcomes.sla_overrun_minutes::numeric(14, 2) as ticket_sla_overrun_minutes,
        outcomes.sla_overrun_pct::numeric(12, 2) as ticket_sla_overrun_pct
    from surveys
    left join outcomes
        on
            surveys.ticket_id = outcomes.ticket_id
            and surveys.client_code = outcomes.client_code
    where surveys.is_answered
)

select * from final
