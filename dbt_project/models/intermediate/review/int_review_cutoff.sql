{#-
    The run's cut-off for the review marts, one row: the dbt var `as_of` (the nightly's data interval end), or
    by default the later of the ticket models' cut-off and the availability models' cut-off (each defaults to
    its latest loaded data), never now(): a rerun on the same data gives the same reviews.
-#}
{%- if var('as_of', none) %}
    with

    final as (
        select cast('{{ var("as_of") }}' as timestamptz) as as_of
    )
{%- else %}
    with

    ticket_resolutions as (
        select * from {{ ref('int_ticket_resolutions_derived') }}
    ),

    availability as (
        select * from {{ ref('fct_availability') }}
    ),

    final as (
        select
            greatest(
                (select max(clock_cutoff_at) from ticket_resolutions),
                (select max(as_of) from availability)
            ) as as_of
    )
{%- endif %}

select * from final
