"""The third way to trigger an incident review: the Airflow UI's trigger form, driven in Debian's chromium.

The form is built from the DAG's typed Params; it posts the conf to the same REST endpoint the other tests
use. A malformed ticket id is refused before a run exists (the form shows Airflow's message naming the
parameter); a well-formed id of no ticket creates a run whose first task refuses it against the data.
"""

from __future__ import annotations

import os
import tempfile
import time

import pytest

from slm_platform.orchestration.incident_review import DAG_ID, AirflowApi
from tests.conftest import DemoStack

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UNKNOWN = "INC0999999"  # well-formed, and no ticket of the demo has it


def _run_ids(api: AirflowApi) -> dict[str, dict]:
    runs = api.get(f"dags/{DAG_ID}/dagRuns?limit=100&order_by=-run_after")["dag_runs"]
    return {r["dag_run_id"]: r for r in runs}


def _submit_form(stack: DemoStack, ticket_id: str) -> tuple[int, str, str]:
    """Log in, open the DAG's trigger form, type the ticket id, press Trigger: (status of the POST the form
    sent, its body, the dialog's text afterwards)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            tempfile.mkdtemp(),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1400, "height": 1400},
        )
        try:
            page = ctx.new_page()
            page.goto(stack.airflow_url + "/", wait_until="networkidle")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", stack.credentials["airflow_admin_password"])
            page.keyboard.press("Enter")
            # The login answers with a redirect; navigating before it has landed aborts one or the other.
            page.wait_for_selector("input[name=password]", state="detached", timeout=60_000)
            page.wait_for_load_state("networkidle")
            page.goto(f"{stack.airflow_url}/dags/{DAG_ID}", wait_until="networkidle")
            page.get_by_role("button", name="Trigger").first.click()
            dialog = page.get_by_role("dialog")
            dialog.locator("#element_ticket_id").fill(ticket_id)
            with page.expect_response(
                lambda r: r.url.endswith(f"/dags/{DAG_ID}/dagRuns") and r.request.method == "POST",
                timeout=60_000,
            ) as posted:
                dialog.get_by_role("button", name="Trigger").click()
            resp = posted.value
            body = resp.request.post_data or ""
            page.wait_for_timeout(1500)
            # A trigger that succeeds closes the dialog: read whatever is there without waiting for it.
            text = " ".join(dialog.all_inner_texts())
            return resp.status, body, text
        finally:
            ctx.close()


@pytest.fixture(scope="module")
def api(demo_stack: DemoStack) -> AirflowApi:
    assert os.access(CHROMIUM, os.X_OK), "chromium missing: run `make chromium`"
    return AirflowApi(demo_stack.airflow_url, "admin", demo_stack.credentials["airflow_admin_password"])


def test_trigger_form_refuses_a_malformed_ticket_id_before_a_run_exists(demo_stack: DemoStack, api) -> None:
    before = set(_run_ids(api))
    status, body, text = _submit_form(demo_stack, "not a ticket")
    assert '"ticket_id":"not a ticket"' in body.replace(" ", "") or "not a ticket" in body
    assert status == 400
    assert "Invalid input for param ticket_id" in text, text
    assert set(_run_ids(api)) == before


def test_trigger_form_creates_a_run_that_validate_refuses(demo_stack: DemoStack, api) -> None:
    before = set(_run_ids(api))
    status, body, _ = _submit_form(demo_stack, UNKNOWN)
    assert status == 200, body
    new = [r for rid, r in _run_ids(api).items() if rid not in before]
    assert len(new) == 1, new
    run = new[0]
    assert run["conf"]["ticket_id"] == UNKNOWN
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        state = api.get(f"dags/{DAG_ID}/dagRuns/{run['dag_run_id']}")["state"]
        if state in ("success", "failed"):
            break
        time.sleep(3)
    assert state == "failed"
    tasks = api.task_states(run["dag_run_id"])
    assert tasks["validate"] == "failed"
    # Nothing after the refusal ran: the review wrote nothing.
    assert tasks.get("build_publish") in (None, "upstream_failed")
