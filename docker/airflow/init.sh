#!/usr/bin/env bash
# airflow-init: refuse weak secrets, migrate the metadata database, set the admin password, check the DAGs.
# Runs once before every other Airflow service (depends_on: service_completed_successfully).
set -euo pipefail

echo "==> checking secrets"
python -m slm_platform.ops.prod_check --for airflow

echo "==> checking configuration"
executor="$(airflow config get-value core executor)"
if [ "${executor}" != "CeleryExecutor" ]; then
  echo "ERROR: expected CeleryExecutor, got ${executor}" >&2
  exit 1
fi

echo "==> migrating the metadata database"
airflow db migrate

echo "==> creating the pool that serialises warehouse builds (slm_nightly, slm_incident_review)"
# Tasks in a pool that does not exist are never scheduled: the nightly's dbt build and publish and the
# incident review's build-and-publish share this one slot (slm_platform/orchestration/incident_review.py POOL).
airflow pools set slm_marts_build 1 "one dbt build or marts publish at a time (slm_nightly, slm_incident_review)"

echo "==> setting the admin password (SimpleAuthManager passwords file, owner-only)"
python - <<'PY'
import json
import os

path = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
users = [u.split(":")[0] for u in os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",") if u]
# Only the admin gets a password from the env file; any other configured user must be added here too,
# otherwise the api-server would generate one and print it to its log.
passwords = {"admin": os.environ["AIRFLOW_ADMIN_PASSWORD"]}
missing = sorted(set(users) - set(passwords))
if missing:
    raise SystemExit(f"no password for simple auth manager users {missing}")
tmp = path + ".tmp"
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as fh:
    json.dump(passwords, fh)
os.replace(tmp, path)
PY

echo "==> checking that the DAGs import"
# A DagBag parse here, not `airflow dags list-import-errors`: that one reads errors the dag-processor
# records later, so at init time it always answers "No data found".
python - <<'PY'
import os
import sys

from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
for path, error in bag.import_errors.items():
    print(f"ERROR: DAG import error in {path}:\n{error}", file=sys.stderr)
print(f"{len(bag.dags)} DAG(s), {len(bag.import_errors)} import error(s)")
sys.exit(1 if bag.import_errors or not bag.dags else 0)
PY
echo "==> airflow-init done"
