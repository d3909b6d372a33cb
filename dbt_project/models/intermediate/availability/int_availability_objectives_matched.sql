-- One row per service and version of an SLA availability objective that applies to it: agreement kind SLA,
-- party = the service's client, service in the agreement's services (null = every service of the client).
-- valid_from / valid_to are inclusive local days of the client (null valid_to = open-ended); each day of
-- agreed service time is measured against the version in force on it.

with

services as (
    select * from {{ ref('stg_canonical__services') }}
),

clients as (
    select * from {{ ref('stg_canonical__clients') }}
),

agreements as (
    select * from {{ ref('stg_contracts__agreements') }}
),

objectives as (
    select * from {{ ref('stg_contracts__objectives') }}
),

final as (
    select
        services.client_code,
        clients.timezone as client_timezone,
        services.service_code,
        agreements.agreement_id,
        agreements.valid_from,
        agreements.valid_to,
        objectives.objective_id,
        objectives.calendar_code,
        objectives.target_pct,
        coalesce(objectives.period, 'month') as objective_period,
        -- checks: time no check or reported outage covers is unmeasured; reported_outages: the source
        -- lists every outage, so all agreed time is measured (contracts.py MEASURED_BY).
        coalesce(objectives.measured_by, 'checks') as measured_by
    from services
    inner join clients on services.client_code = clients.client_code
    inner join agreements
        on
            agreements.kind = 'SLA'
            and services.client_code = agreements.party
            and (agreements.services is null or services.service_code = any(agreements.services))
    inner join objectives
        on
            agreements.agreement_id = objectives.agreement_id
            and agreements.valid_from = objectives.valid_from
            and objectives.metric = 'availability'
)

select * from final
