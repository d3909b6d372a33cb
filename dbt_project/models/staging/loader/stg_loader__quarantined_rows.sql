with

source as (
    select * from {{ source('loader', 'quarantine') }}
),

renamed as (
    select
        quarantine_id::bigint as quarantine_id,
        batch_id::bigint as batch_id,
        source::text as source,  -- noqa: RF04
        entity::text as entity,
        location::text as location,  -- noqa: RF04
        reason::text as reason,
        quarantined_at::timestamptz as quarantined_at,
        -- The kind of problem whatever the value: slm_platform/load/report.py REASON_KIND_SQL.
        regexp_replace(reason, '''[^'']*''', '''…''', 'g') as reason_kind
    from source
)

select * from renamed
