#!/usr/bin/env bash
# superset-init: refuse weak secrets, migrate the metadata database, create or update the admin, init roles.
# Runs once before the web server and the worker (depends_on: service_completed_successfully).
set -euo pipefail

echo "==> checking secrets"
python -m slm_platform.ops.prod_check --for superset

echo "==> migrating the metadata database"
superset db upgrade

echo "==> admin user (the password in docker/.env is authoritative: reset on every start)"
# create-admin leaves an existing user alone (and exits 0); reset-password then applies the current value.
superset fab create-admin --username admin --firstname SLM --lastname Admin \
  --email admin@localhost --password "${SUPERSET_ADMIN_PASSWORD}"
superset fab reset-password --username admin --password "${SUPERSET_ADMIN_PASSWORD}"

echo "==> roles and permissions"
superset init
echo "==> superset-init done"
