with

agreements as (
    select * from {{ ref('stg_contracts__agreements') }}
),

objectives as (
    select * from {{ ref('stg_contracts__objectives') }}
),

objective_counts as (
    select
        agreement_id,
        valid_from,
        count(*) as objectives
    from objectives
    group by agreement_id, valid_from
),

-- Lists are shown as comma-separated text: what a dashboard filter and a reader both handle.
final as (
    select
        agreements.agreement_id,
        agreements.valid_from,
        agreements.valid_to,
        agreements.kind,
        agreements.party,
        array_to_string(agreements.services, ', ') as services,
        agreements.services is null as covers_all_services,
        array_to_string(agreements.pause_statuses, ', ') as pause_statuses,
        array_to_string(agreements.supported_by, ', ') as supported_by,
        coalesce(objective_counts.objectives, 0) as objectives,
        -- The latest version of each agreement (versions never overlap; the catalogue orders them by date).
        row_number() over (
            partition by agreements.agreement_id order by agreements.valid_from desc
        ) = 1 as is_latest_version
    from agreements
    left join objective_counts
        on
            agreements.agreement_id = objective_counts.agreement_id
            and agreements.valid_from = objective_counts.valid_from
)

select * from final
