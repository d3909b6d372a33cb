-- One row per ticket that has SLA objectives (fct_ticket_sla): its outcome over all of them.
--   breached: some objective is not met (a closed clock over target, or an open one already past it);
--   met: every objective decided and met; pending: none breached, some still open within target.
-- overrun_minutes = max(elapsed - target) over the objectives, in business minutes: > 0 is by how much the
-- worst objective was breached, <= 0 the smallest margin left.

with

ticket_sla as (
    select * from {{ ref('fct_ticket_sla') }}
),

summarised as (
    select
        ticket_id,
        client_code,
        count(*) as sla_objectives,
        count(*) filter (where is_met = false) as sla_objectives_breached,
        count(*) filter (where is_met is null) as sla_objectives_pending,
        max(elapsed_business_minutes - target_minutes) as sla_overrun_minutes,
        max(100.0 * (elapsed_business_minutes - target_minutes) / target_minutes) as sla_overrun_pct
    from ticket_sla
    group by ticket_id, client_code
),

final as (
    select  -- noqa: ST06
        ticket_id,
        client_code,
        sla_objectives,
        sla_objectives_breached,
        case
            when sla_objectives_breached > 0 then 'breached'
            when sla_objectives_pending > 0 then 'pending'
            else 'met'
        end as sla_outcome,
        sla_overrun_minutes,
        round(sla_overrun_pct, 2) as sla_overrun_pct
    from summarised
)

select * from final
