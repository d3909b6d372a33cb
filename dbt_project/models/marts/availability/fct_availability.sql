-- Availability per service, SLA availability objective and period (day, month, quarter, year; cut in the
-- client's time zone), up to the run's cut-off (int_service_ranges_aggregated.cutoff_at).
--
-- Per local day (the objective version in force that day):
--   calendar      = the day's open windows of the objective's calendar (a 24x7 calendar counts real minutes,
--                   so a DST day has 23 or 25 hours)
--   maintenance   = calendar ∩ approved maintenance
--   agreed (AST)  = calendar − approved maintenance
--   downtime      = AST ∩ down (checks said down, or a source reported an outage; overlaps counted once)
--   unmeasured    = AST − measured (no check holds there and no outage is reported)
-- Periods sum their days. Unmeasured minutes are neither up nor down: availability is computed over the
-- measured part of AST, (AST − unmeasured − downtime) ÷ (AST − unmeasured), with coverage =
-- (AST − unmeasured) ÷ AST beside it and a flag below 99 %. Fully measured, this is SERVICE_LEVELS.md's
-- (AST − downtime) ÷ AST. Error budget = (1 − target) × AST over the whole AST (unmeasured minutes do not
-- shrink it); remaining = budget − downtime, negative once overspent.

{%- set period_types = var('availability_period_types', ['day', 'month', 'quarter', 'year']) %}

with

objectives as (
    select * from {{ ref('int_availability_objectives_matched') }}
),

service_ranges as (
    select * from {{ ref('int_service_ranges_aggregated') }}
),

calendar_windows as (
    select * from {{ ref('stg_contracts__calendar_windows') }}
),

bounds as (
    select
        max(cutoff_at) as cutoff_at,
        min(lower(measured_ranges)) as monitoring_started_at
    from service_ranges
),

-- measured_by = reported_outages: the source lists every outage, so all agreed time from the start of the
-- client's reported history (its first outage or maintenance window) is measured. Never earlier: before the
-- first record nothing says the source was being kept.
reported_history as (
    select
        objectives.client_code,
        min(lower(service_ranges.outage_ranges + service_ranges.maintenance_ranges)) as history_started_at
    from objectives
    inner join service_ranges on objectives.service_code = service_ranges.service_code
    where objectives.measured_by = 'reported_outages'
    group by objectives.client_code
),

objective_starts as (
    select
        objectives.*,
        bounds.cutoff_at,
        case
            when objectives.measured_by = 'reported_outages' then reported_history.history_started_at
            else bounds.monitoring_started_at
        end as measurement_started_at
    from objectives
    cross join bounds
    left join reported_history on objectives.client_code = reported_history.client_code
),

objective_days as (
    select
        objectives.client_code,
        objectives.client_timezone,
        objectives.service_code,
        objectives.agreement_id,
        objectives.objective_id,
        objectives.calendar_code,
        objectives.target_pct,
        objectives.measured_by,
        local_days.local_day::date as local_day,
        objectives.cutoff_at,
        -- Measurement starts with the first monitoring data: before it nothing is agreed-and-measurable.
        tstzrange(
            greatest(
                local_days.local_day::timestamp at time zone objectives.client_timezone,
                objectives.measurement_started_at
            ),
            least(
                (local_days.local_day + interval '1 day')::timestamp at time zone objectives.client_timezone,
                objectives.cutoff_at
            )
        ) as day_range
    from objective_starts as objectives
    -- From the first day any monitoring exists (a service without data then shows as unmeasured) to the
    -- cut-off, inside the version's validity.
    cross join
        lateral generate_series(
            greatest(
                objectives.valid_from,
                (objectives.measurement_started_at at time zone objectives.client_timezone)::date
            )
            ::timestamp,
            least(
                coalesce(
                    objectives.valid_to, (objectives.cutoff_at at time zone objectives.client_timezone)::date
                ),
                (objectives.cutoff_at at time zone objectives.client_timezone)::date
            )::timestamp,
            interval '1 day'
        ) as local_days (local_day)
    where local_days.local_day::timestamp at time zone objectives.client_timezone < objectives.cutoff_at
),

day_calendars as (
    select
        objective_days.service_code,
        objective_days.objective_id,
        objective_days.local_day,
        day_windows.calendar_ranges
    from objective_days
    -- One primary-key range scan of the calendar per row (macro calendar_ranges_within).
    cross join
        lateral
        {{ calendar_ranges_within('objective_days.calendar_code', 'objective_days.day_range') }}
            as day_windows
),

day_ranges as (
    select
        objective_days.*,
        coalesce(day_calendars.calendar_ranges, '{}') as calendar_ranges,
        coalesce(day_calendars.calendar_ranges, '{}') - coalesce(service_ranges.maintenance_ranges, '{}')
            as agreed_ranges,
        coalesce(service_ranges.down_ranges, '{}') as down_ranges,
        case
            when objective_days.measured_by = 'reported_outages' then tstzmultirange(objective_days.day_range)
            else coalesce(service_ranges.measured_ranges, '{}')
        end as measured_ranges
    from objective_days
    left join day_calendars
        on
            objective_days.service_code = day_calendars.service_code
            and objective_days.objective_id = day_calendars.objective_id
            and objective_days.local_day = day_calendars.local_day
    left join service_ranges on objective_days.service_code = service_ranges.service_code
),

-- Materialized: the multirange arithmetic runs once per day, before the periods are summed (inlined into a
-- fan-out to the period types, the planner evaluated it once per day and period type).
day_minutes as materialized (
    select
        client_code,
        client_timezone,
        service_code,
        agreement_id,
        objective_id,
        target_pct,
        local_day,
        cutoff_at,
        {{ multirange_minutes('calendar_ranges') }} as calendar_minutes,
        {{ multirange_minutes('agreed_ranges') }} as agreed_minutes,
        {{ multirange_minutes('agreed_ranges * down_ranges') }} as downtime_minutes,
        {{ multirange_minutes('agreed_ranges - measured_ranges') }} as unmeasured_minutes
    from day_ranges
),

period_days as (
    select
        day_minutes.*,
        date_trunc('month', day_minutes.local_day)::date as month_start,
        date_trunc('quarter', day_minutes.local_day)::date as quarter_start,
        date_trunc('year', day_minutes.local_day)::date as year_start
    from day_minutes
),

-- Every period type in one sorted pass: rollup(year, quarter, month, day) groups each day alone, then its
-- month, quarter and year (the grand total per objective is dropped). Nested periods, so one sort of the days
-- serves all four (a cross join with the period types sorted four times as many rows).
periods_rolled_up as (
    select
        client_code,
        client_timezone,
        service_code,
        agreement_id,
        objective_id,
        case
            when grouping(local_day) = 0 then 'day'
            when grouping(month_start) = 0 then 'month'
            when grouping(quarter_start) = 0 then 'quarter'
            else 'year'
        end as period_type,
        coalesce(local_day, month_start, quarter_start, year_start) as period_start,
        max(cutoff_at) as cutoff_at,
        -- An amendment inside a period: the target shown is the one in force on its last measured day; the
        -- budget is the sum of each day's own budget.
        (array_agg(target_pct order by local_day desc))[1] as target_pct,
        sum(calendar_minutes) as calendar_minutes,
        sum(agreed_minutes) as agreed_minutes,
        sum(calendar_minutes - agreed_minutes) as maintenance_minutes,
        sum(downtime_minutes) as downtime_minutes,
        sum(unmeasured_minutes) as unmeasured_minutes,
        sum((100 - target_pct) / 100 * agreed_minutes) as error_budget_minutes
    from period_days
    group by
        client_code,
        client_timezone,
        service_code,
        agreement_id,
        objective_id,
        rollup (year_start, quarter_start, month_start, local_day)
    having grouping(year_start) = 0
),

periods as (
    select * from periods_rolled_up
    where period_type in ({{ "'" ~ period_types | join("', '") ~ "'" }})
),

figures as (
    select
        *,
        agreed_minutes - unmeasured_minutes as measured_minutes,
        case
            when agreed_minutes - unmeasured_minutes > 0
                then
                    100 * (agreed_minutes - unmeasured_minutes - downtime_minutes)
                    / (agreed_minutes - unmeasured_minutes)
        end as availability_exact,
        case when agreed_minutes > 0 then 100 * (agreed_minutes - unmeasured_minutes) / agreed_minutes end
            as coverage_exact,
        (
            period_start
            + case period_type
                when 'day' then interval '1 day'
                when 'month' then interval '1 month'
                when 'quarter' then interval '3 months'
                else interval '1 year'
            end
        )::date as period_end_exclusive
    from periods
),

final as (
    select  -- noqa: ST06
        figures.client_code,
        figures.service_code,
        figures.agreement_id,
        figures.objective_id,
        figures.period_type,
        figures.period_start,
        (figures.period_end_exclusive - 1) as period_end,
        round(figures.calendar_minutes, 2) as calendar_minutes,
        round(figures.agreed_minutes, 2) as agreed_minutes,
        round(figures.maintenance_minutes, 2) as maintenance_minutes,
        round(figures.downtime_minutes, 2) as downtime_minutes,
        round(figures.unmeasured_minutes, 2) as unmeasured_minutes,
        round(figures.coverage_exact, 2) as coverage_pct,
        coalesce(figures.coverage_exact < 99, false) as coverage_below_99,
        round(figures.availability_exact, 4) as availability_pct,
        figures.target_pct,
        figures.availability_exact >= figures.target_pct as is_met,
        round(figures.error_budget_minutes, 2) as error_budget_minutes,
        round(figures.error_budget_minutes - figures.downtime_minutes, 2) as error_budget_remaining_minutes,
        case
            when figures.error_budget_minutes > 0
                then
                    round(
                        100
                        * (figures.error_budget_minutes - figures.downtime_minutes)
                        / figures.error_budget_minutes,
                        2
                    )
        end as error_budget_remaining_pct,
        -- The period's last instant has not been reached at the cut-off: figures so far.
        figures.period_end_exclusive::timestamp at time zone figures.client_timezone <= figures.cutoff_at
            as is_period_complete,
        figures.cutoff_at as as_of
    from figures
)

select * from final
