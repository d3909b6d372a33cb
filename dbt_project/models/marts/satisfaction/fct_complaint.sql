-- One row per complaint (ticket_type complaint): what it is about, how long it took to close in business
-- time, and what it is linked to.
--
-- Business time to close = M(closed_at) - M(opened_at) with M = business_minute_mark, on the calendar of the
-- complaint's own SLA objective when its agreement has one (e.g. a complaint response objective), else on
-- its service's calendar, else 24x7 (real minutes).
-- Links: the ticket it names (parent_ticket_id) with that ticket's SLA outcome; and the outages of the
-- complaint's service or of the linked ticket's service that were under way in the 7 days before the
-- complaint was opened (started before it, ended within the 7 days or not at all). Seven days: a complaint
-- follows the experience it is about, and a week covers the time a client takes to write in.

with

tickets as (
    select * from {{ ref('stg_canonical__tickets') }}
),

clients as (
    select * from {{ ref('stg_canonical__clients') }}
),

services as (
    select * from {{ ref('stg_canonical__services') }}
),

outages as (
    select * from {{ ref('stg_canonical__outages') }}
),

ticket_sla as (
    select * from {{ ref('fct_ticket_sla') }}
),

outcomes as (
    select * from {{ ref('int_ticket_sla_outcomes_summarised') }}
),

complaints as (
    select
        tickets.*,
        clients.timezone as client_timezone
    from tickets
    inner join clients on tickets.client_code = clients.client_code
    where tickets.ticket_type = 'complaint'
),

own_objective_calendar as (
    select
        ticket_id,
        min(calendar_code) as calendar_code
    from ticket_sla
    where ticket_type = 'complaint'
    group by ticket_id
),

with_calendar as (
    select
        complaints.*,
        coalesce(own_objective_calendar.calendar_code, services.calendar_code, '24x7') as calendar_code
    from complaints
    left join own_objective_calendar on complaints.ticket_id = own_objective_calendar.ticket_id
    left join services on complaints.service_code = services.service_code
),

business_time as (
    select
        with_calendar.*,
        case
            when with_calendar.closed_at is not null
                then
                    {{ business_minute_mark('with_calendar.calendar_code', 'with_calendar.closed_at') }}
                    - {{ business_minute_mark('with_calendar.calendar_code', 'with_calendar.opened_at') }}
        end as business_minutes_to_close,
        case
            when with_calendar.resolved_at is not null
                then
                    {{ business_minute_mark('with_calendar.calendar_code', 'with_calendar.resolved_at') }}
                    - {{ business_minute_mark('with_calendar.calendar_code', 'with_calendar.opened_at') }}
        end as business_minutes_to_resolve
    from with_calendar
),

linked_tickets as (
    select  -- noqa: ST06
        complaints.ticket_id as complaint_id,
        parents.ticket_id as linked_ticket_id,
        parents.ticket_type as linked_ticket_type,
        parents.priority as linked_ticket_priority,
        parents.service_code as linked_service_code,
        coalesce(parents.is_major, false) as linked_ticket_is_major,
        outcomes.sla_outcome as linked_ticket_sla_outcome,
        outcomes.sla_overrun_minutes as linked_ticket_sla_overrun_minutes
    from complaints
    inner join tickets as parents
        on
            complaints.parent_ticket_id = parents.ticket_id
            and complaints.client_code = parents.client_code
    left join outcomes on parents.ticket_id = outcomes.ticket_id
),

linked_outages as (
    select
        complaints.ticket_id as complaint_id,
        count(*) as linked_outages,
        sum(
            extract(epoch from coalesce(outages.ended_at, complaints.opened_at) - outages.started_at) / 60
        ) as linked_outage_minutes,
        max(outages.started_at) as last_linked_outage_started_at
    from complaints
    left join linked_tickets on complaints.ticket_id = linked_tickets.complaint_id
    inner join outages
        on
            (
                complaints.service_code = outages.service_code
                or linked_tickets.linked_service_code = outages.service_code
            )
            and complaints.opened_at > outages.started_at
            and complaints.opened_at - interval '7 days'
            <= coalesce(outages.ended_at, complaints.opened_at)
    group by complaints.ticket_id
),

final as (
    select  -- noqa: ST06
        business_time.ticket_id as complaint_id,
        business_time.client_code,
        business_time.service_code,
        business_time.category,
        business_time.priority,
        business_time.status,
        business_time.opened_at,
        business_time.resolved_at,
        business_time.closed_at,
        business_time.closed_at is not null as is_closed,
        date_trunc('month', business_time.opened_at at time zone business_time.client_timezone)::date
            as period_month,
        business_time.calendar_code,
        round(business_time.business_minutes_to_close, 2)::numeric(14, 2) as business_minutes_to_close,
        round(business_time.business_minutes_to_resolve, 2)::numeric(14, 2)
            as business_minutes_to_resolve,
        own_outcome.sla_outcome as complaint_sla_outcome,
        business_time.parent_ticket_id,
        linked_tickets.linked_ticket_id,
        linked_tickets.linked_ticket_type,
        linked_tickets.linked_ticket_priority,
        linked_tickets.linked_ticket_is_major,
        linked_tickets.linked_ticket_sla_outcome,
        linked_tickets.linked_ticket_sla_overrun_minutes::numeric(14, 2) as linked_ticket_sla_overrun_minutes,
        coalesce(linked_outages.linked_outages, 0) as linked_outages,
        round(coalesce(linked_outages.linked_outage_minutes, 0), 2)::numeric(14, 2) as linked_outage_minutes,
        linked_outages.last_linked_outage_started_at
    from business_time
    left join linked_tickets on business_time.ticket_id = linked_tickets.complaint_id
    left join linked_outages on business_time.ticket_id = linked_outages.complaint_id
    left join outcomes as own_outcome on business_time.ticket_id = own_outcome.ticket_id
)

select * from final
