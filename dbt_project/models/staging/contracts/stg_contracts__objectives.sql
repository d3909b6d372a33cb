with

source as (
    select * from {{ source('contracts', 'contract_objectives') }}
),

renamed as (
    select
        agreement_id,
        valid_from,
        objective_id,
        metric,
        ticket_type,
        priority,
        target_minutes,
        target_pct,
        calendar_code,
        threshold_pct,
        period,
        measured_by
    from source
)

select * from renamed
