{#-
    One row per stretch of time an assignment group held a ticket: each assignment_group event starts a
    segment for its to_value, which ends at the ticket's next assignment event, at its resolution, or at the
    run's cut-off, whichever comes first. The cut-off is the dbt var `as_of` (default: the latest timestamp
    loaded), never now(), so a rerun on the same data gives the same figures.

    Reopened tickets: the resolution that ends a hold is the ticket's final one, as for the SLA clock
    (int_tickets_matched_to_objectives): the later of resolved_at and the last status event to 'resolved',
    void when a reopen (a status event leaving resolved/closed for another status) follows it. A resolution
    that was undone by a reopen ends nothing: the group holding the ticket kept holding it (the time spent
    wrongly resolved counts, as it does against the SLA, so the chain's holds cover the SLA clock), and a group
    the ticket is assigned to after a reopen holds it from that assignment.
-#}
with

tickets as (
    select * from {{ ref('stg_canonical__tickets') }}
),

ticket_events as (
    select * from {{ ref('stg_canonical__ticket_events') }}
),

clients as (
    select * from {{ ref('stg_canonical__clients') }}
),

-- Same cut-off as the SLA clocks (int_tickets_matched_to_objectives): nothing after it exists.
cut_off as (
    {%- if var('as_of', none) %}
        select cast('{{ var("as_of") }}' as timestamptz) as as_of
    {%- else %}
        select
            greatest(
                (
                    select max(greatest(opened_at, first_response_at, resolved_at, closed_at, updated_at))
                    from tickets
                ),
                (select max(occurred_at) from ticket_events)
            ) as as_of
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
    cross join cut_off
    where
        ticket_events.changed_field = 'status'
        and ticket_events.occurred_at <= cut_off.as_of
    group by ticket_events.ticket_id
),

last_resolutions as (
    select
        tickets.ticket_id,
        status_history.last_reopened_at,
        greatest(
            case when tickets.resolved_at <= cut_off.as_of then tickets.resolved_at end,
            status_history.last_resolved_event_at
        ) as last_resolved_at
    from tickets
    cross join cut_off
    left join status_history on tickets.ticket_id = status_history.ticket_id
),

final_resolutions as (
    select
        ticket_id,
        case when last_reopened_at > last_resolved_at then null else last_resolved_at end as resolved_at
    from last_resolutions
),

assignment_events as (
    select
        ticket_id,
        occurred_at as segment_start,
        to_value as party,
        lead(occurred_at) over (partition by ticket_id order by occurred_at) as next_assignment_at
    from ticket_events
    where changed_field = 'assignment_group'
),

segments as (
    select
        assignment_events.ticket_id,
        tickets.client_code,
        tickets.service_code,
        tickets.ticket_type,
        tickets.priority,
        tickets.opened_at,
        clients.timezone as client_timezone,
        assignment_events.party,
        assignment_events.segment_start,
        final_resolutions.resolved_at,
        -- Nothing after the cut-off exists: a later first response has not happened yet.
        case
            when tickets.first_response_at <= cut_off.as_of then tickets.first_response_at
        end as first_response_at,
        least(
            assignment_events.next_assignment_at, final_resolutions.resolved_at, cut_off.as_of
        ) as segment_end,
        -- Still running: nobody took the ticket over and it was not (finally) resolved by the cut-off.
        (
            coalesce(assignment_events.next_assignment_at > cut_off.as_of, true)
            and final_resolutions.resolved_at is null
        ) as is_running
    from assignment_events
    inner join tickets on assignment_events.ticket_id = tickets.ticket_id
    inner join final_resolutions on assignment_events.ticket_id = final_resolutions.ticket_id
    inner join clients on tickets.client_code = clients.client_code
    cross join cut_off
    -- An event that clears the group (empty to_value) ends the previous segment but starts none.
    where nullif(assignment_events.party, '') is not null
),

final as (
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
        first_response_at,
        resolved_at,
        client_timezone
    from segments
    -- Assignments after the resolution (or the cut-off) held nothing measurable.
    where segment_end > segment_start
)

select * from final
