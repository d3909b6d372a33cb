"""Stage 4, transform: run dbt (build and test the marts into the build schema) and publish them with one
atomic schema swap."""
