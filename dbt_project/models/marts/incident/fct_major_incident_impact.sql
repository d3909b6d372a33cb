{#-
    One row per major incident, affected client, objective it touched and period (month, quarter, year in the
    client's time zone) containing the incident's opening: the period's attainment with and without the
    incident, so "this incident cost you the month" is a query (turned_breached).

    Availability objectives (of the affected services): with = fct_availability's row; without = its downtime
    minus the incident's (int_major_incident_downtime, the same minutes):
        (AST - unmeasured - (downtime - incident_minutes)) / (AST - unmeasured)
    against the same target; budget consumed = incident_minutes / the period's error budget.
    Ticket objectives (of the incident and its child tickets, fct_ticket_sla): with = fct_sla_attainment's row;
    without = its counted and met minus the incident's own tickets counted there (a period with nothing
    counted yet has no row). A period left with no counted ticket has nothing breached: met, attainment null.
-#}
with

windows as (
    select * from {{ ref('int_major_incident_windows') }}
),

incident_tickets as (
    select * from {{ ref('int_major_incident_tickets') }}
),

downtime as (
    select * from {{ ref('int_major_incident_downtime') }}
),

availability as (
    select * from {{ ref('fct_availability') }}
),

ticket_sla as (
    select * from {{ ref('fct_ticket_sla') }}
),

sla_attainment as (
    select * from {{ ref('fct_sla_attainment') }}
),

period_grain as (
    select period_type from {{ period_grains('grains') }}
),

-- The periods containing the opening, in each affected client's own time zone.
opening_periods as (
    select
        windows.incident_id,
        windows.service_code,
        windows.client_code,
        period_grain.period_type,
        date_trunc(period_grain.period_type, windows.window_start at time zone windows.client_timezone)::date
            as period_start
    from windows
    cross join period_grain
),

availability_rows as (
    select  -- noqa: ST06
        opening_periods.incident_id as ticket_id,
        opening_periods.client_code,
        opening_periods.service_code,
        downtime.agreement_id,
        downtime.objective_id,
        'availability' as metric,
        opening_periods.period_type,
        opening_periods.period_start,
        round(downtime.incident_minutes, 2) as incident_minutes,
        null::bigint as incident_tickets,
        availability.error_budget_minutes,
        case
            when availability.error_budget_minutes > 0
                then round(100 * round(downtime.incident_minutes, 2) / availability.error_budget_minutes, 2)
        end as budget_consumed_pct,
        availability.target_pct,
        availability.availability_pct as attainment_with_pct,
        availability.is_met as is_met_with,
        availability.agreed_minutes - availability.unmeasured_minutes as measured_minutes,
        availability.downtime_minutes - round(downtime.incident_minutes, 2) as downtime_without_minutes
    from opening_periods
    inner join downtime
        on
            opening_periods.incident_id = downtime.incident_id
            and opening_periods.service_code = downtime.service_code
            and opening_periods.period_type = downtime.period_type
            and opening_periods.period_start = downtime.period_start
    inner join availability
        on
            downtime.service_code = availability.service_code
            and downtime.objective_id = availability.objective_id
            and downtime.period_type = availability.period_type
            and downtime.period_start = availability.period_start
),

availability_without as (
    select
        ticket_id,
        client_code,
        service_code,
        agreement_id,
        objective_id,
        metric,
        period_type,
        period_start,
        incident_minutes,
        incident_tickets,
        error_budget_minutes,
        budget_consumed_pct,
        target_pct,
        attainment_with_pct,
        is_met_with,
        round(100 * (measured_minutes - downtime_without_minutes) / nullif(measured_minutes, 0), 4)
            as attainment_without_pct,
        100 * (measured_minutes - downtime_without_minutes) / nullif(measured_minutes, 0) >= target_pct
            as is_met_without
    from availability_rows
),

-- Ticket objectives the incident's tickets are measured against, and where each of them counts.
incident_ticket_rows as (
    select  -- noqa: ST06
        incident_tickets.incident_id,
        -- The incident's opening in this ticket's client's time zone.
        (incident_tickets.window_start at time zone incident_tickets.client_timezone)::date as opened_on,
        ticket_sla.client_code,
        ticket_sla.service_code,
        ticket_sla.agreement_id,
        ticket_sla.objective_id,
        ticket_sla.metric,
        ticket_sla.period_month,
        coalesce(ticket_sla.is_met, false) as is_met
    from incident_tickets
    inner join ticket_sla on incident_tickets.ticket_id = ticket_sla.ticket_id
),

-- Each ticket row once per period type, with the period containing the opening and the one it counts in.
ticket_row_periods as (
    select
        incident_ticket_rows.incident_id,
        incident_ticket_rows.client_code,
        incident_ticket_rows.service_code,
        incident_ticket_rows.agreement_id,
        incident_ticket_rows.objective_id,
        incident_ticket_rows.metric,
        incident_ticket_rows.is_met,
        period_grain.period_type,
        date_trunc(period_grain.period_type, incident_ticket_rows.opened_on)::date as period_start,
        date_trunc(period_grain.period_type, incident_ticket_rows.period_month)::date as counted_period_start
    from incident_ticket_rows
    cross join period_grain
),

ticket_periods as (
    select
        incident_id as ticket_id,
        client_code,
        service_code,
        agreement_id,
        objective_id,
        period_type,
        period_start,
        min(metric) as metric,
        -- Counted there as fct_sla_attainment counts them: a stopped clock, or a breach while open.
        count(*) filter (where counted_period_start = period_start) as incident_tickets,
        count(*) filter (where counted_period_start = period_start and is_met) as incident_tickets_met
    from ticket_row_periods
    group by incident_id, client_code, service_code, agreement_id, objective_id, period_type, period_start
),

ticket_without as (
    select
        ticket_periods.*,
        sla_attainment.threshold_pct,
        sla_attainment.attainment_pct,
        sla_attainment.is_met,
        sla_attainment.tickets_counted - ticket_periods.incident_tickets as counted_without,
        sla_attainment.tickets_met - ticket_periods.incident_tickets_met as met_without
    from ticket_periods
    -- Periods in which nothing is counted yet have no attainment to compare: no row.
    inner join sla_attainment
        on
            ticket_periods.client_code = sla_attainment.client_code
            and ticket_periods.service_code = sla_attainment.service_code
            and ticket_periods.agreement_id = sla_attainment.agreement_id
            and ticket_periods.objective_id = sla_attainment.objective_id
            and ticket_periods.period_type = sla_attainment.period_type
            and ticket_periods.period_start = sla_attainment.period_start
),

ticket_objective_rows as (
    select
        ticket_id,
        client_code,
        service_code,
        agreement_id,
        objective_id,
        metric,
        period_type,
        period_start,
        null::numeric as incident_minutes,
        incident_tickets,
        null::numeric as error_budget_minutes,
        null::numeric as budget_consumed_pct,
        threshold_pct as target_pct,
        attainment_pct as attainment_with_pct,
        is_met as is_met_with,
        case when counted_without > 0 then round(100.0 * met_without / counted_without, 2) end
            as attainment_without_pct,
        -- Compared on the exact ratio, as fct_sla_attainment does; nothing left counted (0 >= 0): met.
        100.0 * met_without >= threshold_pct * counted_without as is_met_without
    from ticket_without
),

unioned as (
    select * from availability_without
    union all
    select * from ticket_objective_rows
),

final as (
    -- Column order of the table comes from the contract (yml), not from this select.
    select
        ticket_id::text as ticket_id,
        client_code::text as client_code,
        service_code::text as service_code,
        agreement_id::text as agreement_id,
        objective_id::text as objective_id,
        metric::text as metric,
        period_type::text as period_type,
        period_start::date as period_start,
        incident_minutes::numeric(14, 2) as incident_minutes,
        incident_tickets::integer as incident_tickets,
        error_budget_minutes::numeric(14, 2) as error_budget_minutes,
        budget_consumed_pct::numeric(14, 2) as budget_consumed_pct,
        target_pct::numeric(9, 4) as target_pct,
        attainment_with_pct::numeric(9, 4) as attainment_with_pct,
        is_met_with::boolean as is_met_with,
        attainment_without_pct::numeric(9, 4) as attainment_without_pct,
        is_met_without::boolean as is_met_without,
        coalesce(is_met_without and not is_met_with, false)::boolean as turned_breached
    from unioned
)

select * from final
