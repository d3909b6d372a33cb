{#-
    One row per major incident: its timeline (real time, and business time on its SLA objectives' calendars),
    what it touched (affected services and clients: its own and its child tickets'), the downtime inside
    agreed service time it overlapped (int_major_incident_downtime, the minutes fct_availability counts), the
    error budget that burnt, how many objective periods it turned from met to breached
    (fct_major_incident_impact), who held it (OLA/UC segments), and the complaints, survey answers and SIP
    actions linked to it. As of the run's cut-off: an open incident runs to it.
-#}
with

tickets as (
    select * from {{ ref('stg_canonical__tickets') }}
),

incident_tickets as (
    select * from {{ ref('int_major_incident_tickets') }}
),

windows as (
    select * from {{ ref('int_major_incident_windows') }}
),

downtime as (
    select * from {{ ref('int_major_incident_downtime') }}
),

impact as (
    select * from {{ ref('fct_major_incident_impact') }}
),

availability as (
    select * from {{ ref('fct_availability') }}
),

ticket_sla as (
    select * from {{ ref('fct_ticket_sla') }}
),

ola_uc as (
    select * from {{ ref('int_ola_uc_ticket_attainment') }}
),

complaints as (
    select * from {{ ref('fct_complaint') }}
),

survey_responses as (
    select * from {{ ref('fct_survey_response') }}
),

sip_actions as (
    select * from {{ ref('fct_sip_action') }}
),

incidents as (
    select
        incident_id,
        min(window_start) as window_start,
        min(window_end) as window_end,
        bool_and(is_resolved) as is_resolved,
        min(cutoff_at) as cutoff_at,
        array_agg(ticket_id order by ticket_id) filter (where not is_incident_ticket) as child_tickets
    from incident_tickets
    group by incident_id
),

affected as (
    select
        incident_id,
        array_agg(distinct service_code order by service_code) as affected_services,
        array_agg(distinct client_code order by client_code) as affected_clients
    from windows
    group by incident_id
),

-- Whole window: the months partition it, so their sum is the incident's downtime.
downtime_per_incident as (
    select
        downtime.incident_id,
        sum(downtime.incident_minutes) as downtime_minutes,
        max(
            case
                when availability.error_budget_minutes > 0
                    then 100 * round(downtime.incident_minutes, 2) / availability.error_budget_minutes
            end
        ) as max_budget_consumed_pct
    from downtime
    left join availability
        on
            downtime.service_code = availability.service_code
            and downtime.objective_id = availability.objective_id
            and downtime.period_type = availability.period_type
            and downtime.period_start = availability.period_start
    where downtime.period_type = 'month'
    group by downtime.incident_id
),

turned as (
    select
        ticket_id as incident_id,
        count(*) filter (where turned_breached) as objectives_turned_breached
    from impact
    group by ticket_id
),

sla_clocks as (
    select
        ticket_sla.ticket_id as incident_id,
        max(ticket_sla.elapsed_business_minutes) filter (where ticket_sla.metric = 'response')
            as response_business_minutes,
        max(ticket_sla.elapsed_business_minutes) filter (where ticket_sla.metric = 'resolution')
            as resolution_business_minutes,
        bool_and(ticket_sla.is_met) filter (where ticket_sla.metric = 'response') as response_met,
        bool_and(ticket_sla.is_met) filter (where ticket_sla.metric = 'resolution') as resolution_met
    from ticket_sla
    inner join incidents on ticket_sla.ticket_id = incidents.incident_id
    group by ticket_sla.ticket_id
),

segments as (
    select
        ola_uc.ticket_id as incident_id,
        jsonb_agg(
            jsonb_build_object(
                'party', ola_uc.party,
                'kind', ola_uc.agreement_kind,
                'agreement_id', ola_uc.agreement_id,
                'metric', ola_uc.metric,
                'held_business_minutes', ola_uc.held_business_minutes,
                'target_minutes', ola_uc.target_minutes,
                'is_met', ola_uc.is_met
            )
            order by ola_uc.last_segment_end, ola_uc.party, ola_uc.metric
        ) as ola_uc_segments
    from ola_uc
    inner join incidents on ola_uc.ticket_id = incidents.incident_id
    group by ola_uc.ticket_id
),

linked_complaints as (
    select
        incident_tickets.incident_id,
        count(distinct complaints.complaint_id) as complaints
    from incident_tickets
    inner join complaints on incident_tickets.ticket_id = complaints.linked_ticket_id
    group by incident_tickets.incident_id
),

linked_answers as (
    select
        incident_tickets.incident_id,
        count(distinct survey_responses.response_id) as survey_answers
    from incident_tickets
    inner join survey_responses on incident_tickets.ticket_id = survey_responses.ticket_id
    group by incident_tickets.incident_id
),

raised_actions as (
    select
        source_ref as incident_id,
        count(*) as sip_actions,
        count(*) filter (where status = 'open') as sip_actions_open
    from sip_actions
    where source_type = 'incident'
    group by source_ref
),

final as (
    -- Column order of the table comes from the contract (yml), not from this select.
    select  -- noqa: ST06
        tickets.ticket_id,
        tickets.client_code,
        tickets.service_code,
        tickets.priority,
        tickets.status,
        tickets.category,
        tickets.opened_at,
        case when tickets.first_response_at <= incidents.cutoff_at then tickets.first_response_at end
            as first_response_at,
        null::timestamptz as workaround_at,
        case when incidents.is_resolved then incidents.window_end end as resolved_at,
        case when tickets.closed_at <= incidents.cutoff_at then tickets.closed_at end as closed_at,
        round(extract(epoch from incidents.window_end - incidents.window_start) / 60, 2)::numeric(14, 2)
            as duration_minutes,
        sla_clocks.response_business_minutes::numeric(14, 2) as response_business_minutes,
        sla_clocks.resolution_business_minutes::numeric(14, 2) as resolution_business_minutes,
        sla_clocks.response_met,
        sla_clocks.resolution_met,
        affected.affected_services::text[] as affected_services,
        affected.affected_clients::text[] as affected_clients,
        coalesce(incidents.child_tickets, '{}')::text[] as child_tickets,
        round(coalesce(downtime_per_incident.downtime_minutes, 0), 2)::numeric(14, 2) as downtime_minutes,
        round(coalesce(downtime_per_incident.downtime_minutes, 0), 2)::numeric(14, 2)
            as error_budget_consumed_minutes,
        round(downtime_per_incident.max_budget_consumed_pct, 2)::numeric(14, 2) as max_budget_consumed_pct,
        coalesce(turned.objectives_turned_breached, 0)::integer as objectives_turned_breached,
        coalesce(segments.ola_uc_segments, '[]')::jsonb as ola_uc_segments,
        coalesce(linked_complaints.complaints, 0)::integer as complaints,
        coalesce(linked_answers.survey_answers, 0)::integer as survey_answers,
        coalesce(raised_actions.sip_actions, 0)::integer as sip_actions,
        coalesce(raised_actions.sip_actions_open, 0)::integer as sip_actions_open,
        incidents.is_resolved,
        incidents.cutoff_at as as_of
    from incidents
    inner join tickets on incidents.incident_id = tickets.ticket_id
    inner join affected on incidents.incident_id = affected.incident_id
    left join downtime_per_incident on incidents.incident_id = downtime_per_incident.incident_id
    left join turned on incidents.incident_id = turned.incident_id
    left join sla_clocks on incidents.incident_id = sla_clocks.incident_id
    left join segments on incidents.incident_id = segments.incident_id
    left join linked_complaints on incidents.incident_id = linked_complaints.incident_id
    left join linked_answers on incidents.incident_id = linked_answers.incident_id
    left join raised_actions on incidents.incident_id = raised_actions.incident_id
)

select * from final
