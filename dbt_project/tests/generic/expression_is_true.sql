{#-
    Mart invariant on each row: a range (a percentage within 0-100) or an ordering of columns (met <= counted,
    downtime <= agreed time, stop >= start). Not for what a contract constraint already enforces.
    Fails with one row per row where the expression is false; a null result passes (nulls are not_null's
    business). Our own, as dbt_utils is not reachable from these machines.
-#}
{% test expression_is_true(model, expression) %}

select *
from {{ model }}
where not ({{ expression }})

{% endtest %}
