"""The isolation matrix (issue 14, item 5): a client role reaches no row of another client, whatever it asks.

On the demo stack, for every client role:
- every chart of every client dashboard: its saved query equals the admin's same query restricted to that
  client; the query with its filters removed and ``client_code`` added returns only that client's rows; the
  query turned against the other clients (a NOT IN filter on the own code, a custom SQL WHERE that tries to
  OR its way out of the RLS clause) returns no row;
- every select filter of those dashboards: its option query (what the dashboard sends) offers exactly the
  values the warehouse holds for that client;
- every client dataset: custom SQL in the form data (a WHERE breaking out of its parentheses, a comment,
  a sub-query, functions that run SQL of their own) is refused or returns nothing of another client;
- refused: samples, drill to detail, CSV/XLSX export, ``/explore`` and the details of a managers-only
  chart, a managers-only dataset through a client dashboard's context, the dataset, datasource and database
  APIs, SQL Lab.
And the warehouse role Superset reads with (``slm_reader``) can SELECT the published marts and nothing else.

What each cell compares with is the warehouse (SQL on the published marts, or the admin's query, which has
no RLS, restricted to the client). The figures of the matrix are in docs/design/isolation.md.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
import requests
from psycopg2 import errors, sql

from slm_platform.dashboards.provision import (
    CLIENT_DATASETS,
    CLIENTS_ROLE,
    MANAGER_ONLY_DASHBOARDS,
    by_uuid,
    client_role,
)
from slm_platform.dashboards.superset_api import SupersetClient
from slm_platform.ops.stack import SQL_RUNNING_FUNCTIONS
from slm_platform.settings import AIRFLOW_DB, READER_ROLE, REPO_ROOT, SUPERSET_DB, WAREHOUSE_DB
from slm_platform.sources.demo_data import CLIENTS
from tests.superset_helpers import CHARTS, DASHBOARDS, DATASET_OF, DATASETS, charts_of, login

CODES = sorted(c.code for c in CLIENTS)
CLIENT_DASHBOARDS = sorted(k for k, d in DASHBOARDS.items() if d["slug"] not in MANAGER_ONLY_DASHBOARDS)
# (dashboard, chart) cells; a chart on two client dashboards is checked once per dashboard.
MATRIX = [(dash, chart) for dash in CLIENT_DASHBOARDS for chart in charts_of(DASHBOARDS[dash])]
ON_CLIENT_DASHBOARDS = {chart for _, chart in MATRIX}
MANAGER_ONLY_CHARTS = sorted(set(CHARTS) - ON_CLIENT_DASHBOARDS)
MANAGER_ONLY_DATASETS = sorted(set(DATASETS) - set(CLIENT_DATASETS))
SELECT_FILTERS = [
    (dash, f)
    for dash in CLIENT_DASHBOARDS
    for f in DASHBOARDS[dash]["metadata"].get("native_filter_configuration", [])
    if f["filterType"] == "filter_select"
]
DENIED = (403, 404)  # 404: Superset's base filters hide what a role may not read

# Permissions whose absence keeps a client from the features the brief lists (the frontend also reads them
# to show or hide menus; the backend checks them on the endpoints probed below).
FORBIDDEN_PERMISSIONS = {
    ("can_samples", "Datasource"),
    ("can_get_column_values", "Datasource"),
    ("can_drill", "Dashboard"),
    ("can_view_query", "Dashboard"),
    ("can_view_chart_as_table", "Dashboard"),
    ("can_csv", "Superset"),
    ("can_explore", "Superset"),
    ("can_explore_json", "Superset"),
    ("can_read", "Explore"),
    ("can_read", "Dataset"),
    ("can_read", "Database"),
    ("can_sqllab", "Superset"),
    ("can_execute_sql_query", "SQLLab"),
    ("can_read", "SQLLab"),
    ("can_export", "Chart"),
    ("can_export", "Dashboard"),
    ("can_write", "Chart"),
    ("can_write", "Dashboard"),
    ("can_write", "Dataset"),
}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def stack_codes(demo_stack) -> list[str]:
    codes = sorted(demo_stack.credentials["superset"]["clients"])
    assert codes == CODES, "the demo's clients changed: the parametrisation below follows demo_data.CLIENTS"
    return codes


@pytest.fixture(scope="module")
def ids(admin: SupersetClient) -> dict[str, dict[str, int]]:
    """Superset ids of the bundle's charts, datasets and dashboards (by file stem)."""
    return {
        "chart": {k: int(by_uuid(admin, "chart", str(c["uuid"]))["id"]) for k, c in CHARTS.items()},
        "dataset": {k: int(by_uuid(admin, "dataset", str(d["uuid"]))["id"]) for k, d in DATASETS.items()},
        "dashboard": {
            k: int(by_uuid(admin, "dashboard", str(d["uuid"]))["id"]) for k, d in DASHBOARDS.items()
        },
    }


@pytest.fixture(scope="module")
def contexts(admin: SupersetClient, ids) -> dict[str, dict]:
    """The saved query_context of every chart on a client dashboard, as Superset stores it."""
    return {
        key: json.loads(admin.get(f"/api/v1/chart/{ids['chart'][key]}")["result"]["query_context"])
        for key in sorted(ON_CLIENT_DASHBOARDS)
    }


def _relation(dataset: str) -> sql.Composable:
    """The dataset as a relation in the warehouse: its mart, or its own SQL for a virtual dataset."""
    ds = DATASETS[dataset]
    if ds.get("sql"):
        return sql.SQL("({}) as ds").format(sql.SQL(ds["sql"].strip().rstrip(";")))
    return sql.SQL("{}.{}").format(sql.Identifier(ds["schema"]), sql.Identifier(ds["table_name"]))


@pytest.fixture(scope="module")
def owners(warehouse) -> dict[str, set[str]]:
    """Which clients have rows in each client dataset, read from the warehouse."""
    out = {}
    with warehouse.cursor() as cur:
        for name in CLIENT_DATASETS:
            cur.execute(sql.SQL("select distinct client_code from {}").format(_relation(name)))
            out[name] = {r[0] for r in cur.fetchall()}
    return out


@pytest.fixture(scope="module")
def clients(demo_stack, stack_codes) -> dict[str, SupersetClient]:
    return {
        code: login(demo_stack, demo_stack.credentials["superset"]["clients"][code]) for code in stack_codes
    }


# ---------------------------------------------------------------- query helpers


def _data(api: SupersetClient, context: dict) -> list[dict]:
    """The rows of a chart-data request that must succeed."""
    body = api.post("/api/v1/chart/data", json=context)
    out = []
    for result in body["result"]:
        assert result["status"] == "success", result
        out.extend(result["data"])
    return out


def _canonical(rows: list[dict]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)


def _restricted(context: dict, code: str) -> dict:
    """The saved query with an explicit filter on one client (the admin has no RLS)."""
    out = copy.deepcopy(context)
    for query in out["queries"]:
        query["filters"] = [*query.get("filters", []), {"col": "client_code", "op": "IN", "val": [code]}]
    return out


def _opened(context: dict) -> dict:
    """The saved query with every filter and clause removed, ``client_code`` added to its columns and no
    post-processing (the rows as the database returns them)."""
    out = copy.deepcopy(context)
    out["form_data"] = {**out.get("form_data", {}), "adhoc_filters": [], "extra_form_data": {}}
    for query in out["queries"]:
        query["filters"] = []
        query["extras"] = {"where": "", "having": ""}
        query.pop("time_range", None)
        query["applied_time_extras"] = {}
        query["post_processing"] = []
        query["row_limit"] = 50_000
        columns = query.get("columns") or []
        if "client_code" not in columns:
            query["columns"] = [*columns, "client_code"]
    return out


def _against_others(context: dict, code: str) -> dict:
    """The opened query turned against the other clients: a NOT IN filter on the own code and a custom SQL
    WHERE that would OR its way past the RLS clause if Superset did not keep it in parentheses."""
    out = _opened(context)
    for query in out["queries"]:
        query["filters"] = [{"col": "client_code", "op": "NOT IN", "val": [code]}]
        query["extras"]["where"] = f"client_code <> '{code}' OR 1 = 1"
    return out


def _codes(rows: list[dict]) -> set[str]:
    return {r["client_code"] for r in rows}


def _dataset_context(dataset_id: int, query: dict, **form_data: Any) -> dict:
    return {
        "datasource": {"id": dataset_id, "type": "table"},
        "force": False,
        "queries": [
            {
                "filters": [],
                "extras": {"where": "", "having": ""},
                "applied_time_extras": {},
                "columns": [],
                "metrics": [],
                "orderby": [],
                "row_limit": 1000,
                "series_limit": 0,
                "order_desc": True,
                "url_params": {},
                "custom_params": {},
                "custom_form_data": {},
                **query,
            }
        ],
        "form_data": {"datasource": f"{dataset_id}__table", "viz_type": "table", **form_data},
        "result_format": "json",
        "result_type": "full",
    }


# ---------------------------------------------------------------- the matrix: chart queries


def test_matrix_is_complete(owners) -> None:
    """The matrix covers every client dashboard and every chart on one; each dataset holds rows of more than
    one client (else a check of 'no other client' could not fail)."""
    assert len(CLIENT_DASHBOARDS) >= 6 and len(MATRIX) >= 40
    for dash in CLIENT_DASHBOARDS:
        assert charts_of(DASHBOARDS[dash]), dash
    used = {DATASET_OF[str(CHARTS[c]["dataset_uuid"])] for c in ON_CLIENT_DASHBOARDS}
    assert used <= set(CLIENT_DATASETS)
    for name in used:
        assert len(owners[name]) >= 2, name


@pytest.mark.parametrize("code", CODES)
def test_chart_queries_return_only_the_clients_rows(
    code, clients, admin: SupersetClient, contexts, owners, stack_codes
) -> None:
    """Every cell: the saved query, the query opened up (filters removed, client_code added) and the query
    turned against the others. A failure names the dashboard, the chart and the variant."""
    api = clients[code]
    for dash, key in MATRIX:
        context = contexts[key]
        dataset = DATASET_OF[str(CHARTS[key]["dataset_uuid"])]
        cell = (code, dash, key)
        # The saved query, as the dashboard sends it: the admin's same query restricted to the client.
        saved = _data(api, context)
        assert _canonical(saved) == _canonical(_data(admin, _restricted(context, code))), (*cell, "saved")
        # Filters removed and client_code added: only the client's own rows, all of them present.
        rows = _data(api, _opened(context))
        assert _codes(rows) == owners[dataset] & {code}, (*cell, "opened", sorted(_codes(rows)))
        # Turned against the others: nothing.
        rows = _data(api, _against_others(context, code))
        assert rows == [], (*cell, "against others", sorted(_codes(rows)))


@pytest.mark.parametrize("code", CODES)
def test_filter_options_are_the_clients_own(code, clients, ids, warehouse, stack_codes) -> None:
    """Each select filter's option query (the chart-data request the dashboard sends for it) offers exactly
    the values the warehouse holds for this client; with client_code beside the values, only this client."""
    api = clients[code]
    offered_any = False
    for dash, native_filter in SELECT_FILTERS:
        target = native_filter["targets"][0]
        dataset, column = DATASET_OF[target["datasetUuid"]], target["column"]["name"]
        context = _dataset_context(
            ids["dataset"][dataset],
            {"columns": [column], "orderby": [[column, True]], "row_limit": 50_000},
            viz_type="filter_select", groupby=[column], dashboardId=ids["dashboard"][dash],
        )  # fmt: skip
        offered = {r[column] for r in _data(api, context)}
        with warehouse.cursor() as cur:
            cur.execute(
                sql.SQL("select distinct {} from {} where client_code = %s").format(
                    sql.Identifier(column), _relation(dataset)
                ),
                (code,),
            )
            expected = {r[0] for r in cur.fetchall()}
        cell = (code, dash, native_filter["name"])
        assert offered == expected, cell
        offered_any |= bool(offered)
        if column != "client_code":
            context["queries"][0]["columns"] = [column, "client_code"]
            assert _codes(_data(api, context)) == ({code} if expected else set()), cell
    assert offered_any, code


# Custom SQL a client may put in the form data. Each is refused (HTTP 4xx) or answers with nothing of another
# client; the functions are refused by the warehouse (slm_platform.ops.stack.SQL_RUNNING_FUNCTIONS), the
# sub-queries by Superset (ALLOW_ADHOC_SUBQUERY off), the parenthesis by Superset's clause check.
def _sql_column(expression: str) -> dict:
    return {"columns": [{"expressionType": "SQL", "sqlExpression": expression, "label": "x"}, "client_code"]}


def _injections(table: str, code: str) -> dict[str, dict]:
    mart = f"marts.{table}"
    return {
        "where breaking its parentheses": {"columns": ["client_code"], "extras": {"where": "1=1) OR (1=1"}},
        "where ending in a comment": {"columns": ["client_code"], "extras": {"where": "1 = 1 OR 1 = 1 --"}},
        "where OR true": {
            "columns": ["client_code"],
            "extras": {"where": f"client_code <> '{code}' OR true"},
        },
        "sub-query column": _sql_column(f"(select string_agg(client_code, ',') from {mart})"),
        "sub-query having": {
            "columns": ["client_code"],
            "metrics": [{"expressionType": "SQL", "sqlExpression": "count(*)", "label": "n"}],
            "extras": {"having": f"count(*) < (select count(*) from {mart})"},
        },
        "query_to_xml column": _sql_column(
            f"query_to_xml('select client_code from {mart}', true, true, '')::text"
        ),
        "table_to_xml metric": {
            "columns": ["client_code"],
            "metrics": [
                {
                    "expressionType": "SQL",
                    "label": "m",
                    "sqlExpression": f"max(table_to_xml('{mart}', true, true, '')::text)",
                }
            ],
        },  # fmt: skip
        "ts_stat column": _sql_column(
            f"ts_stat('select to_tsvector(''simple'', client_code) from {mart}')::text"
        ),
        "other sessions' SQL": _sql_column("(pg_stat_get_activity(null)).query"),
    }


@pytest.mark.parametrize("code", CODES)
def test_custom_sql_reaches_no_other_client(code, clients, ids, stack_codes) -> None:
    """Every client dataset: each custom SQL above is refused or its whole answer (rows, SQL echoed, error
    text) names no other client, in any case (ts_stat lower-cases)."""
    api = clients[code]
    others = [c.lower() for c in CODES if c != code]
    refused = 0
    for dataset in CLIENT_DATASETS:
        table = DATASETS[dataset]["table_name"]
        for name, query in _injections(table, code).items():
            context = _dataset_context(ids["dataset"][dataset], {"row_limit": 50_000, **query})
            resp = api.raw("POST", "/api/v1/chart/data", json=context)
            body = resp.text.lower()
            assert not [o for o in others if o in body], (code, dataset, name, resp.status_code, body[:300])
            if resp.ok:
                assert _codes(resp.json()["result"][0]["data"]) <= {code}, (code, dataset, name)
            else:
                assert resp.status_code in (400, 403), (code, dataset, name, resp.status_code)
                refused += 1
    # The ones that run SQL of their own or a sub-query are refused everywhere, not merely empty.
    assert refused >= 6 * len(CLIENT_DATASETS), refused


# ---------------------------------------------------------------- refusals


def _browser(demo_stack, creds: dict) -> requests.Session:
    """A session logged in through the login form, as a browser is: Superset's page views (explore, SQL Lab,
    samples) take the session cookie, not the API's bearer token."""
    base = demo_stack.superset_url
    session = requests.Session()
    page = session.get(f"{base}/login/", timeout=60)
    token = re.search(r'csrf_token[^>]*?value="([^"]+)"', page.text)
    assert token, "no CSRF token on the login page"
    form = {"username": creds["username"], "password": creds["password"], "csrf_token": token.group(1)}
    resp = session.post(f"{base}/login/", data=form, allow_redirects=False, timeout=60)
    assert resp.status_code == 302 and "/login" not in resp.headers.get("Location", ""), resp.status_code
    csrf = session.get(f"{base}/api/v1/security/csrf_token/", timeout=60).json()["result"]
    session.headers.update({"X-CSRFToken": csrf, "Referer": f"{base}/"})
    return session


def _refusal_probes(ids: dict, code: str, database: int) -> list[tuple[str, str, str, dict]]:
    """(what, method, path, request kwargs) a client is refused; each answers 200 to the admin (the probe
    is a real request, not a typo refused for everyone)."""
    volume = ids["dataset"]["fct_ticket_volume"]
    chart = ids["chart"][MATRIX[0][1]]
    dash = ids["dashboard"][MATRIX[0][0]]
    sample = {"datasource_id": volume, "datasource_type": "table"}
    probes = [
        ("samples", "POST", "/datasource/samples", {"params": sample, "json": {}}),
        ("drill to detail", "POST", "/datasource/samples",
         {"params": {**sample, "dashboard_id": dash}, "json": {"filters": [{"col": "client_code", "op": "==",
                                                                          "val": code}]}}),
        ("drill info", "GET", f"/api/v1/dataset/{volume}/drill_info/", {}),
        ("column values", "GET", f"/api/v1/datasource/table/{volume}/column/client_code/values/", {}),
        ("CSV export", "GET", f"/api/v1/chart/{chart}/data/", {"params": {"format": "csv"}}),
        ("XLSX export", "GET", f"/api/v1/chart/{chart}/data/", {"params": {"format": "xlsx"}}),
        ("samples by chart-data", "GET", f"/api/v1/chart/{chart}/data/", {"params": {"type": "samples"}}),
        ("drill by chart-data", "GET", f"/api/v1/chart/{chart}/data/", {"params": {"type": "drill_detail"}}),
        ("view query", "GET", f"/api/v1/chart/{chart}/data/", {"params": {"type": "query"}}),
        ("chart export", "GET", "/api/v1/chart/export/", {"params": {"q": f"!({chart})"}}),
        ("dashboard export", "GET", "/api/v1/dashboard/export/", {"params": {"q": f"!({dash})"}}),
        ("dataset list", "GET", "/api/v1/dataset/", {}),
        ("dataset", "GET", f"/api/v1/dataset/{volume}", {}),
        ("dataset export", "GET", "/api/v1/dataset/export/", {"params": {"q": f"!({volume})"}}),
        ("database list", "GET", "/api/v1/database/", {}),
        ("database", "GET", f"/api/v1/database/{database}", {}),
        ("database connection", "GET", f"/api/v1/database/{database}/connection", {}),
        ("database schemas", "GET", f"/api/v1/database/{database}/schemas/", {}),
        ("database tables", "GET", f"/api/v1/database/{database}/tables/",
         {"params": {"q": "(schema_name:marts)"}}),
        ("SQL Lab page", "GET", "/sqllab/", {}),
        ("SQL Lab execute", "POST", "/api/v1/sqllab/execute/",
         {"json": {"database_id": database, "sql": "select client_code from marts.fct_ticket_volume",
                   "runAsync": False, "schema": "marts"}}),
        ("saved queries", "GET", "/api/v1/saved_query/", {}),
        ("query history", "GET", "/api/v1/query/", {}),
        ("RLS rules", "GET", "/api/v1/rowlevelsecurity/", {}),
        ("users", "GET", "/api/v1/security/users/", {}),
        # The quality gate's Data Docs (superset_config BLUEPRINTS): raw values of every client.
        ("Data Docs", "GET", "/slm/data-docs/", {}),
    ]  # fmt: skip
    for key in MANAGER_ONLY_CHARTS:
        cid = ids["chart"][key]
        probes += [
            (f"explore {key}", "GET", "/explore/", {"params": {"slice_id": cid}}),
            (f"explore API {key}", "GET", "/api/v1/explore/", {"params": {"slice_id": cid}}),
            (f"chart details {key}", "GET", f"/api/v1/chart/{cid}", {}),
            (f"chart data {key}", "GET", f"/api/v1/chart/{cid}/data/", {}),
        ]
    return probes


@pytest.mark.parametrize("code", CODES)
def test_client_is_refused_what_it_was_not_given(code, demo_stack, ids, stack_codes) -> None:
    admin_session = _browser(demo_stack, demo_stack.credentials["superset"]["admin"])
    client_session = _browser(demo_stack, demo_stack.credentials["superset"]["clients"][code])
    base = demo_stack.superset_url
    volume = admin_session.get(f"{base}/api/v1/dataset/{ids['dataset']['fct_ticket_volume']}", timeout=60)
    database = int(volume.json()["result"]["database"]["id"])
    for what, method, path, kwargs in _refusal_probes(ids, code, database):
        control = admin_session.request(method, base + path, allow_redirects=False, timeout=120, **kwargs)
        assert control.status_code == 200, (what, "admin", control.status_code, control.text[:200])
        resp = client_session.request(method, base + path, allow_redirects=False, timeout=120, **kwargs)
        # 401/403: refused; 404: hidden by a base filter; 302 to the login page: a view refused.
        refused = resp.status_code in (401, 403, 404) or (
            resp.status_code == 302 and "/login" in resp.headers.get("Location", "")
        )
        assert refused, (code, what, resp.status_code, resp.text[:200])
    # Nor does any chart listing or dashboard listing show what is for managers only.
    listed = {c["id"] for c in client_session.get(f"{base}/api/v1/chart/", params={"q": "(page_size:100)"},
                                                   timeout=60).json()["result"]}  # fmt: skip
    assert listed and not listed & {ids["chart"][k] for k in MANAGER_ONLY_CHARTS}


@pytest.mark.parametrize("code", CODES)
def test_managers_only_datasets_refused_through_a_client_dashboard(code, clients, ids, stack_codes) -> None:
    """A managers-only dataset asked for in the context of a client dashboard and one of its charts
    (DASHBOARD_RBAC opens the datasets a dashboard's charts use, and only those)."""
    api = clients[code]
    dash, chart = MATRIX[0]
    for dataset in MANAGER_ONLY_DATASETS:
        count = {"expressionType": "SQL", "sqlExpression": "count(*)", "label": "n"}
        context = _dataset_context(
            ids["dataset"][dataset], {"metrics": [count]},
            dashboardId=ids["dashboard"][dash], slice_id=ids["chart"][chart],
        )  # fmt: skip
        resp = api.raw("POST", "/api/v1/chart/data", json=context)
        assert resp.status_code in DENIED, (code, dataset, resp.status_code, resp.text[:200])


@pytest.mark.parametrize("code", CODES)
def test_dashboard_metadata_names_no_other_client(code, clients, ids, stack_codes) -> None:
    """What the dashboard page loads about itself (detail, list, charts, datasets) names no other client.
    Measured before: the detail and list listed each dashboard's roles, client_GLOBEX and client_INITECH
    included, so every client read the provider's other clients off its own dashboards."""
    api = clients[code]
    others = [c for c in CODES if c != code]
    bodies = {"list": api.raw("GET", "/api/v1/dashboard/", params={"q": "(page_size:100)"})}
    for dash in CLIENT_DASHBOARDS:
        did = ids["dashboard"][dash]
        for part in ("", "/charts", "/datasets"):
            bodies[f"{dash}{part}"] = api.raw("GET", f"/api/v1/dashboard/{did}{part}")
    for what, resp in bodies.items():
        assert resp.status_code == 200, (code, what, resp.status_code)
        assert not [o for o in others if o in resp.text], (code, what)


def test_no_dashboard_write_stores_series_names(admin: SupersetClient, stack_codes) -> None:
    """A dashboard page opened by the Admin stores the labels it drew (every client's service codes on a
    client dashboard) in the dashboard's metadata, which each client then reads (measured before the fix):
    whatever route writes a dashboard (create, save, the page's colors PUT), Superset keeps no shared or
    mapped label colors, and keeps the colors a user picked. On a dashboard of its own, so the bundle's
    dashboards (and the warm-up's fingerprints of them) are not touched."""
    names = [f"{c}-ERP" for c in stack_codes]
    leaky = {"shared_label_colors": names, "map_label_colors": {n: "#1FA8C9" for n in names}}
    picked = {"label_colors": {"breached": "#E04355"}, "color_scheme": "supersetColors"}

    def stored(dashboard_id: int) -> dict:
        return json.loads(admin.get(f"/api/v1/dashboard/{dashboard_id}")["result"]["json_metadata"])

    created = admin.post(
        "/api/v1/dashboard/",
        json={"dashboard_title": f"isolation colors {secrets.token_hex(4)}",
              "json_metadata": json.dumps({**leaky, **picked})},
    )  # fmt: skip
    did = int(created["id"])
    try:
        after_create = stored(did)
        admin.put(f"/api/v1/dashboard/{did}/colors", params={"mark_updated": "false"}, json=leaky)
        after_colors = stored(did)
        admin.put(f"/api/v1/dashboard/{did}", json={"json_metadata": json.dumps({**after_colors, **leaky})})
        after_save = stored(did)
    finally:
        admin.delete(f"/api/v1/dashboard/{did}")
    for when, metadata in (("create", after_create), ("colors", after_colors), ("save", after_save)):
        assert metadata.get("shared_label_colors", []) == [], when
        assert metadata.get("map_label_colors", {}) == {}, when
        assert not [n for n in names if n in json.dumps(metadata)], when
        assert metadata["label_colors"] == picked["label_colors"], when


def test_the_shared_clients_role_without_a_client_role_reads_nothing(
    demo_stack, admin: SupersetClient, ids, contexts
) -> None:
    """A user given ``clients`` (the client dashboards' role) and a viewer role such as Gamma but no client
    role, so no client RLS rule: it opens the client dashboards and reads no row of them (the Base rule's
    ``1 = 0``), not every client's rows through DASHBOARD_RBAC."""
    roles = {r["name"]: int(r["id"]) for r in admin.list_all("/api/v1/security/roles/")}
    username = "isolation_clients_only"
    password = secrets.token_urlsafe(18)
    for row in admin.list_all(
        "/api/v1/security/users/", [{"col": "username", "opr": "eq", "value": username}]
    ):
        admin.delete(f"/api/v1/security/users/{row['id']}")  # left by an interrupted run
    created = admin.post(
        "/api/v1/security/users/",
        json={"username": username, "password": password, "first_name": username, "last_name": "test",
              "email": f"{username}@slm.invalid", "active": True,
              "roles": [roles[CLIENTS_ROLE], roles["Gamma"]]},
    )  # fmt: skip
    try:
        api = login(demo_stack, {"username": username, "password": password})
        rows = 0
        for dash, key in MATRIX:
            context = _opened(contexts[key])
            context["form_data"].update(dashboardId=ids["dashboard"][dash], slice_id=ids["chart"][key])
            resp = api.raw("POST", "/api/v1/chart/data", json=context)
            if resp.ok:
                rows += sum(len(r["data"]) for r in resp.json()["result"])
            else:
                assert resp.status_code in DENIED, (dash, key, resp.status_code)
        assert rows == 0
        assert api.raw("GET", f"/api/v1/dashboard/{ids['dashboard'][MATRIX[0][0]]}").ok
    finally:
        admin.delete(f"/api/v1/security/users/{created['id']}")


def test_client_roles_hold_none_of_the_forbidden_permissions(admin: SupersetClient, stack_codes) -> None:
    for code in stack_codes:
        role = next(r for r in admin.list_all("/api/v1/security/roles/") if r["name"] == client_role(code))
        held = {
            (p["permission_name"], p["view_menu_name"])
            for p in admin.get(f"/api/v1/security/roles/{role['id']}/permissions/")["result"]
        }
        assert held and not held & FORBIDDEN_PERMISSIONS, (code, sorted(held & FORBIDDEN_PERMISSIONS))


# ---------------------------------------------------------------- the warehouse role Superset reads with


def _reader_dsn(demo_stack, dbname: str = WAREHOUSE_DB) -> str:
    return psycopg2.extensions.make_dsn(
        demo_stack.warehouse_dsn,
        user=READER_ROLE,
        password=demo_stack.credentials["reader_password"],
        dbname=dbname,
    )


@pytest.fixture(scope="module")
def reader(demo_stack) -> Iterator[Any]:
    conn = psycopg2.connect(_reader_dsn(demo_stack))
    conn.autocommit = True
    yield conn
    conn.close()


def _refused(conn, statement: str, *args: object) -> bool:
    """Whether the reader is refused ``statement`` for lack of privilege (in a rolled-back transaction)."""
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args or None)
        return False
    except errors.InsufficientPrivilege:
        return True
    finally:
        conn.rollback()
        conn.autocommit = True


def test_reader_role_has_no_attributes_nor_memberships(warehouse) -> None:
    with warehouse.cursor() as cur:
        cur.execute(
            "select rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolinherit, "
            "(select count(*) from pg_auth_members where member = r.oid) from pg_roles r where rolname = %s",
            (READER_ROLE,),
        )
        assert cur.fetchone() == (False, False, False, False, False, True, 0)


def test_reader_selects_the_published_marts_and_nothing_else(warehouse, reader) -> None:
    with warehouse.cursor() as cur:
        cur.execute(
            "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where c.relkind in ('r', 'v', 'm', 'p', 'f', 'S') "
            "and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%%' "
            "order by 1, 2"
        )
        relations = cur.fetchall()
        marts = [(s, t) for s, t in relations if s == "marts"]
        others = [(s, t) for s, t in relations if s != "marts"]
        # Nothing but SELECT on a mart; nothing at all on any other relation (raw, quarantine, build...).
        cur.execute(
            "select n.nspname, c.relname, p from pg_class c join pg_namespace n on n.oid = c.relnamespace, "
            "unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p "
            "where c.relkind in ('r', 'v', 'm', 'p', 'f', 'S') and has_table_privilege(%s, c.oid, p) "
            "and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%%' "
            "and not (n.nspname = 'marts' and p = 'SELECT')",
            (READER_ROLE,),
        )
        assert cur.fetchall() == []
        cur.execute(
            "select nspname, p from pg_namespace, unnest(array['USAGE', 'CREATE']) p "
            "where has_schema_privilege(%s, oid, p) and nspname not in ('pg_catalog', 'information_schema') "
            "and not (nspname in ('marts', 'public') and p = 'USAGE')",
            (READER_ROLE,),
        )
        assert cur.fetchall() == []
    schemas = {s for s, _ in others}
    assert "raw" in schemas and len(marts) >= 20, (schemas, len(marts))
    with reader.cursor() as cur:
        for schema, table in marts:
            cur.execute(
                sql.SQL("select * from {}.{} limit 1").format(sql.Identifier(schema), sql.Identifier(table))
            )
    # The catalog's answer, tried for real on one relation of every other schema.
    for schema in sorted(schemas):
        table = next(t for s, t in others if s == schema)
        query = sql.SQL("select * from {}.{} limit 1").format(sql.Identifier(schema), sql.Identifier(table))
        assert _refused(reader, query), (schema, table)


WRITES = [
    "create temporary table t (x int)",
    "create table marts.t (x int)",
    "create table public.t (x int)",
    "create schema t",
    "create view marts.v as select 1 as x",
    "create function public.f() returns int language sql as 'select 1'",
    "insert into marts.fct_ticket_volume select * from marts.fct_ticket_volume where false",
    "update marts.fct_ticket_volume set tickets_opened = 0 where false",
    "delete from marts.fct_ticket_volume where false",
    "truncate marts.fct_ticket_volume",
    "select * from marts.fct_ticket_volume limit 1 for update",
    "create index on marts.fct_ticket_volume (client_code)",
    "alter table marts.fct_ticket_volume add column x int",
    "drop table marts.fct_ticket_volume",
    "select lo_import('/etc/passwd')",
    "select pg_read_file('/etc/passwd')",
    "copy marts.fct_ticket_volume to '/tmp/slm_reader_copy'",
]


@pytest.mark.parametrize("statement", WRITES)
def test_reader_writes_nothing(reader, statement: str) -> None:
    assert _refused(reader, statement), statement


SQL_FUNCTION_CALLS = [
    "select query_to_xml('select client_code from marts.fct_ticket_volume', true, true, '')",
    "select table_to_xml('marts.fct_ticket_volume', true, true, '')",
    "select schema_to_xml('marts', true, true, '')",
    "select database_to_xml(true, true, '')",
    "select ts_stat('select to_tsvector(''simple'', client_code) from marts.fct_ticket_volume')",
    "select ts_rewrite('a'::tsquery, 'select ''a''::tsquery, ''b''::tsquery')",
    "select query from pg_stat_get_activity(null)",
]


@pytest.mark.parametrize("statement", SQL_FUNCTION_CALLS)
def test_reader_cannot_run_sql_through_functions(reader, statement: str) -> None:
    """Functions that run SQL text (or read a relation) of their own: through them a chart's custom SQL column
    would read the marts past Superset's RLS."""
    assert _refused(reader, statement), statement


def test_no_sql_running_function_left_to_public(warehouse) -> None:
    with warehouse.cursor() as cur:
        cur.execute(
            "select oid::regprocedure::text from pg_proc where pronamespace = 'pg_catalog'::regnamespace "
            "and proname = any(%s) and has_function_privilege(%s, oid, 'EXECUTE')",
            (list(SQL_RUNNING_FUNCTIONS), READER_ROLE),
        )
        assert cur.fetchall() == []


def test_reader_connects_to_the_warehouse_only(demo_stack, warehouse) -> None:
    with warehouse.cursor() as cur:
        # t_*: the suite's own scratch databases (tests/conftest.py scratch_database), created and dropped
        # around single tests of other modules.
        cur.execute(
            "select datname from pg_database where datallowconn and datname <> %s "
            "and datname not like 't\\_%%'",
            (WAREHOUSE_DB,),
        )
        others = sorted(r[0] for r in cur.fetchall())
    assert {"postgres", "template1", AIRFLOW_DB, SUPERSET_DB} <= set(others)
    for dbname in others:
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            psycopg2.connect(_reader_dsn(demo_stack, dbname)).close()
        with warehouse.cursor() as cur:
            cur.execute("select has_database_privilege(%s, %s, 'CONNECT')", (READER_ROLE, dbname))
            assert cur.fetchone() == (False,), dbname
    with warehouse.cursor() as cur:
        cur.execute(
            "select has_database_privilege(%s, %s, 'CREATE'), has_database_privilege(%s, %s, 'TEMP')",
            (READER_ROLE, WAREHOUSE_DB, READER_ROLE, WAREHOUSE_DB),
        )
        assert cur.fetchone() == (False, False)


def test_docker_init_revokes_the_same() -> None:
    """The production compose file's first start (docker/postgres/init-databases.sh) locks the reader the
    same way the local stack does: the same functions, PUBLIC's grants on every database it creates."""
    text = (REPO_ROOT / "docker" / "postgres" / "init-databases.sh").read_text()
    missing = [f for f in SQL_RUNNING_FUNCTIONS if f"'{f}'" not in text]
    assert missing == []
    assert "REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC" in text
    for db in ("slm_warehouse", "slm_airflow", "slm_superset", "postgres", "template1"):
        assert f"REVOKE ALL ON DATABASE {db} FROM PUBLIC;" in text, db
    assert "GRANT CONNECT ON DATABASE slm_warehouse TO slm_reader;" in text
