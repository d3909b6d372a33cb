"""The browser's own chart requests after a warm-up (issue 13; docs/design/dashboards_under_load.md, 7).

A dashboard page does not ask for a chart's saved query context (``GET /api/v1/chart/<id>/data/``, which
tests/test_dashboard_warm.py checks): its frontend posts ``/api/v1/chart/data`` with a body of its own (other
column spelling, extras and post-processing, the native filters' default values), under another cache key.
Here, after a warm-up, each client logs in through Superset's login form in Debian's chromium, opens every
dashboard it may open, and every chart-data answer its page receives (charts and native filters' values)
must come from the cache and hold that client's rows only. Before the warm-up captured the pages' bodies,
1 of ACME's 42 chart requests was cached.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from playwright.sync_api import Response, sync_playwright

from slm_platform.dashboards.superset_api import SupersetClient
from slm_platform.dashboards.warm import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, warm

PAGE_WAIT_MS = 240_000
QUIET_S = 2.0


def test_warm_up_captures_and_runs_the_dashboard_pages_requests(warmed) -> None:
    assert warmed["errors"] == 0, warmed["errors_text"]
    assert warmed["page_requests"] > 0, "no dashboard page request captured (chromium?)"
    assert warmed["page_requests_warmed"] == warmed["page_requests"]


def _open_dashboards(base_url: str, creds: dict, dashboards: list[int], profile: Path) -> list[dict]:
    """Log in as ``creds`` and open each dashboard; every chart-data answer the pages got, with its body."""
    assert os.access(CHROMIUM, os.X_OK), "chromium missing: run `make chromium` (tools/ensure_chromium.sh)"
    answers: list[Response] = []
    denied: list[str] = []

    def on_response(r: Response) -> None:
        # Chart data only: the page also tries to store the dashboard's label colors, which a client (not an
        # owner) may not (403 on PUT /api/v1/dashboard/<id>/colors), whatever the cache.
        if r.request.method == "POST" and "/api/v1/chart/data" in r.url:
            answers.append(r)
            if r.status in (401, 403) or r.status >= 500:
                denied.append(f"{r.status} {r.url}")

    seen: list[dict] = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, viewport=VIEWPORT
        )
        try:
            page = context.new_page()
            page.on("response", on_response)
            page.goto(base_url + "/login/")
            page.fill("#username, input[name=username]", creds["username"])
            page.fill("#password, input[name=password]", creds["password"])
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/login" not in url, timeout=60_000)
            for dashboard in dashboards:
                answers.clear()
                page.goto(f"{base_url}/superset/dashboard/{dashboard}/")
                count = -1
                while count != len(answers):
                    count = len(answers)
                    page.wait_for_load_state("networkidle", timeout=PAGE_WAIT_MS)
                    time.sleep(QUIET_S)
                for r in answers:
                    body = r.request.post_data_json or {}
                    form_data = body.get("form_data") or {}
                    seen.append(
                        {
                            "dashboard": dashboard,
                            "page_of": form_data.get("dashboardId"),
                            "chart": form_data.get("slice_id")
                            or f"filter {form_data.get('native_filter_id')}",
                            "status": r.status,
                            "result": json.loads(r.body())["result"] if r.status == 200 else [],
                        }
                    )
        finally:
            context.close()
    assert not denied, f"requests denied/failed for {creds['username']}: {denied}"
    return seen


@pytest.mark.parametrize("who", ["ACME", "GLOBEX", "INITECH"])
def test_client_dashboards_answer_from_the_warm_up_cache_with_own_rows(
    who, warmed, demo_stack, tmp_path: Path
) -> None:
    clients = demo_stack.credentials["superset"]["clients"]
    if who not in clients:
        pytest.fail(f"the demo stack has no client {who}: {sorted(clients)}")
    creds = clients[who]
    api = SupersetClient(demo_stack.superset_url, creds["username"], creds["password"])
    dashboards = sorted(d["id"] for d in api.list_all("/api/v1/dashboard/", order_column=None))
    assert dashboards, f"{who} may open no dashboard"
    expected = {c["id"] for d in dashboards for c in api.get(f"/api/v1/dashboard/{d}/charts")["result"]}

    seen = _open_dashboards(demo_stack.superset_url, creds, dashboards, tmp_path / "profile")
    # Only the pages opened here (a request of the previous page still in flight is not counted).
    seen = [s for s in seen if s["page_of"] == s["dashboard"]]
    charts = [s for s in seen if isinstance(s["chart"], int)]
    filters = [s for s in seen if not isinstance(s["chart"], int)]
    assert {s["chart"] for s in charts} == expected, "every chart of every dashboard asked for its data"
    failed = [(s["dashboard"], s["chart"], s["status"]) for s in seen if s["status"] != 200]
    assert failed == []
    cold = [
        (s["dashboard"], s["chart"])
        for s in seen
        if not s["result"] or not all(r.get("is_cached") for r in s["result"])
    ]
    cached_charts = sum((s["dashboard"], s["chart"]) not in cold for s in charts)
    cached_filters = sum((s["dashboard"], s["chart"]) not in cold for s in filters)
    print(
        f"{who}: {cached_charts}/{len(charts)} chart requests and {cached_filters}/{len(filters)} native "
        f"filter requests answered from the cache"
    )
    foreign = [
        (s["dashboard"], s["chart"], row["client_code"])
        for s in seen
        for r in s["result"]
        for row in r.get("data") or []
        if isinstance(row, dict) and row.get("client_code") not in (None, who)
    ]
    assert foreign == [], f"{who}: rows of other clients {foreign[:5]}"
    own = {
        row["client_code"]
        for s in charts
        for r in s["result"]
        for row in r.get("data") or []
        if isinstance(row, dict) and "client_code" in row
    }
    assert own == {who}, f"{who}: the charts' client codes {own}"
    assert cold == [], (
        f"{who}: {len(cold)}/{len(seen)} requests of its pages not answered from the cache: {cold}"
    )


def test_endpoint_runs_only_bodies_of_the_dashboard_it_warms(demo_stack) -> None:
    """A body naming another dashboard (or a dataset the dashboard does not use) is refused, not run."""
    admin = demo_stack.credentials["superset"]["admin"]
    api = SupersetClient(demo_stack.superset_url, admin["username"], admin["password"])
    dashboards = sorted(d["id"] for d in api.list_all("/api/v1/dashboard/", order_column=None))
    first, other = dashboards[0], dashboards[1]
    chart = api.get(f"/api/v1/dashboard/{first}/charts")["result"][0]
    body = json.loads(api.get(f"/api/v1/chart/{chart['id']}")["result"]["query_context"])
    body["form_data"] = {**body.get("form_data", {}), "dashboardId": first, "slice_id": chart["id"]}
    ok = api.post("/slm/warm-up", json={"user": admin["username"], "dashboard": first, "requests": [body]})
    assert [r["status"] for r in ok["requests"]] == ["warmed"], ok["requests"]
    elsewhere = api.post(
        "/slm/warm-up", json={"user": admin["username"], "dashboard": other, "requests": [body]}
    )
    assert [r["status"] for r in elsewhere["requests"]] == ["error"], elsewhere["requests"]
    assert "not a request of dashboard" in elsewhere["requests"][0]["error"]


def test_a_later_warm_up_reuses_the_captures_until_a_dashboard_changes(warmed, demo_stack) -> None:
    """The pages' bodies depend on the dashboards' definitions only: the next warm-up (the next night) opens
    no browser and still warms every page request; a dashboard whose definition changed (here: its kept
    fingerprint no longer matches) is opened again, alone."""
    admin = demo_stack.credentials["superset"]["admin"]
    cache = demo_stack.home / "superset" / "warm_requests.json"

    def again():  # noqa: ANN202
        result = warm(
            demo_stack.superset_url, admin["username"], admin["password"], log=print, capture_cache=cache
        )
        assert result.errors == []
        assert result.requests_warmed == result.requests > 0
        return result

    first = again()  # captures, or reuses what the fixture's warm-up kept when SLM_HOME is the stack's
    dashboards = first.pages_captured + first.pages_reused
    assert cache.exists() and dashboards > 0, "the captures were not kept"
    reused = again()
    assert (reused.pages_captured, reused.pages_reused) == (0, dashboards)
    assert reused.requests == first.requests
    kept = json.loads(cache.read_text())
    entries = kept[demo_stack.superset_url]
    changed = sorted(entries, key=int)[0]
    entries[changed]["fingerprint"] = "0" * 64
    cache.write_text(json.dumps(kept))
    third = again()
    assert (third.pages_captured, third.pages_reused) == (1, dashboards - 1)
    assert json.loads(cache.read_text())[demo_stack.superset_url][changed]["fingerprint"] != "0" * 64
