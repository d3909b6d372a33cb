with

clients as (
    select * from {{ ref('stg_canonical__clients') }}
),

services as (
    select * from {{ ref('stg_canonical__services') }}
),

service_counts as (
    select
        client_code,
        count(*) as services
    from services
    group by client_code
),

final as (
    select
        clients.client_code,
        clients.client_name,
        clients.timezone,
        clients.country_code,
        coalesce(service_counts.services, 0) as services
    from clients
    left join service_counts on clients.client_code = service_counts.client_code
)

select * from final
