{#-
    The reviews that exist: one row per client and period (month, quarter, year; client time zone) in which
    the client has any figure a review shows (ticket or availability objectives, surveys, tickets,
    complaints, SIP actions opened), up to the cut-off. Each with its bounds and the instant its figures are
    taken at: the period's end, or the cut-off if the period is still in progress.
-#}
with

cutoff as (
    select * from {{ ref('int_review_cutoff') }}
),

clients as (
    select * from {{ ref('stg_canonical__clients') }}
),

sla_attainment as (
    select * from {{ ref('fct_sla_attainment') }}
),

availability as (
    select * from {{ ref('fct_availability') }}
),

satisfaction as (
    select * from {{ ref('fct_satisfaction') }}
),

ticket_volume as (
    select * from {{ ref('fct_ticket_volume') }}
),

complaints as (
    select * from {{ ref('fct_complaint') }}
),

sip_actions as (
    select * from {{ ref('fct_sip_action') }}
),

period_grains as (
    select period_type
    from {{ period_grains() }}
),

-- Months in which the client has something to review; quarters and years follow from them.
activity_months as (
    select
        client_code,
        period_start as period_month
    from sla_attainment
    where period_type = 'month'
    union
    select
        client_code,
        period_start
    from availability
    where period_type = 'month'
    union
    select
        client_code,
        period_start
    from satisfaction
    where period_type = 'month'
    union
    select
        client_code,
        period_month
    from ticket_volume
    union
    select
        client_code,
        period_month
    from complaints
    union
    select
        client_code,
        date_trunc('month', opened_on)::date as period_month
    from sip_actions
),

periods as (
    select distinct
        activity_months.client_code,
        period_grains.period_type,
        date_trunc(period_grains.period_type, activity_months.period_month)::date as period_start
    from activity_months
    cross join period_grains
),

bounded as (
    select  -- noqa: ST06
        periods.client_code,
        clients.client_name,
        clients.timezone as client_timezone,
        periods.period_type,
        periods.period_start,
        (
            periods.period_start
            + {{ period_length('periods.period_type') }}
        )::date as period_end_exclusive,
        cutoff.as_of
    from periods
    inner join clients on periods.client_code = clients.client_code
    cross join cutoff
    -- A period that starts after the cut-off has nothing yet.
    where periods.period_start::timestamp at time zone clients.timezone < cutoff.as_of
),

final as (
    select  -- noqa: ST06
        client_code,
        client_name,
        client_timezone,
        period_type,
        period_start,
        period_end_exclusive - 1 as period_end,
        {{ period_label('period_type', 'period_start') }} as period_label,
        period_end_exclusive::timestamp at time zone client_timezone <= as_of as is_period_complete,
        as_of,
        -- The instant the period's state (open or overdue SIP actions) is read at, and its local date.
        least(period_end_exclusive::timestamp at time zone client_timezone, as_of) as state_at,
        (
            least(period_end_exclusive::timestamp at time zone client_timezone, as_of)
            at time zone client_timezone
        )::date as state_on
    from bounded
)

select * from final
