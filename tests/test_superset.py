"""Superset: config guard, asset bundle, provisioning, RLS isolation through the chart-data API."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from slm_platform.dashboards.provision import (
    ASSETS_DIR,
    DATABASE_FILE,
    build_bundle,
    bundle_uuids,
    by_uuid,
    provision,
)
from slm_platform.dashboards.superset_api import SupersetClient
from slm_platform.dashboards.superset_service import CONFIG_PATH, gunicorn_command
from tests.superset_helpers import CHARTS, login

TABLE_CHART = CHARTS["ticket_volume_table"]
BIG_NUMBER_CHART = CHARTS["major_incidents"]
VOLUME_CHARTS = [
    CHARTS[k]["uuid"] for k in ("ticket_volume_table", "major_incidents", "tickets_opened_per_month")
]


def _asset_uuid(rel: str) -> str:
    return str(yaml.safe_load((ASSETS_DIR / rel).read_text())["uuid"])


VOLUME_DATASET = _asset_uuid("datasets/warehouse/fct_ticket_volume.yaml")
VOLUME_DASHBOARD = _asset_uuid("dashboards/ticket_volume.yaml")


# ---------------------------------------------------------------- no stack needed


def _load_config(monkeypatch: pytest.MonkeyPatch, **env: str) -> object:
    for key in ("SLM_ENV", "SUPERSET_SECRET_KEY", "SUPERSET_METADATA_DSN", "SUPERSET_REDIS_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("slm_superset_config_under_test", CONFIG_PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.pop("slm_superset_config_under_test", None)
    return module


@pytest.mark.parametrize("key", ["", "CHANGE_ME_TO_A_COMPLEX_RANDOM_SECRET", "short-key"])
def test_config_refuses_weak_secret_in_production(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    with pytest.raises(RuntimeError, match="SUPERSET_SECRET_KEY"):
        _load_config(
            monkeypatch, SLM_ENV="production", SUPERSET_SECRET_KEY=key,
            SUPERSET_METADATA_DSN="postgresql://u:p@127.0.0.1:5432/meta",
        )  # fmt: skip


def test_config_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _load_config(
        monkeypatch,
        SLM_ENV="production",
        SUPERSET_SECRET_KEY="x" * 48,
        SUPERSET_METADATA_DSN="postgresql://u:p@127.0.0.1:5432/meta",
        SUPERSET_FEATURE_FLAGS='{"ALERT_REPORTS": true}',
    )
    assert cfg.SQLALCHEMY_DATABASE_URI == "postgresql+psycopg2://u:p@127.0.0.1:5432/meta"
    assert cfg.FEATURE_FLAGS["DASHBOARD_RBAC"] is True
    assert cfg.FEATURE_FLAGS["EMBEDDED_SUPERSET"] is False
    assert cfg.FEATURE_FLAGS["ALERT_REPORTS"] is True
    assert cfg.WTF_CSRF_ENABLED is True
    assert cfg.CELERY_CONFIG is None  # no Redis configured: no Celery


def test_config_strips_stored_series_names(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _load_config(
        monkeypatch, SUPERSET_SECRET_KEY="x" * 48, SUPERSET_METADATA_DSN="postgresql://u:p@127.0.0.1:5432/m"
    )
    strip = cfg.strip_label_colors
    leaky = {"color_scheme": "x", "label_colors": {"a": "#000"}, "shared_label_colors": ["ACME-ERP"],
             "map_label_colors": {"GLOBEX-CRM": "#111"}}  # fmt: skip
    assert json.loads(strip(json.dumps(leaky))) == {
        "color_scheme": "x", "label_colors": {"a": "#000"}, "shared_label_colors": [], "map_label_colors": {}
    }  # fmt: skip
    clean = json.dumps({"shared_label_colors": [], "native_filter_configuration": []}, indent=1)
    assert strip(clean) is clean  # same text: nothing rewritten when nothing is stored
    assert json.loads(strip('{"map_label_colors": {"A": "#1"}}')) == {"map_label_colors": {}}  # no key added
    for untouched in (None, "", "not json", "[1]"):
        assert strip(untouched) == untouched
    assert cfg.FLASK_APP_MUTATOR is not None  # what registers strip_label_colors on every dashboard write


def test_bundle_zip_has_one_top_folder_and_rewritten_uri() -> None:
    uri = "postgresql+psycopg2://reader:XXXXXXXXXX@db.example:6543/wh"
    with zipfile.ZipFile(io.BytesIO(build_bundle(ASSETS_DIR, uri))) as zf:
        names = zf.namelist()
        assert {n.split("/")[0] for n in names} == {"slm_assets"}
        assert "slm_assets/metadata.yaml" in names
        database = yaml.safe_load(zf.read(f"slm_assets/{DATABASE_FILE}"))
    assert database["sqlalchemy_uri"] == uri
    # Every chart carries a query_context (without one the chart-data API answers 400).
    assert len(CHARTS) >= 3
    for chart in CHARTS.values():
        assert '"queries"' in chart["query_context"] and chart["version"] == "1.0.0"


def test_gunicorn_binds_loopback_only() -> None:
    cmd = gunicorn_command(18123)
    assert cmd[cmd.index("-b") + 1] == "127.0.0.1:18123"
    assert "superset.app:create_app()" in cmd


# ---------------------------------------------------------------- against the demo stack


def _chart_data(api: SupersetClient, chart_uuid: str) -> dict:
    chart_id = by_uuid(api, "chart", chart_uuid)["id"]
    return api.get(f"/api/v1/chart/{chart_id}/data/")["result"][0]


def _sql(conn, query: str, params: tuple = ()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def test_bundle_imported(admin: SupersetClient) -> None:
    uuids = bundle_uuids()
    for kind in ("datasets", "charts", "dashboards"):
        assert all(by_uuid(admin, kind[:-1], u) for u in uuids[kind])  # raises if one is missing
    dataset = by_uuid(admin, "dataset", VOLUME_DATASET)
    assert (dataset["schema"], dataset["table_name"]) == ("marts", "fct_ticket_volume")
    chart_ids = {by_uuid(admin, "chart", u)["id"] for u in VOLUME_CHARTS}
    assert len(chart_ids) == 3
    dash = by_uuid(admin, "dashboard", VOLUME_DASHBOARD)
    detail = admin.get(f"/api/v1/dashboard/{dash['id']}")["result"]
    assert detail["dashboard_title"] == "Ticket volume"
    in_dashboard = {c["id"] for c in admin.get(f"/api/v1/dashboard/{dash['id']}/charts")["result"]}
    assert in_dashboard == chart_ids
    filters = yaml.safe_load(detail["json_metadata"])["native_filter_configuration"]
    assert [f["targets"][0]["column"]["name"] for f in filters] == ["client_code"]
    assert filters[0]["targets"][0]["datasetId"] == dataset["id"]


def test_every_chart_answers_for_admin(admin: SupersetClient) -> None:
    # The SLA and OLA/UC charts are checked against SQL in test_superset_sla.py.
    for chart_uuid in VOLUME_CHARTS:
        result = _chart_data(admin, chart_uuid)
        assert result["status"] == "success" and result["rowcount"] > 0, chart_uuid


def test_client_sees_only_its_rows(demo_stack, warehouse) -> None:
    clients = demo_stack.credentials["superset"]["clients"]
    assert len(clients) >= 2, "the demo needs at least two clients to prove isolation"
    for code, creds in clients.items():
        api = login(demo_stack, creds)
        table = _chart_data(api, TABLE_CHART["uuid"])
        assert {row["client_code"] for row in table["data"]} == {code}
        ((expected_rows, expected_opened),) = _sql(
            warehouse,
            "select count(distinct (service_code, date_trunc('month', period_month))), sum(tickets_opened) "
            "from marts.fct_ticket_volume where client_code = %s",
            (code,),
        )
        assert table["rowcount"] == expected_rows > 0
        assert sum(row["tickets_opened"] for row in table["data"]) == expected_opened
        big = _chart_data(api, BIG_NUMBER_CHART["uuid"])
        (expected_major,), = _sql(
            warehouse, "select coalesce(sum(major_incidents), 0) from marts.fct_ticket_volume "
            "where client_code = %s", (code,),
        )  # fmt: skip
        assert big["data"][0]["major_incidents"] == expected_major


def test_manager_sees_every_client(demo_stack, warehouse) -> None:
    api = login(demo_stack, demo_stack.credentials["superset"]["manager"])
    table = _chart_data(api, TABLE_CHART["uuid"])
    all_codes = {r[0] for r in _sql(warehouse, "select distinct client_code from marts.fct_ticket_volume")}
    assert {row["client_code"] for row in table["data"]} == all_codes
    assert set(demo_stack.credentials["superset"]["clients"]) <= all_codes
    ((expected_rows,),) = _sql(
        warehouse,
        "select count(distinct (client_code, service_code, date_trunc('month', period_month))) "
        "from marts.fct_ticket_volume",
    )
    assert table["rowcount"] == expected_rows


def test_client_is_denied_sql_lab_and_admin_apis(demo_stack, admin: SupersetClient) -> None:
    code, creds = sorted(demo_stack.credentials["superset"]["clients"].items())[0]
    api = login(demo_stack, creds)
    database_id = by_uuid(admin, "dataset", VOLUME_DATASET)["database"]["id"]
    resp = api.raw(
        "POST", "/api/v1/sqllab/execute/",
        json={"database_id": database_id, "sql": "select client_code from marts.fct_ticket_volume",
              "runAsync": False, "schema": "marts"},
    )  # fmt: skip
    assert resp.status_code in (401, 403), resp.text
    # Not Gamma: cannot read the RLS rules (other clients' codes) nor create charts.
    assert api.raw("GET", "/api/v1/rowlevelsecurity/").status_code in (401, 403)
    assert api.raw("POST", "/api/v1/chart/", json={"slice_name": "x"}).status_code in (401, 403)
    # The dashboard itself is visible to the client.
    assert api.raw("GET", f"/api/v1/dashboard/{by_uuid(admin, 'dashboard', VOLUME_DASHBOARD)['id']}").ok


def _inventory(admin: SupersetClient) -> dict[str, object]:
    return {
        "roles": sorted(r["name"] for r in admin.list_all("/api/v1/security/roles/")),
        "users": sorted(u["username"] for u in admin.list_all("/api/v1/security/users/")),
        "rls": sorted(
            (r["name"], r["clause"], tuple(sorted(x["name"] for x in r["roles"])))
            for r in admin.list_all("/api/v1/rowlevelsecurity/", order_column=None)
        ),
        "dashboard_roles": sorted(
            (u, r["name"])
            for u in bundle_uuids()["dashboards"]
            for r in admin.get(f"/api/v1/dashboard/{by_uuid(admin, 'dashboard', u)['id']}")["result"]["roles"]
        ),
        "charts": admin.get("/api/v1/chart/")["count"],
        "dashboards": admin.get("/api/v1/dashboard/")["count"],
        "datasets": admin.get("/api/v1/dataset/")["count"],
    }


def test_reprovision_is_idempotent(demo_stack, admin: SupersetClient) -> None:
    before = _inventory(admin)
    creds = demo_stack.credentials["superset"]
    assert len(before["rls"]) == len(creds["clients"]) + 1  # + the Base rule (superset_provision)
    volume_roles = {name for u, name in before["dashboard_roles"] if u == VOLUME_DASHBOARD}
    assert volume_roles == {"clients", "manager"}
    database_id = by_uuid(admin, "dataset", VOLUME_DATASET)["database"]["id"]
    uri = urlparse(admin.get(f"/api/v1/database/{database_id}/connection")["result"]["sqlalchemy_uri"])
    again = provision(
        demo_stack.superset_url,
        creds["admin"]["username"],
        creds["admin"]["password"],
        uri.hostname or "",
        uri.port or 5432,
        uri.path.lstrip("/"),
        uri.username or "",
        None,  # keep the reader password Superset already stores
        sorted(creds["clients"]),
        creds,
        log=lambda _msg: None,
    )
    assert _inventory(admin) == before
    assert again["clients"] == creds["clients"] and again["manager"] == creds["manager"]
    # The stored passwords still log in after the rerun.
    code, client = sorted(creds["clients"].items())[0]
    rows = _chart_data(login(demo_stack, client), TABLE_CHART["uuid"])["data"]
    assert {r["client_code"] for r in rows} == {code}


def test_assets_dir_is_complete() -> None:
    uuids = bundle_uuids()
    assert all(len(uuids[k]) >= 1 for k in ("databases", "datasets", "dashboards"))
    assert len(set(sum(uuids.values(), []))) == sum(len(v) for v in uuids.values())  # UUIDs unique
    assert (Path(ASSETS_DIR) / "metadata.yaml").exists()
