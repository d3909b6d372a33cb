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

aggregated as (
    {{ attainment_by_period(
        'measured',
        ['client_code', 'service_code', 'agreement_id', 'objective_id'],
        ['metric', 'ticket_type', 'priority']
    ) }}
),

final as (
    -- Column order of the table comes from the contract (yml), not from this select.
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
        {{ attainment_measures() }}
    from aggregated
)

select * from final
