{#-
    One row per client x period x objective line (int_review_objective_lines), beside the same line in the
    previous period of the same type: the previous month, quarter or year by date arithmetic, so a gap (a
    month without the line) means no previous period, never the one before it. Breached two running = not
    met now and not met in that previous period (worked example 9).
-#}
with

lines as (
    select * from {{ ref('int_review_objective_lines') }}
),

dated as (
    select
        *,
        {{ period_length('period_type') }} as period_length
    from lines
),

final as (
    select  -- noqa: ST06
        dated.client_code,
        dated.period_type,
        dated.period_start,
        (dated.period_start + dated.period_length - interval '1 day')::date as period_end,
        dated.agreement_id,
        dated.objective_id,
        dated.metric,
        dated.service_code,
        dated.ticket_type,
        dated.priority,
        dated.counted,
        dated.met,
        dated.attainment_pct,
        dated.target_pct,
        dated.is_met,
        previous.attainment_pct as previous_attainment_pct,
        previous.is_met as previous_is_met,
        (dated.attainment_pct - previous.attainment_pct)::numeric(9, 4) as attainment_change_pts,
        coalesce(not dated.is_met and not previous.is_met, false) as is_breached_two_running
    from dated
    left join lines as previous
        on
            dated.client_code = previous.client_code
            and dated.objective_id = previous.objective_id
            and dated.service_code is not distinct from previous.service_code
            and dated.period_type = previous.period_type
            and (dated.period_start - dated.period_length)::date = previous.period_start
)

select * from final
