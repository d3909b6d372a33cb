-- Satisfaction per client, service (null: the survey names no service and its ticket none either), survey
-- type and period (month, quarter, year; client time zone), exactly as SERVICE_LEVELS.md defines it:
--   response rate = answered / sent; CSAT % = answers scored 4-5 / answers with a CSAT score (plus the mean);
--   NPS = % promoters (9-10) - % detractors (0-6) of the answers with an NPS score; CES = mean effort score.
-- A rate with no answer to base it on is null, never 0. An invitation and its answer count in the period
-- the invitation was sent. Quarters and years roll up the same rows as the months.
-- target_pct: the strictest csat objective of the client's SLA versions in force during the period (and
-- covering the service); is_met is judged only at the objective's own period grain (e.g. quarter), on
-- the exact ratio, where there are CSAT answers.

with

surveys as (
    select * from {{ ref('int_surveys_joined_to_tickets') }}
),

agreements as (
    select * from {{ ref('stg_contracts__agreements') }}
),

objectives as (
    select * from {{ ref('stg_contracts__objectives') }}
),

periods as (
    select
        surveys.*,
        period_grain.period_type,
        date_trunc(period_grain.period_type, surveys.period_month)::date as period_start
    from surveys
    cross join {{ period_grains() }}
),

aggregated as (
    select
        client_code,
        service_code,
        survey_type,
        period_type,
        period_start,
        count(*) as invitations,
        count(*) filter (where is_answered) as answers,
        count(csat_score) as csat_answers,
        count(*) filter (where is_satisfied) as csat_satisfied,
        sum(csat_score) as csat_score_sum,
        count(nps_score) as nps_answers,
        count(*) filter (where nps_category = 'promoter') as promoters,
        count(*) filter (where nps_category = 'passive') as passives,
        count(*) filter (where nps_category = 'detractor') as detractors,
        count(ces_score) as ces_answers,
        sum(ces_score) as ces_score_sum
    from periods
    group by client_code, service_code, survey_type, period_type, period_start
),

with_period_end as (
    select
        *,
        (
            period_start
            + {{ period_length('period_type') }}
            - interval '1 day'
        )::date as period_end
    from aggregated
),

csat_objectives as (
    select
        agreements.party as client_code,
        agreements.services,
        agreements.valid_from,
        agreements.valid_to,
        objectives.target_pct,
        objectives.period as objective_period
    from objectives
    inner join agreements
        on
            objectives.agreement_id = agreements.agreement_id
            and objectives.valid_from = agreements.valid_from
    where
        objectives.metric = 'csat'
        and agreements.kind = 'SLA'
),

targets as (
    select
        with_period_end.client_code,
        with_period_end.service_code,
        with_period_end.survey_type,
        with_period_end.period_type,
        with_period_end.period_start,
        max(csat_objectives.target_pct) as target_pct,
        -- The grain the agreement judges CSAT at; null period = every grain.
        bool_or(
            csat_objectives.objective_period is null
            or csat_objectives.objective_period = with_period_end.period_type
        ) as is_objective_period
    from with_period_end
    inner join csat_objectives
        on
            with_period_end.client_code = csat_objectives.client_code
            and with_period_end.period_end >= csat_objectives.valid_from
            and (csat_objectives.valid_to is null or with_period_end.period_start <= csat_objectives.valid_to)
            and (
                csat_objectives.services is null
                or with_period_end.service_code is null
                or with_period_end.service_code = any(csat_objectives.services)
            )
    group by
        with_period_end.client_code,
        with_period_end.service_code,
        with_period_end.survey_type,
        with_period_end.period_type,
        with_period_end.period_start
),

final as (
    select  -- noqa: ST06
        with_period_end.client_code,
        with_period_end.service_code,
        with_period_end.survey_type,
        with_period_end.period_type,
        with_period_end.period_start,
        with_period_end.period_end,
        with_period_end.invitations,
        with_period_end.answers,
        round(100.0 * with_period_end.answers / nullif(with_period_end.invitations, 0), 2)::numeric(5, 2)
            as response_rate_pct,
        with_period_end.csat_answers,
        with_period_end.csat_satisfied,
        with_period_end.csat_score_sum,
        round(
            100.0 * with_period_end.csat_satisfied / nullif(with_period_end.csat_answers, 0), 2
        )::numeric(5, 2) as csat_pct,
        round(
            1.0 * with_period_end.csat_score_sum / nullif(with_period_end.csat_answers, 0), 2
        )::numeric(4, 2) as csat_mean,
        with_period_end.nps_answers,
        with_period_end.promoters,
        with_period_end.passives,
        with_period_end.detractors,
        round(
            100.0 * (with_period_end.promoters - with_period_end.detractors)
            / nullif(with_period_end.nps_answers, 0),
            2
        )::numeric(5, 2) as nps,
        with_period_end.ces_answers,
        with_period_end.ces_score_sum,
        round(1.0 * with_period_end.ces_score_sum / nullif(with_period_end.ces_answers, 0), 2)::numeric(4, 2)
            as ces_mean,
        targets.target_pct::numeric(5, 2) as target_pct,
        case
            when targets.is_objective_period and with_period_end.csat_answers > 0
                -- Exact comparison: 17 of 20 = 85 % meets an 85 % target, 2 of 3 is not rounded first.
                then
                    100.0 * with_period_end.csat_satisfied
                    >= targets.target_pct * with_period_end.csat_answers
        end as is_met
    from with_period_end
    left join targets
        on
            with_period_end.client_code = targets.client_code
            and with_period_end.service_code is not distinct from targets.service_code
            and with_period_end.survey_type = targets.survey_type
            and with_period_end.period_type = targets.period_type
            and with_period_end.period_start = targets.period_start
)

select * from final
