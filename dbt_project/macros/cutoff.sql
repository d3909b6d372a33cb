{#-
    run_cutoff(latest_loaded): the run's cut-off, as a scalar SQL expression; the one definition of it.

    The dbt var `as_of` when set (the nightly sets it to its data interval end, the incident review to the
    review's cut-off), else `latest_loaded`: the calling model's latest loaded data (a scalar SQL expression),
    never now(), so a rerun on the same data gives the same figures. Nothing at or after the cut-off exists.

    Without the var, each area defaults to its own latest data, and these differ (the tickets' latest
    timestamp, the availability models' latest check): int_ticket_resolutions_derived (column
    clock_cutoff_at), int_service_ranges_aggregated (cutoff_at) and int_review_cutoff (the later of the two).
    Published, the cut-off is always the column `as_of` (fct_availability, fct_error_budget_burn,
    fct_major_incident, fct_service_review, fct_sip_action); clock_cutoff_at and cutoff_at are internal.
-#}

{% macro run_cutoff(latest_loaded) -%}
    {%- if var('as_of', none) -%}
        cast('{{ var("as_of") }}' as timestamptz)
    {%- else -%}
        ({{ latest_loaded }})
    {%- endif -%}
{%- endmacro %}
