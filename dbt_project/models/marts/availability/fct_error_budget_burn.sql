-- Error-budget burn for managers: one row per service and SLA availability objective, for the objective's
-- running period (month, quarter or year, in the client's time zone) at the run's cut-off (as_of).
--
-- budget (whole period) = (1 − target) × AST of the whole period (calendar minus approved maintenance,
-- planned windows after the cut-off included); consumed = downtime so far; remaining = budget − consumed.
-- Burn rate over a window ending at the cut-off (SRE multi-window style, 1 h, 6 h, 24 h) =
-- (downtime ÷ measured agreed minutes in the window) ÷ (1 − target): 1 spends the budget exactly by the
-- period's end, 14.4 spends 2 % of a 30-day budget in one hour. Null when the window holds no measured
-- agreed time (e.g. a business-hours service at night). The projection assumes the 24 h burn rate (else
-- the period's own so far) goes on over the rest of the period's agreed time: will_breach when the
-- projected remaining budget at the period's end is negative (or already is). alert_level: page = 1 h ≥ 14.4
-- and 6 h ≥ 6 (fast burn, confirmed by the longer window); ticket = 6 h ≥ 6 or 24 h ≥ 3 (slow burn);
-- otherwise none.

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

cutoff as (
    select max(cutoff_at) as cutoff_at from service_ranges
),

running as (
    select
        objectives.*,
        cutoff.cutoff_at,
        date_trunc(
            objectives.objective_period,
            (cutoff.cutoff_at - interval '1 microsecond') at time zone objectives.client_timezone
        )
            as period_start_local
    from objectives
    cross join cutoff
    -- The version in force at the cut-off (its last instant belongs to the day before a midnight cut-off).
    where
        ((cutoff.cutoff_at - interval '1 microsecond') at time zone objectives.client_timezone)::date
        >= objectives.valid_from
        and (
            objectives.valid_to is null
            or ((cutoff.cutoff_at - interval '1 microsecond') at time zone objectives.client_timezone)::date
            <= objectives.valid_to
        )
),

periods as (
    select
        running.*,
        tstzrange(
            running.period_start_local at time zone running.client_timezone,
            (
                running.period_start_local
                + case running.objective_period
                    when 'quarter' then interval '3 months'
                    when 'year' then interval '1 year'
                    else interval '1 month'
                end
            ) at time zone running.client_timezone
        ) as period_range
    from running
),

period_calendars as (
    select
        periods.service_code,
        periods.objective_id,
        period_windows.calendar_ranges
    from periods
    -- One primary-key range scan of the calendar per row (macro calendar_ranges_within).
    cross join
        lateral
        {{ calendar_ranges_within('periods.calendar_code', 'periods.period_range') }}
            as period_windows
),

agreed as (
    select
        periods.client_code,
        periods.service_code,
        periods.agreement_id,
        periods.objective_id,
        periods.objective_period,
        periods.period_start_local::date as period_start,
        periods.target_pct,
        periods.cutoff_at,
        (1 - periods.target_pct / 100) as error_rate_allowed,
        coalesce(period_calendars.calendar_ranges, '{}')
        - coalesce(service_ranges.maintenance_ranges, '{}') as agreed_ranges,
        coalesce(service_ranges.down_ranges, '{}') as down_ranges,
        -- reported_outages: the source lists every outage, so the period so far is measured.
        case
            when periods.measured_by = 'reported_outages'
                then multirange(tstzrange(lower(periods.period_range), periods.cutoff_at))
            else coalesce(service_ranges.measured_ranges, '{}')
        end as measured_ranges,
        multirange(tstzrange(lower(periods.period_range), periods.cutoff_at)) as to_date,
        multirange(tstzrange(periods.cutoff_at - interval '1 hour', periods.cutoff_at)) as last_1h,
        multirange(tstzrange(periods.cutoff_at - interval '6 hours', periods.cutoff_at)) as last_6h,
        multirange(tstzrange(periods.cutoff_at - interval '24 hours', periods.cutoff_at)) as last_24h
    from periods
    left join period_calendars
        on
            periods.service_code = period_calendars.service_code
            and periods.objective_id = period_calendars.objective_id
    left join service_ranges on periods.service_code = service_ranges.service_code
),

minutes as (
    select
        client_code,
        service_code,
        agreement_id,
        objective_id,
        objective_period,
        period_start,
        target_pct,
        cutoff_at,
        error_rate_allowed,
        {{ multirange_minutes('agreed_ranges') }} as period_agreed_minutes,
        {{ multirange_minutes('agreed_ranges * to_date') }} as agreed_to_date_minutes,
        {{ multirange_minutes('agreed_ranges * to_date * measured_ranges') }} as measured_to_date_minutes,
        {{ multirange_minutes('agreed_ranges * to_date * down_ranges') }} as downtime_to_date_minutes,
        {{ multirange_minutes('agreed_ranges * last_1h * measured_ranges') }} as measured_1h_minutes,
        {{ multirange_minutes('agreed_ranges * last_1h * down_ranges') }} as down_1h_minutes,
        {{ multirange_minutes('agreed_ranges * last_6h * measured_ranges') }} as measured_6h_minutes,
        {{ multirange_minutes('agreed_ranges * last_6h * down_ranges') }} as down_6h_minutes,
        {{ multirange_minutes('agreed_ranges * last_24h * measured_ranges') }} as measured_24h_minutes,
        {{ multirange_minutes('agreed_ranges * last_24h * down_ranges') }} as down_24h_minutes
    from agreed
),

rates as (
    select
        *,
        error_rate_allowed * period_agreed_minutes as budget_minutes,
        case
            when measured_1h_minutes > 0 and error_rate_allowed > 0
                then down_1h_minutes / measured_1h_minutes / error_rate_allowed
        end as burn_rate_1h,
        case
            when measured_6h_minutes > 0 and error_rate_allowed > 0
                then down_6h_minutes / measured_6h_minutes / error_rate_allowed
        end as burn_rate_6h,
        case
            when measured_24h_minutes > 0 and error_rate_allowed > 0
                then down_24h_minutes / measured_24h_minutes / error_rate_allowed
        end as burn_rate_24h,
        case
            when measured_to_date_minutes > 0 and error_rate_allowed > 0
                then downtime_to_date_minutes / measured_to_date_minutes / error_rate_allowed
        end as burn_rate_period
    from minutes
),

projected as (
    select
        *,
        budget_minutes - downtime_to_date_minutes as remaining_minutes,
        budget_minutes
        - downtime_to_date_minutes
        - coalesce(burn_rate_24h, burn_rate_period, 0) * error_rate_allowed
        * (period_agreed_minutes - agreed_to_date_minutes) as projected_remaining_minutes
    from rates
),

final as (
    select
        client_code,
        service_code,
        agreement_id,
        objective_id,
        objective_period as period_type,
        period_start,
        cutoff_at as as_of,
        target_pct,
        round(period_agreed_minutes, 2) as period_agreed_minutes,
        round(agreed_to_date_minutes, 2) as agreed_to_date_minutes,
        round(downtime_to_date_minutes, 2) as downtime_to_date_minutes,
        round(budget_minutes, 2) as error_budget_minutes,
        round(remaining_minutes, 2) as error_budget_remaining_minutes,
        case when budget_minutes > 0 then round(100 * downtime_to_date_minutes / budget_minutes, 2) end
            as error_budget_consumed_pct,
        round(burn_rate_1h, 2) as burn_rate_1h,
        round(burn_rate_6h, 2) as burn_rate_6h,
        round(burn_rate_24h, 2) as burn_rate_24h,
        round(burn_rate_period, 2) as burn_rate_period,
        round(projected_remaining_minutes, 2) as projected_remaining_minutes,
        projected_remaining_minutes < 0 as will_breach,
        case
            when burn_rate_1h >= 14.4 and burn_rate_6h >= 6 then 'page'
            when burn_rate_6h >= 6 or burn_rate_24h >= 3 then 'ticket'
            else 'none'
        end as alert_level
    from projected
)

select * from final
