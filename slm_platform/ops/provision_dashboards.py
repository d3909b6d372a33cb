"""Glue between the stack and Superset provisioning: who the clients are, where secrets are kept."""

from __future__ import annotations

from collections.abc import Callable

from slm_platform.ops import stack
from slm_platform.settings import READER_ROLE, WAREHOUSE_DB


def client_codes(dsn: str) -> list[str]:
    import psycopg2

    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("select client_code from raw.clients order by client_code")
        codes = [r[0] for r in cur.fetchall()]
    conn.close()
    return codes


def provision_stack(log: Callable[[str], None] = print) -> dict:
    """Import the bundle and create roles, users and RLS for every client in the warehouse.

    Returns ``{"manager": {...}, "ACME": {...}, ...}`` with usernames and passwords, which are kept in
    the stack's credentials file so that reruns keep the same passwords.
    """
    from slm_platform.dashboards import provision as superset_provision

    server = stack.pg_server()
    creds = stack.credentials()
    url = stack.status()["superset"]["url"]
    clients = client_codes(server.dsn(WAREHOUSE_DB))
    if not clients:
        raise stack.StackError(
            "no clients in raw.clients: load data first (./slm demo generate; ./slm nightly run)"
        )
    result = superset_provision.provision(
        base_url=url,
        admin_user="admin",
        admin_password=creds["superset_admin_password"],
        warehouse_host=server.host,
        warehouse_port=server.port,
        warehouse_db=WAREHOUSE_DB,
        reader_user=READER_ROLE,
        reader_password=creds["reader_password"],
        clients=clients,
        credentials=creds.get("superset", {}),
    )
    stack.save_credentials({"superset": result})
    users = {"manager": result["manager"]}
    users.update(result.get("clients", {}))
    return users
