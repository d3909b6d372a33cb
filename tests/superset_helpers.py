"""What the Superset test modules share: the asset bundle as data, logins and chart-data calls.

The `admin` and `warehouse` fixtures that go with these live in conftest.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from slm_platform.dashboards.provision import ASSETS_DIR
from slm_platform.dashboards.superset_api import SupersetClient

CHARTS = {p.stem: yaml.safe_load(p.read_text()) for p in (ASSETS_DIR / "charts").glob("*.yaml")}
DATASETS = {p.stem: yaml.safe_load(p.read_text()) for p in (ASSETS_DIR / "datasets").rglob("*.yaml")}
DASHBOARDS = {p.stem: yaml.safe_load(p.read_text()) for p in (ASSETS_DIR / "dashboards").glob("*.yaml")}
DATASET_OF = {str(d["uuid"]): name for name, d in DATASETS.items()}


def superset_module(name: str):  # type: ignore[no-untyped-def]
    """A module of superset/ (loaded by path there, by superset_config), for its unit tests."""
    import importlib.util

    from slm_platform.settings import REPO_ROOT

    spec = importlib.util.spec_from_file_location(f"{name}_test", REPO_ROOT / "superset" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def charts_of(dashboard: dict) -> list[str]:
    """Chart file stems of a dashboard, in layout order."""
    by_uuid_ = {str(c["uuid"]): key for key, c in CHARTS.items()}
    return [
        by_uuid_[v["meta"]["uuid"]]
        for v in dashboard["position"].values()
        if isinstance(v, dict) and v.get("type") == "CHART"
    ]


def assert_saved_query_contexts(keys) -> None:
    """Each chart has a query_context of its own viz type, asking only for its dataset's saved metrics."""
    for key in keys:
        chart = CHARTS[key]
        context = json.loads(chart["query_context"])
        assert context["queries"] and context["form_data"]["viz_type"] == chart["viz_type"], key
        metric_names = {m["metric_name"] for m in DATASETS[DATASET_OF[chart["dataset_uuid"]]]["metrics"]}
        assert set(context["queries"][0]["metrics"]) <= metric_names, key


def assert_clients_refused(
    demo_stack, admin, dashboard_id: int, charts: dict[str, int], open_id: int
) -> None:
    """Every client may open dashboard ``open_id`` but is refused ``dashboard_id`` and the data of each of
    ``charts`` (key -> chart id), also when the request claims the context of the dashboard it may open
    (DASHBOARD_RBAC grants the data of that dashboard's charts)."""
    clients = demo_stack.credentials["superset"]["clients"]
    assert len(clients) >= 2
    for code, creds in sorted(clients.items()):
        api = login(demo_stack, creds)
        assert api.raw("GET", f"/api/v1/dashboard/{open_id}").ok, code
        assert api.raw("GET", f"/api/v1/dashboard/{dashboard_id}").status_code in (403, 404), code
        for key, chart_id in charts.items():
            resp = api.raw("GET", f"/api/v1/chart/{chart_id}/data/")
            assert resp.status_code in (403, 404), (code, key, resp.status_code)
            context = json.loads(admin.get(f"/api/v1/chart/{chart_id}")["result"]["query_context"])
            context["form_data"].update(dashboardId=open_id, slice_id=chart_id)
            resp = api.raw("POST", "/api/v1/chart/data", json=context)
            assert resp.status_code in (403, 404), (code, key, resp.status_code, resp.text[:300])


def bundle_with_chart_on(tmp_path: Path, dashboard: str, chart: str) -> Path:
    """A copy of the asset bundle where chart ``chart`` replaces the first chart of dashboard ``dashboard``
    (file stems): what check_audiences must refuse when a managers-only chart lands on a client dashboard."""
    assets = tmp_path / "assets"
    shutil.copytree(ASSETS_DIR, assets)
    path = assets / "dashboards" / f"{dashboard}.yaml"
    doc = yaml.safe_load(path.read_text())
    node = next(v for v in doc["position"].values() if isinstance(v, dict) and v.get("type") == "CHART")
    node["meta"]["uuid"] = CHARTS[chart]["uuid"]
    path.write_text(yaml.safe_dump(doc))
    return assets


def login(demo_stack, creds: dict) -> SupersetClient:
    return SupersetClient(demo_stack.superset_url, creds["username"], creds["password"])


def chart_data(api: SupersetClient, chart_id: int) -> dict:
    """The first result of a chart's saved query, which must have succeeded."""
    result = api.get(f"/api/v1/chart/{chart_id}/data/")["result"][0]
    assert result["status"] == "success", result
    return result


def rowcount(result: dict) -> int:
    return result["rowcount"]


def chart_ids_of(admin: SupersetClient, keys) -> dict[str, int]:
    """Superset's ids of the charts ``keys`` (file stems), looked up by their fixed UUIDs."""
    from slm_platform.dashboards.provision import by_uuid

    return {key: int(by_uuid(admin, "chart", CHARTS[key]["uuid"])["id"]) for key in keys}


def sql_figure(conn, sql: str, client: str | None, rounded: bool = False) -> object:
    """One figure from the marts: ``{where}`` in ``sql`` becomes ``where client_code = <client>`` (a client's
    view) or ``where true``; ``rounded`` rounds a number to 6 digits as the chart-data API does."""
    where = "where client_code = %s" if client else "where true"
    with conn.cursor() as cur:
        cur.execute(sql.format(where=where), (client,) if client else ())
        (value,) = cur.fetchone()
    return round(float(value), 6) if rounded and value is not None else value
