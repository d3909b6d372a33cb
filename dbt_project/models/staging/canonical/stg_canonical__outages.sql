with

source as (
    select * from {{ source('canonical', 'outages') }}
),

renamed as (
    select
        service_code::text as service_code,
        started_at::timestamptz as started_at,
        -- Null = still going on: the outage runs to the run's cut-off.
        ended_at::timestamptz as ended_at,
        source_ref::text as source_ref,
        _batch_id::bigint as batch_id
    from source
)

select * from renamed
