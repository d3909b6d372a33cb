-- A view, not a table: a pack generated after the nightly publish (./slm review-pack, or the nightly's own
-- packs task, which runs after publish) is listed at once.
{{ config(materialized='view') }}

with

review_packs as (
    select * from {{ ref('stg_reports__review_packs') }}
),

final as (
    select
        client_code,
        period_type,
        period_start,
        period_label,
        edition,
        html_path,
        pdf_path,
        pages,
        generated_at,
        as_of
    from review_packs
)

select * from final
