with

source as (
    select * from {{ source('canonical', 'services') }}
),

renamed as (
    select
        service_code::text as service_code,
        client_code::text as client_code,
        service_name::text as service_name,
        calendar_code::text as calendar_code,
        criticality::text as criticality,
        _batch_id::bigint as batch_id
    from source
)

select * from renamed
