{#-
    Calendar periods (month, quarter, year) for the range the facts cover: every month of every year in which
    some fact has a period, so each quarter and year row has all its months. Dates are the client-side
    calendar dates the facts are cut on (each fact cuts in its client's time zone).
-#}
with

ticket_volume as (
    select * from {{ ref('fct_ticket_volume') }}
),

sla_attainment as (
    select * from {{ ref('fct_sla_attainment') }}
),

ola_uc_attainment as (
    select * from {{ ref('fct_ola_uc_attainment') }}
),

months_with_facts as (
    select period_month as month_start from ticket_volume
    union
    select period_start from sla_attainment
    where period_type = 'month'
    union
    select period_start from ola_uc_attainment
    where period_type = 'month'
),

year_bounds as (
    select
        date_trunc('year', min(month_start))::date as first_year,
        date_trunc('year', max(month_start))::date as last_year
    from months_with_facts
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
    cross join (values ('month'), ('quarter'), ('year')) as period_grain (period_type)
),

final as (
    select
        period_type,
        period_start,
        (
            period_start
            + case period_type
                when 'month' then interval '1 month'
                when 'quarter' then interval '3 months'
                else interval '1 year'
            end
            - interval '1 day'
        )::date as period_end,
        case period_type
            when 'month' then to_char(period_start, 'YYYY-MM')
            when 'quarter' then to_char(period_start, 'YYYY-"Q"Q')
            else to_char(period_start, 'YYYY')
        end as period_label,
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
