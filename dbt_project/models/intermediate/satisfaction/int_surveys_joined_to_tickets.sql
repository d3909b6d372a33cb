-- Every survey invitation (answered or not) with what the satisfaction marts group and count by: the
-- client's time zone, the service (the ticket's when the survey names none), the month of the invitation in
-- the client's time zone, and the per-answer classifications. Scores of an invitation without an answer
-- (a started but not submitted response) are not answers: they are nulled here, once.

with

surveys as (
    select * from {{ ref('stg_canonical__surveys') }}
),

clients as (
    select * from {{ ref('stg_canonical__clients') }}
),

tickets as (
    select * from {{ ref('stg_canonical__tickets') }}
),

joined as (
    select  -- noqa: ST06
        surveys.response_id,
        surveys.client_code,
        clients.timezone as client_timezone,
        surveys.survey_type,
        surveys.ticket_id,
        coalesce(surveys.service_code, tickets.service_code) as service_code,
        surveys.sent_at,
        surveys.answered_at,
        surveys.answered_at is not null as is_answered,
        case when surveys.answered_at is not null then surveys.csat_score end as csat_score,
        case when surveys.answered_at is not null then surveys.nps_score end as nps_score,
        case when surveys.answered_at is not null then surveys.ces_score end as ces_score,
        case when surveys.answered_at is not null then surveys.comment end as comment,  -- noqa: RF04
        -- An invitation and its answer count in the month the invitation was sent (client time zone), so
        -- that answers never exceed invitations in a period.
        date_trunc('month', surveys.sent_at at time zone clients.timezone)::date as period_month
    from surveys
    inner join clients on surveys.client_code = clients.client_code
    left join tickets
        on
            surveys.ticket_id = tickets.ticket_id
            and surveys.client_code = tickets.client_code
),

final as (
    select
        *,
        case when csat_score is not null then csat_score >= 4 end as is_satisfied,
        case
            when nps_score >= 9 then 'promoter'
            when nps_score >= 7 then 'passive'
            when nps_score is not null then 'detractor'
        end as nps_category
    from joined
)

select * from final
