with

source as (
    select * from {{ source('loader', 'load_batches') }}
),

renamed as (
    select
        batch_id::bigint as batch_id,
        source::text as source,  -- noqa: RF04
        entity::text as entity,
        file::text as file_name,
        started_at,
        finished_at,
        status::text as status,
        rows_read::bigint as rows_read,
        rows_loaded::bigint as rows_loaded,
        rows_unchanged::bigint as rows_unchanged,
        rows_quarantined::bigint as rows_quarantined,
        error::text as error
    from source
    where status in ('ok', 'failed')
)

select * from renamed
