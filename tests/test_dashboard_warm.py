"""The dashboards' cache warm-up after publish (superset/slm_warmup.py, slm_platform/dashboards/warm.py).

Against the demo stack: after a warm-up, every chart of every dashboard a client may open answers from the
cache for that client (``is_cached``: the entry the warm-up wrote under the client's own row-level security
is the one its request looks up) and holds only the client's rows (the same answer as a query forced for
that client, and no row of another client). The endpoint is an Admin's: anonymous 401, clients and managers
403, and an Admin's browser session without the API's bearer token 401 (its POST routes are exempt from
CSRF because they take no cookie). The warm-up empties and refills the chart-data cache, which no other
module's test relies on (none looks at ``is_cached``).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter

import pytest
import requests

from slm_platform.dashboards.superset_api import SupersetClient
from slm_platform.dashboards.superset_service import CONFIG_PATH

ROUTES = [("GET", "/slm/warm-up"), ("POST", "/slm/warm-up"), ("POST", "/slm/warm-up/clear")]


# ---------------------------------------------------------------- no stack needed


def _config(monkeypatch: pytest.MonkeyPatch, **env: str) -> object:
    for key in ("SLM_ENV", "SUPERSET_REDIS_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SUPERSET_SECRET_KEY", "x" * 40)
    monkeypatch.setenv("SUPERSET_METADATA_DSN", "postgresql://u:p@127.0.0.1:1/meta")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("slm_superset_config_warm_test", CONFIG_PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.pop("slm_superset_config_warm_test", None)
    return module


def test_cache_lives_until_the_next_night_only_when_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = _config(monkeypatch, SUPERSET_REDIS_URL="redis://127.0.0.1:1/1")
    for cfg in (shared.CACHE_CONFIG, shared.DATA_CACHE_CONFIG):  # type: ignore[attr-defined]
        assert cfg["CACHE_TYPE"] == "RedisCache" and cfg["CACHE_DEFAULT_TIMEOUT"] >= 24 * 3600
    # One SimpleCache per gunicorn worker: the warm-up can neither empty nor fill them all.
    per_process = _config(monkeypatch)
    for cfg in (per_process.CACHE_CONFIG, per_process.DATA_CACHE_CONFIG):  # type: ignore[attr-defined]
        assert cfg["CACHE_TYPE"] == "SimpleCache" and cfg["CACHE_DEFAULT_TIMEOUT"] == 300


def test_event_logger_drops_the_chart_data_path_only(monkeypatch: pytest.MonkeyPatch) -> None:
    logged = _config(monkeypatch)._logged  # type: ignore[attr-defined]
    for action, ref in [
        ("ChartDataRestApi.data", None),
        ("ChartDataRestApi.json_dumps", None),
        ("_get_data_response", None),
        ("load_into_dataframe", None),
        ("QueryObject.post_processing", None),
        ("execute_sql", "superset.models.core"),  # a chart's query
    ]:
        assert not logged(action, ref), action
    for action, ref in [
        ("execute_sql", "superset.sql_lab"),  # SQL Lab stays in the audit trail
        ("DashboardRestApi.get", None),
        ("log", None),
        ("ChartRestApi.put", None),
    ]:
        assert logged(action, ref), action


def test_fingerprint_follows_what_the_page_bodies_are_built_from() -> None:
    from slm_platform.dashboards.warm import dashboard_fingerprint

    dashboard = {"id": 3, "json_metadata": '{"native_filter_configuration": []}', "position_json": "{}",
                 "changed_on": "2026-12-01T00:00:00", "changed_on_delta_humanized": "2 days ago"}  # fmt: skip
    charts = [{"id": 7, "form_data": {"metrics": ["m"]}, "changed_on": "2026-12-01T00:00:00"}]
    first = dashboard_fingerprint(dashboard, charts)
    assert dashboard_fingerprint(dashboard | {"changed_on_delta_humanized": "3 days ago"}, charts) == first
    assert dashboard_fingerprint(dashboard, list(reversed(charts + [{"id": 8}]))) == dashboard_fingerprint(
        dashboard, charts + [{"id": 8}]
    )
    assert dashboard_fingerprint(dashboard | {"json_metadata": '{"x": 1}'}, charts) != first
    assert dashboard_fingerprint(dashboard | {"position_json": '{"y": 1}'}, charts) != first
    assert dashboard_fingerprint(dashboard, [charts[0] | {"form_data": {"metrics": ["n"]}}]) != first
    assert dashboard_fingerprint(dashboard, charts + [{"id": 8}]) != first


def test_no_native_filter_takes_its_default_from_the_data() -> None:
    """The warm-up keeps the dashboard pages' bodies until a dashboard's definition changes: a filter that
    selects its first value by default would make them change with the data (then captures go stale)."""
    import yaml

    from slm_platform.dashboards.superset_service import ASSETS_DIR

    filters = 0
    for path in sorted((ASSETS_DIR / "dashboards").glob("*.yaml")):
        meta = yaml.safe_load(path.read_text()).get("metadata") or {}
        for f in meta.get("native_filter_configuration") or []:
            filters += 1
            assert not (f.get("controlValues") or {}).get("defaultToFirstItem"), (path.name, f.get("name"))
    assert filters >= 10, filters


def test_captured_requests_are_kept_per_superset_url(tmp_path) -> None:
    from slm_platform.dashboards.warm import _read_cache, _write_cache

    cache = tmp_path / "sub" / "warm_requests.json"
    assert _read_cache(cache, "http://a") == {}
    _write_cache(cache, "http://a", {"1": {"fingerprint": "f", "bodies": [{"x": 1}]}}, print)
    _write_cache(cache, "http://b", {"2": {"fingerprint": "g", "bodies": []}}, print)
    assert _read_cache(cache, "http://a") == {"1": {"fingerprint": "f", "bodies": [{"x": 1}]}}
    assert set(_read_cache(cache, "http://b")) == {"2"}
    cache.write_text("{not json")
    assert _read_cache(cache, "http://a") == {}  # unreadable: captured again, then rewritten
    _write_cache(cache, "http://a", {}, print)
    assert _read_cache(cache, "http://a") == {} and list(cache.parent.iterdir()) == [cache]


# ---------------------------------------------------------------- against the demo stack


def _accounts(demo_stack) -> dict[str, dict]:
    creds = demo_stack.credentials["superset"]
    return {"manager": creds["manager"], **creds["clients"]}


def _charts(api: SupersetClient) -> list[int]:
    dashboards = [d["id"] for d in api.list_all("/api/v1/dashboard/", order_column=None)]
    return sorted({c["id"] for d in dashboards for c in api.get(f"/api/v1/dashboard/{d}/charts")["result"]})


def _rows(body: dict) -> list[tuple[tuple[str, ...], Counter]]:
    """Each query's column names and its rows as a multiset.

    Order-insensitive: a table ordered by a column with ties (``margin`` on the SLA attainment table,
    ``turned_breached`` and ``budget_consumed_pct`` on the incident impact one) gets the tied rows in
    whatever order PostgreSQL's sort returns them, which differs between two runs of the same query.
    """
    return [
        (tuple(r["colnames"]), Counter(json.dumps(row, sort_keys=True, default=str) for row in r["data"]))
        for r in body["result"]
    ]


def _row_diff(cached: dict, fresh: dict) -> str:
    """What differs, row by row: columns, or the rows only the cached / only the fresh answer holds."""
    lines = []
    for i, ((cols_c, rows_c), (cols_f, rows_f)) in enumerate(zip(_rows(cached), _rows(fresh), strict=False)):
        if cols_c != cols_f:
            lines.append(f"query {i}: columns {cols_c} cached, {cols_f} fresh")
        only_cached, only_fresh = rows_c - rows_f, rows_f - rows_c
        lines += [f"query {i}: only cached  {row} x{n}" for row, n in list(only_cached.items())[:5]]
        lines += [f"query {i}: only fresh   {row} x{n}" for row, n in list(only_fresh.items())[:5]]
    if len(cached["result"]) != len(fresh["result"]):
        lines.append(f"{len(cached['result'])} queries cached, {len(fresh['result'])} fresh")
    return "\n".join(lines)


def test_warm_up_runs_every_clients_dashboards(warmed, demo_stack) -> None:
    assert warmed["errors"] == 0, warmed["errors_text"]
    assert warmed["warmed"] == warmed["charts"] > 0
    clients = set(demo_stack.credentials["superset"]["clients"])
    assert warmed["scopes"] >= len(clients)


@pytest.mark.parametrize("who", ["ACME", "GLOBEX", "INITECH", "manager"])
def test_after_warm_every_chart_is_cached_with_only_its_own_rows(who, warmed, demo_stack) -> None:
    accounts = _accounts(demo_stack)
    if who not in accounts:
        pytest.fail(f"the demo stack has no account {who}: {sorted(accounts)}")
    creds = accounts[who]
    api = SupersetClient(demo_stack.superset_url, creds["username"], creds["password"])
    charts = _charts(api)
    assert charts, f"{who} sees no chart"
    cold, foreign, differing = [], [], []
    for chart in charts:
        first = api.get(f"/api/v1/chart/{chart}/data/")
        if not all(r["is_cached"] for r in first["result"]):
            cold.append(chart)
        if who != "manager":
            foreign += [
                (chart, row["client_code"])
                for r in first["result"]
                for row in r["data"]
                if isinstance(row, dict) and row.get("client_code") not in (None, who)
            ]
            # The query run now as this client: the cached answer is the client's own, on every chart (the
            # manager has no row-level security: its entries are Admin's, is_cached is what matters there).
            fresh = api.get(f"/api/v1/chart/{chart}/data/?force=true")
            if _rows(fresh) != _rows(first):
                differing.append(f"chart {chart}:\n{_row_diff(first, fresh)}")
    assert cold == [], f"{who}: {len(cold)}/{len(charts)} charts not served from the cache: {cold}"
    assert foreign == [], f"{who}: rows of other clients {foreign[:5]}"
    assert differing == [], f"{who}: cached answers differ from the user's own query:\n" + "\n".join(
        differing
    )


def test_endpoint_refuses_anonymous_with_401(demo_stack) -> None:
    for method, path in ROUTES:
        resp = requests.request(method, demo_stack.superset_url + path, json={}, timeout=60)
        assert resp.status_code == 401, (method, path, resp.status_code)


@pytest.mark.parametrize("who", ["ACME", "manager"])
def test_endpoint_refuses_clients_and_managers_with_403(who, demo_stack) -> None:
    creds = _accounts(demo_stack)[who]
    api = SupersetClient(demo_stack.superset_url, creds["username"], creds["password"])
    for method, path in ROUTES:
        body = {"user": creds["username"], "dashboard": 1} if path == "/slm/warm-up" else None
        resp = api.raw(method, path, json=body)
        assert resp.status_code == 403, (who, method, path, resp.status_code)


def test_endpoint_takes_no_browser_session(demo_stack) -> None:
    """An Admin's session cookie alone (what a forged page could ride on) is not enough: 401."""
    base = demo_stack.superset_url
    admin = demo_stack.credentials["superset"]["admin"]
    session = requests.Session()
    page = session.get(f"{base}/login/", timeout=60)
    token = re.search(r'csrf_token[^>]*?value="([^"]+)"', page.text)
    assert token, "no CSRF token on the login page"
    form = {"username": admin["username"], "password": admin["password"], "csrf_token": token.group(1)}
    login = session.post(f"{base}/login/", data=form, allow_redirects=False, timeout=60)
    assert login.status_code == 302 and "/login" not in login.headers.get("Location", "")
    assert session.get(f"{base}/api/v1/me/", timeout=60).status_code == 200  # the session is an Admin's
    for method, path in ROUTES:
        resp = session.request(method, base + path, json={}, timeout=60)
        assert resp.status_code == 401, (method, path, resp.status_code)
