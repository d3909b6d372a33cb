with

source as (
    select * from {{ source('contracts', 'contract_agreements') }}
),

renamed as (
    select
        agreement_id,
        valid_from,
        valid_to,
        kind,
        party,
        services,
        pause_statuses,
        supported_by
    from source
)

select * from renamed
