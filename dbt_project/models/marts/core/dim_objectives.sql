with

objectives as (
    select * from {{ ref('stg_contracts__objectives') }}
),

agreements as (
    select * from {{ ref('stg_contracts__agreements') }}
),

final as (
    select
        objectives.objective_id,
        objectives.agreement_id,
        objectives.valid_from,
        agreements.valid_to,
        agreements.kind as agreement_kind,
        agreements.party,
        objectives.metric,
        objectives.ticket_type,
        objectives.priority,
        objectives.target_minutes,
        objectives.target_pct::numeric(9, 4) as target_pct,
        objectives.calendar_code,
        objectives.threshold_pct::numeric(9, 4) as threshold_pct,
        objectives.period
    from objectives
    inner join agreements
        on
            objectives.agreement_id = agreements.agreement_id
            and objectives.valid_from = agreements.valid_from
)

select * from final
