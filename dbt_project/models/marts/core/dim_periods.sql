{#-
    Calendar periods (month, quarter, year): a date spine of whole years over the range of the ticket data,
    so each quarter and year row has all its months. Dates are client-side calendar dates (each fact cuts in
    its client's time zone). Built from the intermediate ticket models, not from the facts; the range's
    months are those the facts cut on: a ticket's opening (fct_ticket_volume), an SLA clock's stop
    (fct_sla_attainment) and a counted OLA/UC hold's month (fct_ola_uc_attainment). (An open ticket's SLA
    breach is not among them: it needs the business clock. It widens the range only if its year has none of
    the others.)
-#}
with

tickets as (
    select * from {{ ref('stg_canonical__tickets') }}
),

clients as (
    select * from {{ ref('stg_canonical__clients') }}
),

sla_clocks as (
    select * from {{ ref('int_tickets_matched_to_objectives') }}
),

ola_uc_holds as (
    select * from {{ ref('int_ola_uc_ticket_attainment') }}
),

ticket_months as (
    select date_trunc('month', tickets.opened_at at time zone clients.timezone)::date as month_start
    from tickets
    inner join clients on tickets.client_code = clients.client_code
    union all
    select date_trunc('month', clock_stopped_at at time zone client_timezone)::date
    from sla_clocks
    where clock_stopped_at is not null
    union all
    select period_month
    from ola_uc_holds
    where is_counted
),

year_bounds as (
    select
        date_trunc('year', min(month_start))::date as first_year,
        date_trunc('year', max(month_start))::date as last_year
    from ticket_months
),

months as (
    select month_series.month_start::date as month_start
    from year_bounds
    cross join
        generate_series(
            year_bounds.first_year, year_bounds.last_year + interval '11 months', interval '1 month'
        ) as month_series (month_start)
),

period_starts as (
    select distinct
        period_grain.period_type,
        date_trunc(period_grain.period_type, months.month_start)::date as period_start
    from months
    cross join {{ period_grains() }}
),

final as (
    select
        period_type,
        period_start,
        (
            period_start
            + {{ period_length('period_type') }}
            - interval '1 day'
        )::date as period_end,
        {{ period_label('period_type', 'period_start') }} as period_label,
        extract(year from period_start)::integer as year_number,
        case
            when period_type <> 'year' then extract(quarter from period_start)::integer
        end as quarter_number,
        case when period_type = 'month' then extract(month from period_start)::integer end as month_number,
        date_trunc('year', period_start)::date as year_start,
        case when period_type <> 'year' then date_trunc('quarter', period_start)::date end as quarter_start
    from period_starts
)

select * from final
