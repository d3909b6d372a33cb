with

ticket_attainment as (
    select * from {{ ref('int_ola_uc_ticket_attainment') }}
),

counted as (
    select * from ticket_attainment
    where is_counted
),

aggregated as (
    {{ attainment_by_period(
        'counted',
        ['party', 'agreement_id', 'objective_id'],
        ['agreement_kind', 'metric', 'ticket_type', 'priority']
    ) }}
),

final as (
    -- Column order of the table comes from the contract (yml), not from this select.
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
        {{ attainment_measures() }}
    from aggregated
)

select * from final
