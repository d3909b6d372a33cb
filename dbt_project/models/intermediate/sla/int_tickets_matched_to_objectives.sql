-- One row per ticket and SLA ticket objective that applies to it, with the clock's start and stop.
--
-- Matching: agreement kind SLA, party = the ticket's client, service in the agreement's services
-- (null = all), same ticket_type and the ticket's CURRENT priority (a re-prioritised ticket is measured,
-- from its opening, against the objective of the priority it ends with), version in force on the opening
-- date in the client's time zone (valid_from and valid_to inclusive).
--
-- Clock: starts at opened_at. Response stops at first_response_at (or at the resolution when that comes
-- first or no response was recorded). Resolution stops at the ticket's final resolution, and the cut-off is
-- the run's, both from int_ticket_resolutions_derived (the LAST resolution, void when a reopen follows it:
-- a reopened ticket is open again, and the time spent resolved before the reopen counts). Nothing after the
-- cut-off exists: a stop after it leaves the clock open, and open clocks run to the cut-off (dbt var as_of,
-- default the latest loaded ticket timestamp, never now()).

with

tickets as (
    select * from {{ ref('stg_canonical__tickets') }}
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

ticket_resolutions as (
    select * from {{ ref('int_ticket_resolutions_derived') }}
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
        ticket_resolutions.clock_cutoff_at,
        ticket_resolutions.final_resolved_at as resolved_stop_at,
        (tickets.opened_at at time zone clients.timezone)::date as opened_on,
        case
            when tickets.first_response_at <= ticket_resolutions.clock_cutoff_at
                then tickets.first_response_at
        end as first_response_at
    from tickets
    inner join clients on tickets.client_code = clients.client_code
    inner join ticket_resolutions on tickets.ticket_id = ticket_resolutions.ticket_id
    where tickets.opened_at <= ticket_resolutions.clock_cutoff_at
),

matched as (
    select
        ticket_clocks.ticket_id,
        ticket_clocks.client_code,
        ticket_clocks.client_timezone,
        ticket_clocks.service_code,
        ticket_clocks.ticket_type,
        ticket_clocks.priority,
        agreements.agreement_id,
        agreements.valid_from as agreement_valid_from,
        objectives.objective_id,
        objectives.metric,
        objectives.calendar_code,
        objectives.target_minutes,
        ticket_clocks.opened_at as clock_started_at,
        ticket_clocks.clock_cutoff_at,
        case
            when objectives.metric = 'response'
                then least(ticket_clocks.first_response_at, ticket_clocks.resolved_stop_at)
            else ticket_clocks.resolved_stop_at
        end as clock_stopped_at
    from ticket_clocks
    inner join agreements
        on
            agreements.kind = 'SLA'
            and ticket_clocks.client_code = agreements.party
            and (agreements.services is null or ticket_clocks.service_code = any(agreements.services))
            and ticket_clocks.opened_on >= agreements.valid_from
            and (agreements.valid_to is null or ticket_clocks.opened_on <= agreements.valid_to)
    inner join objectives
        on
            agreements.agreement_id = objectives.agreement_id
            and agreements.valid_from = objectives.valid_from
            and objectives.metric in ('response', 'resolution')
            and ticket_clocks.ticket_type = objectives.ticket_type
            and ticket_clocks.priority = objectives.priority
),

final as (
    select * from matched
)

select * from final
