with

ticket_attainment as (
    select * from {{ ref('int_ola_uc_ticket_attainment') }}
),

counted as (
    select * from ticket_attainment
    where is_counted
),

-- Quarters and years are rolled up from the same rows, so a quarter is exactly the sum of its months.
periods as (
    select
        counted.*,
        period_grain.period_type,
        date_trunc(period_grain.period_type, counted.period_month)::date as period_start
    from counted
    cross join (values ('month'), ('quarter'), ('year')) as period_grain (period_type)
),

aggregated as (
    select
        party,
        agreement_id,
        objective_id,
        period_type,
        period_start,
        -- One agreement id is always of one kind; the objective id encodes metric, type and priority.
        min(agreement_kind) as agreement_kind,
        min(metric) as metric,
        min(ticket_type) as ticket_type,
        min(priority) as priority,
        count(*) as tickets_counted,
        count(*) filter (where is_met) as tickets_met,
        -- An amendment inside a period can change the threshold: hold the period to the strictest one.
        max(threshold_pct) as threshold_pct
    from periods
    group by party, agreement_id, objective_id, period_type, period_start
),

final as (
    select
        party,
        agreement_kind,
        agreement_id,
        objective_id,
        metric,
        ticket_type,
        priority,
        period_type,
        period_start,
        tickets_counted,
        tickets_met,
        threshold_pct::numeric(9, 4) as threshold_pct,
        -- Column order of the table comes from the contract (yml), not from this select.
        round(100.0 * tickets_met / tickets_counted, 2)::numeric(5, 2) as attainment_pct,
        -- Compared on the exact ratio, not the rounded percentage.
        100.0 * tickets_met >= threshold_pct * tickets_counted as is_met
    from aggregated
)

select * from final
