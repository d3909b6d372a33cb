"""Superset side of the cache warm-up after each publish: ``/slm/warm-up``, Admin only.

Loaded by ``superset_config.py`` (by path: it runs inside Superset's interpreter, never the platform's).
The client is ``slm_platform.dashboards.warm`` (``./slm superset warm``, the nightly DAG's warm-up task).

A chart's cached result is keyed on its query *and* on the row-level security clauses of the user who asks
(``security_manager.get_rls_cache_key``: the clauses of the user's roles for that dataset). So the warm-up
runs each chart as a real user of each distinct set of roles (a *scope*: ACME's users share one, the
managers another), through the same steps as ``GET /api/v1/chart/<id>/data/``: the chart's saved query
context, ``ChartDataQueryContextSchema``, ``ChartDataCommand.validate`` (the user's own access checks, RLS
included) and ``run`` with ``force`` (query the warehouse, write the cache). The entry it writes is then the
one that user's own request looks up (tests/test_dashboard_warm.py checks ``is_cached`` on every chart).

A browser opening a dashboard asks something else: ``POST /api/v1/chart/data`` with the query context its
frontend builds from the chart's form data and the dashboard's native-filter defaults (other columns
spelling, extras, post-processing, the default filter values): another cache key. The client captures those
bodies by opening every dashboard once in headless chromium as the Admin (the bodies do not depend on the
user: row-level security is applied here, from the user the request runs as) and sends them with each
scope's request; they are run the same way, as the scope's user, so a client's first view after the publish
answers from the cache (tests/test_dashboard_warm_browser.py).

Routes (the bearer token of an Admin's API login, `/api/v1/security/login`; no CSRF token needed):
  GET  /slm/warm-up              the plan: every scope, the user that stands for it, its dashboards
  POST /slm/warm-up/clear        empty the chart-data cache (marts were republished: no stale entry stays)
  POST /slm/warm-up  {"user": name, "dashboard": id, "requests": [body, ...]}   warm one dashboard's charts
                     as that user: the saved query contexts, then the dashboard page's own chart-data bodies
                     (optional; each must name this dashboard and one of its datasets)
One dashboard per request keeps every request far below gunicorn's timeout, whatever the number of clients.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, abort, jsonify, request

WARM_UP_ROLE = "Admin"


def _requesting_user() -> Any:
    """The user of this request's API bearer token, or abort 401.

    Bearer token only, never the browser's session cookie: a browser never sends an Authorization header on
    its own, so these POST routes can be exempt from CSRF (WTF_CSRF_EXEMPT_LIST in superset_config.py)
    without a forged page being able to trigger them through an Admin's open session.
    """
    from flask_jwt_extended import current_user as jwt_user
    from flask_jwt_extended import verify_jwt_in_request

    try:
        verify_jwt_in_request()
    except Exception:  # noqa: BLE001 - any missing/invalid/expired token is the same 401
        abort(401)
    if jwt_user is None or not getattr(jwt_user, "is_active", False):
        abort(401)
    return jwt_user


def _require_admin() -> None:
    user = _requesting_user()
    if WARM_UP_ROLE not in {role.name for role in user.roles}:
        abort(403)


def _scopes() -> list[dict[str, Any]]:
    """Distinct role sets of the active users, each with one user standing for it and its dashboards.

    Role sets that would write the very same cache entries (same dashboards, same RLS clauses on every
    dataset of their charts: e.g. Admin and the managers, who have no RLS) are warmed once, as the first.
    """
    from superset.models.dashboard import Dashboard
    from superset.utils.core import override_user

    from superset import db, security_manager

    users = db.session.query(security_manager.user_model).filter_by(active=True).order_by("id").all()
    by_roles: dict[tuple[str, ...], list[Any]] = {}
    for user in users:
        roles = tuple(sorted(role.name for role in user.roles))
        if roles:
            by_roles.setdefault(roles, []).append(user)
    dashboards = db.session.query(Dashboard).order_by(Dashboard.id).all()
    scopes: dict[Any, dict[str, Any]] = {}
    for roles, members in sorted(by_roles.items()):
        stand_in = members[0]
        with override_user(stand_in):
            visible = [d for d in dashboards if _can_access_dashboard(d)]
            datasources = {c.datasource for d in visible for c in d.slices if c.datasource is not None}
            rls = sorted((ds.uid, tuple(security_manager.get_rls_cache_key(ds))) for ds in datasources)
        if not visible:
            continue
        key = (tuple(d.id for d in visible), tuple(rls))
        if key in scopes:  # the same entries as an earlier role set: counted there
            scopes[key]["same_entries_as"].append("+".join(roles))
            scopes[key]["users"] += len(members)
            continue
        scopes[key] = {
            "roles": list(roles),
            "user": stand_in.username,
            "users": len(members),
            "dashboards": [d.id for d in visible],
            "same_entries_as": [],
        }
    return list(scopes.values())


def _can_access_dashboard(dashboard: Any) -> bool:
    from superset import security_manager

    try:
        return bool(security_manager.can_access_dashboard(dashboard))
    except Exception:  # noqa: BLE001 - a dashboard the check cannot evaluate is not warmed
        return False


def _warm_chart(chart: Any) -> dict[str, Any]:
    """Run one chart's saved query context as the current user with force: the cache gets its entry."""
    from superset.common.chart_data import ChartDataResultFormat, ChartDataResultType
    from superset.utils import json

    started = time.monotonic()
    outcome: dict[str, Any] = {"chart": chart.id}
    try:
        body = json.loads(chart.query_context) if chart.query_context else None
    except (TypeError, ValueError):
        body = None
    if body is None:
        return {**outcome, "status": "skipped", "reason": "no saved query context"}
    # Exactly what GET /api/v1/chart/<id>/data/ sets (force is not part of the cache key).
    body["result_format"] = ChartDataResultFormat.JSON
    body["result_type"] = ChartDataResultType.FULL
    return _run(body, outcome, started)


def _run(body: dict[str, Any], outcome: dict[str, Any], started: float) -> dict[str, Any]:
    """Run one chart-data body as the current user with ``force`` (not part of the cache key)."""
    from superset.charts.schemas import ChartDataQueryContextSchema
    from superset.commands.chart.data.get_data_command import ChartDataCommand

    body["force"] = True
    try:
        command = ChartDataCommand(ChartDataQueryContextSchema().load(body))
        command.validate()  # the user's own access checks: a chart it may not read is not warmed
        result = command.run()
    except Exception as exc:  # noqa: BLE001 - reported per chart; one bad chart must not stop the others
        return {**outcome, "status": "error", "error": f"{type(exc).__name__}: {exc}"[:500]}
    rows = sum(int(q.get("rowcount") or 0) for q in result["queries"])
    return {**outcome, "status": "warmed", "rows": rows, "ms": round((time.monotonic() - started) * 1000)}


def _dashboard_datasets(dashboard: Any) -> set[int]:
    """The datasets a dashboard page may query: its charts' and its native filters' targets."""
    from superset.utils import json

    ids = {chart.datasource_id for chart in dashboard.slices if chart.datasource_id is not None}
    try:
        metadata = json.loads(dashboard.json_metadata or "{}")
    except (TypeError, ValueError):
        metadata = {}
    for native_filter in metadata.get("native_filter_configuration") or []:
        for target in native_filter.get("targets") or []:
            if isinstance(target.get("datasetId"), int):
                ids.add(target["datasetId"])
    return ids


def _warm_request(dashboard: Any, datasets: set[int], body: Any) -> dict[str, Any]:
    """Run one body the dashboard page posts to /api/v1/chart/data (a chart's, or a native filter's values).

    Only a body that names this dashboard and one of its datasets: the endpoint warms dashboards, it does
    not run arbitrary queries as other users (and the user's own access checks still apply in validate()).
    """
    started = time.monotonic()
    form_data = body.get("form_data") if isinstance(body, dict) else None
    form_data = form_data if isinstance(form_data, dict) else {}
    outcome: dict[str, Any] = {"chart": form_data.get("slice_id") or "filter"}
    datasource = body.get("datasource") if isinstance(body, dict) else None
    if (
        form_data.get("dashboardId") != dashboard.id
        or not isinstance(datasource, dict)
        or datasource.get("id") not in datasets
    ):
        return {**outcome, "status": "error", "error": f"not a request of dashboard {dashboard.id}"}
    return _run(dict(body), outcome, started)


def _warm_dashboard(username: str, dashboard_id: int, requests: list[Any] | None = None) -> dict[str, Any]:
    from superset.models.dashboard import Dashboard
    from superset.utils.core import override_user

    from superset import db, security_manager

    user = security_manager.find_user(username=username)
    if user is None or not user.active:
        abort(404, description=f"no active user {username!r}")
    dashboard = db.session.get(Dashboard, dashboard_id)
    if dashboard is None:
        abort(404, description=f"no dashboard {dashboard_id}")
    started = time.monotonic()
    with override_user(user):
        allowed = _can_access_dashboard(dashboard)
        # override_user restores g.user only on a normal exit: _warm_chart catches everything.
        charts = (
            [_warm_chart(chart) for chart in sorted(dashboard.slices, key=lambda c: c.id)] if allowed else []
        )
        datasets = _dashboard_datasets(dashboard) if allowed else set()
        page = [_warm_request(dashboard, datasets, body) for body in (requests or [])] if allowed else []
    if not allowed:
        abort(403, description=f"{username} may not open dashboard {dashboard_id}")
    return {
        "user": username,
        "dashboard": dashboard_id,
        "charts": charts,
        "requests": page,
        "warmed": sum(c["status"] == "warmed" for c in charts + page),
        "errors": sum(c["status"] == "error" for c in charts + page),
        "seconds": round(time.monotonic() - started, 3),
    }


def blueprint() -> Blueprint:
    bp = Blueprint("slm_warm_up", __name__, url_prefix="/slm/warm-up")

    @bp.route("", methods=["GET"])
    @bp.route("/", methods=["GET"])
    def plan():  # type: ignore[no-untyped-def]
        _require_admin()
        return jsonify({"scopes": _scopes()})

    @bp.route("/clear", methods=["POST"])
    def clear():  # type: ignore[no-untyped-def]
        from superset.extensions import cache_manager

        _require_admin()
        return jsonify({"cleared": bool(cache_manager.data_cache.clear())})

    @bp.route("", methods=["POST"])
    @bp.route("/", methods=["POST"])
    def warm():  # type: ignore[no-untyped-def]
        _require_admin()
        body = request.get_json(silent=True) or {}
        try:
            username, dashboard_id = str(body["user"]), int(body["dashboard"])
            requests = list(body.get("requests") or [])
        except (KeyError, TypeError, ValueError):
            abort(400, description='expected {"user": <username>, "dashboard": <id>, "requests": [<body>]}')
        return jsonify(_warm_dashboard(username, dashboard_id, requests))

    return bp
