{#-
    Helpers of the availability models (models/intermediate/availability, models/marts/availability).

    The run's cut-off is macros/cutoff.sql (run_cutoff), its availability default in
    int_service_ranges_aggregated.

    multirange_minutes(mr): the minutes covered by a tstzmultirange (exact, numeric).
-#}

{% macro multirange_minutes(multirange_expr) -%}
    coalesce((
        select sum(extract(epoch from upper(mr_part) - lower(mr_part)))
        from unnest({{ multirange_expr }}) as mr_part
    ), 0) / 60
{%- endmacro %}

{#-
    checks_processed_batch(): the highest load batch already in int_check_intervals_merged, as a literal read
    before the run (an incremental model's watermark). As a literal, not a subquery, the planner sees from the
    column statistics how few checks are newer, and reads them through the BRIN index on _batch_id. Before
    reading it, the page ranges the loader appended since the last vacuum are summarized: an unsummarized
    range always matches, so without this the BRIN scan would read every page written since then.
-#}

{% macro checks_processed_batch() -%}
    {%- if execute -%}
        {%- set summarize_sql -%}
            select brin_summarize_new_values('{{ source("canonical", "checks").schema }}.checks_batch_brin')
        {%- endset -%}
        {%- do run_query(summarize_sql) -%}
        {%- set watermark = run_query("select coalesce(max(max_batch_id), 0) from " ~ this) -%}
        {{- watermark.columns[0].values()[0] | int -}}
    {%- else -%}
        0
    {%- endif -%}
{%- endmacro %}

{#- The calendar's open time inside `within` (a tstzrange), as a multirange `calendar_ranges`: a subquery
    for a lateral join over the model's `calendar_windows` import CTE. Lateral, so each row is one
    primary-key range scan of its calendar (a plain join gets planned as a merge join over every window);
    a window never spans more than a local day (25 h at most), which bounds that scan. -#}
{% macro calendar_ranges_within(calendar_code, within) -%}
    (
        select
            range_agg(
                tstzrange(calendar_windows.window_start, calendar_windows.window_end)
                * {{ within }}
            ) as calendar_ranges
        from calendar_windows
        where
            calendar_windows.calendar_code = {{ calendar_code }}
            and calendar_windows.window_start > lower({{ within }}) - interval '2 days'
            and calendar_windows.window_start < upper({{ within }})
            and calendar_windows.window_end > lower({{ within }})
    )
{%- endmacro %}
