{#-
    One row per stretch of time an assignment group held a ticket: each assignment_group event starts a
    segment for its to_value, which ends at the ticket's next assignment event, at its resolution, or at the
    run's cut-off, whichever comes first. The cut-off is the dbt var `as_of` (default: the latest timestamp
    loaded), never now(), so a rerun on the same data gives the same figures.
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
        tickets.resolved_at,
        clients.timezone as client_timezone,
        assignment_events.party,
        assignment_events.segment_start,
        least(assignment_events.next_assignment_at, tickets.resolved_at, cut_off.as_of) as segment_end,
        -- Still running: nobody took the ticket over and it was not resolved by the cut-off.
        (
            coalesce(assignment_events.next_assignment_at > cut_off.as_of, true)
            and coalesce(tickets.resolved_at > cut_off.as_of, true)
        ) as is_running
    from assignment_events
    inner join tickets on assignment_events.ticket_id = tickets.ticket_id
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
        resolved_at,
        client_timezone
    from segments
    -- Assignments after the resolution (or the cut-off) held nothing measurable.
    where segment_end > segment_start
)

select * from final
