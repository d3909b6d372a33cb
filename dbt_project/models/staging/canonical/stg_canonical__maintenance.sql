with

source as (
    select * from {{ source('canonical', 'maintenance') }}
),

renamed as (
    select  -- noqa: ST06
        service_code::text as service_code,
        starts_at::timestamptz as starts_at,
        ends_at::timestamptz as ends_at,
        change_ref::text as change_ref,
        -- Only an approved window is planned downtime; a missing flag is a request, not an approval.
        coalesce(approved::boolean, false) as is_approved,
        _batch_id::bigint as batch_id
    from source
)

select * from renamed
