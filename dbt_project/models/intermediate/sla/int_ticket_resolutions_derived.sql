{#-
    One row per ticket: the run's cut-off and the resolution that stops the ticket's clock, the one rule the SLA
    clocks (int_tickets_matched_to_objectives) and the OLA/UC holds (int_ticket_assignment_segments) both read.
    The rule in words: docs/design/ticket_slas.md, "Final resolution".

    Cut-off: run_cutoff (macros/cutoff.sql): the dbt var `as_of`, default the latest loaded ticket timestamp
    (never now()), so a rerun on the same data gives the same figures. Nothing after it exists: later events
    and later row times are ignored.

    Final resolution: the latest of
      - the last status move INTO resolved/closed (from another status, or the first status): a move
        resolved -> closed is not one, the ticket was already resolved; reopened -> closed is one (a real
        history closes reopened tickets without passing through resolved);
      - the ticket row's own resolution, resolved_at;
    or, when neither exists, the row's closed_at (closed with no resolution recorded anywhere);
    void when a reopen (a status move leaving resolved/closed) comes after it: the ticket is open again. The
    time spent resolved before a reopen counts: the clock kept running, the issue was not solved.
    A ticket whose row status is resolved or closed has a stopped clock even when its history misses the
    closing move (reopened, never resolved again in the events): it stops at the row's updated_at, the
    latest moment the row shows it resolved (never earlier than the evidence), if no reopen follows.
    A stop before opened_at (a source clock skew) is read at opened_at: the clock cannot stop before it starts.
-#}
with

tickets as (
    select * from {{ ref('stg_canonical__tickets') }}
),

ticket_events as (
    select * from {{ ref('stg_canonical__ticket_events') }}
),

-- The run's cut-off (macros/cutoff.sql); by default the latest loaded ticket timestamp.
{%- set latest_ticket_data %}
    greatest(
        (
            select max(greatest(opened_at, first_response_at, resolved_at, closed_at, updated_at))
            from tickets
        ),
        (select max(occurred_at) from ticket_events)
    )
{%- endset %}
cutoff as (
    select {{ run_cutoff(latest_ticket_data) }} as clock_cutoff_at
),

status_history as (
    select
        ticket_events.ticket_id,
        max(ticket_events.occurred_at) filter (
            where
            ticket_events.to_value in ('resolved', 'closed')
            and coalesce(ticket_events.from_value not in ('resolved', 'closed'), true)
        ) as last_resolved_event_at,
        max(ticket_events.occurred_at) filter (
            where
            ticket_events.from_value in ('resolved', 'closed')
            and ticket_events.to_value not in ('resolved', 'closed')
        ) as last_reopened_at
    from ticket_events
    cross join cutoff
    where
        ticket_events.changed_field = 'status'
        and ticket_events.occurred_at <= cutoff.clock_cutoff_at
    group by ticket_events.ticket_id
),

last_resolutions as (
    select
        tickets.ticket_id,
        tickets.opened_at,
        cutoff.clock_cutoff_at,
        status_history.last_reopened_at,
        coalesce(
            greatest(
                case when tickets.resolved_at <= cutoff.clock_cutoff_at then tickets.resolved_at end,
                status_history.last_resolved_event_at
            ),
            -- closed with no resolution recorded anywhere: the closure is the resolution
            case when tickets.closed_at <= cutoff.clock_cutoff_at then tickets.closed_at end
        ) as last_resolved_at,
        case
            when
                tickets.status in ('resolved', 'closed')
                and tickets.updated_at <= cutoff.clock_cutoff_at
                then tickets.updated_at
        end as row_status_resolved_at
    from tickets
    cross join cutoff
    left join status_history on tickets.ticket_id = status_history.ticket_id
),

valid_resolutions as (
    -- A candidate stop counts unless a reopen comes after it (a reopen at the same instant does not undo it).
    select
        ticket_id,
        opened_at,
        clock_cutoff_at,
        last_resolved_at,
        last_reopened_at,
        case
            when coalesce(last_reopened_at <= last_resolved_at, true) then last_resolved_at
        end as history_resolved_at,
        case
            when coalesce(last_reopened_at <= row_status_resolved_at, true) then row_status_resolved_at
        end as status_resolved_at
    from last_resolutions
),

final as (
    select
        ticket_id,
        clock_cutoff_at,
        last_resolved_at,
        last_reopened_at,
        -- greatest() skips nulls: an open ticket must stay null, not stop at its opening.
        case
            when coalesce(history_resolved_at, status_resolved_at) is not null
                then greatest(coalesce(history_resolved_at, status_resolved_at), opened_at)
        end as final_resolved_at,
        case
            when history_resolved_at is not null then 'history'
            when status_resolved_at is not null then 'row_status'
        end as final_resolved_by
    from valid_resolutions
)

select * from final
