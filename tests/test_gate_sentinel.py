"""The gate's sentinel: a night that fails at the gate, at a dbt test or at publish changes nothing published.

On the suite's demo stack, three nightly runs (the real DAG through `./slm nightly run`), each with one real
fault: a raw row that breaks a GX expectation; a model regression (fct_ola_uc_attainment counts met tickets
twice in groups of more than 50) that passes its unit test and breaks the marts' invariant tests;
PostgreSQL refusing the publish swap halfway. After each, every published mart (every column of every row,
compared by an md5 of its sorted rows) and the publish record (raw.mart_publications) are what they were.
Each fault is checked to have had something to change: the bad build is there in marts_build, different
from what is published. Last, the Data Docs the gate built are served to managers only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import psycopg2
import pytest
import requests

from slm_platform.dashboards.superset_api import SupersetClient
from slm_platform.transform.dbt_runner import DBT_PROJECT_DIR, dbt_env, dbt_executable
from tests.conftest import SLM, DemoStack
from tests.test_nightly import _task_states

# Days no other module runs the nightly on (test_nightly: 11-02, 11-03).
GX_DAY, DBT_DAY, PUBLISH_DAY = "2026-11-11", "2026-11-12", "2026-11-13"


def _rows(dsn: str, sql: str, args: tuple = ()) -> list[tuple]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        out = cur.fetchall() if cur.description else []
    conn.close()
    return out


def _checksums(dsn: str, schema: str) -> dict[str, tuple[int, str]]:
    """Every table of ``schema``: (rows, md5 of all its rows as text, sorted): any column, any row."""
    tables = [
        t
        for (t,) in _rows(
            dsn,
            "select table_name from information_schema.tables where table_schema = %s order by 1",
            (schema,),
        )
    ]
    return {
        t: _rows(
            dsn,
            "select count(*), coalesce(md5(string_agg(x::text, E'\\n' order by x::text)), '')"
            f" from {schema}.{t} as x",
        )[0]
        for t in tables
    }


def _published(dsn: str) -> tuple[dict, list]:
    return _checksums(dsn, "marts"), _rows(dsn, "select * from raw.mart_publications order by publication_id")


@pytest.fixture(scope="module")
def baseline(demo_stack: DemoStack) -> tuple[dict, list]:
    marts, record = _published(demo_stack.warehouse_dsn)
    assert len(marts) >= 20 and record, "the demo published nothing to guard"
    return marts, record


def _nightly(demo: DemoStack, day: str, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [SLM, "nightly", "run", "--date", day, "--drop", str(demo.home / "drops" / "demo")],
        env={**os.environ, "SLM_HOME": str(demo.home), **env},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ERROR: the nightly DAG ended in state 'failed'" in proc.stderr
    return proc


def _log(demo: DemoStack, day: str) -> str:
    return (demo.home / "logs" / f"nightly-{day}.log").read_text()


def test_failing_expectation_changes_no_published_mart(demo_stack: DemoStack, baseline) -> None:
    dsn = demo_stack.warehouse_dsn
    ticket, priority = _rows(dsn, "select ticket_id, priority from raw.tickets order by ticket_id limit 1")[0]
    _rows(dsn, "update raw.tickets set priority = 'P9' where ticket_id = %s", (ticket,))
    try:
        _nightly(demo_stack, GX_DAY)
    finally:
        _rows(dsn, "update raw.tickets set priority = %s where ticket_id = %s", (priority, ticket))
    assert "expect_column_values_to_be_in_set" in _log(demo_stack, GX_DAY)
    assert _task_states(demo_stack, GX_DAY)["check_raw"] == "failed"
    assert _published(dsn) == baseline


def _faulty_project(tmp_path: Path) -> Path:
    """A copy of the dbt project with a regression in fct_ola_uc_attainment: a group of more than 50 tickets
    counts each met ticket twice. The model's unit test (small groups) passes, as does its contract; only
    the marts' invariants (met <= counted, attainment within 0-100) can see it on the demo's data."""
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    macros = project / "macros" / "attainment.sql"
    text = macros.read_text()
    start = text.index("{% macro attainment_by_period(")
    macro = text[start : text.index("{%- endmacro %}", start) + len("{%- endmacro %}")]
    good = "count(*) filter (where {{ counted_rows }}.is_met) as tickets_met"
    bad = "count(*) filter (where {{ counted_rows }}.is_met) * (1 + (count(*) > 50)::int) as tickets_met"
    assert good in macro
    faulty = macro.replace("attainment_by_period(", "attainment_by_period_faulty(").replace(good, bad)
    macros.write_text(text + "\n\n" + faulty + "\n")
    model = project / "models" / "marts" / "attainment" / "fct_ola_uc_attainment.sql"
    assert "attainment_by_period(" in model.read_text()
    model.write_text(model.read_text().replace("attainment_by_period(", "attainment_by_period_faulty("))
    return project


def test_failing_mart_invariant_blocks_publish(demo_stack: DemoStack, baseline, tmp_path: Path) -> None:
    """The regression passes the unit tests and contracts; the marts' invariants fail: publish never runs."""
    dsn = demo_stack.warehouse_dsn
    project = _faulty_project(tmp_path)
    # The DAG reads the manifest of the project it runs (Cosmos, LoadMode.DBT_MANIFEST).
    subprocess.run(
        [str(dbt_executable()), "parse", "--project-dir", str(project), "--profiles-dir", str(project)],
        cwd=project,
        env={**os.environ, **dbt_env(dsn)},
        check=True,
        capture_output=True,
    )

    _nightly(demo_stack, DBT_DAY, SLM_DBT_PROJECT=str(project))

    log = _log(demo_stack, DBT_DAY)
    assert "expression_is_true_fct_ola_uc_attainment_tickets_met_between_0_and_tickets_counted" in log
    states = _task_states(demo_stack, DBT_DAY)
    assert states["check_raw"] == "success" and states["dbt.dbt_producer_watcher"] == "failed"
    assert states["dbt.fct_ola_uc_attainment.run"] == "success"  # built: its unit test passed
    assert states["dbt.fct_ola_uc_attainment.test"] == "failed" and states["publish"] == "upstream_failed"
    # The faulty build is there, unpublished: something would have changed.
    bad = "select count(*) from marts_build.fct_ola_uc_attainment where tickets_met > tickets_counted"
    assert _rows(dsn, bad)[0][0] > 0
    assert _published(dsn) == baseline


def test_failed_publish_changes_no_published_mart(demo_stack: DemoStack, baseline) -> None:
    """PostgreSQL refuses the swap after the published schema was renamed away (an event trigger raises at
    the end of the build schema's rename): the transaction rolls back whole."""
    dsn = demo_stack.warehouse_dsn
    _rows(
        dsn,
        """create or replace function sentinel_fail_publish() returns event_trigger language plpgsql as $$
        begin
            if exists (select 1 from pg_event_trigger_ddl_commands() c where c.object_identity = 'marts') then
                raise exception 'injected fault: publish interrupted after marts was renamed away';
            end if;
        end $$""",
    )
    _rows(
        dsn,
        "create event trigger sentinel_fail_publish on ddl_command_end when tag in ('ALTER SCHEMA')"
        " execute function sentinel_fail_publish()",
    )
    try:
        _nightly(demo_stack, PUBLISH_DAY)
    finally:
        _rows(dsn, "drop event trigger if exists sentinel_fail_publish")
        _rows(dsn, "drop function if exists sentinel_fail_publish()")
    assert "injected fault: publish interrupted" in _log(demo_stack, PUBLISH_DAY)
    states = _task_states(demo_stack, PUBLISH_DAY)
    assert states["dbt.dbt_producer_watcher"] == "success" and states["publish"] == "failed"
    # The night's build passed its tests and differs from what is published (a later cut-off).
    built = _checksums(dsn, "marts_build")
    assert built and built != baseline[0]
    assert _published(dsn) == baseline


def _form_login(demo: DemoStack, creds: dict) -> requests.Session:
    """A browser's session: the Data Docs are pages a manager opens from the dashboard, not an API."""
    session = requests.Session()
    page = session.get(f"{demo.superset_url}/login/", timeout=60)
    token = re.search(r'csrf_token[^>]*?value="([^"]+)"', page.text)
    assert token, "no CSRF token on the login page"
    form = {"username": creds["username"], "password": creds["password"], "csrf_token": token.group(1)}
    resp = session.post(f"{demo.superset_url}/login/", data=form, allow_redirects=False, timeout=60)
    assert resp.status_code == 302 and "/login" not in resp.headers.get("Location", ""), resp.status_code
    return session


def test_data_docs_built_by_the_gate_and_served_to_managers_only(demo_stack: DemoStack) -> None:
    """The demo's nightly gate built the Data Docs under the stack home; the Data quality dashboard links
    them; Superset serves them to a manager, refuses clients (403) and anonymous visitors (401), and serves
    nothing outside the docs folder."""
    index = demo_stack.home / "data_docs" / "index.html"
    assert index.exists(), "the gate built no Data Docs"
    base = f"{demo_stack.superset_url}/slm/data-docs"
    manager = _form_login(demo_stack, demo_stack.credentials["superset"]["manager"])
    page = manager.get(f"{base}/", timeout=60)
    assert page.status_code == 200 and page.text == index.read_text()
    for suite in ("raw_tickets", "raw_checks", "raw_surveys"):
        assert suite in page.text
        assert manager.get(f"{base}/expectations/{suite}.html", timeout=60).status_code == 200
    assert manager.get(f"{base}/..%2fcredentials.json", timeout=60).status_code == 404
    assert requests.get(f"{base}/", timeout=60).status_code == 401
    for code, creds in sorted(demo_stack.credentials["superset"]["clients"].items()):
        assert _form_login(demo_stack, creds).get(f"{base}/", timeout=60).status_code == 403, code

    admin = SupersetClient(
        demo_stack.superset_url,
        **{k: demo_stack.credentials["superset"]["admin"][k] for k in ("username", "password")},
    )
    dashboard = admin.session.get(admin.url("/api/v1/dashboard/data-quality"), timeout=60).json()["result"]
    assert "](/slm/data-docs/)" in dashboard["position_json"]
