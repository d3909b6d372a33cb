-- Check statuses as merged intervals: one row per run of equal statuses of a service within one UTC day.
--
-- A check's status holds from its checked_at until the service's next check, for at most twice the usual
-- check interval (CANONICAL_FORMAT.md); beyond that the time is unmeasured. The usual interval is the most
-- frequent spacing between the service's consecutive checks of that UTC day (mode, the smaller on a tie).
-- Consecutive checks with the same status whose holds touch form one interval, so a day of 1-minute "up"
-- checks is one row: everything downstream reads these rows, never the raw checks.
--
-- Each day is computed from its own checks only: the day's last check holds for twice the usual interval,
-- and int_service_ranges_aggregated cuts that hold at the next day's first check (a lead over these compact
-- rows). So a day's rows never change when a later day arrives.
--
-- Incremental, grain (service_code, check_day): a run rebuilds only the service-days that hold checks
-- written by a load batch newer than the last one seen here (new days and late corrections alike). The new
-- batches are found through the BRIN index on raw.checks(_batch_id), the watermark being a literal read
-- before the run (macro checks_processed_batch); each changed day's changed services are then read with
-- one scan of the primary key. Its cost is proportional to the new data, not to the history.

with

checks as (
    select * from {{ ref('stg_canonical__checks') }}
),

{% if is_incremental() %}

    new_checks as (
        select * from {{ ref('stg_canonical__checks') }}
        where batch_id > {{ checks_processed_batch() }}
    ),

    days_to_build as (
        select distinct
            service_code,
            (checked_at at time zone 'UTC')::date as check_day
        from new_checks
    ),

    -- One row per changed UTC day with its changed services (one row a night, plus late corrections).
    changed_days as (
        select
            check_day,
            array_agg(service_code order by service_code) as service_codes
        from days_to_build
        group by check_day
    ),

    scoped_checks as (
        select day_checks.*
        from changed_days
        -- Per changed day, one scan of the primary key over that day's changed services (the planner may
        -- make it a bitmap scan, reading each heap page once whatever order the loader wrote the rows in).
        -- offset 0 keeps the planner from flattening the lateral into a join over the whole history.
        cross join lateral (
            select
                checks.service_code,
                checks.checked_at,
                checks.status,
                checks.batch_id
            from checks
            where
                checks.service_code = any(changed_days.service_codes)
                and checks.checked_at >= changed_days.check_day::timestamp at time zone 'UTC'
                and checks.checked_at < (changed_days.check_day + 1)::timestamp at time zone 'UTC'
            offset 0  -- noqa: AM09
        ) as day_checks
    ),

{% else %}

    scoped_checks as (
        select
            service_code,
            checked_at,
            status,
            batch_id
        from checks
    ),

{% endif %}

with_next as (
    select
        service_code,
        checked_at,
        status,
        batch_id,
        (checked_at at time zone 'UTC')::date as check_day,
        -- The next check of the same UTC day (the day's last check has none: see the header).
        lead(checked_at) over (
            partition by service_code, (checked_at at time zone 'UTC')::date order by checked_at
        ) as next_checked_at
    from scoped_checks
),

usual_intervals as (
    select
        service_code,
        check_day,
        mode() within group (order by next_checked_at - checked_at) as usual_interval
    from with_next
    where next_checked_at is not null
    group by service_code, check_day
),

held as (
    select
        with_next.service_code,
        with_next.check_day,
        with_next.checked_at,
        with_next.status,
        with_next.batch_id,
        -- least() skips nulls: the day's last check holds for twice the usual interval.
        least(
            with_next.next_checked_at, with_next.checked_at + 2 * usual_intervals.usual_interval
        ) as held_until
    from with_next
    inner join usual_intervals
        on
            with_next.service_code = usual_intervals.service_code
            and with_next.check_day = usual_intervals.check_day
),

run_starts as (
    select
        *,
        case
            when
                lag(status) over same_day = status
                and lag(held_until) over same_day = checked_at
                then 0
            else 1
        end as starts_run
    from held
    window same_day as (partition by service_code, check_day order by checked_at)
),

runs_numbered as (
    select
        *,
        sum(starts_run) over (partition by service_code, check_day order by checked_at) as run_number
    from run_starts
),

final as (
    select
        service_code,
        check_day,
        status,
        min(checked_at) as interval_start,
        max(held_until) as interval_end,
        max(checked_at) as last_checked_at,
        count(*) as checks_count,
        max(batch_id) as max_batch_id
    from runs_numbered
    group by service_code, check_day, run_number, status
)

select * from final
