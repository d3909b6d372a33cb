with

source as (
    select * from {{ source('canonical', 'tickets') }}
),

renamed as (
    select
        ticket_id::text as ticket_id,
        client_code::text as client_code,
        service_code::text as service_code,
        ticket_type::text as ticket_type,
        priority::text as priority,
        opened_at::timestamptz as opened_at,
        first_response_at::timestamptz as first_response_at,
        resolved_at::timestamptz as resolved_at,
        closed_at::timestamptz as closed_at,
        status::text as status,
        assignment_group::text as assignment_group,
        is_major::boolean as is_major,
        parent_ticket_id::text as parent_ticket_id,
        category::text as category,
        updated_at::timestamptz as updated_at,
        _batch_id::bigint as batch_id
    from source
)

select * from renamed
