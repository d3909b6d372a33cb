"""A client logs in through Superset's login form and sees the dashboard rendered with its data only."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

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


def test_client_dashboard_renders_own_data_only(demo_stack, tmp_path: Path) -> None:
    assert os.access(CHROMIUM, os.X_OK), "chromium missing: run `make chromium` (tools/ensure_chromium.sh)"
    clients = demo_stack.credentials["superset"]["clients"]
    assert len(clients) >= 2
    code, creds = sorted(clients.items())[0]
    others = set(clients) - {code}
    denied: list[str] = []

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # fresh user-data-dir
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.new_page()
            # Denials and server errors on any request mean a missing permission (e.g. can_log → 500).
            page.on(
                "response",
                lambda r: (
                    denied.append(f"{r.status} {r.url}")
                    if r.status in (401, 403) or r.status >= 500
                    else None
                ),
            )
            page.goto(demo_stack.superset_url + "/login/")
            page.fill("#username, input[name=username]", creds["username"])
            page.fill("#password, input[name=password]", creds["password"])
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/login" not in url, timeout=30_000)

            started = time.monotonic()
            page.goto(demo_stack.superset_url + DASHBOARD_PATH)
            page.wait_for_selector(".dashboard-chart table tbody tr td", timeout=90_000)
            page.wait_for_selector(".dashboard-chart canvas, .dashboard-chart svg", timeout=90_000)
            page.wait_for_load_state("networkidle", timeout=60_000)
            render_s = time.monotonic() - started

            assert page.locator(".dashboard-chart").count() >= 3
            cells = page.locator(".dashboard-chart table tbody td").all_inner_texts()
            assert code in cells
            assert not others & set(cells), f"other clients' rows visible: {others & set(cells)}"
            assert "Ticket volume" in page.title() or page.get_by_text("Ticket volume").count() > 0

            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            context.close()

    assert not denied, f"requests denied/failed for the client while rendering: {denied}"
    assert shot.stat().st_size > 20_000
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)
    print(f"dashboard rendered for {code} in {render_s:.1f}s")
    if render_s > 60:
        pytest.fail(f"dashboard took {render_s:.0f}s to render")
