{#-
    One row per ticket: the run's cut-off and the resolution that stops the ticket's clock, the one rule the SLA
    clocks (int_tickets_matched_to_objectives) and the OLA/UC holds (int_ticket_assignment_segments) both read.

    Cut-off: the dbt var `as_of`, default the latest loaded ticket timestamp (never now()), so a rerun on the
    same data gives the same figures. Nothing after it exists: later events and a later resolved_at are ignored.

    Final resolution: the LAST resolution, the later of resolved_at and the last status event to 'resolved'; a
    reopen (a status event leaving resolved/closed for another status) after it voids it: the ticket is open
    again (final_resolved_at null) until it is resolved again. The time spent resolved before a reopen counts:
    the clock kept running, the issue was not solved.
-#}
with

tickets as (
    select * from {{ ref('stg_canonical__tickets') }}
),

ticket_events as (
    select * from {{ ref('stg_canonical__ticket_events') }}
),

cutoff as (
    {%- if var('as_of', none) %}
        select cast('{{ var("as_of") }}' as timestamptz) as clock_cutoff_at
    {%- else %}
        select
            greatest(
                (
                    select max(greatest(opened_at, first_response_at, resolved_at, closed_at, updated_at))
                    from tickets
                ),
                (select max(occurred_at) from ticket_events)
            ) as clock_cutoff_at
    {%- endif %}
),

status_history as (
    select
        ticket_events.ticket_id,
        max(ticket_events.occurred_at) filter (
            where ticket_events.to_value = 'resolved'
        ) as last_resolved_event_at,
        max(ticket_events.occurred_at) filter (
            where
            ticket_events.from_value in ('resolved', 'closed')
            and ticket_events.to_value not in ('resolved', 'closed')
        ) as last_reopened_at
    from ticket_events
    cross join cutoff
    where
        ticket_events.changed_field = 'status'
        and ticket_events.occurred_at <= cutoff.clock_cutoff_at
    group by ticket_events.ticket_id
),

last_resolutions as (
    select
        tickets.ticket_id,
        cutoff.clock_cutoff_at,
        status_history.last_reopened_at,
        greatest(
            case when tickets.resolved_at <= cutoff.clock_cutoff_at then tickets.resolved_at end,
            status_history.last_resolved_event_at
        ) as last_resolved_at
    from tickets
    cross join cutoff
    left join status_history on tickets.ticket_id = status_history.ticket_id
),

final_resolutions as (
    select
        ticket_id,
        clock_cutoff_at,
        last_resolved_at,
        last_reopened_at,
        case when last_reopened_at > last_resolved_at then null else last_resolved_at end as final_resolved_at
    from last_resolutions
),

final as (
    select * from final_resolutions
)

select * from final
