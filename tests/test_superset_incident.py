"""The "Major incident review" dashboard (clients and managers).

The demo's major incidents each affect one client, so the module first gives the demo warehouse one that
affected two, the way the sources would: a child ticket of GLOBEX under one of ACME's outage incidents and an
outage of GLOBEX's portal inside its window, loaded by the real loader; then the marts are rebuilt as an
incident review does (dbt build of what the incident touches at the run's cut-off, table-by-table publish).

Checked: every chart's figures, read through Superset's chart-data API (forced past the cache) as admin,
as the manager and as each client user, equal SQL on the published marts; a client gets exactly the
incidents that affected it, with its own figures only (for the shared incident GLOBEX sees GLOBEX's
downtime, not ACME's); modified requests (filters removed or reversed, a WHERE breaking out, a subquery, a
column of fct_major_incident the dataset does not expose, another dataset) give nothing more; and no dataset
of the dashboard carries the OLA/UC segments.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest

from slm_platform.dashboards.provision import (
    ASSETS_DIR,
    BASE_RLS_RULE,
    CLIENT_DATASETS,
    CLIENTS_ROLE,
    MANAGER_ONLY_DASHBOARDS,
    MANAGER_ROLE,
    by_uuid,
    check_audiences,
)
from slm_platform.dashboards.superset_api import SupersetClient
from slm_platform.load.loader import load_file
from slm_platform.orchestration import incident_review
from slm_platform.settings import REPO_ROOT
from tests.superset_helpers import (
    CHARTS,
    DASHBOARDS,
    DATASET_OF,
    DATASETS,
    assert_saved_query_contexts,
    chart_ids_of,
    charts_of,
    login,
)

DASHBOARD = DASHBOARDS["major_incident_review"]
DASHBOARD_CHARTS = charts_of(DASHBOARD)
SCREENSHOT = REPO_ROOT / "docs" / "dashboard_incident_review.png"
INCIDENT_DATASETS = {"fct_major_incident_client", "fct_major_incident_impact"}
OTHER, OTHER_SERVICE, SHARED_CHILD = "GLOBEX", "GLOBEX-PORTAL", "INCSSTEST01"
TICKET_HEADER = (
    "ticket_id,client_code,service_code,ticket_type,priority,opened_at,first_response_at,resolved_at,"
    "closed_at,status,assignment_group,is_major,parent_ticket_id,category,updated_at"
)
# What the client dataset computes, written here from the two marts: one row per incident x affected client.
PER_CLIENT = """
select i.ticket_id, c.client_code, i.opened_at,
    coalesce((select sum(p.incident_minutes) from marts.fct_major_incident_impact p
        where p.ticket_id = i.ticket_id and p.client_code = c.client_code and p.metric = 'availability'
        and p.period_type = 'month'), 0)
        as downtime_minutes,
    (select max(p.budget_consumed_pct) from marts.fct_major_incident_impact p where p.ticket_id = i.ticket_id
        and p.client_code = c.client_code and p.metric = 'availability' and p.period_type = 'month')
        as max_budget_consumed_pct,
    (select count(*) from marts.fct_major_incident_impact p where p.ticket_id = i.ticket_id
        and p.client_code = c.client_code and p.turned_breached) as objectives_turned_breached
from marts.fct_major_incident i, unnest(i.affected_clients) as c (client_code)
"""


def _n(value, digits: int = 4):
    return None if value is None else round(float(value), digits)


def _month(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m")


def _series(result: dict, axis: str) -> dict:
    """A pivoted time-series bar chart's data as {(month, series): value}, nulls left out."""
    out = {}
    for row in result["data"]:
        for name, value in row.items():
            if name != axis and value is not None:
                out[(_month(row[axis]), name.split(", ")[-1])] = _n(value)
    return out


def _query(conn, sql: str, args: tuple = ()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def expected(conn, key: str, client: str | None):
    """A chart's figures from SQL on the published marts (``client`` None: every client)."""
    where = "where client_code = %s" if client else "where true"
    args = (client,) if client else ()
    per_client = f"select * from ({PER_CLIENT}) v {where}"
    impact = f"select * from marts.fct_major_incident_impact {where}"
    if key == "incident_count":
        return _query(conn, f"select count(distinct ticket_id) from ({per_client}) v", args)[0][0]
    if key == "incident_downtime":
        return _n(_query(conn, f"select sum(downtime_minutes) from ({per_client}) v", args)[0][0])
    if key == "incident_turned_breached":
        return _query(conn, f"select count(*) from ({impact}) v where turned_breached", args)[0][0]
    if key == "incident_timeline":
        rows = _query(
            conn,
            f"select to_char(date_trunc('month', opened_at at time zone 'UTC'), 'YYYY-MM'), client_code,"
            f" sum(downtime_minutes) from ({per_client}) v group by 1, 2",
            args,
        )
        return {(m, c): _n(v) for m, c, v in rows}
    if key == "incident_budget_consumed":
        rows = _query(
            conn,
            "select to_char(period_start, 'YYYY-MM'), service_code, sum(budget_consumed_pct)"
            f" from ({impact}) v where metric = 'availability' and period_type = 'month' group by 1, 2",
            args,
        )
        return {(m, s): _n(v) for m, s, v in rows if v is not None}
    if key == "incident_list":
        rows = _query(
            conn,
            "select ticket_id, client_code, downtime_minutes, max_budget_consumed_pct,"
            f" objectives_turned_breached from ({per_client}) v",
            args,
        )
        return sorted((t, c, _n(d), _n(p), n) for t, c, d, p, n in rows)
    if key == "incident_impact":
        rows = _query(
            conn,
            "select ticket_id, client_code, service_code, objective_id, period_type, period_start,"
            " incident_minutes, attainment_with_pct, attainment_without_pct, turned_breached"
            f" from ({impact}) v",
            args,
        )
        return sorted(
            (t, c, s or "", o, pt, ps.isoformat(), _n(m), _n(w), _n(wo), tb)
            for t, c, s, o, pt, ps, m, w, wo, tb in rows
        )
    raise KeyError(key)


def read_chart(key: str, result: dict):
    """The same figures as ``expected`` returns, read from a chart-data result."""
    data = result["data"]
    if key in ("incident_count", "incident_turned_breached"):
        return data[0][next(iter(data[0]))]
    if key == "incident_downtime":
        return _n(data[0][next(iter(data[0]))])
    if key == "incident_timeline":
        return _series(result, "opened_at")
    if key == "incident_budget_consumed":
        return _series(result, "period_start")
    if key == "incident_list":
        return sorted(
            (
                r["ticket_id"],
                r["client_code"],
                _n(r["downtime_minutes"]),
                _n(r["max_budget_consumed_pct"]),
                r["objectives_turned_breached"],
            )
            for r in data
        )
    if key == "incident_impact":
        return sorted(
            (
                r["ticket_id"],
                r["client_code"],
                r["service_code"] or "",
                r["objective_id"],
                r["period_type"],
                datetime.fromtimestamp(r["period_start"] / 1000, UTC).date().isoformat(),
                _n(r["incident_minutes"]),
                _n(r["attainment_with_pct"]),
                _n(r["attainment_without_pct"]),
                r["turned_breached"],
            )
            for r in data
        )
    raise KeyError(key)


def chart_data(api: SupersetClient, chart_id: int) -> dict:
    """The chart's saved query, forced past the data cache (the marts were rebuilt by this module)."""
    result = api.get(f"/api/v1/chart/{chart_id}/data/", params={"force": "true"})["result"][0]
    assert result["status"] == "success", result
    return result


# ---------------------------------------------------------------- no stack needed


def test_every_chart_has_a_query_context() -> None:
    assert set(DASHBOARD_CHARTS) == {
        "incident_count",
        "incident_downtime",
        "incident_turned_breached",
        "incident_timeline",
        "incident_budget_consumed",
        "incident_list",
        "incident_impact",
    }
    assert_saved_query_contexts(DASHBOARD_CHARTS)


def test_audiences_and_what_the_client_dataset_exposes() -> None:
    check_audiences(ASSETS_DIR)
    assert DASHBOARD["slug"] == "major-incident-review" and DASHBOARD["slug"] not in MANAGER_ONLY_DASHBOARDS
    used = {DATASET_OF[CHARTS[k]["dataset_uuid"]] for k in DASHBOARD_CHARTS}
    assert used == INCIDENT_DATASETS <= set(CLIENT_DATASETS)
    filters = DASHBOARD["metadata"]["native_filter_configuration"]
    assert {t["datasetUuid"] for f in filters for t in f["targets"] if t} <= {
        DATASETS[d]["uuid"] for d in INCIDENT_DATASETS
    }
    # fct_major_incident itself is no client dataset: its figures add up every affected client and it holds
    # the OLA/UC segments. The client dataset selects none of those columns.
    assert "fct_major_incident" not in CLIENT_DATASETS and "fct_major_incident" not in DATASETS
    columns = {c["column_name"] for c in DATASETS["fct_major_incident_client"]["columns"]}
    assert not columns & {
        "ola_uc_segments",
        "affected_clients",
        "child_tickets",
        "error_budget_consumed_minutes",
    }
    sql = DATASETS["fct_major_incident_client"]["sql"]
    assert (
        "ola_uc_segments" not in sql
        and "i.downtime_minutes" not in sql
        and "unnest(i.affected_clients)" in sql
    )
    uuids = [str(d["uuid"]) for d in (*DATASETS.values(), *CHARTS.values(), *DASHBOARDS.values())]
    assert len(uuids) == len(set(uuids))


# ---------------------------------------------------------------- against the demo stack


@pytest.fixture(scope="module")
def shared(demo_stack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Make one of ACME's outage incidents affect GLOBEX too, rebuild and publish; its ticket id."""
    tmp = tmp_path_factory.mktemp("incident_superset")
    dsn = demo_stack.warehouse_dsn
    conn = psycopg2.connect(dsn)
    try:
        ((incident, opened, resolved),) = _query(
            conn,
            "select t.ticket_id, t.opened_at, t.resolved_at from raw.tickets t where t.client_code = 'ACME'"
            " and t.is_major and t.resolved_at is not null"
            " and exists (select 1 from raw.tickets c where c.parent_ticket_id = t.ticket_id)"
            " order by t.resolved_at - t.opened_at desc, t.ticket_id limit 1",
        )
        ((as_of,),) = _query(conn, "select max(as_of) from marts.fct_availability")
    finally:
        conn.close()
    iso = datetime.isoformat
    child = tmp / "tickets.csv"
    child.write_text(
        f"{TICKET_HEADER}\n{SHARED_CHILD},{OTHER},{OTHER_SERVICE},incident,P2,"
        f"{iso(opened + timedelta(minutes=6))},{iso(opened + timedelta(minutes=9))},{iso(resolved)},"
        f"{iso(resolved + timedelta(hours=1))},closed,ServiceDesk,false,{incident},network,"
        f"{iso(resolved + timedelta(hours=1))}\n"
    )
    outage = tmp / "outages.csv"
    outage.write_text(
        "service_code,started_at,ended_at,source_ref\n"
        f"{OTHER_SERVICE},{iso(opened + timedelta(minutes=5))},{iso(opened + timedelta(minutes=35))},"
        "incident-test\n"
    )
    load_file(dsn, child, "tickets", source="incident_superset_test")
    load_file(dsn, outage, "outages", source="incident_superset_test")
    # As an incident review does: dbt build of what the incident touches at the same cut-off, then the
    # table-by-table publish (slm_platform.orchestration.incident_review).
    incident_review.build(dsn, as_of, str(tmp), log=lambda _: None)
    assert "fct_major_incident_impact" in incident_review.publish(dsn)
    return incident


@pytest.fixture(scope="module")
def chart_ids(admin: SupersetClient, shared) -> dict[str, int]:
    return chart_ids_of(admin, DASHBOARD_CHARTS)


def test_marts_have_a_shared_incident(warehouse, shared) -> None:
    ((clients, n_incidents, n_clients),) = _query(
        warehouse,
        "select (select affected_clients from marts.fct_major_incident where ticket_id = %s),"
        " count(*), count(distinct c) from marts.fct_major_incident, unnest(affected_clients) c",
        (shared,),
    )
    assert clients == ["ACME", OTHER] and n_incidents > 10 and n_clients == 3
    own = expected(warehouse, "incident_list", OTHER)
    assert [r for r in own if r[0] == shared][0][2] > 0  # GLOBEX's own downtime in ACME's incident


def test_every_chart_matches_sql_for_admin_and_manager(demo_stack, admin, warehouse, chart_ids) -> None:
    manager = login(demo_stack, demo_stack.credentials["superset"]["manager"])
    for api in (admin, manager):
        for key in DASHBOARD_CHARTS:
            assert read_chart(key, chart_data(api, chart_ids[key])) == expected(warehouse, key, None), key


def test_clients_see_the_incidents_that_affected_them_with_their_own_figures(
    demo_stack, warehouse, chart_ids, shared
) -> None:
    clients = demo_stack.credentials["superset"]["clients"]
    assert len(clients) >= 3
    seen: dict[str, set[str]] = defaultdict(set)
    for code, creds in sorted(clients.items()):
        api = login(demo_stack, creds)
        for key in DASHBOARD_CHARTS:
            result = chart_data(api, chart_ids[key])
            assert read_chart(key, result) == expected(warehouse, key, code), (code, key)
            assert {r["client_code"] for r in result["data"] if "client_code" in r} <= {code}, (code, key)
        seen[code] = {r["ticket_id"] for r in chart_data(api, chart_ids["incident_list"])["data"]}
        affected = {
            t
            for (t,) in _query(
                warehouse,
                "select ticket_id from marts.fct_major_incident where %s = any(affected_clients)",
                (code,),
            )
        }
        assert seen[code] == affected and affected, code
    assert shared in seen["ACME"] and shared in seen[OTHER] and shared not in seen["INITECH"]
    # The shared incident's row for GLOBEX carries GLOBEX's downtime, not the incident's total.
    api = login(demo_stack, clients[OTHER])
    (row,) = [r for r in chart_data(api, chart_ids["incident_list"])["data"] if r["ticket_id"] == shared]
    ((total, own),) = _query(
        warehouse,
        "select i.downtime_minutes, (select sum(incident_minutes) from marts.fct_major_incident_impact p"
        " where p.ticket_id = i.ticket_id and p.client_code = %s and metric = 'availability'"
        " and period_type = 'month') from marts.fct_major_incident i where ticket_id = %s",
        (OTHER, shared),
    )
    assert _n(row["downtime_minutes"]) == _n(own) and own < total
    assert row["affected_services"] == OTHER_SERVICE and row["resolution_business_minutes"] is None


def _post(api: SupersetClient, context: dict):
    return api.raw("POST", "/api/v1/chart/data", json=context)


def _rows_or_refused(resp) -> list[dict] | None:
    """The rows of an answered request; None when Superset refused it."""
    if resp.status_code != 200:
        assert resp.status_code in (400, 403, 422), (resp.status_code, resp.text[:300])
        return None
    result = resp.json()["result"][0]
    if result.get("status") != "success":
        return None
    return result["data"]


def test_modified_queries_give_a_client_nothing_more(demo_stack, admin, warehouse, chart_ids, shared) -> None:
    creds = demo_stack.credentials["superset"]["clients"][OTHER]
    api = login(demo_stack, creds)
    managers_dataset = int(by_uuid(admin, "dataset", DATASETS["fct_ola_uc_attainment"]["uuid"])["id"])
    own_incidents = {r[0] for r in expected(warehouse, "incident_list", OTHER)}
    for key, columns in (
        ("incident_list", ["ticket_id", "client_code", "downtime_minutes"]),
        ("incident_impact", ["ticket_id", "client_code", "service_code", "incident_minutes"]),
    ):
        saved = json.loads(admin.get(f"/api/v1/chart/{chart_ids[key]}")["result"]["query_context"])

        def ask(filters, where="", cols=None, metrics=None, datasource=None, saved=saved, columns=columns):
            context = json.loads(json.dumps(saved))
            query = context["queries"][0]
            query.update(filters=filters, columns=cols or columns, metrics=metrics or [], orderby=[])
            query["extras"]["where"] = where
            if datasource:
                context["datasource"] = {"id": datasource, "type": "table"}
                context["form_data"]["datasource"] = f"{datasource}__table"
            return _post(api, context)

        def only_own(rows) -> bool:
            return rows is None or all(
                r.get("client_code") in (None, OTHER) and r.get("ticket_id", shared) in own_incidents
                for r in rows
            )

        rows = _rows_or_refused(ask([]))
        assert rows and only_own(rows) and {r["client_code"] for r in rows} == {OTHER}, key
        assert _rows_or_refused(ask([{"col": "client_code", "op": "==", "val": "ACME"}])) == [], key
        assert _rows_or_refused(ask([{"col": "client_code", "op": "!=", "val": OTHER}])) == [], key
        for where in (
            "client_code <> 'GLOBEX' or 1 = 1",
            "1 = 1) or (1 = 1",
            "true) or (client_code = 'ACME'",
        ):
            assert only_own(_rows_or_refused(ask([], where=where))), (key, where)
        for where in (
            "exists (select 1 from marts.fct_major_incident)",
            "ticket_id in (select ticket_id from marts.fct_major_incident_impact where client_code = 'ACME')",
        ):
            assert only_own(_rows_or_refused(ask([], where=where))), (key, where)
        leak = {
            "expressionType": "SQL",
            "sqlExpression": "(select sum(downtime_minutes) from marts.fct_major_incident)",
            "label": "leak",
        }
        assert _rows_or_refused(ask([], cols=["client_code"], metrics=[leak])) is None, key
        # A column of fct_major_incident the dataset does not expose: refused.
        for hidden in ("ola_uc_segments", "affected_clients"):
            column = {"expressionType": "SQL", "sqlExpression": hidden, "label": hidden}
            assert _rows_or_refused(ask([], cols=["ticket_id", column])) is None, (key, hidden)
        # Another, managers-only dataset: refused.
        resp = ask([], datasource=managers_dataset)
        assert resp.status_code in (403, 404), (key, resp.status_code)


def test_dashboard_roles_and_rls(demo_stack, admin) -> None:
    dashboard_id = int(by_uuid(admin, "dashboard", DASHBOARD["uuid"])["id"])
    detail = admin.get(f"/api/v1/dashboard/{dashboard_id}")["result"]
    clients = demo_stack.credentials["superset"]["clients"]
    assert {r["name"] for r in detail["roles"]} == {CLIENTS_ROLE, MANAGER_ROLE}
    rules = admin.list_all("/api/v1/rowlevelsecurity/", order_column=None)
    for name in sorted(INCIDENT_DATASETS):
        dataset_id = int(by_uuid(admin, "dataset", DATASETS[name]["uuid"])["id"])
        covered = {r["name"] for r in rules if dataset_id in {int(t["id"]) for t in r["tables"]}}
        assert covered == {f"rls_client_{c}" for c in clients} | {BASE_RLS_RULE}, name


def test_client_dashboard_renders_in_chromium_with_own_rows_only(demo_stack, shared, tmp_path) -> None:
    """GLOBEX logs in through the form: every chart answers, only GLOBEX's rows, the shared incident listed;
    the picture is docs/dashboard_incident_review.png."""
    from tests.test_superset_browser import _render_as

    creds = demo_stack.credentials["superset"]["clients"][OTHER]

    def check(page, results: list[dict]) -> None:
        assert page.get_by_text("Major incident review").count() > 0
        assert len(results) >= len(DASHBOARD_CHARTS) and all(r.get("status") == "success" for r in results)
        rows = [row for r in results for row in r["data"]]
        assert {row["client_code"] for row in rows if "client_code" in row} == {OTHER}
        assert shared in {row.get("ticket_id") for row in rows}
        cells = page.locator(".dashboard-chart table tbody td").all_inner_texts()
        assert not [c for c in cells if "ACME" in c or "INITECH" in c]

    shot, render_s = _render_as(
        demo_stack,
        creds,
        f"/superset/dashboard/{DASHBOARD['slug']}/",
        tmp_path,
        check,
        height=1900,
        full_page=False,
    )
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)
    print(f"Major incident review rendered for {OTHER} in {render_s:.1f}s")
