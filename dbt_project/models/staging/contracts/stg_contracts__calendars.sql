with

source as (
    select * from {{ source('contracts', 'contract_calendars') }}
),

renamed as (
    select
        calendar_code,
        timezone,
        is_always,
        holiday_country
    from source
)

select * from renamed
