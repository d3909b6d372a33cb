with

ticket_sla as (
    select * from {{ ref('fct_ticket_sla') }}
),

objectives as (
    select * from {{ ref('stg_contracts__objectives') }}
),

clients as (
    select * from {{ ref('stg_canonical__clients') }}
),

-- A row counts once it has a period: its clock stopped, or it breached while still open. Rows of open
-- tickets still within target have no period yet and are not counted anywhere.
counted_rows as (
    select
        ticket_sla.ticket_id,
        ticket_sla.client_code,
        ticket_sla.service_code,
        ticket_sla.agreement_id,
        ticket_sla.objective_id,
        ticket_sla.period_month,
        coalesce(ticket_sla.is_met, false) as is_met,
        (ticket_sla.clock_started_at at time zone clients.timezone)::date as opened_on
    from ticket_sla
    inner join clients on ticket_sla.client_code = clients.client_code
    where ticket_sla.period_month is not null
),

-- The objective version each ticket was measured against: the one in force on its opening day (client
-- time zone). Versions of one agreement never overlap, so that is the latest version started by then.
rows_with_version as (
    select
        counted_rows.*,
        objectives.metric,
        objectives.ticket_type,
        objectives.priority,
        objectives.threshold_pct,
        row_number() over (
            partition by counted_rows.ticket_id, counted_rows.objective_id
            order by objectives.valid_from desc
        ) as version_rank
    from counted_rows
    inner join objectives
        on
            counted_rows.agreement_id = objectives.agreement_id
            and counted_rows.objective_id = objectives.objective_id
            and counted_rows.opened_on >= objectives.valid_from
),

measured as (
    select * from rows_with_version
    where version_rank = 1
),

-- Quarters and years are rolled up from the same rows, so a quarter is exactly the sum of its months.
periods as (
    select
        measured.*,
        period_grain.period_type,
        date_trunc(period_grain.period_type, measured.period_month)::date as period_start
    from measured
    cross join (values ('month'), ('quarter'), ('year')) as period_grain (period_type)
),

aggregated as (
    select
        client_code,
        service_code,
        agreement_id,
        objective_id,
        period_type,
        period_start,
        -- Functionally dependent on objective_id (it encodes them); min() just carries them through.
        min(metric) as metric,
        min(ticket_type) as ticket_type,
        min(priority) as priority,
        count(*) as tickets_counted,
        count(*) filter (where is_met) as tickets_met,
        -- An amendment inside a period can change the threshold: hold the period to the strictest one.
        max(threshold_pct) as threshold_pct
    from periods
    group by client_code, service_code, agreement_id, objective_id, period_type, period_start
),

final as (
    select
        client_code,
        service_code,
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
        -- Compared on the exact ratio, not the rounded percentage (39/40 = 97.5 is exact, 2/3 is not).
        100.0 * tickets_met >= threshold_pct * tickets_counted as is_met
    from aggregated
)

select * from final
