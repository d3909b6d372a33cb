"""The "Customer satisfaction" dashboard (clients and managers).

Every chart's data, read through Superset's chart-data API as admin and as each client user, is compared with
SQL on the published marts; a client's rows (including the survey verbatims) are its own only; and the
"CSAT of met vs breached tickets" chart equals the acceptance query computed straight from the raw tables.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import yaml

from slm_platform.dashboards.provision import (
    ASSETS_DIR,
    CLIENT_DATASETS,
    CLIENTS_ROLE,
    MANAGER_ROLE,
    by_uuid,
    check_audiences,
)
from slm_platform.dashboards.superset_api import SupersetClient
from tests.superset_helpers import (
    CHARTS,
    DATASET_OF,
    DATASETS,
    assert_saved_query_contexts,
    chart_data,
    chart_ids_of,
    rowcount,
)
from tests.test_satisfaction_marts import CSAT_BY_SLA_OUTCOME_SQL

DASHBOARD = yaml.safe_load((ASSETS_DIR / "dashboards" / "customer_satisfaction.yaml").read_text())
CHART_OF = {str(c["uuid"]): key for key, c in CHARTS.items()}
DASHBOARD_CHARTS = [
    CHART_OF[v["meta"]["uuid"]]
    for v in DASHBOARD["position"].values()
    if isinstance(v, dict) and v.get("type") == "CHART"
]
SATISFACTION_DATASETS = {"fct_satisfaction", "fct_survey_response", "fct_complaint", "fct_review_feedback"}


def _month(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def _by_month(metric: str):
    def read(result: dict) -> dict:
        return {_month(r["period_start"]): _r6(r[metric]) for r in result["data"]}

    return read


def _by(column: str, metric: str, digits: int = 6):
    def read(result: dict) -> dict:
        return {
            r[column]: None if r[metric] is None else round(float(r[metric]), digits) for r in result["data"]
        }

    return read


def _r6(value) -> float | None:
    return None if value is None else round(float(value), 6)


def _verbatims(result: dict) -> list:
    return sorted((r["client_code"], r["comment"], r["csat_score"], r["nps_score"]) for r in result["data"])


# chart -> (SQL on the published marts, "{where}" = client predicate or "where true"; how to read the chart)
CSAT = "round(100.0 * sum(csat_satisfied) / nullif(sum(csat_answers), 0), 6)"
NPS = "round(100.0 * (sum(promoters) - sum(detractors)) / nullif(sum(nps_answers), 0), 6)"
EXPECTED = {
    "satisfaction_csat_trend": (
        f"select period_start, {CSAT} from marts.fct_satisfaction {{where}} and period_type = 'month'"
        " group by period_start",
        _by_month("csat"),
    ),
    "satisfaction_nps_trend": (
        f"select period_start, {NPS} from marts.fct_satisfaction {{where}} and period_type = 'month'"
        " group by period_start",
        _by_month("nps"),
    ),
    "satisfaction_response_rate": (
        "select count(*) from (select distinct period_start from marts.fct_satisfaction {where}"
        " and period_type = 'month') t",
        rowcount,
    ),
    "satisfaction_vs_target": (
        "select count(*) from marts.fct_satisfaction {where} and period_type = 'quarter'",
        rowcount,
    ),
    # The acceptance query gives percentages to 0.01; the chart's unrounded figures are rounded alike.
    "satisfaction_csat_met_vs_breached": ("acceptance", _by("ticket_sla_outcome", "csat", 2)),
    "complaints_by_category": (
        "select category, count(*) from marts.fct_complaint {where} group by category",
        _by("category", "complaints"),
    ),
    "complaints_list": ("select count(*) from marts.fct_complaint {where}", rowcount),
    # "Latest verbatims": the chart keeps the 200 latest (row_limit); a year of demo history has more.
    "satisfaction_verbatims": (
        "select client_code, comment, csat_score, nps_score from marts.fct_survey_response {where}"
        " and comment is not null order by answered_at desc limit 200",
        _verbatims,
    ),
    "review_feedback": ("select count(*) from marts.fct_review_feedback {where}", rowcount),
}


def _expected(conn, key: str, client: str | None):
    sql, _ = EXPECTED[key]
    with conn.cursor() as cur:
        if sql == "acceptance":  # straight from the raw tables, independent of fct_survey_response
            cur.execute(
                CSAT_BY_SLA_OUTCOME_SQL.format(
                    schema="marts", client_filter="and s.client_code = %s" if client else ""
                ),
                (client,) if client else (),
            )
            return {outcome: float(pct) for outcome, _answers, pct in cur.fetchall()}
        cur.execute(
            sql.format(where="where client_code = %s" if client else "where true"),
            (client,) if client else (),
        )
        rows = cur.fetchall()
    if key == "satisfaction_verbatims":
        return sorted(rows)
    if len(rows[0]) == 2:
        return {k: _r6(v) for k, v in rows}
    return rows[0][0]


# ---------------------------------------------------------------- no stack needed


def test_every_chart_has_an_expectation_and_a_query_context() -> None:
    assert set(DASHBOARD_CHARTS) == set(EXPECTED)
    assert_saved_query_contexts(DASHBOARD_CHARTS)


def test_dashboard_is_for_clients_and_its_datasets_have_rls() -> None:
    check_audiences(ASSETS_DIR)
    used = {DATASET_OF[CHARTS[k]["dataset_uuid"]] for k in DASHBOARD_CHARTS}
    assert used == SATISFACTION_DATASETS <= set(CLIENT_DATASETS)
    uuids = [str(c["uuid"]) for c in CHARTS.values()] + [str(d["uuid"]) for d in DATASETS.values()]
    assert len(uuids) == len(set(uuids))


# ---------------------------------------------------------------- against the demo stack


@pytest.fixture(scope="module")
def chart_ids(admin: SupersetClient) -> dict[str, int]:
    return chart_ids_of(admin, EXPECTED)


def test_marts_have_data(warehouse) -> None:
    with warehouse.cursor() as cur:
        for table in sorted(SATISFACTION_DATASETS):
            cur.execute(f"select count(*) from marts.{table}")  # noqa: S608 - fixed names
            assert cur.fetchone()[0] > 0, table
        cur.execute(
            "select count(distinct client_code) from marts.fct_survey_response where comment is not null"
        )
        assert cur.fetchone()[0] >= 2  # verbatims of several clients: RLS has something to hide


def test_every_chart_matches_sql_for_admin(admin, warehouse, chart_ids) -> None:
    for key, (_, extract) in EXPECTED.items():
        assert extract(chart_data(admin, chart_ids[key])) == _expected(warehouse, key, None), key


def test_clients_see_only_their_rows_including_verbatims(demo_stack, warehouse, chart_ids) -> None:
    clients = demo_stack.credentials["superset"]["clients"]
    assert len(clients) >= 2
    for code, creds in sorted(clients.items()):
        api = SupersetClient(demo_stack.superset_url, creds["username"], creds["password"])
        for key, (_, extract) in EXPECTED.items():
            result = chart_data(api, chart_ids[key])
            assert extract(result) == _expected(warehouse, key, code), (code, key)
            codes = {row["client_code"] for row in result["data"] if "client_code" in row}
            assert codes <= {code}, (code, key, codes)
        verbatims = chart_data(api, chart_ids["satisfaction_verbatims"])["data"]
        assert verbatims and {r["client_code"] for r in verbatims} == {code}, code


def test_met_vs_breached_chart_equals_the_independent_query(admin, warehouse, chart_ids) -> None:
    chart = _by("ticket_sla_outcome", "csat", 2)(
        chart_data(admin, chart_ids["satisfaction_csat_met_vs_breached"])
    )
    independent = _expected(warehouse, "satisfaction_csat_met_vs_breached", None)
    assert chart == independent and set(chart) == {"met", "breached"}
    gap = Decimal(str(independent["met"])) - Decimal(str(independent["breached"]))
    print(
        f"dashboard = independent SQL: CSAT met {chart['met']} %, breached {chart['breached']} %, gap {gap}"
    )


def test_dashboard_roles(demo_stack, admin) -> None:
    detail = admin.get(f"/api/v1/dashboard/{by_uuid(admin, 'dashboard', DASHBOARD['uuid'])['id']}")["result"]
    # the shared role of the client dashboards (a per-client role there would name the other clients)
    expected = {CLIENTS_ROLE, MANAGER_ROLE}
    assert {r["name"] for r in detail["roles"]} == expected
    assert (
        Counter(DATASET_OF[CHARTS[k]["dataset_uuid"]] for k in DASHBOARD_CHARTS)["fct_survey_response"] == 2
    )
