with

source as (
    select * from {{ source('canonical', 'surveys') }}
),

renamed as (
    select
        response_id::text as response_id,
        client_code::text as client_code,
        survey_type::text as survey_type,
        ticket_id::text as ticket_id,
        service_code::text as service_code,
        sent_at::timestamptz as sent_at,
        answered_at::timestamptz as answered_at,
        csat::integer as csat_score,
        nps::integer as nps_score,
        ces::integer as ces_score,
        comment::text as comment,  -- noqa: RF04
        _batch_id::bigint as batch_id
    from source
)

select * from renamed
