#!/usr/bin/env bash
# Runs once, on the first start of an empty data volume (docker-entrypoint-initdb.d), as POSTGRES_USER.
# Creates the warehouse, Airflow and Superset databases and the read-only role Superset reads marts with.
# Passwords reach SQL as psql variables (:'name'), never pasted into the SQL text.
set -euo pipefail

: "${SLM_READER_PASSWORD:?SLM_READER_PASSWORD must be set (docker/.env)}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname postgres \
     -v reader_password="${SLM_READER_PASSWORD}" <<'SQL'
CREATE DATABASE slm_warehouse;
CREATE DATABASE slm_airflow;
CREATE DATABASE slm_superset;
CREATE ROLE slm_reader LOGIN PASSWORD :'reader_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
-- The reader may connect to the warehouse only; USAGE/SELECT on schema marts is granted when marts are
-- published (the schema is swapped in by the DAG).
REVOKE ALL ON DATABASE slm_warehouse FROM PUBLIC;
REVOKE ALL ON DATABASE slm_airflow FROM PUBLIC;
REVOKE ALL ON DATABASE slm_superset FROM PUBLIC;
GRANT CONNECT ON DATABASE slm_warehouse TO slm_reader;
SQL

# No CREATE in the public schema for anyone but the owner (PostgreSQL 15+ default, made explicit).
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname slm_warehouse \
     -c "REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
