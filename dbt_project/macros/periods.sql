{#-
    The reporting periods (month, quarter, year), written once for every model that fans rows out to them.

    period_grains(alias): the three period types as a one-column relation (`<alias>.period_type`), to cross
    join; a row's period of each type is then date_trunc(<alias>.period_type, <its month>)::date.
    period_length(period_type): the interval one period of that type spans (month, quarter or year).
    period_label(period_type, period_start): '2026-10', '2026-Q4', '2026'.
-#}

{% macro period_grains(alias='period_grain') -%}
    (values ('month'), ('quarter'), ('year')) as {{ alias }} (period_type)
{%- endmacro %}

{% macro period_length(period_type) -%}
    case {{ period_type }}
        when 'month' then interval '1 month'
        when 'quarter' then interval '3 months'
        else interval '1 year'
    end
{%- endmacro %}

{% macro period_label(period_type, period_start) -%}
    case {{ period_type }}
        when 'month' then to_char({{ period_start }}, 'YYYY-MM')
        when 'quarter' then to_char({{ period_start }}, 'YYYY-"Q"Q')
        else to_char({{ period_start }}, 'YYYY')
    end
{%- endmacro %}
