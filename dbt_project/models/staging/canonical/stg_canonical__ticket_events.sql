with

source as (
    select * from {{ source('canonical', 'ticket_events') }}
),

renamed as (
    select
        ticket_id::text as ticket_id,
        occurred_at::timestamptz as occurred_at,
        field::text as changed_field,
        from_value::text as from_value,
        to_value::text as to_value,
        _batch_id::bigint as batch_id
    from source
)

select * from renamed
