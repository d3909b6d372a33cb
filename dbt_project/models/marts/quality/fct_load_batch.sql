-- One row per finished load batch (one file of one entity from one source): what it read, loaded, left
-- unchanged and refused, how long it took, and the error of a failed file (its rows were rolled back).
-- The platform's promise is checked per batch: rows read = loaded + unchanged + quarantined, and every
-- quarantined row is in raw.quarantine with its reason (is_reconciled).

with

batches as (
    select * from {{ ref('stg_loader__batches') }}
),

quarantined_rows as (
    select * from {{ ref('stg_loader__quarantined_rows') }}
),

recorded as (
    select
        batch_id,
        count(*) as rows_recorded
    from quarantined_rows
    group by batch_id
),

final as (
    select  -- noqa: ST06
        batches.batch_id,
        batches.source,
        batches.entity,
        batches.file_name,
        batches.started_at,
        (batches.started_at at time zone 'UTC')::date as load_day,
        batches.status,
        batches.rows_read,
        batches.rows_loaded,
        batches.rows_unchanged,
        batches.rows_quarantined,
        coalesce(recorded.rows_recorded, 0) as rows_in_quarantine,
        round(100.0 * batches.rows_quarantined / nullif(batches.rows_read, 0), 2) as quarantined_pct,
        round(extract(epoch from batches.finished_at - batches.started_at), 3) as seconds,
        case
            when batches.status = 'ok'
                then
                    batches.rows_read
                    = batches.rows_loaded + batches.rows_unchanged + batches.rows_quarantined
                    and batches.rows_quarantined = coalesce(recorded.rows_recorded, 0)
        end as is_reconciled,
        batches.error
    from batches
    left join recorded on batches.batch_id = recorded.batch_id
)

select * from final
