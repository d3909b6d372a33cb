{#-
    The SIP register: one row per improvement action, as of the run's cut-off (nothing after it exists: an
    action opened later is not listed yet, one closed later is still open). Dates are in the client's time
    zone. Overdue = still open at the cut-off and due before the cut-off's date; closed late = done or
    cancelled after its due date; days open = to its close, or to the cut-off.
-#}
with

sip_actions as (
    select * from {{ ref('stg_canonical__sip_actions') }}
),

clients as (
    select * from {{ ref('stg_canonical__clients') }}
),

cutoff as (
    select * from {{ ref('int_review_cutoff') }}
),

as_of_cutoff as (
    select
        sip_actions.action_id,
        sip_actions.client_code,
        sip_actions.source_type,
        sip_actions.source_ref,
        sip_actions.title,
        sip_actions.owner,
        sip_actions.opened_at,
        sip_actions.due_on,
        clients.timezone as client_timezone,
        cutoff.as_of,
        -- Closed after the cut-off: still open as of it. A closing without a date counts from the status
        -- alone.
        case
            when sip_actions.status = 'open' or sip_actions.closed_at > cutoff.as_of then 'open'
            else sip_actions.status
        end as status,
        case
            when sip_actions.status <> 'open' and sip_actions.closed_at <= cutoff.as_of
                then sip_actions.closed_at
        end as closed_at
    from sip_actions
    inner join clients on sip_actions.client_code = clients.client_code
    cross join cutoff
    where sip_actions.opened_at <= cutoff.as_of
),

dated as (
    select
        *,
        (opened_at at time zone client_timezone)::date as opened_on,
        (closed_at at time zone client_timezone)::date as closed_on,
        (as_of at time zone client_timezone)::date as as_of_on
    from as_of_cutoff
),

final as (
    select  -- noqa: ST06
        action_id,
        client_code,
        source_type,
        source_ref,
        title,
        owner,
        opened_at,
        opened_on,
        due_on,
        status,
        closed_at,
        closed_on,
        status = 'open' and coalesce(due_on < as_of_on, false) as is_overdue,
        status <> 'open' and coalesce(closed_on > due_on, false) as is_closed_late,
        coalesce(closed_on, as_of_on) - opened_on as days_open,
        as_of
    from dated
)

select * from final
