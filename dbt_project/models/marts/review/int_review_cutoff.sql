{#-
    The run's cut-off for the review marts, one row: run_cutoff (macros/cutoff.sql), the dbt var `as_of` (the
    nightly's data interval end), or by default the later of the ticket models' cut-off and the availability
    models' cut-off (each defaults to its latest loaded data), never now(): a rerun on the same data gives the
    same reviews.
-#}
{%- set latest_figures %}
    greatest(
        (select max(clock_cutoff_at) from {{ ref('int_ticket_resolutions_derived') }}),
        (select max(as_of) from {{ ref('fct_availability') }})
    )
{%- endset %}

with

final as (
    select {{ run_cutoff(latest_figures) }} as as_of
)

select * from final
