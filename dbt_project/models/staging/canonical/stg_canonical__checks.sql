with

source as (
    select * from {{ source('canonical', 'checks') }}
),

renamed as (
    select
        service_code::text as service_code,
        checked_at::timestamptz as checked_at,
        status::text as status,
        latency_ms::integer as latency_ms,
        _batch_id::bigint as batch_id
    from source
)

select * from renamed
