{#-
    One row per major incident and each of its tickets: the incident itself and its child tickets (tickets whose
    parent_ticket_id is the incident; complaints naming it are linked complaints, not children: fct_complaint).
    A major incident is an incident ticket flagged is_major, opened before the cut-off. Its window is
    [opened_at, final resolution) as int_ticket_resolutions_derived derives it, or up to the cut-off while it
    is still open.
-#}
with

tickets as (
    select * from {{ ref('stg_canonical__tickets') }}
),

resolutions as (
    select * from {{ ref('int_ticket_resolutions_derived') }}
),

clients as (
    select * from {{ ref('stg_canonical__clients') }}
),

majors as (
    select  -- noqa: ST06
        tickets.ticket_id as incident_id,
        tickets.opened_at as window_start,
        -- greatest(): a resolution stamped before the opening (bad source data) gives an empty window.
        greatest(
            tickets.opened_at, coalesce(resolutions.final_resolved_at, resolutions.clock_cutoff_at)
        ) as window_end,
        resolutions.final_resolved_at is not null as is_resolved,
        resolutions.clock_cutoff_at as cutoff_at
    from tickets
    inner join resolutions on tickets.ticket_id = resolutions.ticket_id
    where
        tickets.ticket_type = 'incident'
        and tickets.is_major
        and tickets.opened_at < resolutions.clock_cutoff_at
),

incident_tickets as (
    select
        majors.*,
        tickets.ticket_id,
        tickets.client_code,
        tickets.service_code,
        tickets.ticket_id = majors.incident_id as is_incident_ticket
    from majors
    inner join tickets
        on
            majors.incident_id = tickets.ticket_id
            or (
                majors.incident_id = tickets.parent_ticket_id
                and tickets.ticket_type <> 'complaint'
                and majors.cutoff_at > tickets.opened_at
            )
),

final as (
    select
        incident_tickets.incident_id,
        incident_tickets.ticket_id,
        incident_tickets.is_incident_ticket,
        incident_tickets.client_code,
        clients.timezone as client_timezone,
        incident_tickets.service_code,
        incident_tickets.window_start,
        incident_tickets.window_end,
        incident_tickets.is_resolved,
        incident_tickets.cutoff_at
    from incident_tickets
    inner join clients on incident_tickets.client_code = clients.client_code
)

select * from final
