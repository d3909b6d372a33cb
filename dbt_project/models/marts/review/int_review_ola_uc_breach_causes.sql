{#-
    Which OLA/UC parties held the tickets whose SLA resolution objective was breached: per client, period and
    party, the breached tickets of the period on which the party's own resolution hold exceeded its target,
    beside all the client's breached tickets of the period (the share's denominator).
    A breach counts in the period it counts in fct_sla_attainment (fct_ticket_sla.period_month: the clock's
    stop, or the breach of a ticket still open); the party's hold is its whole held time on that ticket.
-#}
with

ticket_sla as (
    select * from {{ ref('fct_ticket_sla') }}
),

party_holds as (
    select * from {{ ref('int_ola_uc_ticket_attainment') }}
),

period_grains as (
    select period_type
    from {{ period_grains() }}
),

breaches as (
    select distinct
        ticket_sla.client_code,
        ticket_sla.ticket_id,
        period_grains.period_type,
        date_trunc(period_grains.period_type, ticket_sla.period_month)::date as period_start
    from ticket_sla
    cross join period_grains
    where
        ticket_sla.metric = 'resolution'
        and ticket_sla.period_month is not null
        and not coalesce(ticket_sla.is_met, false)
),

breaches_per_period as (
    select
        client_code,
        period_type,
        period_start,
        count(*) as breached_tickets
    from breaches
    group by client_code, period_type, period_start
),

holds_over_target as (
    select
        ticket_id,
        party,
        agreement_id,
        max(held_business_minutes - target_minutes) as minutes_over_target
    from party_holds
    where metric = 'resolution' and held_business_minutes > target_minutes
    group by ticket_id, party, agreement_id
),

per_party as (
    select
        breaches.client_code,
        breaches.period_type,
        breaches.period_start,
        holds_over_target.party,
        min(holds_over_target.agreement_id) as agreement_id,
        count(distinct breaches.ticket_id) as caused_breaches,
        string_agg(distinct breaches.ticket_id, ', ' order by breaches.ticket_id) as ticket_ids
    from breaches
    inner join holds_over_target on breaches.ticket_id = holds_over_target.ticket_id
    group by breaches.client_code, breaches.period_type, breaches.period_start, holds_over_target.party
),

final as (
    select  -- noqa: ST06
        per_party.client_code,
        per_party.period_type,
        per_party.period_start,
        per_party.party,
        per_party.agreement_id,
        per_party.caused_breaches,
        breaches_per_period.breached_tickets,
        round(100.0 * per_party.caused_breaches / breaches_per_period.breached_tickets, 2)::numeric(9, 4)
            as share_of_breaches_pct,
        per_party.ticket_ids
    from per_party
    inner join breaches_per_period
        on
            per_party.client_code = breaches_per_period.client_code
            and per_party.period_type = breaches_per_period.period_type
            and per_party.period_start = breaches_per_period.period_start
)

select * from final
