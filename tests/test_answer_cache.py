"""Shared chart-data answers (superset/slm_answers.py, issue 13).

Against the demo stack's Superset: a stored answer is served to another user only when that user has exactly
the same roles and owns nothing; a user of another client never gets it and reads only its own rows; a user
who owns something gets answers of its own; a role change applies at the next request although the old
answer is stored; a forced query is never answered from the store; the answers live under the chart-data
cache's prefix, which the warm-up's clear empties after each publish.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from slm_platform.dashboards.provision import client_role
from slm_platform.dashboards.superset_api import SupersetClient
from tests.superset_helpers import login, superset_module

HEADER = "X-SLM-Answer"


# ---------------------------------------------------------------- no stack needed


def test_switches_turn_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    # slm_answers reads its switch through slm_security, which superset_config loads by path before it
    monkeypatch.setitem(sys.modules, "slm_security", superset_module("slm_security"))
    module = superset_module("slm_answers")
    assert module.install(True, {}, {"SUPERSET_SLM_ANSWER_CACHE": "0"}) is False
    assert module.install(False, {}, {}) is False  # no permission generation: nothing could invalidate it
    assert module.install(True, {"ENABLE_TEMPLATE_PROCESSING": True}, {}) is False  # answers may be per user
    assert not module.enabled()


class _Response:
    def __init__(self, status: int, body: object, mimetype: str = "application/json") -> None:
        self.status_code, self.mimetype, self._body = status, mimetype, json.dumps(body).encode()

    def get_data(self) -> bytes:
        return self._body


def test_only_answers_from_superset_s_cache_are_stored() -> None:
    storable = superset_module("slm_answers")._storable
    ok = {"is_cached": True, "status": "success", "error": None, "data": [{"x": 1}]}
    assert storable(_Response(200, {"result": [ok, ok]}))
    assert not storable(_Response(200, {"result": [ok, {**ok, "is_cached": False}]}))  # a fresh query
    assert not storable(_Response(200, {"result": [{**ok, "status": "failed", "error": "boom"}]}))
    assert not storable(_Response(200, {"result": []}))
    assert not storable(_Response(400, {"result": [ok]}))
    assert not storable(_Response(200, {"result": [ok]}, mimetype="text/csv"))


# ---------------------------------------------------------------- against the demo stack


def _fetch(api: SupersetClient, chart: int, **params: str) -> tuple[str, requests.Response]:
    resp = api.raw("GET", f"/api/v1/chart/{chart}/data/", params=params or None)
    assert resp.status_code == 200, (chart, resp.status_code, resp.text[:300])
    return resp.headers.get(HEADER, ""), resp


def _codes(resp: requests.Response) -> set[str]:
    return {row["client_code"] for result in resp.json()["result"] for row in result["data"]}


def _user(admin: SupersetClient, username: str) -> dict:
    rows = admin.list_all(
        "/api/v1/security/users/", [{"col": "username", "opr": "eq", "value": username}], order_column=None
    )
    return rows[0] if rows else {}


@pytest.fixture(scope="module")
def clients(demo_stack) -> dict[str, dict]:
    return demo_stack.credentials["superset"]["clients"]


@pytest.fixture(scope="module")
def probe(demo_stack, clients) -> dict[str, Any]:
    """The first client, the second, and a chart both see whose rows carry client_code."""
    first, second = sorted(clients)[:2]
    api = login(demo_stack, clients[first])
    dashboards = [d["id"] for d in api.list_all("/api/v1/dashboard/", order_column=None)]
    charts = sorted({c["id"] for d in dashboards for c in api.get(f"/api/v1/dashboard/{d}/charts")["result"]})
    for chart in charts:
        _, resp = _fetch(api, chart)
        result = resp.json()["result"][0]
        if result["data"] and "client_code" in result["colnames"]:
            return {"first": first, "second": second, "api": api, "chart": chart}
    pytest.fail(f"no chart of {first} carries client_code")


@pytest.fixture
def twin(demo_stack, admin, clients, probe) -> Iterator[dict]:
    """A second user of the first client with exactly its roles (creating it changes the generation)."""
    username = f"answers_twin_{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(18)
    roles = sorted(int(r["id"]) for r in _user(admin, clients[probe["first"]]["username"])["roles"])
    created = admin.post(
        "/api/v1/security/users/",
        json={"username": username, "password": password, "first_name": username, "last_name": "test",
              "email": f"{username}@slm.invalid", "active": True, "roles": roles},
    )  # fmt: skip
    try:
        api = login(demo_stack, {"username": username, "password": password})
        yield {"id": int(created["id"]), "roles": roles, "api": api}
    finally:
        admin.delete(f"/api/v1/security/users/{created['id']}")


def test_an_answer_is_shared_by_the_same_roles_only(demo_stack, clients, probe, twin) -> None:
    chart = probe["chart"]
    first, stored = _fetch(probe["api"], chart)  # the first of this generation (the twin's creation)
    assert first == "stored", first
    again, hit = _fetch(probe["api"], chart)
    assert again == "hit" and hit.content == stored.content
    how, theirs = _fetch(twin["api"], chart)
    assert how == "hit" and theirs.content == stored.content  # same roles, owns nothing: the same answer
    assert _codes(theirs) == {probe["first"]}
    other = login(demo_stack, clients[probe["second"]])
    how, resp = _fetch(other, chart)
    assert how != "hit", how  # another role set: never the first client's answer
    assert _codes(resp) <= {probe["second"]} and resp.content != stored.content


def test_a_role_change_applies_at_the_next_request(admin, probe, twin) -> None:
    chart = probe["chart"]
    _fetch(probe["api"], chart)
    how, _ = _fetch(twin["api"], chart)
    assert how == "hit"
    roles = {r["name"]: int(r["id"]) for r in admin.list_all("/api/v1/security/roles/")}
    own, theirs = roles[client_role(probe["first"])], roles[client_role(probe["second"])]
    moved = [r for r in twin["roles"] if r != own] + [theirs]
    admin.put(f"/api/v1/security/users/{twin['id']}", json={"roles": moved})
    how, resp = _fetch(twin["api"], chart)
    assert how != "hit" and _codes(resp) == {probe["second"]}, (how, _codes(resp))


def test_an_owner_gets_answers_of_its_own(admin, probe, twin) -> None:
    chart = probe["chart"]
    owned = admin.post(
        "/api/v1/dashboard/", json={"dashboard_title": f"owned by {twin['id']}", "owners": [twin["id"]]}
    )
    try:
        _fetch(probe["api"], chart)
        assert _fetch(probe["api"], chart)[0] == "hit"
        how, resp = _fetch(twin["api"], chart)
        assert how == "stored", how  # its own key: an owner may read what its roles alone do not give
        assert _fetch(twin["api"], chart)[0] == "hit" and _codes(resp) == {probe["first"]}
    finally:
        admin.delete(f"/api/v1/dashboard/{owned['id']}")


def test_a_forced_query_is_never_answered_from_the_store(probe) -> None:
    _fetch(probe["api"], probe["chart"])
    how, resp = _fetch(probe["api"], probe["chart"], force="true")
    assert how == "pass" and not resp.json()["result"][0]["is_cached"]  # a fresh query (None)


def test_answers_live_under_the_chart_data_cache_prefix(demo_stack, probe) -> None:
    """So the warm-up's clear after a publish (``cache_manager.data_cache.clear()``: every ``slm_data_*``
    key) empties them with the results they were made of."""
    import redis

    state = json.loads((demo_stack.home / "stack.json").read_text())
    client = redis.Redis(
        host="127.0.0.1", port=int(state["redis"]["port"]), password=demo_stack.credentials["redis_password"],
        db=1,
    )  # fmt: skip
    _fetch(probe["api"], probe["chart"])
    assert _fetch(probe["api"], probe["chart"])[0] == "hit"
    keys = [k.decode() for k in client.scan_iter(match="*answer_*", count=1000)]
    assert keys and all(k.startswith("slm_data_answer_") for k in keys), keys[:5]
