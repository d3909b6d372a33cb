{#-
    Does each SLA resolution objective have OLAs/UCs behind it that fit inside it?
    The chain of an SLA version is every agreement reachable through supported_by (an OLA may itself be
    supported by a UC), each counted once. A member's target is its resolution objective for the same ticket
    type and priority; when several versions of the member overlap the SLA version, the largest target is
    used (the SLA must be supported during its whole validity). A member without such an objective is a
    missing link: nothing backs that step, so the SLA is not supported either.
-#}
with

agreements as (
    select * from {{ ref('stg_contracts__agreements') }}
),

objectives as (
    select * from {{ ref('stg_contracts__objectives') }}
),

sla_objectives as (
    select
        agreements.agreement_id,
        agreements.valid_from,
        agreements.valid_to,
        objectives.objective_id,
        objectives.ticket_type,
        objectives.priority,
        objectives.target_minutes
    from agreements
    inner join objectives
        on
            agreements.agreement_id = objectives.agreement_id
            and agreements.valid_from = objectives.valid_from
    where agreements.kind = 'SLA' and objectives.metric = 'resolution'
),

-- supported_by of OLAs/UCs, over all their versions; position keeps the catalogue's order for display.
member_edges as (
    select
        agreements.agreement_id,
        supporter.member_id,
        min(supporter.member_position) as member_position
    from agreements
    cross join
        lateral unnest(agreements.supported_by) with ordinality as supporter (member_id, member_position)
    where agreements.kind in ('OLA', 'UC')
    group by agreements.agreement_id, supporter.member_id
),

-- Recursive closure in a nested WITH: dbt unit tests inject their fixtures into the top-level WITH only.
-- The depth guard only stops a loop the catalogue validation already refuses.
chain_members as (
    with recursive reach as (
        select
            sla.agreement_id as sla_agreement_id,
            sla.valid_from as sla_valid_from,
            supporter.member_id,
            array[supporter.member_position] as chain_path
        from agreements as sla
        cross join lateral unnest(sla.supported_by) with ordinality as supporter (member_id, member_position)
        where sla.kind = 'SLA'

        union all

        select
            reach.sla_agreement_id,
            reach.sla_valid_from,
            member_edges.member_id,
            reach.chain_path || member_edges.member_position as chain_path
        from reach
        inner join member_edges on reach.member_id = member_edges.agreement_id
        where cardinality(reach.chain_path) < 10
    )

    select
        sla_agreement_id,
        sla_valid_from,
        member_id,
        min(chain_path) as chain_path
    from reach
    group by sla_agreement_id, sla_valid_from, member_id
),

member_targets as (
    select
        sla_objectives.agreement_id as sla_agreement_id,
        sla_objectives.valid_from as sla_valid_from,
        sla_objectives.objective_id as sla_objective_id,
        chain_members.member_id,
        chain_members.chain_path,
        max(objectives.target_minutes) as target_minutes
    from sla_objectives
    inner join chain_members
        on
            sla_objectives.agreement_id = chain_members.sla_agreement_id
            and sla_objectives.valid_from = chain_members.sla_valid_from
    left join agreements as member_versions
        on
            chain_members.member_id = member_versions.agreement_id
            and member_versions.valid_from <= coalesce(sla_objectives.valid_to, 'infinity'::date)
            and coalesce(member_versions.valid_to, 'infinity'::date) >= sla_objectives.valid_from
    left join objectives
        on
            member_versions.agreement_id = objectives.agreement_id
            and member_versions.valid_from = objectives.valid_from
            and objectives.metric = 'resolution'
            and sla_objectives.ticket_type = objectives.ticket_type
            and sla_objectives.priority = objectives.priority
    group by
        sla_objectives.agreement_id, sla_objectives.valid_from, sla_objectives.objective_id,
        chain_members.member_id, chain_members.chain_path
),

ranked_members as (
    select
        member_targets.*,
        -- Largest target first; on a tie the earlier member in the chain.
        row_number() over (
            partition by
                member_targets.sla_agreement_id,
                member_targets.sla_valid_from,
                member_targets.sla_objective_id
            order by member_targets.target_minutes desc nulls last, member_targets.chain_path asc
        ) as target_rank
    from member_targets
),

chains as (
    select
        sla_agreement_id,
        sla_valid_from,
        sla_objective_id,
        count(*) as chain_members,
        string_agg(
            member_id || ':' || coalesce(target_minutes::text, 'missing'), ' + ' order by chain_path
        ) as chain,  -- noqa: RF04
        coalesce(sum(target_minutes), 0) as chain_target_minutes,
        string_agg(
            member_id, ', ' order by chain_path
        ) filter (where target_minutes is null) as missing_links,
        min(member_id) filter (where target_rank = 1) as largest_target_member
    from ranked_members
    group by sla_agreement_id, sla_valid_from, sla_objective_id
),

final as (
    select
        sla_objectives.agreement_id as sla_agreement_id,
        sla_objectives.valid_from as sla_valid_from,
        sla_objectives.valid_to as sla_valid_to,
        sla_objectives.objective_id as sla_objective_id,
        sla_objectives.ticket_type,
        sla_objectives.priority,
        sla_objectives.target_minutes as sla_target_minutes,
        chains.chain,
        chains.missing_links,
        coalesce(chains.chain_members, 0) as chain_members,
        coalesce(chains.chain_target_minutes, 0) as chain_target_minutes,
        (
            chains.missing_links is null
            and coalesce(chains.chain_target_minutes, 0) <= sla_objectives.target_minutes
        ) as is_supported,
        -- The cause when not supported: the largest target if the sum is over, else the first missing link.
        case
            when coalesce(chains.chain_target_minutes, 0) > sla_objectives.target_minutes
                then chains.largest_target_member
            when chains.missing_links is not null
                then split_part(chains.missing_links, ', ', 1)
        end as weakest_link
    from sla_objectives
    left join chains
        on
            sla_objectives.agreement_id = chains.sla_agreement_id
            and sla_objectives.valid_from = chains.sla_valid_from
            and sla_objectives.objective_id = chains.sla_objective_id
)

select * from final
