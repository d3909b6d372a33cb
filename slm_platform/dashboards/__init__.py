"""Stage 5, dashboards: Superset, its configuration, the native asset bundle's import and the roles and
row-level security, all through Superset's REST API."""
