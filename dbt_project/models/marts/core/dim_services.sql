with

services as (
    select * from {{ ref('stg_canonical__services') }}
),

clients as (
    select * from {{ ref('stg_canonical__clients') }}
),

final as (
    select
        services.service_code,
        services.service_name,
        services.client_code,
        clients.client_name,
        services.calendar_code,
        services.criticality
    from services
    left join clients on services.client_code = clients.client_code
)

select * from final
