{#-
    The headline row of a service review: one row per client and period (int_review_periods). Overall
    figures are recomputed from the summed counts and minutes of the lines (never an average of
    percentages); the previous period is the previous month, quarter or year of the same client (a gap
    means none). A period in progress at the cut-off shows its figures so far.
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

satisfaction as (
    select * from {{ ref('int_review_satisfaction_summed') }}
),

complaints as (
    select * from {{ ref('fct_complaint') }}
),

ticket_volume as (
    select * from {{ ref('fct_ticket_volume') }}
),

sip_actions as (
    select * from {{ ref('fct_sip_action') }}
),

findings as (
    select * from {{ ref('fct_review_finding') }}
),

objective_counts as (
    select
        client_code,
        period_type,
        period_start,
        count(is_met) as objectives_counted,
        count(*) filter (where is_met) as objectives_met,
        count(*) filter (where not is_met) as objectives_breached,
        count(*) filter (where is_met and metric in ('response', 'resolution')) as ticket_objectives_met,
        count(*) filter (
            where not is_met and metric in ('response', 'resolution')
        ) as ticket_objectives_breached,
        count(*) filter (where is_met and metric = 'availability') as availability_objectives_met,
        count(*) filter (where not is_met and metric = 'availability') as availability_objectives_breached,
        sum(counted) filter (where metric in ('response', 'resolution')) as tickets_counted,
        sum(met) filter (where metric in ('response', 'resolution')) as tickets_met
    from objective_lines
    group by client_code, period_type, period_start
),

availability_sums as (
    select
        client_code,
        period_type,
        period_start,
        sum(agreed_minutes) as agreed_minutes,
        sum(downtime_minutes) as downtime_minutes,
        sum(unmeasured_minutes) as unmeasured_minutes,
        sum(error_budget_minutes) as error_budget_minutes,
        sum(error_budget_remaining_minutes) as error_budget_remaining_minutes
    from availability
    where period_type in ('month', 'quarter', 'year')
    group by client_code, period_type, period_start
),

complaint_counts as (
    select
        reviews.client_code,
        reviews.period_type,
        reviews.period_start,
        count(*) filter (
            where (complaints.opened_at at time zone reviews.client_timezone)::date
            between reviews.period_start and reviews.period_end
        ) as complaints_opened,
        count(*) filter (
            where
            complaints.closed_at <= reviews.as_of
            and (complaints.closed_at at time zone reviews.client_timezone)::date
            between reviews.period_start and reviews.period_end
        ) as complaints_closed
    from reviews
    inner join complaints on reviews.client_code = complaints.client_code
    group by reviews.client_code, reviews.period_type, reviews.period_start
),

major_incident_counts as (
    select
        reviews.client_code,
        reviews.period_type,
        reviews.period_start,
        sum(ticket_volume.major_incidents) as major_incidents
    from reviews
    inner join ticket_volume
        on
            reviews.client_code = ticket_volume.client_code
            and ticket_volume.period_month between reviews.period_start and reviews.period_end
    group by reviews.client_code, reviews.period_type, reviews.period_start
),

sip_counts as (
    select
        reviews.client_code,
        reviews.period_type,
        reviews.period_start,
        count(*) filter (where sip_actions.opened_on between reviews.period_start and reviews.period_end)
            as sip_actions_opened,
        count(*) filter (where sip_actions.closed_on between reviews.period_start and reviews.period_end)
            as sip_actions_closed,
        -- State at the period's end, or the cut-off if earlier (fct_sip_action is as of the cut-off).
        count(*) filter (
            where
            sip_actions.opened_at <= reviews.state_at
            and (sip_actions.status = 'open' or sip_actions.closed_at > reviews.state_at)
        ) as sip_actions_open,
        count(*) filter (
            where
            sip_actions.opened_at <= reviews.state_at
            and (sip_actions.status = 'open' or sip_actions.closed_at > reviews.state_at)
            and sip_actions.due_on < reviews.state_on
        ) as sip_actions_overdue
    from reviews
    inner join sip_actions on reviews.client_code = sip_actions.client_code
    group by reviews.client_code, reviews.period_type, reviews.period_start
),

finding_counts as (
    select
        client_code,
        period_type,
        period_start,
        count(*) filter (where audience = 'client') as findings_client,
        count(*) filter (where audience = 'manager') as findings_manager
    from findings
    group by client_code, period_type, period_start
),

headline as (
    select  -- noqa: ST06
        reviews.client_code,
        reviews.client_name,
        reviews.period_type,
        reviews.period_start,
        reviews.period_end,
        reviews.period_label,
        reviews.is_period_complete,
        reviews.as_of,
        coalesce(objective_counts.objectives_counted, 0) as objectives_counted,
        coalesce(objective_counts.objectives_met, 0) as objectives_met,
        coalesce(objective_counts.objectives_breached, 0) as objectives_breached,
        coalesce(objective_counts.ticket_objectives_met, 0) as ticket_objectives_met,
        coalesce(objective_counts.ticket_objectives_breached, 0) as ticket_objectives_breached,
        coalesce(objective_counts.availability_objectives_met, 0) as availability_objectives_met,
        coalesce(objective_counts.availability_objectives_breached, 0) as availability_objectives_breached,
        coalesce(objective_counts.tickets_counted, 0) as tickets_counted,
        coalesce(objective_counts.tickets_met, 0) as tickets_met,
        round(100.0 * objective_counts.tickets_met / nullif(objective_counts.tickets_counted, 0), 2)
            as sla_attainment_pct,
        availability_sums.agreed_minutes,
        availability_sums.downtime_minutes,
        availability_sums.unmeasured_minutes,
        round(
            100.0
            * (
                availability_sums.agreed_minutes
                - availability_sums.unmeasured_minutes
                - availability_sums.downtime_minutes
            )
            / nullif(availability_sums.agreed_minutes - availability_sums.unmeasured_minutes, 0),
            4
        ) as availability_pct,
        round(
            100.0 * (availability_sums.agreed_minutes - availability_sums.unmeasured_minutes)
            / nullif(availability_sums.agreed_minutes, 0),
            2
        ) as coverage_pct,
        availability_sums.error_budget_minutes,
        availability_sums.error_budget_remaining_minutes,
        coalesce(satisfaction.invitations, 0) as invitations,
        coalesce(satisfaction.answers, 0) as answers,
        satisfaction.response_rate_pct,
        coalesce(satisfaction.csat_answers, 0) as csat_answers,
        satisfaction.csat_pct,
        coalesce(satisfaction.nps_answers, 0) as nps_answers,
        satisfaction.nps,
        satisfaction.csat_target_pct,
        {{ var('review_min_response_rate_pct') }} as min_response_rate_pct,
        coalesce(satisfaction.is_response_rate_too_low, false) as is_response_rate_too_low,
        coalesce(complaint_counts.complaints_opened, 0) as complaints_opened,
        coalesce(complaint_counts.complaints_closed, 0) as complaints_closed,
        coalesce(major_incident_counts.major_incidents, 0) as major_incidents,
        coalesce(sip_counts.sip_actions_opened, 0) as sip_actions_opened,
        coalesce(sip_counts.sip_actions_closed, 0) as sip_actions_closed,
        coalesce(sip_counts.sip_actions_open, 0) as sip_actions_open,
        coalesce(sip_counts.sip_actions_overdue, 0) as sip_actions_overdue,
        coalesce(finding_counts.findings_client, 0) as findings_client,
        coalesce(finding_counts.findings_manager, 0) as findings_manager,
        (
            reviews.period_start - {{ period_length('reviews.period_type') }}
        )::date as previous_period_start
    from reviews
    left join objective_counts
        on
            reviews.client_code = objective_counts.client_code
            and reviews.period_type = objective_counts.period_type
            and reviews.period_start = objective_counts.period_start
    left join availability_sums
        on
            reviews.client_code = availability_sums.client_code
            and reviews.period_type = availability_sums.period_type
            and reviews.period_start = availability_sums.period_start
    left join satisfaction
        on
            reviews.client_code = satisfaction.client_code
            and reviews.period_type = satisfaction.period_type
            and reviews.period_start = satisfaction.period_start
    left join complaint_counts
        on
            reviews.client_code = complaint_counts.client_code
            and reviews.period_type = complaint_counts.period_type
            and reviews.period_start = complaint_counts.period_start
    left join major_incident_counts
        on
            reviews.client_code = major_incident_counts.client_code
            and reviews.period_type = major_incident_counts.period_type
            and reviews.period_start = major_incident_counts.period_start
    left join sip_counts
        on
            reviews.client_code = sip_counts.client_code
            and reviews.period_type = sip_counts.period_type
            and reviews.period_start = sip_counts.period_start
    left join finding_counts
        on
            reviews.client_code = finding_counts.client_code
            and reviews.period_type = finding_counts.period_type
            and reviews.period_start = finding_counts.period_start
),

final as (
    select  -- noqa: ST06
        headline.client_code,
        headline.client_name,
        headline.period_type,
        headline.period_start,
        headline.period_end,
        headline.period_label,
        headline.is_period_complete,
        headline.as_of,
        headline.objectives_counted::bigint as objectives_counted,
        headline.objectives_met::bigint as objectives_met,
        headline.objectives_breached::bigint as objectives_breached,
        headline.ticket_objectives_met::bigint as ticket_objectives_met,
        headline.ticket_objectives_breached::bigint as ticket_objectives_breached,
        headline.availability_objectives_met::bigint as availability_objectives_met,
        headline.availability_objectives_breached::bigint as availability_objectives_breached,
        headline.tickets_counted::bigint as tickets_counted,
        headline.tickets_met::bigint as tickets_met,
        headline.sla_attainment_pct::numeric(9, 4) as sla_attainment_pct,
        headline.agreed_minutes::numeric(14, 2) as agreed_minutes,
        headline.downtime_minutes::numeric(14, 2) as downtime_minutes,
        headline.unmeasured_minutes::numeric(14, 2) as unmeasured_minutes,
        headline.availability_pct::numeric(9, 4) as availability_pct,
        headline.coverage_pct::numeric(9, 4) as coverage_pct,
        headline.error_budget_minutes::numeric(14, 2) as error_budget_minutes,
        headline.error_budget_remaining_minutes::numeric(14, 2) as error_budget_remaining_minutes,
        headline.invitations::bigint as invitations,
        headline.answers::bigint as answers,
        headline.response_rate_pct::numeric(9, 4) as response_rate_pct,
        headline.csat_answers::bigint as csat_answers,
        headline.csat_pct::numeric(9, 4) as csat_pct,
        headline.nps_answers::bigint as nps_answers,
        headline.nps::numeric(9, 4) as nps,
        headline.csat_target_pct::numeric(9, 4) as csat_target_pct,
        headline.min_response_rate_pct::numeric(9, 4) as min_response_rate_pct,
        headline.is_response_rate_too_low,
        headline.complaints_opened::bigint as complaints_opened,
        headline.complaints_closed::bigint as complaints_closed,
        headline.major_incidents::bigint as major_incidents,
        headline.sip_actions_opened::bigint as sip_actions_opened,
        headline.sip_actions_closed::bigint as sip_actions_closed,
        headline.sip_actions_open::bigint as sip_actions_open,
        headline.sip_actions_overdue::bigint as sip_actions_overdue,
        headline.findings_client::bigint as findings_client,
        headline.findings_manager::bigint as findings_manager,
        previous.sla_attainment_pct::numeric(9, 4) as previous_sla_attainment_pct,
        (headline.sla_attainment_pct - previous.sla_attainment_pct)::numeric(9, 4)
            as sla_attainment_change_pts,
        previous.availability_pct::numeric(9, 4) as previous_availability_pct,
        (headline.availability_pct - previous.availability_pct)::numeric(9, 4) as availability_change_pts,
        previous.csat_pct::numeric(9, 4) as previous_csat_pct,
        (headline.csat_pct - previous.csat_pct)::numeric(9, 4) as csat_change_pts,
        previous.nps::numeric(9, 4) as previous_nps,
        (headline.nps - previous.nps)::numeric(9, 4) as nps_change,
        previous.objectives_breached::bigint as previous_objectives_breached
    from headline
    left join headline as previous
        on
            headline.client_code = previous.client_code
            and headline.period_type = previous.period_type
            and headline.previous_period_start = previous.period_start
)

select * from final
