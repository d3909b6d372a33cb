with

calendars as (
    select * from {{ ref('stg_contracts__calendars') }}
),

calendar_windows as (
    select * from {{ ref('stg_contracts__calendar_windows') }}
),

window_span as (
    select
        calendar_code,
        count(*) as open_windows,
        min(window_start) as first_window_start,
        max(window_end) as last_window_end
    from calendar_windows
    group by calendar_code
),

final as (
    select
        calendars.calendar_code,
        calendars.timezone,
        calendars.is_always,
        calendars.holiday_country,
        window_span.first_window_start,
        window_span.last_window_end,
        coalesce(window_span.open_windows, 0) as open_windows
    from calendars
    left join window_span on calendars.calendar_code = window_span.calendar_code
)

select * from final
