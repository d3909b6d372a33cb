-- One row per calendar and UTC day (from the day of its first window to the day of its last): the windows
-- a business-minute mark on that day can fall in, as parallel arrays sorted by start. The first element is
-- the last window that started on an earlier day (it may run past midnight, or be long closed: the mark
-- then stays at its end), followed by the windows starting on that day.
--
-- Why: the mark M(c, t) = minutes_before + minutes(least(t, window_end) - window_start) of the last window
-- starting at or before t becomes a hash join on (calendar_code, UTC day of t) plus width_bucket (a binary
-- search of a 1-4 element array) instead of an index probe per instant: see the business_time macros.

with

windows as (
    select * from {{ ref('stg_contracts__calendar_windows') }}
),

dated_windows as (
    select
        calendar_code,
        window_start,
        window_end,
        minutes_before,
        (window_start at time zone 'UTC')::date as utc_day
    from windows
),

calendar_bounds as (
    select
        calendar_code,
        min(utc_day) as first_day,
        max(utc_day) as last_day
    from dated_windows
    group by calendar_code
),

calendar_days as (
    select
        calendar_bounds.calendar_code,
        series.day_start::date as utc_day
    from calendar_bounds
    cross join lateral generate_series(
        calendar_bounds.first_day, calendar_bounds.last_day, interval '1 day'
    ) as series (day_start)
),

windows_per_day as (
    select
        calendar_code,
        utc_day,
        array_agg(window_start order by window_start) as window_starts,
        array_agg(window_end order by window_start) as window_ends,
        array_agg(minutes_before order by window_start) as minutes_before,
        max(window_start) as last_window_start
    from dated_windows
    group by calendar_code, utc_day
),

days_with_previous as (
    select
        calendar_days.calendar_code,
        calendar_days.utc_day,
        windows_per_day.window_starts,
        windows_per_day.window_ends,
        windows_per_day.minutes_before,
        -- Starts only grow: the last window of the earlier days is the running max of their last starts.
        max(windows_per_day.last_window_start) over (
            partition by calendar_days.calendar_code order by calendar_days.utc_day
            rows between unbounded preceding and 1 preceding
        ) as previous_window_start
    from calendar_days
    left join windows_per_day
        on
            calendar_days.calendar_code = windows_per_day.calendar_code
            and calendar_days.utc_day = windows_per_day.utc_day
),

final as (
    select
        days_with_previous.calendar_code,
        days_with_previous.utc_day,
        array_remove(
            array_prepend(previous.window_start, coalesce(days_with_previous.window_starts, '{}')), null
        ) as window_starts,
        array_remove(
            array_prepend(previous.window_end, coalesce(days_with_previous.window_ends, '{}')), null
        ) as window_ends,
        array_remove(
            array_prepend(previous.minutes_before, coalesce(days_with_previous.minutes_before, '{}')), null
        ) as minutes_before
    from days_with_previous
    left join dated_windows as previous
        on
            days_with_previous.calendar_code = previous.calendar_code
            and days_with_previous.previous_window_start = previous.window_start
)

select * from final
