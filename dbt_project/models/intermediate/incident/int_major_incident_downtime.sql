{#-
    One row per major incident, affected service, SLA availability objective and period (month, quarter, year
    in the client's time zone) that the incident's window overlaps: the incident's downtime there, i.e. the
    minutes fct_availability counts as downtime (agreed service time = the objective calendar's open hours
    minus approved maintenance, intersected with the down ranges) that fall inside the window.

    Same building blocks as fct_availability, not a re-derivation: the down and maintenance multiranges of
    int_service_ranges_aggregated (overlapping checks and outages are counted once by construction), the
    objective versions of int_availability_objectives_matched (each local day against the version in force
    on it), the calendar through calendar_ranges_within and minutes through multirange_minutes. The window is
    cut into the client's local days first, so a day and its period are exactly fct_availability's.
-#}
with

windows as (
    select * from {{ ref('int_major_incident_windows') }}
),

objectives as (
    select * from {{ ref('int_availability_objectives_matched') }}
),

service_ranges as (
    select * from {{ ref('int_service_ranges_aggregated') }}
),

calendar_windows as (
    select * from {{ ref('stg_contracts__calendar_windows') }}
),

window_days as (
    select
        windows.incident_id,
        windows.service_code,
        objectives.client_code,
        objectives.agreement_id,
        objectives.objective_id,
        objectives.calendar_code,
        windows.incident_range,
        local_days.local_day::date as local_day,
        greatest(
            local_days.local_day::timestamp at time zone objectives.client_timezone, windows.window_start
        ) as range_start,
        least(
            (local_days.local_day + interval '1 day')::timestamp at time zone objectives.client_timezone,
            windows.window_end,
            service_ranges.cutoff_at
        ) as range_end,
        coalesce(service_ranges.down_ranges, '{}') as down_ranges,
        coalesce(service_ranges.maintenance_ranges, '{}') as maintenance_ranges
    from windows
    inner join objectives on windows.service_code = objectives.service_code
    left join service_ranges on windows.service_code = service_ranges.service_code
    cross join
        lateral generate_series(
            (windows.window_start at time zone objectives.client_timezone)::date::timestamp,
            (windows.window_end at time zone objectives.client_timezone)::date::timestamp,
            interval '1 day'
        ) as local_days (local_day)
    where
        local_days.local_day::date >= objectives.valid_from
        and (objectives.valid_to is null or local_days.local_day::date <= objectives.valid_to)
),

day_ranges as (
    select
        *,
        tstzrange(range_start, range_end) as day_range
    from window_days
    -- A window ending at midnight touches the next day for no time.
    where range_start < range_end
),

day_calendars as (
    select
        day_ranges.incident_id,
        day_ranges.service_code,
        day_ranges.objective_id,
        day_ranges.local_day,
        day_windows.calendar_ranges
    from day_ranges
    -- One primary-key range scan of the calendar per row (macro calendar_ranges_within).
    cross join
        lateral
        {{ calendar_ranges_within('day_ranges.calendar_code', 'day_ranges.day_range') }}
            as day_windows
),

day_minutes as materialized (
    select
        day_ranges.incident_id,
        day_ranges.client_code,
        day_ranges.service_code,
        day_ranges.agreement_id,
        day_ranges.objective_id,
        day_ranges.local_day,
        {{ multirange_minutes(
            '(coalesce(day_calendars.calendar_ranges, \'{}\') - day_ranges.maintenance_ranges)'
            ~ ' * day_ranges.down_ranges'
        ) }} as incident_minutes
    from day_ranges
    left join day_calendars
        on
            day_ranges.incident_id = day_calendars.incident_id
            and day_ranges.service_code = day_calendars.service_code
            and day_ranges.objective_id = day_calendars.objective_id
            and day_ranges.local_day = day_calendars.local_day
),

final as (
    select
        day_minutes.incident_id,
        day_minutes.client_code,
        day_minutes.service_code,
        day_minutes.agreement_id,
        day_minutes.objective_id,
        period_grain.period_type,
        date_trunc(period_grain.period_type, day_minutes.local_day)::date as period_start,
        -- 0.01 minute, as fct_availability rounds its downtime.
        round(sum(day_minutes.incident_minutes), 2) as incident_minutes
    from day_minutes
    cross join {{ period_grains() }}
    group by
        day_minutes.incident_id,
        day_minutes.client_code,
        day_minutes.service_code,
        day_minutes.agreement_id,
        day_minutes.objective_id,
        period_grain.period_type,
        date_trunc(period_grain.period_type, day_minutes.local_day)::date
)

select * from final
