-- The client's own feedback given in service reviews (survey_type review): one row per answered review
-- survey, with its period (month and quarter of the review, client time zone), ratings and comment.

with

surveys as (
    select * from {{ ref('int_surveys_joined_to_tickets') }}
),

final as (
    select  -- noqa: ST06
        response_id,
        client_code,
        service_code,
        sent_at as review_at,
        answered_at,
        period_month,
        date_trunc('quarter', period_month)::date as period_quarter,
        csat_score,
        is_satisfied,
        nps_score,
        nps_category,
        ces_score,
        comment
    from surveys
    where
        survey_type = 'review'
        and is_answered
)

select * from final
