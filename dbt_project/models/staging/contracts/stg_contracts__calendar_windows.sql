-- A single flat select on purpose (no import CTE, no casts): PostgreSQL then pulls this view up into the
-- business-minute mark's correlated subquery and answers it with one backward scan of the primary-key index
-- (calendar_code, window_start). A view with a WITH clause is planned apart: bitmap scan + sort per row.
select
    calendar_code,
    window_start,
    window_end,
    minutes_before
from {{ source('contracts', 'calendar_windows') }}
