{#-
    Assignment segments of the groups that are the party of an OLA or UC, measured on that agreement's
    objectives: business minutes held, and business minutes paused (the ticket sat in one of the
    agreement's pause statuses while the group held it), both on the objective's calendar.
    The objective comes from the agreement version in force on the ticket's opening day (client time zone),
    matched on the ticket's type and current priority, as for the SLA.

    Two metrics, one row per measured stretch:
    - resolution: every segment of the group (its held time, added up per ticket downstream);
    - response (time to own, SERVICE_LEVELS.md: opened -> first response, here from the moment the group
      first got the ticket): the group's first segment, from its start to the ticket's first response if
      that came while the group held it, else to the end of that segment (the group handed the ticket on or
      resolved it: it acted on it). Only for groups that got the ticket before its first response: the
      ticket's first response is the only response the data records, and a group that receives an already
      answered ticket has no response of its own to measure. Running while the group still holds the
      unanswered ticket at the cut-off.
-#}
with

segments as (
    select * from {{ ref('int_ticket_assignment_segments') }}
),

ticket_events as (
    select * from {{ ref('stg_canonical__ticket_events') }}
),

agreements as (
    select * from {{ ref('stg_contracts__agreements') }}
),

objectives as (
    select * from {{ ref('stg_contracts__objectives') }}
),

-- Each status holds from its event until the next status event of the ticket (open-ended for the last).
status_spells as (
    select
        ticket_id,
        to_value as status,
        occurred_at as spell_start,
        lead(occurred_at) over (partition by ticket_id order by occurred_at) as spell_end
    from ticket_events
    where changed_field = 'status'
),

first_holds as (
    select
        *,
        row_number() over (partition by ticket_id, party order by segment_start) as hold_number
    from segments
),

measured_stretches as (
    select
        ticket_id,
        party,
        segment_start,
        segment_end,
        is_running,
        client_code,
        service_code,
        ticket_type,
        priority,
        opened_at,
        client_timezone,
        'resolution' as metric
    from segments
    union all
    select
        ticket_id,
        party,
        segment_start,
        least(first_response_at, segment_end) as segment_end,
        is_running and first_response_at is null as is_running,
        client_code,
        service_code,
        ticket_type,
        priority,
        opened_at,
        client_timezone,
        'response' as metric
    from first_holds
    where
        hold_number = 1
        and (first_response_at is null or first_response_at >= segment_start)
),

matched_segments as (
    select
        measured_stretches.*,
        agreements.kind as agreement_kind,
        agreements.agreement_id,
        agreements.valid_from as agreement_valid_from,
        agreements.pause_statuses,
        objectives.objective_id,
        objectives.calendar_code,
        objectives.target_minutes,
        objectives.threshold_pct
    from measured_stretches
    inner join agreements
        on
            measured_stretches.party = agreements.party
            and agreements.kind in ('OLA', 'UC')
            and (
                agreements.services is null or measured_stretches.service_code = any(agreements.services)
            )
            and (measured_stretches.opened_at at time zone measured_stretches.client_timezone)::date
            >= agreements.valid_from
            and (
                agreements.valid_to is null
                or (measured_stretches.opened_at at time zone measured_stretches.client_timezone)::date
                <= agreements.valid_to
            )
    inner join objectives
        on
            agreements.agreement_id = objectives.agreement_id
            and agreements.valid_from = objectives.valid_from
            and measured_stretches.metric = objectives.metric
            and measured_stretches.ticket_type = objectives.ticket_type
            and measured_stretches.priority = objectives.priority
),

-- Business minutes of each segment, and of the pause spells inside it (clipped to the segment). The pauses
-- are a correlated subquery rather than a join to an aggregate: with the row estimates PostgreSQL makes for
-- these CTEs, the join was planned as a nested loop re-aggregating the pauses for every segment.
final as (
    select
        matched_segments.ticket_id,
        matched_segments.party,
        matched_segments.agreement_kind,
        matched_segments.agreement_id,
        matched_segments.agreement_valid_from,
        matched_segments.objective_id,
        matched_segments.metric,
        matched_segments.calendar_code,
        matched_segments.target_minutes,
        matched_segments.threshold_pct,
        matched_segments.client_code,
        matched_segments.service_code,
        matched_segments.ticket_type,
        matched_segments.priority,
        matched_segments.client_timezone,
        matched_segments.segment_start,
        matched_segments.segment_end,
        matched_segments.is_running,
        -- Rounded to 0.01 minute (0.6 s), as in fct_ticket_sla.
        round(
            {{ business_minute_mark('matched_segments.calendar_code', 'matched_segments.segment_end') }}
            - {{ business_minute_mark('matched_segments.calendar_code', 'matched_segments.segment_start') }},
            2
        )::numeric(14, 2) as segment_business_minutes,
        round(coalesce((
            select
                sum(
                    {{ business_minute_mark(
                        'matched_segments.calendar_code',
                        'least(matched_segments.segment_end, coalesce(status_spells.spell_end, '
                        ~ 'matched_segments.segment_end))'
                    ) }}
                    - {{ business_minute_mark(
                        'matched_segments.calendar_code',
                        'greatest(matched_segments.segment_start, status_spells.spell_start)'
                    ) }}
                )
            from status_spells
            where
                status_spells.ticket_id = matched_segments.ticket_id
                and status_spells.status = any(matched_segments.pause_statuses)
                and status_spells.spell_start < matched_segments.segment_end
                and coalesce(status_spells.spell_end > matched_segments.segment_start, true)
        ), 0), 2)::numeric(14, 2) as paused_business_minutes
    from matched_segments
)

select * from final
