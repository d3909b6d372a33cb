{#-
    One row per ticket, OLA/UC party that held it and metric: for resolution, the group's total held
    business minutes on that ticket (all its segments, minus pauses); for response, its one response stretch
    (int_ola_uc_ticket_holds); against the OLA/UC objective's target.
    A hold counts in the month (client time zone) its last segment ended. A group still holding the ticket
    at the cut-off is not counted yet, unless it is already over target: then it counts as missed in the
    cut-off's month, so a stuck ticket is never hidden.
-#}
with

holds as (
    select * from {{ ref('int_ola_uc_ticket_holds') }}
),

per_ticket as (
    select
        ticket_id,
        party,
        agreement_kind,
        agreement_id,
        agreement_valid_from,
        objective_id,
        metric,
        calendar_code,
        target_minutes,
        threshold_pct,
        client_code,
        service_code,
        ticket_type,
        priority,
        client_timezone,
        count(*) as segments,
        sum(segment_business_minutes)::numeric(14, 2) as segment_business_minutes,
        sum(paused_business_minutes)::numeric(14, 2) as paused_business_minutes,
        sum(segment_business_minutes - paused_business_minutes)::numeric(14, 2) as held_business_minutes,
        max(segment_end) as last_segment_end,
        bool_or(is_running) as is_running
    from holds
    group by
        ticket_id, party, agreement_kind, agreement_id, agreement_valid_from, objective_id, metric,
        calendar_code, target_minutes, threshold_pct, client_code, service_code, ticket_type, priority,
        client_timezone
),

final as (
    select
        ticket_id,
        party,
        agreement_kind,
        agreement_id,
        agreement_valid_from,
        objective_id,
        metric,
        calendar_code,
        target_minutes,
        threshold_pct,
        client_code,
        service_code,
        ticket_type,
        priority,
        segments,
        segment_business_minutes,
        paused_business_minutes,
        held_business_minutes,
        last_segment_end,
        is_running,
        held_business_minutes <= target_minutes as is_met,
        not is_running or held_business_minutes > target_minutes as is_counted,
        date_trunc('month', last_segment_end at time zone client_timezone)::date as period_month
    from per_ticket
)

select * from final
