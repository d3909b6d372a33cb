-- One row per service with monitoring data or maintenance: its time as PostgreSQL multiranges (sorted
-- unions of disjoint intervals, so an overlap is counted once by construction), up to the run's cut-off.
--
--   check_down_ranges  intervals in which the service's checks said "down"
--   outage_ranges      outage intervals reported by a source (an open outage runs to the cut-off)
--   down_ranges        check_down_ranges + outage_ranges: down if either source says so
--   measured_ranges    time the service's state is known: any check interval, or an outage
--   maintenance_ranges approved maintenance windows (requested but unapproved windows are ignored)
--
-- Everything outside measured_ranges is unmeasured: never counted as up. Reads the merged check intervals (a
-- few rows per service and day), not the raw checks, so its cost does not grow with the check frequency.

with

check_intervals as (
    select * from {{ ref('int_check_intervals_merged') }}
),

outages as (
    select * from {{ ref('stg_canonical__outages') }}
),

maintenance as (
    select * from {{ ref('stg_canonical__maintenance') }}
),

-- The run's cut-off (macros/cutoff.sql); by default the latest loaded check, or outage bound when there are
-- no checks.
{%- set latest_check %}
    coalesce(
        (select max(cutoff_checks.last_checked_at) from {{ ref('int_check_intervals_merged') }} as cutoff_checks),
        (
            select max(coalesce(cutoff_outages.ended_at, cutoff_outages.started_at))
            from {{ ref('stg_canonical__outages') }} as cutoff_outages
        )
    )
{%- endset %}
cutoff as (
    select {{ run_cutoff(latest_check) }} as cutoff_at
),

-- A day's last check holds for twice the usual interval at most, and only until the next check: cut that
-- hold at the first interval of the next day (within a day the runs already end at the next check).
clipped_intervals as (
    select
        service_code,
        status,
        interval_start,
        least(
            interval_end,
            lead(interval_start) over (partition by service_code order by interval_start)
        ) as interval_end
    from check_intervals
),

check_ranges as (
    select
        clipped_intervals.service_code,
        range_agg(
            tstzrange(
                clipped_intervals.interval_start, least(clipped_intervals.interval_end, cutoff.cutoff_at)
            )
        )
            as checked_ranges,
        coalesce(
            range_agg(
                tstzrange(
                    clipped_intervals.interval_start, least(clipped_intervals.interval_end, cutoff.cutoff_at)
                )
            ) filter (where clipped_intervals.status = 'down'),
            '{}'::tstzmultirange
        ) as check_down_ranges
    from clipped_intervals
    cross join cutoff
    where clipped_intervals.interval_start < cutoff.cutoff_at
    group by clipped_intervals.service_code
),

outage_ranges as (
    select
        outages.service_code,
        range_agg(
            tstzrange(
                outages.started_at, least(coalesce(outages.ended_at, cutoff.cutoff_at), cutoff.cutoff_at)
            )
        )
            as outage_ranges
    from outages
    cross join cutoff
    where outages.started_at < cutoff.cutoff_at
    group by outages.service_code
),

maintenance_ranges as (
    select
        service_code,
        range_agg(tstzrange(starts_at, ends_at)) as maintenance_ranges
    from maintenance
    where is_approved
    group by service_code
),

services as (
    select service_code from check_ranges
    union
    select service_code from outage_ranges
    union
    select service_code from maintenance_ranges
),

final as (
    select
        services.service_code,
        cutoff.cutoff_at,
        coalesce(check_ranges.check_down_ranges, '{}') as check_down_ranges,
        coalesce(outage_ranges.outage_ranges, '{}') as outage_ranges,
        coalesce(check_ranges.check_down_ranges, '{}') + coalesce(outage_ranges.outage_ranges, '{}')
            as down_ranges,
        coalesce(check_ranges.checked_ranges, '{}') + coalesce(outage_ranges.outage_ranges, '{}')
            as measured_ranges,
        coalesce(maintenance_ranges.maintenance_ranges, '{}') as maintenance_ranges
    from services
    cross join cutoff
    left join check_ranges on services.service_code = check_ranges.service_code
    left join outage_ranges on services.service_code = outage_ranges.service_code
    left join maintenance_ranges on services.service_code = maintenance_ranges.service_code
)

select * from final
