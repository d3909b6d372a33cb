with

source as (
    select * from {{ source('reports', 'review_packs') }}
),

renamed as (
    select
        client_code::text as client_code,
        period_type::text as period_type,
        period_start::date as period_start,
        period_label::text as period_label,
        edition::text as edition,
        html_path::text as html_path,
        pdf_path::text as pdf_path,
        pages::integer as pages,
        generated_at,
        as_of
    from source
)

select * from renamed
