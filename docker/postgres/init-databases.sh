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
-- PUBLIC's default CONNECT and TEMP on the maintenance databases too: the reader connects to the warehouse only.
REVOKE ALL ON DATABASE postgres FROM PUBLIC;
REVOKE ALL ON DATABASE template1 FROM PUBLIC;
GRANT CONNECT ON DATABASE slm_warehouse TO slm_reader;
SQL

# No CREATE in the public schema for anyone but the owner (PostgreSQL 15+ default, made explicit).
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname slm_warehouse \
     -c "REVOKE CREATE ON SCHEMA public FROM PUBLIC;"

# Built-in functions that run SQL text of their own or read whole relations (and those showing other
# sessions' SQL): from a chart's custom SQL column they would read the marts past Superset's row-level
# security. Same list as slm_platform.ops.stack.SQL_RUNNING_FUNCTIONS (tests/test_isolation.py compares them).
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname slm_warehouse <<'SQL'
DO $$
DECLARE f regprocedure;
BEGIN
  FOR f IN SELECT oid::regprocedure FROM pg_proc
           WHERE pronamespace = 'pg_catalog'::regnamespace AND proname = ANY (ARRAY[
    'query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema', 'table_to_xml',
    'table_to_xmlschema', 'table_to_xml_and_xmlschema', 'cursor_to_xml', 'cursor_to_xmlschema',
    'schema_to_xml', 'schema_to_xmlschema', 'schema_to_xml_and_xmlschema', 'database_to_xml',
    'database_to_xmlschema', 'database_to_xml_and_xmlschema', 'ts_stat', 'ts_rewrite',
    'pg_stat_get_activity', 'pg_stat_get_backend_activity'
           ])
  LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
  END LOOP;
END
$$;
SQL
