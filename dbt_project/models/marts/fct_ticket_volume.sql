with

tickets as (
    select * from {{ ref('stg_canonical__tickets') }}
),

clients as (
    select * from {{ ref('stg_canonical__clients') }}
),

services as (
    select * from {{ ref('stg_canonical__services') }}
),

-- Months are cut in the client's own time zone: `at time zone` turns the instant into local wall time.
tickets_in_client_time as (
    select
        tickets.client_code,
        tickets.service_code,
        tickets.ticket_type,
        tickets.priority,
        tickets.is_major,
        date_trunc('month', tickets.opened_at at time zone clients.timezone)::date as period_month,
        date_trunc('month', tickets.resolved_at at time zone clients.timezone)::date as resolved_month
    from tickets
    inner join clients on tickets.client_code = clients.client_code
),

monthly_volume as (
    select
        client_code,
        service_code,
        ticket_type,
        priority,
        period_month,
        count(*) as tickets_opened,
        count(*) filter (where resolved_month = period_month) as tickets_resolved,
        count(*) filter (where is_major and ticket_type = 'incident') as major_incidents
    from tickets_in_client_time
    group by client_code, service_code, ticket_type, priority, period_month
),

final as (
    select
        monthly_volume.client_code,
        clients.client_name,
        monthly_volume.service_code,
        services.service_name,
        monthly_volume.ticket_type,
        monthly_volume.priority,
        monthly_volume.period_month,
        monthly_volume.tickets_opened,
        monthly_volume.tickets_resolved,
        monthly_volume.major_incidents
    from monthly_volume
    inner join clients on monthly_volume.client_code = clients.client_code
    left join services on monthly_volume.service_code = services.service_code
)

select * from final
