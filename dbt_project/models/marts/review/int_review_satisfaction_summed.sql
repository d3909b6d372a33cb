{#-
    Satisfaction per client and period, all survey types and services together: fct_satisfaction's counts
    summed, and the rates recomputed from the sums (never an average of percentages), rounded like the mart.
-#}
with

satisfaction as (
    select * from {{ ref('fct_satisfaction') }}
),

summed as (
    select
        client_code,
        period_type,
        period_start,
        sum(invitations)::bigint as invitations,
        sum(answers)::bigint as answers,
        sum(csat_answers)::bigint as csat_answers,
        sum(csat_satisfied)::bigint as csat_satisfied,
        sum(nps_answers)::bigint as nps_answers,
        sum(promoters)::bigint as promoters,
        sum(detractors)::bigint as detractors,
        max(target_pct) as csat_target_pct
    from satisfaction
    group by client_code, period_type, period_start
),

final as (
    select
        client_code,
        period_type,
        period_start,
        invitations,
        answers,
        round(100.0 * answers / nullif(invitations, 0), 2)::numeric(9, 4) as response_rate_pct,
        csat_answers,
        csat_satisfied,
        round(100.0 * csat_satisfied / nullif(csat_answers, 0), 2)::numeric(9, 4) as csat_pct,
        nps_answers,
        promoters,
        detractors,
        round(100.0 * (promoters - detractors) / nullif(nps_answers, 0), 2)::numeric(9, 4) as nps,
        csat_target_pct::numeric(9, 4) as csat_target_pct,
        -- Too few answers to trust: judged on the exact ratio against the configured minimum.
        (
            invitations > 0
            and 100.0 * answers < {{ var('review_min_response_rate_pct') }} * invitations
        ) as is_response_rate_too_low
    from summed
)

select * from final
