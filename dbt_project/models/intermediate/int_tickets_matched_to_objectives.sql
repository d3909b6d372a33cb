-- One row per ticket and SLA ticket objective that applies to it, with the clock's start and stop.
--
-- Matching: agreement kind SLA, party = the ticket's client, service in the agreement's services
-- (null = all), same ticket_type and the ticket's CURRENT priority (a re-prioritised ticket is measured,
-- from its opening, against the objective of the priority it ends with), version in force on the opening
-- date in the client's time zone (valid_from and valid_to inclusive).
--
-- Clock: starts at opened_at. Response stops at first_response_at (or at the resolution when that comes
-- first or no response was recorded). Resolution stops at the LAST resolution: the later of resolved_at and
-- the last status event to 'resolved'; a ticket reopened after it (a status event leaving resolved/closed for
-- another status) is open again. The time spent resolved before a reopen counts: the clock kept running,
-- the issue was not solved. Nothing after the cut-off exists: a stop after it leaves the clock open, and
-- open clocks run to the cut-off (dbt var as_of, default the latest loaded ticket timestamp, never now()).

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

agreements as (
    select * from {{ ref('stg_contracts__agreements') }}
),

objectives as (
    select * from {{ ref('stg_contracts__objectives') }}
),

cutoff as (
    {% if var('as_of', none) %}
        select '{{ var("as_of") }}'::timestamptz as clock_cutoff_at
    {% else %}
        select
            greatest(
                (
                    select
                        max(
                            greatest(
                                opened_at, first_response_at, resolved_at, closed_at, updated_at
                            )
                        )
                    from tickets
                ),
                (select max(occurred_at) from ticket_events)
            ) as clock_cutoff_at
    {% endif %}
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

ticket_clocks as (
    select
        tickets.ticket_id,
        tickets.client_code,
        clients.timezone as client_timezone,
        tickets.service_code,
        tickets.ticket_type,
        tickets.priority,
        tickets.opened_at,
        cutoff.clock_cutoff_at,
        status_history.last_reopened_at,
        (tickets.opened_at at time zone clients.timezone)::date as opened_on,
        greatest(
            case when tickets.resolved_at <= cutoff.clock_cutoff_at then tickets.resolved_at end,
            status_history.last_resolved_event_at
        ) as last_resolved_at,
        case
            when tickets.first_response_at <= cutoff.clock_cutoff_at then tickets.first_response_at
        end as first_response_at
    from tickets
    inner join clients on tickets.client_code = clients.client_code
    cross join cutoff
    left join status_history on tickets.ticket_id = status_history.ticket_id
    where tickets.opened_at <= cutoff.clock_cutoff_at
),

resolution_stops as (
    select
        *,
        case
            when last_reopened_at > last_resolved_at then null
            else last_resolved_at
        end as resolved_stop_at
    from ticket_clocks
),

matched as (
    select
        resolution_stops.ticket_id,
        resolution_stops.client_code,
        resolution_stops.client_timezone,
        resolution_stops.service_code,
        resolution_stops.ticket_type,
        resolution_stops.priority,
        agreements.agreement_id,
        agreements.valid_from as agreement_valid_from,
        objectives.objective_id,
        objectives.metric,
        objectives.calendar_code,
        objectives.target_minutes,
        resolution_stops.opened_at as clock_started_at,
        resolution_stops.clock_cutoff_at,
        case
            when objectives.metric = 'response'
                then least(resolution_stops.first_response_at, resolution_stops.resolved_stop_at)
            else resolution_stops.resolved_stop_at
        end as clock_stopped_at
    from resolution_stops
    inner join agreements
        on
            agreements.kind = 'SLA'
            and resolution_stops.client_code = agreements.party
            and (agreements.services is null or resolution_stops.service_code = any(agreements.services))
            and resolution_stops.opened_on >= agreements.valid_from
            and (agreements.valid_to is null or resolution_stops.opened_on <= agreements.valid_to)
    inner join objectives
        on
            agreements.agreement_id = objectives.agreement_id
            and agreements.valid_from = objectives.valid_from
            and objectives.metric in ('response', 'resolution')
            and resolution_stops.ticket_type = objectives.ticket_type
            and resolution_stops.priority = objectives.priority
),

final as (
    select * from matched
)

select * from final
