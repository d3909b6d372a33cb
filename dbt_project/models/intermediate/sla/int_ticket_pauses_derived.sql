-- Pause intervals of each ticket under each agreement that measures it: from a status event whose new status
-- is one of the agreement's pause_statuses until the ticket's next status event (null when there is none yet:
-- the pause then lasts until the clock stops). Status events are unique per instant, so pauses never overlap.

with

ticket_events as (
    select * from {{ ref('stg_canonical__ticket_events') }}
),

matched as (
    select * from {{ ref('int_tickets_matched_to_objectives') }}
),

agreements as (
    select * from {{ ref('stg_contracts__agreements') }}
),

ticket_agreements as (
    select distinct
        matched.ticket_id,
        matched.agreement_id,
        agreements.pause_statuses
    from matched
    inner join agreements
        on
            matched.agreement_id = agreements.agreement_id
            and matched.agreement_valid_from = agreements.valid_from
),

status_changes as (
    select
        ticket_id,
        occurred_at,
        to_value as status,
        lead(occurred_at) over (partition by ticket_id order by occurred_at) as next_status_at
    from ticket_events
    where changed_field = 'status'
),

pauses as (
    select
        ticket_agreements.ticket_id,
        ticket_agreements.agreement_id,
        status_changes.status as pause_status,
        status_changes.occurred_at as pause_started_at,
        status_changes.next_status_at as pause_ended_at
    from ticket_agreements
    inner join status_changes
        on
            ticket_agreements.ticket_id = status_changes.ticket_id
            and status_changes.status = any(ticket_agreements.pause_statuses)
),

final as (
    select * from pauses
)

select * from final
