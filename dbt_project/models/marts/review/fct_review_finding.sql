{#-
    What a reviewer must not miss: one row per finding of a review (client x period of int_review_periods),
    of seven kinds (docs/design/service_review.md). Built from the objective lines and the other marts, not
    from fct_service_review (which counts these rows). Audience manager for the kinds that name internal
    teams or suppliers (sla_not_supported, ola_uc_breach_cause), client for the others.
-#}
with

reviews as (
    select * from {{ ref('int_review_periods') }}
),

objective_lines as (
    select * from {{ ref('fct_service_review_objective') }}
),

availability as (
    select * from {{ ref('fct_availability') }}
),

agreement_support as (
    select * from {{ ref('fct_agreement_support') }}
),

agreements as (
    select * from {{ ref('stg_contracts__agreements') }}
),

breach_causes as (
    select * from {{ ref('int_review_ola_uc_breach_causes') }}
),

satisfaction as (
    select * from {{ ref('int_review_satisfaction_summed') }}
),

sip_actions as (
    select * from {{ ref('fct_sip_action') }}
),

breached_two_running as (
    select
        client_code,
        period_type,
        period_start,
        'breached_two_running' as finding_kind,
        'client' as audience,
        'high' as severity,
        objective_id || coalesce(' ' || service_code, '') as subject,
        agreement_id,
        objective_id,
        service_code,
        null::text as party,
        attainment_pct as figure,
        target_pct as threshold,
        format(
            '%s: %s %% against %s %%; previous %s: %s %%',
            objective_id || coalesce(' ' || service_code, ''), attainment_pct::float8, target_pct::float8,
            period_type, previous_attainment_pct::float8
        ) as evidence,
        'Agree a corrective plan with the service owner; if the target is not achievable, amend the SLA.'
            as suggested_action
    from objective_lines
    where is_breached_two_running
),

-- Every version of the client's SLA in force during the review period; one finding per objective (the
-- latest such version's chain when several versions overlap the period).
unsupported_in_period as (
    select distinct on (
        reviews.client_code, reviews.period_type, reviews.period_start, agreement_support.sla_objective_id
    )
        reviews.client_code,
        reviews.period_type,
        reviews.period_start,
        agreement_support.sla_agreement_id,
        agreement_support.sla_objective_id,
        agreement_support.sla_target_minutes,
        agreement_support.chain,
        agreement_support.chain_target_minutes,
        agreement_support.missing_links,
        agreement_support.weakest_link
    from agreement_support
    inner join agreements
        on
            agreement_support.sla_agreement_id = agreements.agreement_id
            and agreement_support.sla_valid_from = agreements.valid_from
    inner join reviews
        on
            agreements.party = reviews.client_code
            and agreement_support.sla_valid_from <= reviews.period_end
            and coalesce(agreement_support.sla_valid_to, 'infinity'::date) >= reviews.period_start
    where agreements.kind = 'SLA' and not agreement_support.is_supported
    order by
        reviews.client_code asc, reviews.period_type asc, reviews.period_start asc,
        agreement_support.sla_objective_id asc, agreement_support.sla_valid_from desc
),

sla_not_supported as (
    select
        client_code,
        period_type,
        period_start,
        'sla_not_supported' as finding_kind,
        'manager' as audience,
        'high' as severity,
        sla_objective_id as subject,
        sla_agreement_id as agreement_id,
        sla_objective_id as objective_id,
        null::text as service_code,
        weakest_link as party,
        chain_target_minutes::numeric(9, 4) as figure,
        sla_target_minutes::numeric(9, 4) as threshold,
        format(
            'chain %s = %s min against the SLA target %s min; weakest link %s%s',
            coalesce(chain, 'none'), chain_target_minutes, sla_target_minutes, coalesce(weakest_link, 'none'),
            coalesce('; missing: ' || missing_links, '')
        ) as evidence,
        'Amend the OLAs/UCs on the chain (the weakest link first) so their targets fit inside the SLA.'
            as suggested_action
    from unsupported_in_period
),

ola_uc_breach_cause as (
    select
        client_code,
        period_type,
        period_start,
        'ola_uc_breach_cause' as finding_kind,
        'manager' as audience,
        case when share_of_breaches_pct >= 50 then 'high' else 'medium' end as severity,
        party as subject,
        agreement_id,
        null::text as objective_id,
        null::text as service_code,
        party,
        share_of_breaches_pct as figure,
        null::numeric(9, 4) as threshold,
        format(
            '%s of %s resolution breaches held over the %s target: %s',
            caused_breaches, breached_tickets, agreement_id, ticket_ids
        ) as evidence,
        'Review these tickets with the team or supplier; enforce or amend its OLA/UC.' as suggested_action
    from breach_causes
),

satisfaction_below_target as (
    select
        client_code,
        period_type,
        period_start,
        'satisfaction_below_target' as finding_kind,
        'client' as audience,
        'medium' as severity,
        objective_id as subject,
        agreement_id,
        objective_id,
        null::text as service_code,
        null::text as party,
        attainment_pct as figure,
        target_pct as threshold,
        format(
            '%s of %s answers satisfied: CSAT %s %% against %s %%',
            met, counted, attainment_pct::float8, target_pct::float8
        ) as evidence,
        'Read the verbatims and complaints of the period; agree improvement actions with the client.'
            as suggested_action
    from objective_lines
    where metric = 'csat' and not is_met
),

response_rate_too_low as (
    select
        client_code,
        period_type,
        period_start,
        'response_rate_too_low' as finding_kind,
        'client' as audience,
        'low' as severity,
        'survey response rate' as subject,
        null::text as agreement_id,
        null::text as objective_id,
        null::text as service_code,
        null::text as party,
        response_rate_pct as figure,
        {{ var('review_min_response_rate_pct') }}::numeric(9, 4) as threshold,
        format(
            '%s answers to %s invitations: %s %% below the %s %% minimum',
            answers, invitations, response_rate_pct::float8, {{ var('review_min_response_rate_pct') }}
        ) as evidence,
        'Too few answers to trust the satisfaction figures: follow up the invitations, shorten the survey.'
            as suggested_action
    from satisfaction
    where is_response_rate_too_low
),

coverage_below_threshold as (
    select
        client_code,
        period_type,
        period_start,
        'coverage_below_threshold' as finding_kind,
        'client' as audience,
        'medium' as severity,
        objective_id || ' ' || service_code as subject,
        agreement_id,
        objective_id,
        service_code,
        null::text as party,
        coverage_pct::numeric(9, 4) as figure,
        99::numeric(9, 4) as threshold,
        format(
            '%s of %s agreed minutes unmeasured: coverage %s %% below 99 %%',
            unmeasured_minutes::float8, agreed_minutes::float8, coverage_pct::float8
        ) as evidence,
        'Fix the monitoring of this service: its availability figure rests on too little data.'
            as suggested_action
    from availability
    where period_type in ('month', 'quarter', 'year') and coverage_below_99
),

sip_action_overdue as (
    select
        reviews.client_code,
        reviews.period_type,
        reviews.period_start,
        'sip_action_overdue' as finding_kind,
        'client' as audience,
        case when reviews.state_on - sip_actions.due_on > 30 then 'high' else 'medium' end as severity,
        sip_actions.action_id as subject,
        null::text as agreement_id,
        null::text as objective_id,
        null::text as service_code,
        null::text as party,
        (reviews.state_on - sip_actions.due_on)::numeric(9, 4) as figure,
        0::numeric(9, 4) as threshold,
        format(
            '%s (%s %s, owner %s) due %s, open on %s: %s days overdue',
            sip_actions.title, sip_actions.source_type, sip_actions.source_ref,
            coalesce(sip_actions.owner, 'none'),
            sip_actions.due_on, reviews.state_on, reviews.state_on - sip_actions.due_on
        ) as evidence,
        'Close the action or agree a new due date with its owner.' as suggested_action
    from reviews
    inner join sip_actions
        on
            reviews.client_code = sip_actions.client_code
            -- Open at the period's end (or the cut-off) and due before that day.
            and reviews.state_at >= sip_actions.opened_at
            -- fct_sip_action is as of the cut-off: open then, or closed after this instant.
            and (sip_actions.status = 'open' or reviews.state_at < sip_actions.closed_at)
            and reviews.state_on > sip_actions.due_on
),

findings as (
    select * from breached_two_running
    union all
    select * from sla_not_supported
    union all
    select * from ola_uc_breach_cause
    union all
    select * from satisfaction_below_target
    union all
    select * from response_rate_too_low
    union all
    select * from coverage_below_threshold
    union all
    select * from sip_action_overdue
),

final as (
    select  -- noqa: ST06
        md5(
            concat_ws(
                '|', findings.finding_kind, findings.client_code, findings.period_type, findings.period_start,
                findings.subject
            )
        ) as finding_id,
        findings.client_code,
        findings.period_type,
        findings.period_start,
        findings.finding_kind,
        findings.audience,
        findings.severity,
        findings.subject,
        findings.agreement_id,
        findings.objective_id,
        findings.service_code,
        findings.party,
        findings.figure,
        findings.threshold,
        findings.evidence,
        findings.suggested_action
    from findings
    -- Only the reviews that exist (a line of a period after the cut-off has none).
    inner join reviews
        on
            findings.client_code = reviews.client_code
            and findings.period_type = reviews.period_type
            and findings.period_start = reviews.period_start
)

select * from final
