{#-
    One row per major incident and affected service (its own service and those of its child tickets), with
    the incident's window [window_start, window_end) and the service's client and time zone: the ranges
    int_major_incident_downtime intersects with each service's down time.
-#}
with

incident_tickets as (
    select * from {{ ref('int_major_incident_tickets') }}
),

services as (
    select * from {{ ref('stg_canonical__services') }}
),

clients as (
    select * from {{ ref('stg_canonical__clients') }}
),

affected as (
    select
        incident_id,
        service_code,
        min(window_start) as window_start,
        min(window_end) as window_end,
        bool_or(is_incident_ticket) as is_incident_service
    from incident_tickets
    group by incident_id, service_code
),

final as (
    select
        affected.incident_id,
        affected.service_code,
        -- The service's own client: a child ticket names the service it is about.
        services.client_code,
        clients.timezone as client_timezone,
        affected.is_incident_service,
        affected.window_start,
        affected.window_end,
        tstzrange(affected.window_start, affected.window_end) as incident_range
    from affected
    inner join services on affected.service_code = services.service_code
    inner join clients on services.client_code = clients.client_code
)

select * from final
