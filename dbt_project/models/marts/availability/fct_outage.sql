-- One row per outage interval per service: the union of the down time its checks showed and the outages its
-- sources reported, overlaps merged (two sources reporting the same break give one row, source 'both').
-- The building block for incident reviews. Minutes are split by the SLA availability objective in force on
-- the outage's first local day: inside approved maintenance (not counted), inside agreed service time (AST:
-- the objective calendar's open hours minus approved maintenance; these are the minutes fct_availability
-- counts as downtime). An outage still going on at the cut-off ends there (is_ongoing).

with

service_ranges as (
    select * from {{ ref('int_service_ranges_aggregated') }}
),

objectives as (
    select * from {{ ref('int_availability_objectives_matched') }}
),

services as (
    select * from {{ ref('stg_canonical__services') }}
),

clients as (
    select * from {{ ref('stg_canonical__clients') }}
),

outages as (
    select * from {{ ref('stg_canonical__outages') }}
),

calendar_windows as (
    select * from {{ ref('stg_contracts__calendar_windows') }}
),

down_intervals as (
    select
        service_ranges.service_code,
        service_ranges.cutoff_at,
        service_ranges.maintenance_ranges,
        down_interval.down_range,
        service_ranges.check_down_ranges && down_interval.down_range as seen_by_checks,
        service_ranges.outage_ranges && down_interval.down_range as reported_as_outage
    from service_ranges
    cross join lateral unnest(service_ranges.down_ranges) as down_interval (down_range)
),

with_objective as (
    select
        down_intervals.*,
        services.client_code,
        clients.timezone as client_timezone,
        objectives.agreement_id,
        objectives.objective_id,
        objectives.calendar_code,
        (lower(down_intervals.down_range) at time zone clients.timezone)::date as started_on
    from down_intervals
    inner join services on down_intervals.service_code = services.service_code
    inner join clients on services.client_code = clients.client_code
    left join objectives
        on
            down_intervals.service_code = objectives.service_code
            and (lower(down_intervals.down_range) at time zone clients.timezone)::date
            >= objectives.valid_from
            and (
                objectives.valid_to is null
                or (lower(down_intervals.down_range) at time zone clients.timezone)::date
                <= objectives.valid_to
            )
),

calendar_overlaps as (
    select
        with_objective.service_code,
        with_objective.down_range,
        outage_windows.calendar_ranges
    from with_objective
    -- One primary-key range scan of the calendar per row (macro calendar_ranges_within).
    cross join
        lateral
        {{ calendar_ranges_within('with_objective.calendar_code', 'with_objective.down_range') }}
            as outage_windows
),

source_refs as (
    select
        with_objective.service_code,
        with_objective.down_range,
        string_agg(outages.source_ref, ', ' order by outages.started_at) as source_refs
    from with_objective
    inner join outages
        on
            with_objective.service_code = outages.service_code
            and outages.started_at < upper(with_objective.down_range)
            and coalesce(outages.ended_at, with_objective.cutoff_at) > lower(with_objective.down_range)
    group by with_objective.service_code, with_objective.down_range
),

final as (
    select
        with_objective.client_code,
        with_objective.service_code,
        with_objective.agreement_id,
        with_objective.objective_id,
        lower(with_objective.down_range) as outage_start,
        upper(with_objective.down_range) as outage_end,
        with_objective.started_on,
        date_trunc('month', with_objective.started_on)::date as started_month,
        round({{ multirange_minutes('multirange(with_objective.down_range)') }}, 2) as duration_minutes,
        round(
            {{ multirange_minutes('multirange(with_objective.down_range)'
                ~ ' * with_objective.maintenance_ranges') }},
            2
        ) as maintenance_minutes,
        case
            when with_objective.objective_id is not null
                then round(
                    {{ multirange_minutes(
                        'coalesce(calendar_overlaps.calendar_ranges, \'{}\')'
                        ~ ' - with_objective.maintenance_ranges'
                    ) }},
                    2
                )
        end as agreed_minutes,
        case
            when with_objective.seen_by_checks and with_objective.reported_as_outage then 'both'
            when with_objective.seen_by_checks then 'checks'
            else 'outages'
        end as source,  -- noqa: RF04
        source_refs.source_refs,
        upper(with_objective.down_range) = with_objective.cutoff_at as is_ongoing
    from with_objective
    left join calendar_overlaps
        on
            with_objective.service_code = calendar_overlaps.service_code
            and with_objective.down_range = calendar_overlaps.down_range
    left join source_refs
        on
            with_objective.service_code = source_refs.service_code
            and with_objective.down_range = source_refs.down_range
)

select * from final
