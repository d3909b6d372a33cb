{#-
    Period attainment, shared by fct_sla_attainment and fct_ola_uc_attainment.

    attainment_by_period(counted_rows, group_columns, carried_columns): a select that rolls the counted rows
    (one per ticket and objective, with period_month, is_met and threshold_pct) up to months, quarters and
    years. Quarters and years are rolled up from the same rows, so a quarter is exactly the sum of its
    months. carried_columns are functionally dependent on the group (the objective id encodes metric, type
    and priority): min() just carries them through. An amendment inside a period can change the threshold:
    the period is held to the strictest one.

    attainment_measures(): the attainment columns of a row of that select.
-#}

{% macro attainment_by_period(counted_rows, group_columns, carried_columns) -%}
    select
        {% for column in group_columns -%}
            {{ counted_rows }}.{{ column }},
        {% endfor -%}
        period_grain.period_type,
        date_trunc(period_grain.period_type, {{ counted_rows }}.period_month)::date as period_start,
        {% for column in carried_columns -%}
            min({{ counted_rows }}.{{ column }}) as {{ column }},
        {% endfor -%}
        count(*) as tickets_counted,
        count(*) filter (where {{ counted_rows }}.is_met) as tickets_met,
        max({{ counted_rows }}.threshold_pct) as threshold_pct
    from {{ counted_rows }}
    cross join {{ period_grains() }}
    group by
        {% for column in group_columns -%}
            {{ counted_rows }}.{{ column }},
        {% endfor -%}
        period_grain.period_type,
        date_trunc(period_grain.period_type, {{ counted_rows }}.period_month)::date
{%- endmacro %}

{% macro attainment_measures() -%}
    tickets_counted,
    tickets_met,
    threshold_pct::numeric(9, 4) as threshold_pct,
    round(100.0 * tickets_met / tickets_counted, 2)::numeric(5, 2) as attainment_pct,
    -- Compared on the exact ratio, not the rounded percentage (39/40 = 97.5 is exact, 2/3 is not).
    100.0 * tickets_met >= threshold_pct * tickets_counted as is_met
{%- endmacro %}
