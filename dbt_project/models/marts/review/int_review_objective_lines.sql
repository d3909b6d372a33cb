{#-
    Every signed objective measured in a period, one row per client x period x objective line, as the source
    marts judge it:
      - ticket objectives (response, resolution) from fct_sla_attainment, per service;
      - availability objectives from fct_availability (months, quarters, years), counted = agreed minutes;
      - the CSAT objective from fct_satisfaction where it is judged (is_met not null: the objective's own
        period grain, with answers), all survey types and services of the client together, recomputed from
        the summed answers (never an average of percentages), held to the strictest target.
-#}
with

sla_attainment as (
    select * from {{ ref('fct_sla_attainment') }}
),

availability as (
    select * from {{ ref('fct_availability') }}
),

satisfaction as (
    select * from {{ ref('fct_satisfaction') }}
),

agreements as (
    select * from {{ ref('stg_contracts__agreements') }}
),

objectives as (
    select * from {{ ref('stg_contracts__objectives') }}
),

ticket_lines as (
    select
        client_code,
        period_type,
        period_start,
        agreement_id,
        objective_id,
        metric,
        service_code,
        ticket_type,
        priority,
        tickets_counted as counted,
        tickets_met as met,
        attainment_pct::numeric(9, 4) as attainment_pct,
        threshold_pct::numeric(9, 4) as target_pct,
        is_met
    from sla_attainment
),

availability_lines as (
    select
        client_code,
        period_type,
        period_start,
        agreement_id,
        objective_id,
        'availability' as metric,
        service_code,
        null::text as ticket_type,
        null::text as priority,
        round(agreed_minutes)::bigint as counted,
        null::bigint as met,
        availability_pct::numeric(9, 4) as attainment_pct,
        target_pct::numeric(9, 4) as target_pct,
        is_met
    from availability
    where period_type in ('month', 'quarter', 'year')
),

csat_judged as (
    select
        client_code,
        period_type,
        period_start,
        max(period_end) as period_end,
        sum(csat_answers) as csat_answers,
        sum(csat_satisfied) as csat_satisfied,
        max(target_pct) as target_pct
    from satisfaction
    where is_met is not null
    group by client_code, period_type, period_start
),

-- The client's CSAT objective in force during the period (the id is the same in every version).
csat_objectives as (
    select
        agreements.party as client_code,
        agreements.valid_from,
        agreements.valid_to,
        objectives.agreement_id,
        objectives.objective_id
    from objectives
    inner join agreements
        on
            objectives.agreement_id = agreements.agreement_id
            and objectives.valid_from = agreements.valid_from
    where objectives.metric = 'csat' and agreements.kind = 'SLA'
),

csat_lines as (
    select
        csat_judged.client_code,
        csat_judged.period_type,
        csat_judged.period_start,
        min(csat_objectives.agreement_id) as agreement_id,
        min(csat_objectives.objective_id) as objective_id,
        'csat' as metric,
        null::text as service_code,
        null::text as ticket_type,
        null::text as priority,
        min(csat_judged.csat_answers)::bigint as counted,
        min(csat_judged.csat_satisfied)::bigint as met,
        round(100.0 * min(csat_judged.csat_satisfied) / min(csat_judged.csat_answers), 2)::numeric(9, 4)
            as attainment_pct,
        min(csat_judged.target_pct)::numeric(9, 4) as target_pct,
        -- Exact ratio, as fct_satisfaction judges it.
        100.0 * min(csat_judged.csat_satisfied) >= min(csat_judged.target_pct) * min(csat_judged.csat_answers)
            as is_met
    from csat_judged
    inner join csat_objectives
        on
            csat_judged.client_code = csat_objectives.client_code
            and csat_judged.period_end >= csat_objectives.valid_from
            and (csat_objectives.valid_to is null or csat_judged.period_start <= csat_objectives.valid_to)
    group by csat_judged.client_code, csat_judged.period_type, csat_judged.period_start
),

final as (
    select * from ticket_lines
    union all
    select * from availability_lines
    union all
    select * from csat_lines
)

select * from final
