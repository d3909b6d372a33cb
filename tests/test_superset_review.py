"""The "Service review" (clients and managers) and "Portfolio" (managers only) dashboards.

Every chart's figures, read through Superset's chart-data API, equal SQL on the published review marts: the
saved queries as admin, as the manager and as each client (its own rows only), and the Service review as
its native filters narrow it to one client and period (the latest complete month and quarter). Clients are
refused the Portfolio and its charts' data. A client never gets a finding of audience 'manager' (they name
internal teams and suppliers): not with the chart's filters removed or inverted, not with a WHERE clause or a
subquery of its own, not by pointing the request at the managers' findings dataset.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from slm_platform.dashboards import provision as superset_provision
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
    chart_ids_of,
    charts_of,
    login,
)

REVIEW = DASHBOARDS["service_review"]
PORTFOLIO = DASHBOARDS["portfolio"]
REVIEW_CHARTS = charts_of(REVIEW)
PORTFOLIO_CHARTS = charts_of(PORTFOLIO)
FINDINGS_CHART = "review_findings"
MANAGER_KINDS = {"sla_not_supported", "ola_uc_breach_cause"}
LATEST = "Latest complete"  # the Period filter's default choice

# ---------------------------------------------------------------- expected figures, as SQL on the marts
# {w}: a predicate on the review r (client, period type, period label), "true" for a saved query.
AVAILABILITY = (
    "100.0 * (sum(r.agreed_minutes) - sum(r.unmeasured_minutes) - sum(r.downtime_minutes))"
    " / nullif(sum(r.agreed_minutes) - sum(r.unmeasured_minutes), 0)"
)
SLA = "100.0 * sum(r.tickets_met) / nullif(sum(r.tickets_counted), 0)"
CSAT = "sum(r.csat_pct * r.csat_answers) / nullif(sum(r.csat_answers), 0)"
REVIEW_FROM = "from marts.fct_service_review r where {w}"
# Objective lines and findings carry no label: the review they belong to gives it (the dataset's own
# label expression is thereby checked too).
JOIN_REVIEW = (
    "left join marts.fct_service_review r on r.client_code = x.client_code and r.period_type = x.period_type"
    " and r.period_start = x.period_start"
)
HEADLINE = [
    "client_code",
    "period_label",
    "sla_attainment_pct",
    "sla_attainment_change_pts",
    "availability_pct",
    "availability_change_pts",
    "coverage_pct",
    "csat_pct",
    "csat_change_pts",
    "nps",
    "nps_change",
    "response_rate_pct",
    "complaints_opened",
    "complaints_closed",
    "major_incidents",
    "sip_actions_opened",
    "sip_actions_closed",
]
EXPECTED: dict[str, str] = {
    "review_objectives_met": f"select sum(r.objectives_met) {REVIEW_FROM}",
    "review_objectives_breached": f"select sum(r.objectives_breached) {REVIEW_FROM}",
    "review_sla_attainment": f"select {SLA} {REVIEW_FROM}",
    "review_availability": f"select {AVAILABILITY} {REVIEW_FROM}",
    "review_csat": f"select {CSAT} {REVIEW_FROM}",
    "review_sip_overdue": f"select sum(r.sip_actions_overdue) {REVIEW_FROM}",
    "review_headline": "select " + ", ".join(f"r.{c}" for c in HEADLINE) + f" {REVIEW_FROM}",
    "review_objective_lines": (
        "select r.period_label, x.agreement_id, x.objective_id, x.metric, x.service_code, x.priority,"
        " x.counted, x.met, x.attainment_pct, x.target_pct,"
        " case when x.is_met then 'met' when not x.is_met then 'breached' end,"
        " x.previous_attainment_pct, x.attainment_change_pts,"
        " case when x.is_breached_two_running then 'breached twice' end"
        f" from marts.fct_service_review_objective x {JOIN_REVIEW} where {{w}}"
    ),
    "review_trend": (
        f"select r.period_start, {SLA}, {AVAILABILITY}, {CSAT} {REVIEW_FROM} group by r.period_start"
    ),
    "review_findings": (
        "select r.period_label, x.finding_kind, x.severity, x.subject, x.figure, x.threshold, x.evidence,"
        f" x.suggested_action from marts.fct_review_finding x {JOIN_REVIEW}"
        " where x.audience = 'client' and {w}"
    ),
    "review_sip_register": (
        "select r.action_id, r.title, r.owner, r.source_ref, r.opened_on, r.due_on,"
        " r.is_overdue, r.days_open from marts.fct_sip_action r where r.status = 'open' and {w}"
    ),
    "portfolio_objectives_heatmap": (
        "select r.period_label, r.client_code,"
        " 100.0 * sum(r.objectives_met) / nullif(sum(r.objectives_met) + sum(r.objectives_breached), 0)"
        f" {REVIEW_FROM} group by 1, 2"
    ),
    "portfolio_breaches_table": (
        "select r.client_code, r.period_label, r.objectives_met, r.objectives_breached,"
        " r.previous_objectives_breached, r.findings_client, r.findings_manager, r.sip_actions_overdue"
        f" {REVIEW_FROM}"
    ),
    "portfolio_budgets_at_risk": (
        "select r.client_code, r.service_code, r.period_start, r.availability_pct, r.target_pct,"
        " r.coverage_pct, r.error_budget_minutes, r.error_budget_remaining_minutes,"
        " r.error_budget_remaining_pct"
        " from marts.fct_availability r where r.period_type <> 'day' and r.error_budget_remaining_pct < 25"
        " and {w}"
    ),
    # Days overdue counted apart from the dataset's expression: the cut-off's date in the client's zone.
    "portfolio_sip_overdue": (
        "select r.client_code, r.action_id, r.title, r.owner, r.source_ref, r.due_on,"
        " (r.as_of at time zone c.timezone)::date - r.due_on from marts.fct_sip_action r"
        " join marts.dim_clients c on c.client_code = r.client_code where r.is_overdue and {w}"
    ),
    "portfolio_findings_by_kind": (
        "select r.period_start, r.finding_kind, count(*) from marts.fct_review_finding r where {w}"
        " group by 1, 2"
    ),
    "portfolio_review_packs": (
        "select r.client_code, r.period_label, r.edition, r.pages, r.html_path, r.pdf_path, r.generated_at"
        " from marts.fct_review_pack r where {w}"
    ),
}
SINGLE_VALUE = {k for k in EXPECTED if CHARTS[k]["viz_type"] == "big_number_total"}


def _n(value: object) -> object:
    """One spelling for a value from SQL and from the chart-data API (numbers to 6 places, days as ISO)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal | float | int):
        return round(float(value), 6)
    return value


def _epoch(ms: int, with_time: bool = False) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="seconds") if with_time else moment.date().isoformat()


def _chart_rows(key: str, result: dict) -> object:
    """The chart's figures, in the shape EXPECTED's SQL gives them."""
    data = result["data"]
    chart = CHARTS[key]
    params = chart["params"]
    if key in SINGLE_VALUE:
        assert len(data) == 1, (key, data)
        return _n(data[0][params["metric"]])
    if chart["viz_type"] == "table":
        # Dates and times come as epoch milliseconds.
        types = {c["column_name"]: c["type"] for c in DATASETS[DATASET_OF[chart["dataset_uuid"]]]["columns"]}
        columns = params["all_columns"]
        rows = []
        for row in data:
            values = []
            for c in columns:
                v = row[c]
                if types[c] in ("DATE", "TIMESTAMP WITH TIME ZONE") and v is not None:
                    v = _epoch(int(v), types[c] != "DATE")
                values.append(_n(v))
            rows.append(tuple(values))
        return sorted(rows, key=repr)
    if chart["viz_type"] == "heatmap_v2":
        return sorted(
            ((r["period_label"], r["client_code"], _n(r[params["metric"]])) for r in data), key=repr
        )
    if key == "review_trend":
        metrics = params["metrics"]
        return sorted(((_epoch(r["period_start"]), *(_n(r[m]) for m in metrics)) for r in data), key=repr)
    if key == "portfolio_findings_by_kind":  # pivoted: one column "findings, <kind>" per kind
        out = []
        for r in data:
            for column, value in r.items():
                if column != "period_start" and value is not None:
                    metric, kind = column.split(", ", 1)
                    out.append((_epoch(r["period_start"]), kind, _n(value)))
        return sorted(out, key=repr)
    raise AssertionError(f"no reader for {key}")


def _sql_rows(conn, key: str, where: str, args: dict) -> object:
    with conn.cursor() as cur:
        cur.execute(EXPECTED[key].format(w=where), args)
        rows = cur.fetchall()
    if key in SINGLE_VALUE:
        return _n(rows[0][0])
    if key == "portfolio_findings_by_kind":
        return sorted(((d.isoformat(), k, _n(n)) for d, k, n in rows), key=repr)
    return sorted((tuple(_n(v) for v in row) for row in rows), key=repr)


# ---------------------------------------------------------------- the dashboards' native filters


def _filter_scope(dashboard: dict) -> dict[str, set[str]]:
    """Filter column -> the chart keys it reaches (the scope's exclusions are chart ids of the layout)."""
    chart_of_id = {
        v["meta"]["chartId"]: k
        for k in charts_of(dashboard)
        for v in dashboard["position"].values()
        if isinstance(v, dict) and v.get("type") == "CHART" and v["meta"]["uuid"] == CHARTS[k]["uuid"]
    }
    out = {}
    for f in dashboard["metadata"]["native_filter_configuration"]:
        excluded = {chart_of_id[i] for i in f["scope"]["excluded"]}
        out[f["targets"][0]["column"]["name"]] = set(charts_of(dashboard)) - excluded
    return out


REVIEW_SCOPE = _filter_scope(REVIEW)


# The review chosen by "Latest complete", computed apart from the datasets' window function.
LATEST_SQL = (
    "r.period_start = (select max(z.period_start) from marts.fct_service_review z"
    " where z.client_code = r.client_code and z.period_type = r.period_type and z.is_period_complete)"
)


def _review_filters(key: str, client: str, period_type: str, period: str) -> tuple[list[dict], str, dict]:
    """The Service review's filters as they reach chart ``key``: request filters, SQL predicate, args.

    ``period``: the Period filter's choice, LATEST or a period label.
    """
    chosen = {"client_code": client, "period_type": period_type, "review_period": period}
    sql = {
        "client_code": "r.client_code = %(client_code)s",
        "period_type": "r.period_type = %(period_type)s",
        "review_period": LATEST_SQL if period == LATEST else "r.period_label = %(review_period)s",
    }
    filters, predicates = [], []
    for column, value in chosen.items():
        if key in REVIEW_SCOPE[column]:
            filters.append({"col": column, "op": "IN", "val": [value]})
            predicates.append(sql[column])
    return filters, " and ".join(predicates) or "true", chosen


def _with_filters(api: SupersetClient, admin: SupersetClient, chart_id: int, filters: list[dict]) -> dict:
    """The chart's saved query with the dashboard's filters added, as the dashboard sends it."""
    context = json.loads(admin.get(f"/api/v1/chart/{chart_id}")["result"]["query_context"])
    context["queries"][0]["filters"] = context["queries"][0]["filters"] + filters
    resp = api.raw("POST", "/api/v1/chart/data", json=context)
    assert resp.status_code == 200, (chart_id, resp.status_code, resp.text[:500])
    result = resp.json()["result"][0]
    assert result["status"] == "success", result
    return result


def _saved(api: SupersetClient, chart_id: int) -> dict:
    result = api.get(f"/api/v1/chart/{chart_id}/data/")["result"][0]
    assert result["status"] == "success", result
    return result


# ---------------------------------------------------------------- no stack needed


def test_every_chart_has_an_expectation_and_a_query_context() -> None:
    assert set(REVIEW_CHARTS) | set(PORTFOLIO_CHARTS) == set(EXPECTED)
    assert not set(REVIEW_CHARTS) & set(PORTFOLIO_CHARTS)
    assert_saved_query_contexts(REVIEW_CHARTS + PORTFOLIO_CHARTS)


def test_audiences() -> None:
    check_audiences(ASSETS_DIR)
    used = {DATASET_OF[CHARTS[k]["dataset_uuid"]] for k in REVIEW_CHARTS}
    assert used == {
        "fct_service_review",
        "fct_service_review_objective",
        "fct_sip_action",
        "fct_review_finding_client",
    }
    assert used <= set(CLIENT_DATASETS)
    # The Portfolio's data is refused to clients: none of its datasets is theirs.
    portfolio_used = {DATASET_OF[CHARTS[k]["dataset_uuid"]] for k in PORTFOLIO_CHARTS}
    assert not portfolio_used & set(CLIENT_DATASETS), portfolio_used & set(CLIENT_DATASETS)
    assert REVIEW["slug"] == "service-review" and REVIEW["slug"] not in MANAGER_ONLY_DASHBOARDS
    assert PORTFOLIO["slug"] == "portfolio" and PORTFOLIO["slug"] in MANAGER_ONLY_DASHBOARDS
    # The managers' findings (both audiences) are not a client dataset; the clients' one is virtual.
    assert "fct_review_finding" not in CLIENT_DATASETS
    assert (
        "from marts.fct_review_finding\n    where audience = 'client'\n)"
        in (DATASETS["fct_review_finding_client"]["sql"])
    )
    uuids = [str(d["uuid"]) for d in (*DATASETS.values(), *CHARTS.values(), *DASHBOARDS.values())]
    assert len(uuids) == len(set(uuids))


def test_check_audiences_refuses_manager_findings_for_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The managers' findings chart put on the Service review.
    assets = bundle_with_chart_on(tmp_path / "a", "service_review", "portfolio_findings_by_kind")
    with pytest.raises(ValueError, match="manager-only"):
        check_audiences(assets)
    # The clients' dataset with its predicate loosened.
    assets = bundle_with_chart_on(tmp_path / "b", "service_review", "review_objectives_met")
    path = assets / "datasets" / "warehouse" / "fct_review_finding_client.yaml"
    loosened = path.read_text().replace("where audience = 'client'", "where audience = 'client' or true")
    path.write_text(loosened)
    with pytest.raises(ValueError, match="without `where audience = 'client'`"):
        check_audiences(assets)
    # The physical findings table made a client dataset.
    monkeypatch.setattr(superset_provision, "CLIENT_DATASETS", (*CLIENT_DATASETS, "fct_review_finding"))
    with pytest.raises(ValueError, match="exposes the whole table"):
        check_audiences(ASSETS_DIR)
    # The Portfolio opened to clients.
    others = tuple(s for s in MANAGER_ONLY_DASHBOARDS if s != "portfolio")
    monkeypatch.setattr(superset_provision, "CLIENT_DATASETS", CLIENT_DATASETS)
    monkeypatch.setattr(superset_provision, "MANAGER_ONLY_DASHBOARDS", others)
    with pytest.raises(ValueError, match="'portfolio' is open to clients"):
        check_audiences(ASSETS_DIR)


def test_review_filters_one_client_and_period() -> None:
    filters = {f["name"]: f for f in REVIEW["metadata"]["native_filter_configuration"]}
    assert list(filters) == ["Client", "Period type", "Period"]
    for f in (filters["Period type"], filters["Period"]):  # always one period type and one period
        assert not f["controlValues"]["multiSelect"] and f["controlValues"]["enableEmptyFilter"]
    assert not filters["Client"]["controlValues"]["multiSelect"]  # managers: one client, or all
    # Fixed defaults (a "first item" default is not applied to the charts by Superset 6.1: measured).
    assert filters["Period type"]["defaultDataMask"]["filterState"]["value"] == ["month"]
    assert filters["Period"]["defaultDataMask"]["filterState"]["value"] == [LATEST]
    assert filters["Period"]["cascadeParentIds"] == [filters["Period type"]["id"]]
    assert REVIEW_SCOPE["client_code"] == set(REVIEW_CHARTS)
    assert REVIEW_SCOPE["period_type"] == set(REVIEW_CHARTS) - {"review_sip_register"}
    assert REVIEW_SCOPE["review_period"] == set(REVIEW_CHARTS) - {"review_sip_register", "review_trend"}
    # Every chart the Period filter reaches has the review_period column to filter on.
    for key in REVIEW_SCOPE["review_period"]:
        columns = {c["column_name"] for c in DATASETS[DATASET_OF[CHARTS[key]["dataset_uuid"]]]["columns"]}
        assert {"review_period", "period_label"} <= columns, key


# ---------------------------------------------------------------- against the demo stack


@pytest.fixture(scope="module")
def chart_ids(admin: SupersetClient) -> dict[str, int]:
    return chart_ids_of(admin, EXPECTED)


@pytest.fixture(scope="module")
def dashboard_ids(admin: SupersetClient) -> dict[str, int]:
    return {
        k: int(by_uuid(admin, "dashboard", d["uuid"])["id"])
        for k, d in (("review", REVIEW), ("portfolio", PORTFOLIO))
    }


@pytest.fixture(scope="module")
def periods(warehouse) -> list[tuple[str, str]]:
    """The Period filter's choices checked: the default (latest complete month), and a quarter by its label
    (the one before the latest complete, which is listed as LATEST)."""
    with warehouse.cursor() as cur:
        cur.execute(
            "select distinct period_label from marts.fct_service_review"
            " where period_type = 'quarter' and is_period_complete order by 1 desc limit 2"
        )
        labels = [label for (label,) in cur.fetchall()]
    assert len(labels) == 2, labels
    quarter = labels[1]
    return [("month", LATEST), ("quarter", quarter)]


def test_marts_have_data(demo_stack, warehouse) -> None:
    clients = set(demo_stack.credentials["superset"]["clients"])
    with warehouse.cursor() as cur:
        cur.execute("select count(distinct client_code) from marts.fct_service_review")
        assert cur.fetchone()[0] >= 2
        # Isolation has something to hide: manager findings of clients that have a client user.
        cur.execute(
            "select audience, count(*) from marts.fct_review_finding where client_code = any(%s) group by 1",
            (sorted(clients),),
        )
        counts = dict(cur.fetchall())
        assert counts.get("client", 0) > 0 and counts.get("manager", 0) > 0, counts
        for table in ("fct_service_review_objective", "fct_sip_action"):
            cur.execute(f"select count(*) from marts.{table}")  # noqa: S608 - fixed names
            assert cur.fetchone()[0] > 0, table


def _check_saved(api: SupersetClient, conn, chart_ids: dict[str, int], keys: list[str], client: str | None):
    for key in keys:
        where, args = ("r.client_code = %(client)s", {"client": client}) if client else ("true", {})
        got = _chart_rows(key, _saved(api, chart_ids[key]))
        assert got == _sql_rows(conn, key, where, args), (client, key)


def test_every_chart_matches_sql_for_admin_and_manager(demo_stack, admin, warehouse, chart_ids) -> None:
    manager = login(demo_stack, demo_stack.credentials["superset"]["manager"])
    for api in (admin, manager):
        _check_saved(api, warehouse, chart_ids, REVIEW_CHARTS + PORTFOLIO_CHARTS, None)


def test_clients_get_their_rows_only(demo_stack, warehouse, chart_ids) -> None:
    clients = demo_stack.credentials["superset"]["clients"]
    assert len(clients) >= 2
    for code, creds in sorted(clients.items()):
        api = login(demo_stack, creds)
        _check_saved(api, warehouse, chart_ids, REVIEW_CHARTS, code)
        assert _saved(api, chart_ids["review_headline"])["rowcount"] > 0, code


def test_review_of_one_client_and_period(demo_stack, admin, warehouse, chart_ids, periods) -> None:
    """The Service review as its filters show it, for two clients' latest complete month and quarter."""
    creds = demo_stack.credentials["superset"]
    manager = login(demo_stack, creds["manager"])
    checked = 0
    for code, client_creds in sorted(creds["clients"].items()):
        client = login(demo_stack, client_creds)
        for period_type, label in periods:
            for api in (manager, client):
                for key in REVIEW_CHARTS:
                    filters, where, args = _review_filters(key, code, period_type, label)
                    got = _chart_rows(key, _with_filters(api, admin, chart_ids[key], filters))
                    assert got == _sql_rows(warehouse, key, where, args), (code, label, key)
                    checked += 1
            # One review: the big numbers are its headline figures.
            _, where, args = _review_filters("review_headline", code, period_type, label)
            with warehouse.cursor() as cur:
                cur.execute(
                    "select sla_attainment_pct, availability_pct, csat_pct from marts.fct_service_review r"
                    f" where {where}",  # noqa: S608 - fixed predicates, values as parameters
                    args,
                )
                (headline,) = cur.fetchall()
            assert headline is not None, (code, label)
            for key, figure in zip(
                ("review_sla_attainment", "review_availability", "review_csat"), headline, strict=True
            ):
                filters, _, _ = _review_filters(key, code, period_type, label)
                value = _chart_rows(key, _with_filters(client, admin, chart_ids[key], filters))
                assert (value is None) == (figure is None), (code, label, key)
                if figure is not None:  # the mart rounds its percentages to 2 places (4 for availability)
                    assert abs(value - float(figure)) <= 0.005 + 1e-9, (code, label, key, value, figure)
    print(f"{checked} chart queries of the Service review equal SQL for one client and period")


def test_clients_are_refused_the_portfolio(demo_stack, admin, chart_ids, dashboard_ids) -> None:
    charts = {key: chart_ids[key] for key in PORTFOLIO_CHARTS}
    assert_clients_refused(
        demo_stack, admin, dashboard_ids["portfolio"], charts, open_id=dashboard_ids["review"]
    )


def _ask(
    api: SupersetClient,
    saved: dict,
    filters: list[dict],
    where: str = "",
    columns: list | None = None,
    metrics: list | None = None,
    datasource: int | None = None,
):
    """The saved findings query with its filters replaced by ``filters`` and the rest as given."""
    context = json.loads(json.dumps(saved))
    query = context["queries"][0]
    query.update(filters=filters, metrics=metrics or [], orderby=[])
    query["columns"] = columns or ["finding_id", "client_code", "audience", "finding_kind", "party"]
    query["extras"]["where"] = where
    if datasource:
        context["datasource"] = {"id": datasource, "type": "table"}
        context["form_data"]["datasource"] = f"{datasource}__table"
    return api.raw("POST", "/api/v1/chart/data", json=context)


def _rows(code: str, resp) -> list[dict]:
    assert resp.status_code == 200, (code, resp.status_code, resp.text[:300])
    result = resp.json()["result"][0]
    assert result["status"] == "success", (code, result)
    return result["data"]


def test_client_never_gets_a_manager_finding(demo_stack, admin, warehouse, chart_ids) -> None:
    """The findings chart's request, modified by a client every way the chart-data API allows."""
    saved = json.loads(admin.get(f"/api/v1/chart/{chart_ids[FINDINGS_CHART]}")["result"]["query_context"])
    managers_dataset = int(by_uuid(admin, "dataset", DATASETS["fct_review_finding"]["uuid"])["id"])
    subquery = "(select max(party) from marts.fct_review_finding where audience = 'manager')"
    for code, creds in sorted(demo_stack.credentials["superset"]["clients"].items()):
        api = login(demo_stack, creds)
        with warehouse.cursor() as cur:
            cur.execute(
                "select count(*) from marts.fct_review_finding where client_code = %s"
                " and audience = 'client'",
                (code,),
            )
            (own,) = cur.fetchone()

        # Filters removed, or a clause that would let every row through: the client's own client findings.
        for where in ("", "audience <> 'client' or 1 = 1"):
            got = _rows(code, _ask(api, saved, [], where=where))
            assert len(got) == own, (code, where, len(got), own)
            assert {(r["client_code"], r["audience"]) for r in got} == {(code, "client")}, (code, where)
            assert not {r["finding_kind"] for r in got} & MANAGER_KINDS and not any(r["party"] for r in got)
        # Asking for the managers' rows outright: there are none to find.
        assert _rows(code, _ask(api, saved, [{"col": "audience", "op": "==", "val": "manager"}])) == []
        assert _rows(code, _ask(api, saved, [{"col": "audience", "op": "NOT IN", "val": ["client"]}])) == []
        # Breaking out of the WHERE clause, or a subquery on the table itself: refused.
        assert _ask(api, saved, [], where="1 = 1) or (1 = 1").status_code == 400
        assert _ask(api, saved, [], where=f"party = {subquery}").status_code in (400, 403)
        leak = {"expressionType": "SQL", "sqlExpression": subquery, "label": "leak"}
        assert _ask(
            api, saved, [], columns=["client_code"], metrics=[{**leak, "label": "m"}]
        ).status_code in (400, 403)
        assert _ask(api, saved, [], columns=[leak]).status_code in (400, 403)
        # The managers' findings dataset itself.
        assert _ask(api, saved, [], datasource=managers_dataset).status_code == 403, code


def test_dashboard_roles(demo_stack, admin, dashboard_ids) -> None:
    review = admin.get(f"/api/v1/dashboard/{dashboard_ids['review']}")["result"]
    assert {r["name"] for r in review["roles"]} == {CLIENTS_ROLE, MANAGER_ROLE}
    portfolio = admin.get(f"/api/v1/dashboard/{dashboard_ids['portfolio']}")["result"]
    assert {r["name"] for r in portfolio["roles"]} == {MANAGER_ROLE}
    # RLS reaches the clients' review datasets, never the managers' findings.
    rls_tables = {
        int(t["id"])
        for rule in admin.list_all("/api/v1/rowlevelsecurity/", order_column=None)
        for t in rule["tables"]
    }
    for name in (
        "fct_service_review",
        "fct_service_review_objective",
        "fct_sip_action",
        "fct_review_finding_client",
    ):
        assert int(by_uuid(admin, "dataset", DATASETS[name]["uuid"])["id"]) in rls_tables, name
    assert int(by_uuid(admin, "dataset", DATASETS["fct_review_finding"]["uuid"])["id"]) not in rls_tables
