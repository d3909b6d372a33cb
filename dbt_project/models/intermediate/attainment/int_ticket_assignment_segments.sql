{#-
    One row per stretch of time an assignment group held a ticket: each assignment_group event starts a
    segment for its to_value, which ends at the ticket's next assignment event, at its resolution, or at the
    run's cut-off, whichever comes first. The cut-off and the resolution are int_ticket_resolutions_derived's, as
    for the SLA clock (int_tickets_matched_to_objectives): the dbt var `as_of` (default: the latest timestamp
    loaded, never now(), so a rerun on the same data gives the same figures) and the ticket's final resolution.

    Reopened tickets: the final resolution is the last one, void when a reopen follows it. A resolution that
    was undone by a reopen ends nothing: the group holding the ticket kept holding it (the time spent wrongly
    resolved counts, as it does against the SLA, so the chain's holds cover the SLA clock), and a group the
    ticket is assigned to after a reopen holds it from that assignment.
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

ticket_resolutions as (
    select * from {{ ref('int_ticket_resolutions_derived') }}
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
        ticket_resolutions.final_resolved_at as resolved_at,
        -- Nothing after the cut-off exists: a later first response has not happened yet.
        case
            when tickets.first_response_at <= ticket_resolutions.clock_cutoff_at
                then tickets.first_response_at
        end as first_response_at,
        least(
            assignment_events.next_assignment_at,
            ticket_resolutions.final_resolved_at,
            ticket_resolutions.clock_cutoff_at
        ) as segment_end,
        -- Still running: nobody took the ticket over and it was not (finally) resolved by the cut-off.
        (
            coalesce(assignment_events.next_assignment_at > ticket_resolutions.clock_cutoff_at, true)
            and ticket_resolutions.final_resolved_at is null
        ) as is_running
    from assignment_events
    inner join tickets on assignment_events.ticket_id = tickets.ticket_id
    inner join ticket_resolutions on assignment_events.ticket_id = ticket_resolutions.ticket_id
    inner join clients on tickets.client_code = clients.client_code
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
