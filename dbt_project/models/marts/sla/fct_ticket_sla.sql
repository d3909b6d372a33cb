-- One row per ticket and SLA ticket objective: business minutes elapsed on the objective's calendar, met or
-- breached, and the month (client time zone) in which the ticket counts.
--
-- elapsed = M(stop) - M(start) - paused, M = business_minute_mark_on_day (a hash join on the instant's UTC
-- day in int_calendar_days, then arithmetic), pauses clipped to [start, stop] and measured on the same
-- calendar. Open clocks run to the cut-off. Minutes are rounded to 0.01 (0.6 s) and is_met compares the
-- rounded figure, so is_met = (elapsed <= target) always.
--
-- breached_at, exact (no approximation): the earliest instant at which elapsed reached the target. Pauses
-- delay it only when they start before it: a pause counts when the working (unpaused) business minutes at
-- its start are below the target. Those pauses form a prefix of the ticket's pauses (working minutes never
-- decrease), found with a running sum; the deadline mark = M(start) + target + their paused minutes, turned
-- back into an instant by business_minute_instant (one index lookup).

with

matched as (
    select * from {{ ref('int_tickets_matched_to_objectives') }}
),

pauses as (
    select * from {{ ref('int_ticket_pauses_derived') }}
),

clocks as (
    select
        *,
        coalesce(clock_stopped_at, clock_cutoff_at) as clock_end_at
    from matched
),

clock_marks as (
    select
        clocks.*,
        {{ business_minute_mark_on_day('start_day', 'clocks.calendar_code', 'clocks.clock_started_at') }}
            as start_mark,
        {{ business_minute_mark_on_day('end_day', 'clocks.calendar_code', 'clocks.clock_end_at') }}
            as end_mark
    from clocks
    {{ business_day_join('start_day', 'clocks.calendar_code', 'clocks.clock_started_at') }}
    {{ business_day_join('end_day', 'clocks.calendar_code', 'clocks.clock_end_at') }}
),

clipped_pauses as (
    select
        clock_marks.ticket_id,
        clock_marks.objective_id,
        clock_marks.calendar_code,
        clock_marks.start_mark,
        clock_marks.target_minutes,
        greatest(pauses.pause_started_at, clock_marks.clock_started_at) as pause_from,
        least(coalesce(pauses.pause_ended_at, clock_marks.clock_end_at), clock_marks.clock_end_at) as pause_to
    from clock_marks
    inner join pauses
        on
            clock_marks.ticket_id = pauses.ticket_id
            and clock_marks.agreement_id = pauses.agreement_id
    where
        pauses.pause_started_at < clock_marks.clock_end_at
        and coalesce(pauses.pause_ended_at, clock_marks.clock_end_at) > clock_marks.clock_started_at
),

pause_marks as (
    select
        clipped_pauses.*,
        {{ business_minute_mark_on_day(
            'from_day', 'clipped_pauses.calendar_code', 'clipped_pauses.pause_from'
        ) }} as from_mark,
        {{ business_minute_mark_on_day('to_day', 'clipped_pauses.calendar_code', 'clipped_pauses.pause_to') }}
            as to_mark
    from clipped_pauses
    {{ business_day_join('from_day', 'clipped_pauses.calendar_code', 'clipped_pauses.pause_from') }}
    {{ business_day_join('to_day', 'clipped_pauses.calendar_code', 'clipped_pauses.pause_to') }}
),

pause_working as (
    select
        ticket_id,
        objective_id,
        pause_from,
        target_minutes,
        to_mark - from_mark as paused_minutes,
        -- Working minutes (elapsed, pauses excluded) when this pause starts.
        from_mark - start_mark - coalesce(sum(to_mark - from_mark) over (
            partition by ticket_id, objective_id order by pause_from
            rows between unbounded preceding and 1 preceding
        ), 0) as working_minutes_at_start
    from pause_marks
),

paused_per_clock as (
    select
        ticket_id,
        objective_id,
        sum(paused_minutes) as paused_minutes,
        coalesce(
            sum(paused_minutes) filter (where working_minutes_at_start < target_minutes), 0
        ) as paused_before_deadline
    from pause_working
    group by ticket_id, objective_id
),

measured as (
    select
        clock_marks.*,
        round(coalesce(paused_per_clock.paused_minutes, 0), 2) as paused_business_minutes,
        round(
            clock_marks.end_mark - clock_marks.start_mark - coalesce(paused_per_clock.paused_minutes, 0), 2
        ) as elapsed_business_minutes,
        clock_marks.start_mark + clock_marks.target_minutes
        + coalesce(paused_per_clock.paused_before_deadline, 0) as deadline_mark
    from clock_marks
    left join paused_per_clock
        on
            clock_marks.ticket_id = paused_per_clock.ticket_id
            and clock_marks.objective_id = paused_per_clock.objective_id
),

judged as (
    select
        *,
        elapsed_business_minutes > target_minutes as is_breached,
        case
            when elapsed_business_minutes > target_minutes
                then {{ business_minute_instant('measured.calendar_code', 'measured.deadline_mark') }}
        end as breached_at
    from measured
),

final as (
    -- Columns in the contract's reading order, not grouped simple-first.
    select  -- noqa: ST06
        ticket_id::text as ticket_id,
        client_code::text as client_code,
        service_code::text as service_code,
        ticket_type::text as ticket_type,
        priority::text as priority,
        agreement_id::text as agreement_id,
        objective_id::text as objective_id,
        metric::text as metric,
        calendar_code::text as calendar_code,
        target_minutes::integer as target_minutes,
        elapsed_business_minutes::numeric(14, 2) as elapsed_business_minutes,
        paused_business_minutes::numeric(14, 2) as paused_business_minutes,
        -- Known once the clock stopped, or once an open ticket is past its target; null while still open
        -- within target (undecided).
        case
            when clock_stopped_at is not null then not is_breached
            when is_breached then false
        end::boolean as is_met,
        (clock_stopped_at is null and is_breached)::boolean as is_breached_open,
        clock_started_at::timestamptz as clock_started_at,
        clock_stopped_at::timestamptz as clock_stopped_at,
        breached_at::timestamptz as breached_at,
        -- The month a ticket counts in: of its clock stop, or of its breach while still open; null = not
        -- counted yet (open within target).
        date_trunc(
            'month',
            (
                case
                    when clock_stopped_at is not null then clock_stopped_at
                    when is_breached then breached_at
                end
            )
            at time zone client_timezone
        )::date as period_month
    from judged
)

select * from final
