-- Quarantined rows per load batch, entity and kind of reason (the reason with its quoted values replaced
-- by '…'), with the location (file:line) of the first such row. Raw records are not carried: the dashboard
-- shows kinds and counts, `./slm quarantine --rows` the rows themselves.

with

batches as (
    select * from {{ ref('stg_loader__batches') }}
),

quarantined_rows as (
    select * from {{ ref('stg_loader__quarantined_rows') }}
),

by_kind as (
    select
        batch_id,
        entity,
        reason_kind,
        count(*) as quarantined_rows,
        (array_agg(location order by quarantine_id))[1] as first_location
    from quarantined_rows
    group by batch_id, entity, reason_kind
),

final as (
    select  -- noqa: ST06
        by_kind.batch_id,
        batches.source,
        by_kind.entity,
        batches.file_name,
        batches.started_at,
        (batches.started_at at time zone 'UTC')::date as load_day,
        by_kind.reason_kind,
        by_kind.quarantined_rows,
        by_kind.first_location
    from by_kind
    inner join batches on by_kind.batch_id = batches.batch_id
)

select * from final
