with

source as (
    select * from {{ source('canonical', 'clients') }}
),

renamed as (
    select
        client_code::text as client_code,
        client_name::text as client_name,
        timezone::text as timezone,
        country::text as country_code,
        _batch_id::bigint as batch_id
    from source
)

select * from renamed
