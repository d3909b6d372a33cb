"""The "Ticket SLAs" (clients + managers) and "OLA / UC performance" (managers only) dashboards.

Every figure a chart returns through Superset's chart-data API is compared with an independent SQL query
on the published marts, as admin, as each client (RLS) and as the manager. Clients must be denied the
OLA/UC dashboard and its data, including through another dashboard's context (DASHBOARD_RBAC).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from slm_platform.dashboards.provision import (
    ASSETS_DIR,
    CLIENT_DATASETS,
    CLIENTS_ROLE,
    MANAGER_ROLE,
    by_uuid,
    check_audiences,
    client_role,
)
from slm_platform.dashboards.superset_api import SupersetClient
from tests.superset_helpers import (
    CHARTS,
    DASHBOARDS,
    DATASET_OF,
    DATASETS,
    assert_clients_refused,
    assert_saved_query_contexts,
    bundle_with_chart_on,
    chart_data,
    chart_ids_of,
    charts_of,
    login,
    rowcount,
    sql_figure,
)

SLA_DASHBOARD = DASHBOARDS["ticket_slas"]
OLA_DASHBOARD = DASHBOARDS["ola_uc_performance"]


SLA_CHARTS = charts_of(SLA_DASHBOARD)
OLA_CHARTS = charts_of(OLA_DASHBOARD)

# ---------------------------------------------------------------- expected figures, from SQL
# Each entry: chart file stem -> (SQL with an optional client predicate, how to read the figure from the
# chart-data result). "{where}" becomes "where client_code = %s" (client view) or "where true".
ATTAINMENT = "round(100.0 * sum(tickets_met) / nullif(sum(tickets_counted), 0), 6)"
Extract = Callable[[dict], object]


def _first(metric: str, digits: int | None = None) -> Extract:
    def read(result: dict) -> object:
        value = result["data"][0][metric]
        return None if value is None else round(float(value), digits) if digits is not None else value

    return read


def _months(result: dict) -> object:
    return len({row["period_start"] for row in result["data"]})


def _series(result: dict) -> object:
    return len({key for row in result["data"] for key in row} - {"period_start"})


EXPECTED: dict[str, tuple[str, Extract]] = {
    "sla_attainment_table": (
        "select count(*) from (select distinct client_code, service_code, objective_id, period_type, "
        "period_start from marts.fct_sla_attainment {where}) t",
        rowcount,
    ),
    "sla_attainment_trend": (
        "select count(distinct period_start) from marts.fct_sla_attainment {where} and period_type = 'month'",
        _months,
    ),
    "sla_tickets_counted": (
        "select sum(tickets_counted) from marts.fct_sla_attainment {where} and period_type = 'month'",
        _first("tickets_counted"),
    ),
    "sla_attainment_overall": (
        f"select {ATTAINMENT} from marts.fct_sla_attainment {{where}} and period_type = 'month'",
        _first("attainment", 6),
    ),
    "sla_breached_tickets": (
        "select count(*) from marts.fct_ticket_sla {where} and (is_met = false or is_breached_open)",
        rowcount,
    ),
    "sla_ticket_list": ("select count(*) from marts.fct_ticket_sla {where}", rowcount),
    "ola_uc_attainment_table": (
        "select count(*) from (select distinct agreement_kind, party, objective_id, period_type, "
        "period_start from marts.fct_ola_uc_attainment) t",
        rowcount,
    ),
    # One line per party and metric: a team's response and resolution attainment are not mixed.
    "ola_uc_attainment_trend": (
        "select count(*) from (select distinct party, metric from marts.fct_ola_uc_attainment "
        "where period_type = 'month') t",
        _series,
    ),
    "unsupported_count": (
        "select count(*) from marts.fct_agreement_support where not is_supported",
        _first("unsupported"),
    ),
    "unsupported_objectives": (
        "select count(*) from marts.fct_agreement_support where not is_supported",
        rowcount,
    ),
}


# ---------------------------------------------------------------- no stack needed


def test_every_dashboard_chart_has_an_expectation_and_a_query_context() -> None:
    assert set(SLA_CHARTS) | set(OLA_CHARTS) == set(EXPECTED)
    assert_saved_query_contexts(EXPECTED)


def test_client_dashboard_uses_client_datasets_only() -> None:
    check_audiences(ASSETS_DIR)
    sla_datasets = {DATASET_OF[CHARTS[k]["dataset_uuid"]] for k in SLA_CHARTS}
    assert sla_datasets == {"fct_ticket_sla", "fct_sla_attainment"} <= set(CLIENT_DATASETS)
    ola_datasets = {DATASET_OF[CHARTS[k]["dataset_uuid"]] for k in OLA_CHARTS}
    assert ola_datasets == {"fct_ola_uc_attainment", "fct_agreement_support"}
    assert not ola_datasets & set(CLIENT_DATASETS)
    # The calculated metric column (response/resolution) comes from objective_id.
    metric = next(c for c in DATASETS["fct_ticket_sla"]["columns"] if c["column_name"] == "metric")
    assert metric["expression"] == "split_part(objective_id, '/', 2)"


def test_sla_native_filters() -> None:
    filters = {f["name"]: f for f in SLA_DASHBOARD["metadata"]["native_filter_configuration"]}
    assert set(filters) == {"Client", "Period type", "Period", "Objective"}
    assert filters["Client"]["targets"][0]["column"]["name"] == "client_code"
    assert filters["Period"]["filterType"] == "filter_time"
    period_type = filters["Period type"]
    assert period_type["defaultDataMask"]["filterState"]["value"] == ["month"]
    assert period_type["targets"][0]["column"]["name"] == "period_type"


def test_check_audiences_refuses_a_leaking_dashboard(tmp_path: Path) -> None:
    # Put the manager-only "unsupported objectives" chart on the client dashboard.
    assets = bundle_with_chart_on(tmp_path, "ticket_slas", "unsupported_objectives")
    with pytest.raises(ValueError, match="manager-only"):
        check_audiences(assets)


# ---------------------------------------------------------------- against the demo stack


@pytest.fixture(scope="module")
def chart_ids(admin: SupersetClient) -> dict[str, int]:
    return chart_ids_of(admin, EXPECTED)


def _expected(conn, key: str, client: str | None) -> object:
    return sql_figure(conn, EXPECTED[key][0], client, rounded=key == "sla_attainment_overall")


def test_marts_have_data(warehouse) -> None:
    # Without rows every comparison below would be 0 == 0.
    for table in ("fct_ticket_sla", "fct_sla_attainment", "fct_ola_uc_attainment", "fct_agreement_support"):
        with warehouse.cursor() as cur:
            cur.execute(f"select count(*) from marts.{table}")  # noqa: S608 - fixed names
            assert cur.fetchone()[0] > 0, table


def test_every_chart_matches_sql_for_admin(admin, warehouse, chart_ids) -> None:
    for key, (_, extract) in EXPECTED.items():
        assert extract(chart_data(admin, chart_ids[key])) == _expected(warehouse, key, None), key


def test_clients_see_only_their_rows(demo_stack, warehouse, chart_ids) -> None:
    clients = demo_stack.credentials["superset"]["clients"]
    assert len(clients) >= 2
    seen_rows = 0
    for code, creds in sorted(clients.items()):
        api = login(demo_stack, creds)
        for key in SLA_CHARTS:
            result = chart_data(api, chart_ids[key])
            _, extract = EXPECTED[key]
            assert extract(result) == _expected(warehouse, key, code), (code, key)
            codes = {row["client_code"] for row in result["data"] if "client_code" in row}
            assert codes <= {code}, (code, key, codes)
            seen_rows += len(codes)
    assert seen_rows > 0  # the client_code columns were there to check


def test_client_denied_ola_uc_dashboard_and_data(demo_stack, admin, chart_ids) -> None:
    ola_id = by_uuid(admin, "dashboard", OLA_DASHBOARD["uuid"])["id"]
    sla_id = by_uuid(admin, "dashboard", SLA_DASHBOARD["uuid"])["id"]
    for code, creds in sorted(demo_stack.credentials["superset"]["clients"].items()):
        api = login(demo_stack, creds)
        page = api.raw("GET", "/superset/dashboard/ola-uc-performance/", allow_redirects=False)
        assert page.status_code != 200 or "ola-uc-performance" not in page.text, code
    assert_clients_refused(
        demo_stack, admin, ola_id, {key: chart_ids[key] for key in OLA_CHARTS}, open_id=sla_id
    )


def test_manager_sees_both_dashboards(demo_stack, warehouse, admin, chart_ids) -> None:
    api = login(demo_stack, demo_stack.credentials["superset"]["manager"])
    for dash in (SLA_DASHBOARD, OLA_DASHBOARD):
        assert api.raw("GET", f"/api/v1/dashboard/{by_uuid(admin, 'dashboard', dash['uuid'])['id']}").ok
    for key, (_, extract) in EXPECTED.items():
        assert extract(chart_data(api, chart_ids[key])) == _expected(warehouse, key, None), key


def test_roles_and_rls_cover_the_client_datasets(demo_stack, admin) -> None:
    names = {k: DATASETS[k]["uuid"] for k in DATASETS}
    client_ids = {int(by_uuid(admin, "dataset", names[t])["id"]) for t in CLIENT_DATASETS}
    manager_only = {int(by_uuid(admin, "dataset", names[t])["id"]) for t in names if t not in CLIENT_DATASETS}
    assert manager_only  # OLA/UC and support datasets
    roles = {r["name"]: r["id"] for r in admin.list_all("/api/v1/security/roles/")}
    rules = {r["name"]: r for r in admin.list_all("/api/v1/rowlevelsecurity/", order_column=None)}
    for code in demo_stack.credentials["superset"]["clients"]:
        perms = admin.get(f"/api/v1/security/roles/{roles[client_role(code)]}/permissions/")["result"]
        views = [p["view_menu_name"] for p in perms if p["permission_name"] == "datasource_access"]
        ids = {int(v.rsplit("(id:", 1)[1].rstrip(")")) for v in views}
        assert ids == client_ids, code
        rule = rules[f"rls_client_{code}"]
        assert {int(t["id"]) for t in rule["tables"]} == client_ids
        assert rule["clause"] == f"client_code = '{code}'"
    dash_roles = {}
    for key, dash in DASHBOARDS.items():
        detail = admin.get(f"/api/v1/dashboard/{by_uuid(admin, 'dashboard', dash['uuid'])['id']}")["result"]
        dash_roles[key] = {r["name"] for r in detail["roles"]}
    assert dash_roles["ola_uc_performance"] == {MANAGER_ROLE}
    # the shared role of the client dashboards (a per-client role there would name the other clients)
    expected = {CLIENTS_ROLE, MANAGER_ROLE}
    assert dash_roles["ticket_slas"] == dash_roles["ticket_volume"] == expected
