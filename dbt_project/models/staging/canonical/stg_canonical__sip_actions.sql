with

source as (
    select * from {{ source('canonical', 'sip_actions') }}
),

renamed as (
    select
        action_id::text as action_id,
        client_code::text as client_code,
        source_type::text as source_type,
        source_ref::text as source_ref,
        title::text as title,
        owner::text as owner,  -- noqa: RF04
        opened_at::timestamptz as opened_at,
        due_on::date as due_on,
        status::text as status,
        closed_at::timestamptz as closed_at,
        _batch_id::bigint as batch_id
    from source
)

select * from renamed
