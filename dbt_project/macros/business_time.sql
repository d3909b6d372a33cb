{#-
    Business time on the calendar windows loaded by slm_platform.contracts.load (one row per open interval,
    in UTC, minutes_before = open minutes of all earlier windows of the calendar).

    business_minute_mark(calendar, ts): the business-minute mark M(c, t) of an instant, i.e. the open minutes
    of calendar c before t since the start of the window table. With w the last window of c starting at or
    before t:  M = w.minutes_before + minutes(least(t, w.window_end) - w.window_start)  (0 before the first
    window). Business minutes between a and b = M(c, b) - M(c, a): one index lookup per timestamp, no
    expansion into minutes or days. Exact to the microsecond (numeric minutes).

    business_minute_instant(calendar, mark): the inverse, the earliest instant whose mark equals `mark`
    (null beyond the last window). Used for deadlines and breach times.

    Both render a correlated scalar subquery: use them in a select list of rows that carry the calendar code.

    The fast form of the mark, for many rows (a hash join instead of an index probe per instant, ~5x faster,
    benchmarks/bench_business_time.py): join the instant's UTC day of int_calendar_days, then read the mark
    from that day's windows. Same figure, same exactness; an instant outside the day table (before the
    first window or after the last) falls back to business_minute_mark.

        select {{ business_minute_mark_on_day('d_stop', 'x.calendar_code', 'x.stopped_at') }} as stop_mark
        from x
        {{ business_day_join('d_stop', 'x.calendar_code', 'x.stopped_at') }}
-#}

{% macro business_day_join(day_alias, calendar_code_expr, ts_expr) -%}
    left join {{ ref('int_calendar_days') }} as {{ day_alias }}
        on
            {{ calendar_code_expr }} = {{ day_alias }}.calendar_code
            and ({{ ts_expr }} at time zone 'UTC')::date = {{ day_alias }}.utc_day
{%- endmacro %}

{% macro business_minute_mark_on_day(day_alias, calendar_code_expr, ts_expr) -%}
    {%- set i = 'width_bucket(' ~ ts_expr ~ ', ' ~ day_alias ~ '.window_starts)' -%}
    coalesce(
        {{ day_alias }}.minutes_before[{{ i }}]
        + extract(
            epoch from least({{ ts_expr }}, {{ day_alias }}.window_ends[{{ i }}])
            - {{ day_alias }}.window_starts[{{ i }}]
        ) / 60,
        {{ business_minute_mark(calendar_code_expr, ts_expr) }}
    )
{%- endmacro %}

{% macro business_minute_mark(calendar_code_expr, ts_expr) -%}
    coalesce((
        select
            cw.minutes_before
            + extract(epoch from least({{ ts_expr }}, cw.window_end) - cw.window_start) / 60
        from {{ ref('stg_contracts__calendar_windows') }} as cw
        where
            cw.calendar_code = {{ calendar_code_expr }}
            and cw.window_start <= {{ ts_expr }}
        order by cw.window_start desc
        limit 1
    ), 0)
{%- endmacro %}

{% macro business_minute_instant(calendar_code_expr, mark_expr) -%}
    (
        select
            case
                when {{ mark_expr }} - cw.minutes_before
                    <= extract(epoch from cw.window_end - cw.window_start) / 60
                    then cw.window_start + make_interval(secs => ({{ mark_expr }} - cw.minutes_before) * 60)
            end
        from {{ ref('stg_contracts__calendar_windows') }} as cw
        where
            cw.calendar_code = {{ calendar_code_expr }}
            and cw.minutes_before < {{ mark_expr }}
        order by cw.minutes_before desc
        limit 1
    )
{%- endmacro %}
