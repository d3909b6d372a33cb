{#-
    Business time on the calendar windows loaded by slm_platform.contracts_load (one row per open interval,
    in UTC, minutes_before = open minutes of all earlier windows of the calendar).

    business_minute_mark(calendar, ts): the business-minute mark M(c, t) of an instant, i.e. the open minutes
    of calendar c before t since the start of the window table. With w the last window of c starting at or
    before t:  M = w.minutes_before + minutes(least(t, w.window_end) - w.window_start)  (0 before the first
    window). Business minutes between a and b = M(c, b) - M(c, a): one index lookup per timestamp, no
    expansion into minutes or days. Exact to the microsecond (numeric minutes).

    business_minute_instant(calendar, mark): the inverse, the earliest instant whose mark equals `mark`
    (null beyond the last window). Used for deadlines and breach times.

    Both render a correlated scalar subquery: use them in a select list of rows that carry the calendar code.
-#}

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
