"""The "Availability" dashboard (clients + managers) and "Availability: error budgets at risk" (managers).

Every chart's figures, read through Superset's chart-data API, are compared with SQL on the published marts:
as admin, as each client (row-level security on client_code) and as the manager. Clients must be denied the
burn-rate portfolio, including through the client dashboard's context (DASHBOARD_RBAC).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from slm_platform.dashboards.provision import (
    ASSETS_DIR,
    CLIENT_DATASETS,
    CLIENTS_ROLE,
    MANAGER_ONLY_DASHBOARDS,
    MANAGER_ROLE,
    by_uuid,
    check_audiences,
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

AVAILABILITY = DASHBOARDS["availability"]
AT_RISK = DASHBOARDS["availability_budgets_at_risk"]


AVAILABILITY_CHARTS = charts_of(AVAILABILITY)
AT_RISK_CHARTS = charts_of(AT_RISK)
Extract = Callable[[dict], object]


def _first(metric: str, digits: int | None = None) -> Extract:
    def read(result: dict) -> object:
        value = result["data"][0][metric]
        return None if value is None or digits is None else round(float(value), digits)

    return read


COVERAGE = (
    "round(100.0 * (sum(agreed_minutes) - sum(unmeasured_minutes)) / nullif(sum(agreed_minutes), 0), 6)"
)
# chart file stem -> (SQL; "{where}" becomes "where client_code = %s" or "where true", how to read the chart)
EXPECTED: dict[str, tuple[str, Extract]] = {
    "availability_table": (
        "select count(*) from (select distinct client_code, service_code, period_type, period_start"
        " from marts.fct_availability {where}) t",
        rowcount,
    ),
    "availability_trend": (
        "select count(distinct period_start) from marts.fct_availability {where} and period_type = 'month'",
        rowcount,
    ),
    "availability_budget_remaining": (
        "select count(distinct period_start) from marts.fct_availability {where} and period_type = 'month'",
        rowcount,
    ),
    "availability_coverage": (
        f"select {COVERAGE} from marts.fct_availability {{where}} and period_type = 'month'",
        _first("coverage", 6),
    ),
    "outage_timeline": (
        "select count(distinct date_trunc('day', outage_start)) from marts.fct_outage {where}",
        rowcount,
    ),
    "outage_list": ("select count(*) from marts.fct_outage {where}", rowcount),
    "budgets_at_risk": ("select count(*) from marts.fct_error_budget_burn {where}", rowcount),
    "budgets_projected_to_breach": (
        "select count(*) from marts.fct_error_budget_burn {where} and will_breach",
        _first("at_risk", 0),
    ),
}


# ---------------------------------------------------------------- no stack needed


def test_every_chart_has_an_expectation_and_a_query_context() -> None:
    assert set(AVAILABILITY_CHARTS) | set(AT_RISK_CHARTS) == set(EXPECTED)
    assert_saved_query_contexts(EXPECTED)


def test_audiences() -> None:
    check_audiences(ASSETS_DIR)
    client = {DATASET_OF[CHARTS[k]["dataset_uuid"]] for k in AVAILABILITY_CHARTS}
    assert client == {"fct_availability", "fct_outage"} <= set(CLIENT_DATASETS)
    manager = {DATASET_OF[CHARTS[k]["dataset_uuid"]] for k in AT_RISK_CHARTS}
    assert manager == {"fct_error_budget_burn"} and not manager & set(CLIENT_DATASETS)
    assert AT_RISK["slug"] in MANAGER_ONLY_DASHBOARDS and AVAILABILITY["slug"] not in MANAGER_ONLY_DASHBOARDS
    uuids = [str(d["uuid"]) for d in (*DATASETS.values(), *CHARTS.values(), *DASHBOARDS.values())]
    assert len(uuids) == len(set(uuids))


def test_check_audiences_refuses_the_portfolio_on_the_client_dashboard(tmp_path: Path) -> None:
    assets = bundle_with_chart_on(tmp_path, "availability", "budgets_at_risk")
    with pytest.raises(ValueError, match="manager-only"):
        check_audiences(assets)


# ---------------------------------------------------------------- against the demo stack


@pytest.fixture(scope="module")
def chart_ids(admin: SupersetClient) -> dict[str, int]:
    return chart_ids_of(admin, EXPECTED)


def _expected(conn, key: str, client: str | None) -> object:
    return sql_figure(conn, EXPECTED[key][0], client, rounded=key == "availability_coverage")


def _mart_availability(conn, client: str | None) -> dict[tuple, Decimal | None]:
    with conn.cursor() as cur:
        cur.execute(
            "select client_code, service_code, period_type, period_start::text, availability_pct"
            " from marts.fct_availability where %s is null or client_code = %s",
            (client, client),
        )
        return {tuple(r[:4]): r[4] for r in cur.fetchall()}


def _table_availability(result: dict) -> dict[tuple, Decimal | None]:
    out = {}
    for row in result["data"]:
        start = row["period_start"]  # epoch milliseconds (a temporal column), or text
        day = (
            start if isinstance(start, str) else datetime.fromtimestamp(start / 1000, UTC).date().isoformat()
        )
        value = row["availability"]
        out[(row["client_code"], row["service_code"], row["period_type"], day[:10])] = (
            None if value is None else Decimal(str(value)).quantize(Decimal("0.0001"), ROUND_HALF_UP)
        )
    return out


def test_marts_have_data(warehouse) -> None:
    with warehouse.cursor() as cur:
        for table in ("fct_availability", "fct_outage", "fct_error_budget_burn"):
            cur.execute(f"select count(*) from marts.{table}")  # noqa: S608 - fixed names
            assert cur.fetchone()[0] > 0, table
        cur.execute("select count(*) from marts.fct_availability where downtime_minutes > 0")
        assert cur.fetchone()[0] > 0


def test_every_chart_matches_sql_for_admin(admin, warehouse, chart_ids) -> None:
    for key, (_, extract) in EXPECTED.items():
        assert extract(chart_data(admin, chart_ids[key])) == _expected(warehouse, key, None), key
    # The table's availability per service and period is the mart's availability_pct.
    table = _table_availability(chart_data(admin, chart_ids["availability_table"]))
    assert table == _mart_availability(warehouse, None)


def test_clients_see_only_their_rows(demo_stack, warehouse, chart_ids) -> None:
    clients = demo_stack.credentials["superset"]["clients"]
    assert len(clients) >= 2
    seen = 0
    for code, creds in sorted(clients.items()):
        api = login(demo_stack, creds)
        for key in AVAILABILITY_CHARTS:
            result = chart_data(api, chart_ids[key])
            _, extract = EXPECTED[key]
            assert extract(result) == _expected(warehouse, key, code), (code, key)
            codes = {row["client_code"] for row in result["data"] if "client_code" in row}
            assert codes <= {code}, (code, key, codes)
            seen += len(codes)
        table = _table_availability(chart_data(api, chart_ids["availability_table"]))
        assert table == _mart_availability(warehouse, code), code
    assert seen > 0


def test_client_denied_the_budgets_at_risk_portfolio(demo_stack, admin, chart_ids) -> None:
    risk_id = by_uuid(admin, "dashboard", AT_RISK["uuid"])["id"]
    avail_id = by_uuid(admin, "dashboard", AVAILABILITY["uuid"])["id"]
    charts = {key: chart_ids[key] for key in AT_RISK_CHARTS}
    assert_clients_refused(demo_stack, admin, risk_id, charts, open_id=avail_id)


def test_manager_sees_both_dashboards(demo_stack, warehouse, admin, chart_ids) -> None:
    api = login(demo_stack, demo_stack.credentials["superset"]["manager"])
    for dash in (AVAILABILITY, AT_RISK):
        assert api.raw("GET", f"/api/v1/dashboard/{by_uuid(admin, 'dashboard', dash['uuid'])['id']}").ok
    for key, (_, extract) in EXPECTED.items():
        assert extract(chart_data(api, chart_ids[key])) == _expected(warehouse, key, None), key


def test_rls_and_dashboard_roles(demo_stack, admin) -> None:
    rules = {r["name"]: r for r in admin.list_all("/api/v1/rowlevelsecurity/", order_column=None)}
    ids = {
        t: int(by_uuid(admin, "dataset", DATASETS[t]["uuid"])["id"])
        for t in ("fct_availability", "fct_outage")
    }
    burn = int(by_uuid(admin, "dataset", DATASETS["fct_error_budget_burn"]["uuid"])["id"])
    for code in demo_stack.credentials["superset"]["clients"]:
        tables = {int(t["id"]) for t in rules[f"rls_client_{code}"]["tables"]}
        assert set(ids.values()) <= tables and burn not in tables, code
    roles = {}
    for key in ("availability", "availability_budgets_at_risk"):
        detail = admin.get(f"/api/v1/dashboard/{by_uuid(admin, 'dashboard', DASHBOARDS[key]['uuid'])['id']}")
        roles[key] = {r["name"] for r in detail["result"]["roles"]}
    assert roles["availability_budgets_at_risk"] == {MANAGER_ROLE}
    assert roles["availability"] == {CLIENTS_ROLE, MANAGER_ROLE}
