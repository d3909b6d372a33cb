"""Provision Superset over its REST API: import the asset bundle, then roles, users, RLS, dashboard roles.

Idempotent: every object is looked up by name (roles, users, RLS rules) or UUID (assets) before being
created, and permissions are *set* (not appended), so a rerun converges to the same state.

Role design (measured on Superset 6.1, see tests/test_superset*.py):
- ``client_<CODE>``: only the read permissions a dashboard viewer needs (CLIENT_VIEWER_PERMISSIONS) plus
  ``datasource_access`` on the client-facing datasets (CLIENT_DATASETS). Client users do NOT get Gamma:
  Gamma can create charts and dashboards (measured: POST /api/v1/dashboard/ → 201) and list databases.
  No SQL Lab permission.
- ``manager``: the same viewer permissions plus ``datasource_access`` on every dataset, no RLS.
- One RLS rule per client role (Regular, ``client_code = '<CODE>'``) on the client-facing datasets.
- ``clients``: one role every client user also holds, with no permission: the dashboard role of the client
  dashboards. Not the per-client roles: the dashboard API lists a dashboard's roles to whoever may open it,
  so ``client_<CODE>`` roles there told every client the other clients' codes (measured, issue 14).
- Dashboard roles (DASHBOARD_RBAC): ``clients`` plus ``manager``, except MANAGER_ONLY_DASHBOARDS
  (``manager`` only). With DASHBOARD_RBAC a dashboard role also opens the data of that dashboard's
  charts, so ``check_audiences`` refuses a bundle where a client dashboard shows a manager-only dataset.
- A Base RLS rule ``1 = 0`` on the client datasets for every role but Admin, ``manager`` and the client
  roles: a user given ``clients`` alone (the dashboards open, no client role, so no client RLS rule) or any
  other role reads nothing of them instead of every client's rows.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml

from slm_platform.dashboards.superset_api import SupersetClient
from slm_platform.dashboards.superset_service import ASSETS_DIR

Log = Callable[[str], None]

DATABASE_FILE = "databases/warehouse.yaml"
MANAGER_ROLE = "manager"
CLIENTS_ROLE = "clients"
ADMIN_ROLE = "Admin"
BASE_RLS_RULE = "rls_clients_base"
MANAGER_USER = "manager"

# Datasets clients may query (each must have a client_code column: the RLS rule filters on it). Every other
# dataset of the bundle (OLA/UC attainment, agreement support: internal teams and suppliers) is for managers.
CLIENT_DATASETS = (
    "fct_ticket_volume",
    "fct_ticket_sla",
    "fct_sla_attainment",
    # Customer satisfaction: survey comments, complaints and review feedback are client data too.
    "fct_satisfaction",
    "fct_survey_response",
    "fct_complaint",
    "fct_review_feedback",
    # Availability of the client's own services and their outages (the burn-rate portfolio is for managers).
    "fct_availability",
    "fct_outage",
    # Service review: the review's headline, its objective lines, the SIP register and the findings a client
    # may see (a virtual dataset over fct_review_finding, see CLIENT_ROW_FILTERS).
    "fct_service_review",
    "fct_service_review_objective",
    "fct_sip_action",
    "fct_review_finding_client",
    # Major incident review: each affected client's own impact rows, and the incidents that affected it with
    # its own figures only (a virtual dataset: fct_major_incident's figures add up every affected client).
    "fct_major_incident_impact",
    "fct_major_incident_client",
)
# Dashboards (by slug) whose roles list only the manager.
MANAGER_ONLY_DASHBOARDS = ("ola-uc-performance", "availability-budgets-at-risk", "data-quality", "portfolio")
# Marts that also hold rows for managers only (findings naming internal teams or suppliers). A client
# dataset may read one only as a virtual dataset whose own SQL keeps the predicate: that WHERE sits inside
# the FROM subquery of every query Superset builds, out of reach of a chart-data request's filters and
# clauses (adhoc subqueries are refused: ALLOW_ADHOC_SUBQUERY stays off). RLS on client_code applies too.
CLIENT_ROW_FILTERS = {"fct_review_finding": "audience = 'client'"}

# (permission, view_menu) pairs a read-only dashboard viewer needs in Superset 6.1. Measured by rendering
# the dashboard in Chromium as a user holding only these (+ datasource_access) and removing one at a time:
# without any of the first five the dashboard does not render or a request fails (403/500); the rest are
# for use rather than rendering. Dropped as unneeded: can_read Dataset, can_explore_json, can_time_range,
# can_userinfo, can_read DashboardPermalinkRestApi.
CLIENT_VIEWER_PERMISSIONS: list[tuple[str, str]] = [
    ("can_read", "Dashboard"),  # dashboard API
    ("can_read", "Chart"),  # chart API and /api/v1/chart/data (also feeds the native filter's values)
    ("can_dashboard", "Superset"),  # the /superset/dashboard/<slug>/ page itself
    ("can_log", "Superset"),  # the frontend's event log: answers 500 without it
    ("can_write", "DashboardFilterStateRestApi"),  # the page stores its filter state: 403 without it
    ("can_read", "DashboardFilterStateRestApi"),  # reopening a URL with native_filters_key
    ("can_read", "SecurityRestApi"),  # /api/v1/security/csrf_token/ for REST clients
    ("menu_access", "Dashboards"),  # the Dashboards menu entry to find the dashboard
    ("can_recent_activity", "Log"),  # the home page after login (own activity only): 403 without it
]


def client_role(code: str) -> str:
    return f"client_{code}"


def client_username(code: str) -> str:
    return f"client_{code.lower()}"


def _check_code(code: str) -> str:
    # The code ends up inside an SQL clause: allow only what client codes look like.
    if not re.fullmatch(r"[A-Za-z0-9_-]+", code):
        raise ValueError(f"invalid client code {code!r}")
    return code


def build_bundle(assets_dir: Path, warehouse_uri: str) -> bytes:
    """Zip the asset folder under one top folder, with the database URI replaced."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(assets_dir.rglob("*.yaml")):
            rel = path.relative_to(assets_dir).as_posix()
            text = path.read_text()
            if rel == DATABASE_FILE:
                config = yaml.safe_load(text)
                config["sqlalchemy_uri"] = warehouse_uri
                text = yaml.safe_dump(config, sort_keys=False)
            zf.writestr(f"slm_assets/{rel}", text)
    return buf.getvalue()


def bundle_uuids(assets_dir: Path = ASSETS_DIR) -> dict[str, Any]:
    """UUIDs of the bundle's objects, by kind (tests and the lead use them to find the imported assets)."""
    out: dict[str, Any] = {"databases": [], "datasets": [], "charts": [], "dashboards": []}
    for kind in out:
        for path in sorted((assets_dir / kind).rglob("*.yaml")):
            out[kind].append(str(yaml.safe_load(path.read_text())["uuid"]))
    return out


def _read_kind(assets_dir: Path, kind: str) -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted((assets_dir / kind).rglob("*.yaml"))]


def client_dataset_uuids(assets_dir: Path = ASSETS_DIR) -> list[str]:
    return [str(d["uuid"]) for d in _read_kind(assets_dir, "datasets") if d["table_name"] in CLIENT_DATASETS]


def client_dashboard_uuids(assets_dir: Path = ASSETS_DIR) -> list[str]:
    dashboards = _read_kind(assets_dir, "dashboards")
    return [str(d["uuid"]) for d in dashboards if d["slug"] not in MANAGER_ONLY_DASHBOARDS]


def check_audiences(assets_dir: Path = ASSETS_DIR) -> None:
    """Refuse a bundle where a dashboard open to clients shows a chart on a manager-only dataset.

    Also refuses a client dataset without a ``client_code`` column (its RLS rule would break every query),
    and one reading a mart of CLIENT_ROW_FILTERS other than through a virtual dataset keeping its predicate.
    """
    client_ds = set(client_dataset_uuids(assets_dir))
    for ds in _read_kind(assets_dir, "datasets"):
        if str(ds["uuid"]) not in client_ds:
            continue
        if "client_code" not in {c["column_name"] for c in ds["columns"]}:
            raise ValueError(f"client dataset {ds['table_name']} has no client_code column for RLS")
        _check_row_filters(ds)
    chart_ds = {str(c["uuid"]): str(c["dataset_uuid"]) for c in _read_kind(assets_dir, "charts")}
    for dash in _read_kind(assets_dir, "dashboards"):
        if dash["slug"] in MANAGER_ONLY_DASHBOARDS:
            continue
        used = {
            chart_ds[v["meta"]["uuid"]]
            for v in dash["position"].values()
            if isinstance(v, dict) and v.get("type") == "CHART"
        }
        for native_filter in dash["metadata"].get("native_filter_configuration", []):
            used |= {t["datasetUuid"] for t in native_filter.get("targets", []) if t.get("datasetUuid")}
        leaked = sorted(used - client_ds)
        if leaked:
            raise ValueError(f"dashboard {dash['slug']!r} is open to clients but uses manager-only {leaked}")


def _check_row_filters(ds: dict[str, Any]) -> None:
    """A client dataset reads a CLIENT_ROW_FILTERS mart once, as ``from marts.<mart> where <predicate>``
    closing its (sub)query: nothing such as ``or true`` after the predicate."""
    sql = " ".join((ds.get("sql") or "").lower().split()).rstrip(" ;")
    for relation, predicate in CLIENT_ROW_FILTERS.items():
        if ds["table_name"] == relation and not sql:
            raise ValueError(f"client dataset {relation} exposes the whole table, manager rows included")
        closed = rf"from marts\.{relation} where {re.escape(predicate)} ?(\)|$)"
        kept = re.search(closed, sql) is not None and sql.count(relation) == 1
        if re.search(rf"\b{relation}\b", sql) and not kept:
            name = ds["table_name"]
            raise ValueError(f"client dataset {name} reads {relation} without `where {predicate}`")


def _find_one(api: SupersetClient, path: str, column: str, value: Any) -> dict[str, Any] | None:
    rows = api.list_all(path, [{"col": column, "opr": "eq", "value": value}], order_column=None)
    return rows[0] if rows else None


def by_uuid(api: SupersetClient, kind: str, uuid: str) -> dict[str, Any]:
    """The list row (with ``id``) of the dataset/chart/dashboard with this UUID."""
    rows = api.list_all(f"/api/v1/{kind}/", [{"col": "uuid", "opr": "eq", "value": uuid}], order_column=None)
    if len(rows) != 1:
        raise LookupError(f"expected one {kind} with uuid {uuid}, found {len(rows)}")
    return rows[0]


def _ensure_role(api: SupersetClient, name: str) -> int:
    row = _find_one(api, "/api/v1/security/roles/", "name", name)
    if row:
        return int(row["id"])
    return int(api.post("/api/v1/security/roles/", json={"name": name})["id"])


def _set_role_permissions(api: SupersetClient, role_id: int, pvm_ids: list[int]) -> None:
    current = api.get(f"/api/v1/security/roles/{role_id}/permissions/")["result"]
    if sorted(int(p["id"]) for p in current) == sorted(pvm_ids):
        return
    api.post(f"/api/v1/security/roles/{role_id}/permissions", json={"permission_view_menu_ids": pvm_ids})


def _ensure_user(
    api: SupersetClient, username: str, password: str, known: bool, role_ids: list[int], log: Log
) -> None:
    """Create the user, or align its roles; ``known`` False means the caller has no stored password for
    it or it no longer works (e.g. an earlier run died before returning), so the password is reset.
    """
    row = _find_one(api, "/api/v1/security/users/", "username", username)
    body = {
        "username": username,
        "first_name": username,
        "last_name": "SLM",
        "email": f"{username}@slm.invalid",
        "active": True,
        "roles": role_ids,
    }
    if row is None:
        api.post("/api/v1/security/users/", json={**body, "password": password})
        log(f"created user {username}")
        return
    update: dict[str, Any] = {}
    if sorted(_role_ids(row)) != sorted(role_ids):
        update["roles"] = role_ids
    if not known:
        update["password"] = password
    if update:
        api.put(f"/api/v1/security/users/{row['id']}", json=update)
        log(f"updated {sorted(update)} of user {username}")


def _role_ids(row: dict[str, Any]) -> list[int]:
    return [int(r["id"]) for r in row.get("roles", [])]


def _ensure_rls(
    api: SupersetClient,
    name: str,
    clause: str,
    table_ids: list[int],
    role_ids: list[int],
    filter_type: str = "Regular",
) -> int:
    body = {
        "name": name,
        "description": "client isolation (managed by slm_platform.dashboards.provision)",
        "filter_type": filter_type,
        "tables": sorted(table_ids),
        "roles": sorted(role_ids),
        "group_key": "",
        "clause": clause,
    }
    row = _find_one(api, "/api/v1/rowlevelsecurity/", "name", name)
    if row is None:
        return int(api.post("/api/v1/rowlevelsecurity/", json=body)["id"])
    same = (
        row.get("clause") == clause
        and row.get("filter_type") == filter_type
        and sorted(int(t["id"]) for t in row.get("tables", [])) == sorted(table_ids)
        and sorted(int(r["id"]) for r in row.get("roles", [])) == sorted(role_ids)
    )
    if not same:
        api.put(f"/api/v1/rowlevelsecurity/{row['id']}", json=body)
    return int(row["id"])


def provision(
    base_url: str,
    admin_user: str,
    admin_password: str,
    warehouse_host: str,
    warehouse_port: int,
    warehouse_db: str,
    reader_user: str,
    reader_password: str | None,
    clients: list[str],
    credentials: dict | None = None,
    log: Log = print,
) -> dict:
    """Import the assets and set up roles/users/RLS; return the Superset credentials (stored by the lead).

    ``reader_password`` None keeps the warehouse password Superset already stores (reruns, tests).
    ``credentials`` is the previous return value (or ``{}``): existing passwords are reused, so a rerun
    neither changes passwords nor duplicates objects. Returned shape:
    ``{"admin": {...}, "manager": {"username", "password"}, "clients": {CODE: {"username", "password"}}}``.
    """
    credentials = credentials or {}
    codes = [_check_code(c) for c in clients]
    check_audiences(ASSETS_DIR)
    api = SupersetClient(base_url, admin_user, admin_password)

    uri = f"postgresql+psycopg2://{reader_user}:XXXXXXXXXX@{warehouse_host}:{warehouse_port}/{warehouse_db}"
    bundle = build_bundle(ASSETS_DIR, uri)
    api.post(
        "/api/v1/assets/import/",
        files={"bundle": ("slm_assets.zip", bundle, "application/zip")},
        # No password: Superset keeps the one it stores for this database UUID.
        data={
            "passwords": json.dumps({DATABASE_FILE: reader_password} if reader_password else {}),
            "overwrite": "true",
        },
    )
    log("imported the asset bundle")

    uuids = bundle_uuids()
    client_datasets = [by_uuid(api, "dataset", u) for u in client_dataset_uuids()]
    client_dashboards = set(client_dashboard_uuids())
    dashboards = [by_uuid(api, "dashboard", u) for u in uuids["dashboards"]]
    table_ids = [int(d["id"]) for d in client_datasets]

    pvms = {
        (p["permission"]["name"], p["view_menu"]["name"]): int(p["id"])
        for p in api.list_all("/api/v1/security/permissions-resources/")
    }
    viewer_ids = [pvms[p] for p in CLIENT_VIEWER_PERMISSIONS if p in pvms]
    missing = [p for p in CLIENT_VIEWER_PERMISSIONS if p not in pvms]
    if missing:
        log(f"warning: permissions unknown to this Superset: {missing}")
    dataset_perm_ids = [_dataset_perm(pvms, int(ds["id"])) for ds in client_datasets]

    manager_role = _ensure_role(api, MANAGER_ROLE)
    all_dataset_ids = [pid for (perm, _), pid in pvms.items() if perm == "datasource_access"]
    _set_role_permissions(api, manager_role, viewer_ids + sorted(set(all_dataset_ids)))

    out: dict[str, Any] = {
        "admin": {"username": admin_user, "password": admin_password},
        "manager": _creds(credentials.get("manager"), MANAGER_USER),
        "clients": {},
    }
    known = _known(credentials.get("manager"), MANAGER_USER) and _can_login(base_url, out["manager"])
    _ensure_user(api, MANAGER_USER, out["manager"]["password"], known, [manager_role], log)

    clients_role = _ensure_role(api, CLIENTS_ROLE)
    _set_role_permissions(api, clients_role, [])
    seeing = [manager_role, _ensure_role(api, ADMIN_ROLE)]  # roles the Base rule does not restrict
    for code in codes:
        rid = _ensure_role(api, client_role(code))
        seeing.append(rid)
        _set_role_permissions(api, rid, viewer_ids + dataset_perm_ids)
        _ensure_rls(api, f"rls_client_{code}", f"client_code = '{code}'", table_ids, [rid])
        previous = credentials.get("clients", {}).get(code)
        creds = _creds(previous, client_username(code))
        known = _known(previous, creds["username"]) and _can_login(base_url, creds)
        _ensure_user(api, creds["username"], creds["password"], known, [clients_role, rid], log)
        out["clients"][code] = creds
    _ensure_rls(api, BASE_RLS_RULE, "1 = 0", table_ids, seeing, filter_type="Base")

    for dash_uuid, dash in zip(uuids["dashboards"], dashboards, strict=True):
        wanted = sorted([manager_role, clients_role]) if dash_uuid in client_dashboards else [manager_role]
        current = api.get(f"/api/v1/dashboard/{dash['id']}")["result"]
        if sorted(int(r["id"]) for r in current.get("roles", [])) != wanted:
            api.put(f"/api/v1/dashboard/{dash['id']}", json={"roles": wanted})
    log(f"provisioned {len(codes)} client roles/users, manager, RLS, dashboard roles")
    return out


def _can_login(base_url: str, creds: dict[str, str]) -> bool:
    """Whether a stored password still works (a run that died after creating the user lost it)."""
    resp = requests.post(
        f"{base_url.rstrip('/')}/api/v1/security/login",
        json={**creds, "provider": "db", "refresh": False},
        timeout=30,
    )
    return resp.status_code == 200


def _known(previous: dict | None, username: str) -> bool:
    return bool(previous and previous.get("password") and previous.get("username") == username)


def _creds(previous: dict | None, username: str) -> dict[str, str]:
    if previous and _known(previous, username):
        return {"username": username, "password": previous["password"]}
    return {"username": username, "password": secrets.token_urlsafe(18)}


def _dataset_perm(pvms: dict[tuple[str, str], int], dataset_id: int) -> int:
    """The id of a dataset's ``datasource_access`` permission (view menu ``[db].[table](id:N)``)."""
    suffix = f"](id:{dataset_id})"
    found = [
        pid for (perm, view), pid in pvms.items() if perm == "datasource_access" and view.endswith(suffix)
    ]
    if len(found) != 1:
        raise LookupError(
            f"no datasource_access permission for dataset {dataset_id} (did `superset init` run?)"
        )
    return found[0]
