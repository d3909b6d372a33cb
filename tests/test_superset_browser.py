"""Client users log in through Superset's login form and see the dashboards rendered with their data only."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, Response, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from slm_platform.settings import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DASHBOARD_PATH = "/superset/dashboard/ticket-volume/"
SCREENSHOT = REPO_ROOT / "docs" / "dashboard.png"
SLA_DASHBOARD_PATH = "/superset/dashboard/ticket-slas/"
SLA_SCREENSHOT = REPO_ROOT / "docs" / "dashboard_sla.png"
# Per wait (table, chart, network idle): seen at 90 s once for the first dashboard of a CI run (stop 18).
RENDER_WAIT_MS = 240_000
CHART_DRAWN = ".dashboard-chart canvas, .dashboard-chart svg"


def _render_as(
    demo_stack,
    creds: dict,
    path: str,
    tmp_path: Path,
    check: Callable[[Page, list[dict]], None],
    height: int = 1000,
    full_page: bool = True,
) -> tuple[Path, float]:
    """Log in as ``creds``, open the dashboard, run ``check(page, chart_results)``, take a screenshot.

    ``chart_results`` are the ``result`` entries of the charts' data responses (not the filters').
    Fails on any denied (401/403) or failed (5xx) request: that means a missing permission.
    ``height``: a viewport as tall as the dashboard. For a dashboard taller than the viewport, a full-page
    screenshot resizes the viewport, Superset re-lays out its grid and the picture shows empty chart
    slots (measured on the 6-chart Ticket SLAs dashboard): take such a shot with ``full_page=False``.
    The render time is returned and printed, never asserted (performance is measured by benchmarks/, not
    here): the first dashboard of a run pays a fresh browser profile and cold caches on a shared machine,
    so the waits are generous (``RENDER_WAIT_MS``).
    On a timeout the failure says what the page showed (a screenshot, chart errors, denied requests).
    """
    assert os.access(CHROMIUM, os.X_OK), "chromium missing: run `make chromium` (tools/ensure_chromium.sh)"
    denied: list[str] = []
    chart_responses: list[Response] = []

    def on_response(r: Response) -> None:
        if r.status in (401, 403) or r.status >= 500:
            denied.append(f"{r.status} {r.url}")
        elif "/api/v1/chart/data" in r.url and r.request.method == "POST":
            # Charts send their slice_id; native filters fetching their options (every value) do not.
            if (r.request.post_data_json or {}).get("form_data", {}).get("slice_id"):
                chart_responses.append(r)

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # fresh user-data-dir
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": height},
        )
        try:
            page = context.new_page()
            page.on("response", on_response)
            page.goto(demo_stack.superset_url + "/login/")
            page.fill("#username, input[name=username]", creds["username"])
            page.fill("#password, input[name=password]", creds["password"])
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/login" not in url, timeout=30_000)

            started = time.monotonic()
            page.goto(demo_stack.superset_url + path)
            try:
                page.wait_for_selector(".dashboard-chart table tbody tr td", timeout=RENDER_WAIT_MS)
                page.wait_for_selector(CHART_DRAWN, timeout=RENDER_WAIT_MS)
                page.wait_for_load_state("networkidle", timeout=RENDER_WAIT_MS)
            except PlaywrightTimeoutError:
                _fail_with_page_state(page, tmp_path, denied, chart_responses, time.monotonic() - started)
            render_s = time.monotonic() - started
            results = [res for r in chart_responses for res in json.loads(r.body())["result"]]
            check(page, results)
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=full_page)
        finally:
            context.close()

    assert not denied, f"requests denied/failed for the client while rendering: {denied}"
    assert shot.stat().st_size > 20_000
    return shot, render_s


def _fail_with_page_state(
    page: Page, tmp_path: Path, denied: list[str], chart_responses: list[Response], waited_s: float
) -> None:
    """Fail with what the page showed when a dashboard did not render (the CI log is all one gets)."""
    shot = tmp_path / "timeout.png"
    page.screenshot(path=str(shot), full_page=True)
    charts = page.locator(".dashboard-chart").count()
    alerts = page.locator(".dashboard-chart [role=alert], .dashboard-chart .alert").all_inner_texts()
    loading = page.locator(".dashboard-chart .loading, .dashboard-chart [aria-label=loading]").count()
    answered = [f"{r.status} {r.url.rsplit('/', 1)[-1]}" for r in chart_responses]
    pytest.fail(
        f"dashboard {page.url} not rendered after {waited_s:.0f}s: {charts} chart slots, "
        f"{loading} still loading, "
        f"chart errors {alerts[:5]}, chart data answers {answered}, denied {denied}, screenshot {shot}"
    )


def test_client_dashboard_renders_own_data_only(demo_stack, tmp_path: Path) -> None:
    clients = demo_stack.credentials["superset"]["clients"]
    assert len(clients) >= 2
    code, creds = sorted(clients.items())[0]
    others = set(clients) - {code}

    def check(page: Page, _results: list[dict]) -> None:
        assert page.locator(".dashboard-chart").count() >= 3
        cells = page.locator(".dashboard-chart table tbody td").all_inner_texts()
        assert code in cells
        assert not others & set(cells), f"other clients' rows visible: {others & set(cells)}"
        assert "Ticket volume" in page.title() or page.get_by_text("Ticket volume").count() > 0

    shot, render_s = _render_as(demo_stack, creds, DASHBOARD_PATH, tmp_path, check)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)
    print(f"dashboard rendered for {code} in {render_s:.1f}s")


def test_client_sla_dashboard_renders_own_data_only(demo_stack, tmp_path: Path) -> None:
    clients = demo_stack.credentials["superset"]["clients"]
    assert len(clients) >= 2
    code, creds = sorted(clients.items())[0]
    others = set(clients) - {code}

    def check(page: Page, results: list[dict]) -> None:
        assert page.get_by_text("Ticket SLAs").count() > 0
        assert page.locator(".dashboard-chart").count() >= 6
        cells = page.locator(".dashboard-chart table tbody td").all_inner_texts()
        assert code in cells
        leaked = [c for c in cells if any(o in c for o in others)]
        assert not leaked, f"other clients' rows visible: {leaked[:5]}"
        # Every chart answered, with this client's rows only (RLS also applies to what is not on screen).
        assert len(results) >= 6 and all(r.get("status") == "success" for r in results)
        rows = [row for r in results for row in r["data"]]
        assert {row["client_code"] for row in rows if "client_code" in row} == {code}
        # The "Period type" filter defaults to month and reaches the attainment table.
        period_types = {row["period_type"] for row in rows if "period_type" in row}
        assert period_types == {"month"}, period_types

    shot, render_s = _render_as(
        demo_stack, creds, SLA_DASHBOARD_PATH, tmp_path, check, height=2300, full_page=False
    )
    SLA_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SLA_SCREENSHOT)
    print(f"Ticket SLAs rendered for {code} in {render_s:.1f}s")


REVIEW_DASHBOARD_PATH = "/superset/dashboard/service-review/"
REVIEW_SCREENSHOT = REPO_ROOT / "docs" / "dashboard_service_review.png"
PORTFOLIO_DASHBOARD_PATH = "/superset/dashboard/portfolio/"


def test_client_service_review_renders_one_review_of_its_own(demo_stack, tmp_path: Path) -> None:
    clients = demo_stack.credentials["superset"]["clients"]
    assert len(clients) >= 2
    code, creds = sorted(clients.items())[0]
    others = set(clients) - {code}

    def check(page: Page, results: list[dict]) -> None:
        assert page.get_by_text("Service review").count() > 0
        assert page.locator(".dashboard-chart").count() >= 11
        cells = page.locator(".dashboard-chart table tbody td").all_inner_texts()
        assert code in cells
        leaked = [c for c in cells if any(o in c for o in others)]
        assert not leaked, f"other clients' rows visible: {leaked[:5]}"
        # Findings naming internal teams or suppliers are for managers only.
        assert not {"sla_not_supported", "ola_uc_breach_cause"} & set(cells)
        assert len(results) >= 11 and all(r.get("status") == "success" for r in results)
        rows = [row for r in results for row in r["data"]]
        assert {row["client_code"] for row in rows if "client_code" in row} == {code}
        # The default filters reach the charts: one period, the latest complete month.
        labels = {row["period_label"] for row in rows if "period_label" in row}
        assert len(labels) == 1 and len(next(iter(labels))) == len("2026-10"), labels

    shot, render_s = _render_as(
        demo_stack,
        creds,
        REVIEW_DASHBOARD_PATH,
        tmp_path,
        check,
        height=1950,
        full_page=False,
    )
    REVIEW_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, REVIEW_SCREENSHOT)
    print(f"Service review rendered for {code} in {render_s:.1f}s")


def test_manager_portfolio_renders(demo_stack, tmp_path: Path) -> None:
    creds = demo_stack.credentials["superset"]["manager"]
    clients = set(demo_stack.credentials["superset"]["clients"])

    def check(page: Page, results: list[dict]) -> None:
        assert page.get_by_text("Portfolio").count() > 0
        assert page.locator(".dashboard-chart").count() >= 6
        assert page.locator(".dashboard-chart canvas").count() >= 2  # the heat map and the findings bars
        assert len(results) >= 6 and all(r.get("status") == "success" for r in results)
        rows = [row for r in results for row in r["data"]]
        assert {row["client_code"] for row in rows if "client_code" in row} >= clients  # every client
        # The Period type filter's default (month) reaches the heat map and the table: month labels only.
        labels = {row["period_label"] for row in rows if "period_label" in row}
        assert labels and all(len(label) == len("2026-10") for label in labels), labels

    _, render_s = _render_as(
        demo_stack,
        creds,
        PORTFOLIO_DASHBOARD_PATH,
        tmp_path,
        check,
        height=1600,
        full_page=False,
    )
    print(f"Portfolio rendered for the manager in {render_s:.1f}s")
