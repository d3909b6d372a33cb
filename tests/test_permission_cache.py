"""The cross-request permission cache of Superset's security manager (superset/slm_security.py, issue 13).

Against the demo stack's Superset (gunicorn, Redis, the repo's config): a client's cached chart answers carry
only its own rows, request after request; a permission change made through Superset's REST API (a role losing
a dataset's access, an RLS clause changed, a user's roles changed) applies at the very next request, and its
undoing restores the access; and the cache does remove statements: one cached chart request, in-process, sends
fewer statements to the metadata database with the cache on than with ``SUPERSET_SLM_PERMISSION_CACHE=0``.
The figures (statements and milliseconds) are in docs/design/dashboards_under_load.md, section 9.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from slm_platform.dashboards.provision import _ensure_rls, _set_role_permissions, client_role
from slm_platform.dashboards.superset_api import SupersetClient
from slm_platform.settings import REPO_ROOT, venv_bin
from tests.superset_helpers import login, superset_module

BENCH = REPO_ROOT / "benchmarks" / "bench_permission_cache.py"
DENIED = (403, 404)


# ---------------------------------------------------------------- no stack needed


def test_statements_that_change_permissions_are_recognised() -> None:
    touches = superset_module("slm_security").touches_permissions
    for statement in [
        "INSERT INTO ab_user_role (user_id, role_id) VALUES (%(user_id)s, %(role_id)s)",
        "DELETE FROM ab_permission_view_role WHERE ab_permission_view_role.id = %(id)s",
        'UPDATE "row_level_security_filters" SET clause=%(clause)s WHERE id = %(id)s',
        "INSERT INTO rls_filter_roles (role_id, rls_filter_id) VALUES (%(role_id)s, %(rls_filter_id)s)",
        "UPDATE ab_user SET active=%(active)s, changed_on=%(changed_on)s WHERE ab_user.id = %(ab_user_id)s",
        "delete from dashboard_roles where dashboard_id = %(dashboard_id)s",
        "UPDATE tables SET perm=%(perm)s WHERE tables.id = %(tables_id)s",
    ]:
        assert touches(statement), statement
    for statement in [
        "SELECT ab_user.id FROM ab_user WHERE ab_user.id = %(pk_1)s",
        "INSERT INTO logs (action, user_id) VALUES (%(action)s, %(user_id)s)",
        "UPDATE key_value SET value=%(value)s WHERE key_value.id = %(id)s",
        # FAB's bookkeeping of a login: not a permission change
        "UPDATE ab_user SET last_login=%(last_login)s, login_count=%(login_count)s, "
        "fail_login_count=%(fail_login_count)s WHERE ab_user.id = %(ab_user_id)s",
    ]:
        assert not touches(statement), statement


def test_kill_switch_and_no_redis_turn_it_off() -> None:
    module = superset_module("slm_security")
    assert module.configure("redis://127.0.0.1:1/0", {"SUPERSET_SLM_PERMISSION_CACHE": "0"}) is False
    assert module.configure("", {}) is False
    assert not module.enabled()


# ---------------------------------------------------------------- against the demo stack


def _rows(body: dict) -> list[dict]:
    return [row for result in body["result"] for row in result["data"]]


def _codes(body: dict) -> set[str]:
    return {row["client_code"] for row in _rows(body)}


def _chart_ids(api: SupersetClient) -> list[int]:
    dashboards = [d["id"] for d in api.list_all("/api/v1/dashboard/", order_column=None)]
    return sorted({c["id"] for d in dashboards for c in api.get(f"/api/v1/dashboard/{d}/charts")["result"]})


def _data(api: SupersetClient, chart_id: int) -> tuple[int, dict]:
    resp = api.raw("GET", f"/api/v1/chart/{chart_id}/data/")
    return resp.status_code, (resp.json() if resp.ok else {})


@pytest.fixture(scope="module")
def clients(demo_stack) -> dict[str, dict]:
    return demo_stack.credentials["superset"]["clients"]


@pytest.fixture(scope="module")
def probe(demo_stack, clients) -> dict[str, Any]:
    """The first client, its login, and one of its charts whose answer carries client_code and rows."""
    code = sorted(clients)[0]
    api = login(demo_stack, clients[code])
    for chart_id in _chart_ids(api):
        status, body = _data(api, chart_id)
        if status == 200 and _rows(body) and "client_code" in body["result"][0]["colnames"]:
            assert _codes(body) == {code}
            return {"code": code, "api": api, "chart": chart_id}
    pytest.fail(f"no chart of {code} carries client_code")


def test_cache_is_on_in_the_stack(demo_stack) -> None:
    assert '"redis"' in (demo_stack.home / "stack.json").read_text(), "the cache needs the stack's Redis"


def test_cached_answers_carry_only_the_clients_own_rows(demo_stack, clients) -> None:
    for code, creds in sorted(clients.items()):
        api = login(demo_stack, creds)
        seen = 0
        for chart_id in _chart_ids(api):
            for _ in range(3):  # the second and third answers come through the permission cache
                status, body = _data(api, chart_id)
                assert status == 200, (code, chart_id, status)
                if "client_code" in body["result"][0]["colnames"]:
                    assert _codes(body) <= {code}, (code, chart_id, _codes(body))
                    seen += len(_rows(body))
        assert seen > 0, code


def _dataset_access_pvm(admin: SupersetClient, role_id: int, chart_id: int) -> int:
    """The role's datasource_access on the chart's dataset (view menu ``[db].[table](id:N)``)."""
    context = json.loads(admin.get(f"/api/v1/chart/{chart_id}")["result"]["query_context"])
    suffix = f"(id:{int(context['datasource']['id'])})"
    for p in admin.get(f"/api/v1/security/roles/{role_id}/permissions/")["result"]:
        if p["permission_name"] == "datasource_access" and p["view_menu_name"].endswith(suffix):
            return int(p["id"])
    raise AssertionError(f"role {role_id} has no datasource_access on dataset {suffix}")


def _role_id(admin: SupersetClient, name: str) -> int:
    rows = admin.list_all(
        "/api/v1/security/roles/", [{"col": "name", "opr": "eq", "value": name}], order_column=None
    )
    return int(rows[0]["id"])


@pytest.fixture
def role_permissions(admin, probe) -> Iterator[tuple[int, list[int]]]:
    role_id = _role_id(admin, client_role(probe["code"]))
    before = sorted(
        int(p["id"]) for p in admin.get(f"/api/v1/security/roles/{role_id}/permissions/")["result"]
    )
    yield role_id, before
    _set_role_permissions(admin, role_id, before)


def test_dataset_access_removed_through_the_api_applies_at_the_next_request(
    admin, probe, role_permissions
) -> None:
    api, chart = probe["api"], probe["chart"]
    role_id, before = role_permissions
    for _ in range(3):
        assert _data(api, chart)[0] == 200
    pvm = _dataset_access_pvm(admin, role_id, chart)
    _set_role_permissions(admin, role_id, [p for p in before if p != pvm])
    status, body = _data(api, chart)
    assert status in DENIED, (status, _codes(body) if body else None)  # no stale allow
    _set_role_permissions(admin, role_id, before)
    status, body = _data(api, chart)
    assert status == 200 and _codes(body) == {probe["code"]}


@pytest.fixture
def rls_rule(admin, probe) -> Iterator[dict]:
    name = f"rls_client_{probe['code']}"
    row = admin.list_all(
        "/api/v1/rowlevelsecurity/", [{"col": "name", "opr": "eq", "value": name}], order_column=None
    )[0]
    rule = {
        "name": name,
        "clause": row["clause"],
        "table_ids": [int(t["id"]) for t in row["tables"]],
        "role_ids": [int(r["id"]) for r in row["roles"]],
    }
    yield rule
    _ensure_rls(admin, rule["name"], rule["clause"], rule["table_ids"], rule["role_ids"])


def test_rls_clause_changed_through_the_api_applies_at_the_next_request(admin, probe, rls_rule) -> None:
    api, chart = probe["api"], probe["chart"]
    for _ in range(3):
        assert _codes(_data(api, chart)[1]) == {probe["code"]}
    _ensure_rls(admin, rls_rule["name"], "1 = 0", rls_rule["table_ids"], rls_rule["role_ids"])
    status, body = _data(api, chart)
    assert status == 200 and _rows(body) == [], _codes(body)  # the new clause, not a cached answer
    _ensure_rls(admin, rls_rule["name"], rls_rule["clause"], rls_rule["table_ids"], rls_rule["role_ids"])
    status, body = _data(api, chart)
    assert status == 200 and _codes(body) == {probe["code"]}


@pytest.fixture
def user_roles(admin, clients, probe) -> Iterator[tuple[int, list[int]]]:
    username = clients[probe["code"]]["username"]
    row = admin.list_all(
        "/api/v1/security/users/", [{"col": "username", "opr": "eq", "value": username}], order_column=None
    )[0]
    before = sorted(int(r["id"]) for r in row["roles"])
    yield int(row["id"]), before
    admin.put(f"/api/v1/security/users/{row['id']}", json={"roles": before})


def test_user_role_change_applies_at_the_next_request(admin, clients, probe, user_roles) -> None:
    api, chart, code = probe["api"], probe["chart"], probe["code"]
    other = sorted(c for c in clients if c != code)[0]
    user_id, before = user_roles
    for _ in range(3):
        assert _codes(_data(api, chart)[1]) == {code}
    own, theirs = _role_id(admin, client_role(code)), _role_id(admin, client_role(other))
    admin.put(f"/api/v1/security/users/{user_id}", json={"roles": [r for r in before if r != own] + [theirs]})
    status, body = _data(api, chart)
    assert status == 200 and _codes(body) == {other}, _codes(body)  # the new role's rows, at once
    admin.put(f"/api/v1/security/users/{user_id}", json={"roles": before})
    status, body = _data(api, chart)
    assert status == 200 and _codes(body) == {code}


def _in_process(demo_stack, monkeypatch, creds: dict, chart: int, switch: str) -> dict:
    from slm_platform.ops import stack

    monkeypatch.setenv("SLM_HOME", str(demo_stack.home))
    env = stack.superset_env() | {"SUPERSET_SLM_PERMISSION_CACHE": switch}
    proc = subprocess.run(
        # --x=value: a generated password may start with "-", which argparse would take for an option
        [str(venv_bin("superset", "python")), str(BENCH), f"--username={creds['username']}",
         f"--password={creds['password']}", "--chart", str(chart), "--requests", "10", "--warm", "3"],
        env=env, capture_output=True, text=True, timeout=600, check=False, cwd=env["SUPERSET_HOME"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_kill_switch_brings_back_the_uncached_statements(demo_stack, monkeypatch, clients, probe) -> None:
    creds = clients[probe["code"]]
    on = _in_process(demo_stack, monkeypatch, creds, probe["chart"], "1")
    off = _in_process(demo_stack, monkeypatch, creds, probe["chart"], "0")
    print(json.dumps({"on": on, "off": off}), file=sys.stderr)
    assert on["permission_cache"] is True and off["permission_cache"] is False
    assert on["cached_answers"] == on["requests"] and off["cached_answers"] == off["requests"]
    assert on["statements_median"] < off["statements_median"], (on, off)
