"""Shared chart-data answers (issue 13): a cached chart answered without rebuilding it on every request.

A chart whose result is already in Superset's cache still cost about 40 ms of CPU per request: the chart and
its dataset loaded from the metadata database, the query context rebuilt through marshmallow, the cache key
(for a virtual dataset its SQL parsed again by sqlglot), the cached DataFrame turned back into JSON
(docs/design/dashboards_under_load.md, section 11). Twenty people opening their dashboards at the start of a
review meeting ask the same questions many times over. This module keeps the bytes of such an answer in the
chart-data cache (Redis, shared by every worker) and serves them to the next identical request of a user who
would get the same answer.

When two requests get the same answer. Superset's answer to a chart-data request depends on the request,
on the data, and on what the user may read: the permissions and the row-level security rules of the user's
roles (its own and its groups'), and whatever the user owns (an owner may read a chart or dataset its roles
do not give it). The key of a stored answer is therefore:

- the request: method, path, query string and JSON body (canonical);
- the user's effective role ids, and the user's id as well when the user owns a chart, dataset or dashboard
  (owners never share answers);
- the permission generation of ``slm_security``: any write to a table permissions, RLS rules, ownership,
  charts or datasets are made of replaces it, so the next request builds its answer again. Without a
  generation (no Redis, or the permission cache off) nothing is stored or served.

Where this applies: only after FAB's ``@protect`` has authenticated the user and checked its permission on
the endpoint (the wrapper sits inside it), only for authenticated, non-guest users, only for plain JSON
answers of the full result (no ``force``, CSV/XLSX, samples, query text...), only when every result of the
answer came from Superset's own cache (so a served answer says ``is_cached`` truly and carries the
``cached_dttm`` of that entry), and never when Jinja templating is on (a template may depend on the user
itself). The stored answers live in the chart-data cache under ``answer_``: ``POST /slm/warm-up/clear``
(after every publish) empties them with the rest, and each one lives ``ANSWER_TTL`` seconds at most, the
bound for a permission change made behind Superset's back (psql).

When several users of one role set ask the same question at once (a review meeting opening the same
dashboard), one request builds the answer under a short lock in Redis and the others wait for it (at most
``WAIT_S``; they build their own if it does not come), instead of all building it.

``SUPERSET_SLM_ANSWER_CACHE=0`` turns it off. Every chart-data response says what happened in its
``X-SLM-Answer`` header: ``hit``, ``stored`` or ``pass``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("slm_answers")

ENV_SWITCH = "SUPERSET_SLM_ANSWER_CACHE"
HEADER = "X-SLM-Answer"
KEY_PREFIX = "answer_"
ANSWER_TTL = 3600
LOCK_S = 30  # a request building an answer holds its key's lock at most this long (then it expires)
WAIT_S = 5.0  # the others wait this long for it at most, then build their own
POLL_S = 0.02
# GET /api/v1/chart/<id>/data/ arguments that ask for something else than the chart's plain cached answer.
_GET_ARGS_THAT_PASS = frozenset({"force", "format", "type"})
_OWNED = (
    "select 1 from slice_user where user_id = :u union all "
    "select 1 from sqlatable_user where user_id = :u union all "
    "select 1 from dashboard_user where user_id = :u limit 1"
)


class _State:
    on = False
    ttl = ANSWER_TTL


def enabled() -> bool:
    return _State.on


def install(permission_cache_on: bool, feature_flags: dict[str, bool], environ: dict[str, str] | None = None,
            ttl: int = ANSWER_TTL) -> bool:  # fmt: skip
    """Wrap the two chart-data endpoints (once per process). Off without the permission cache's generation,
    with Jinja templating on, or with ``SUPERSET_SLM_ANSWER_CACHE=0``."""
    environ = os.environ if environ is None else environ
    import slm_security  # loaded by path by superset_config before this module

    switch = not slm_security.switched_off(environ, ENV_SWITCH)
    _State.on = bool(switch and permission_cache_on and not feature_flags.get("ENABLE_TEMPLATE_PROCESSING"))
    _State.ttl = ttl
    if not _State.on:
        return False
    from superset.charts.data.api import ChartDataRestApi

    for name in ("get_data", "data"):
        _wrap_inside_protect(getattr(ChartDataRestApi, name))
    return True


def _wrap_inside_protect(protected: Callable[..., Any]) -> None:
    """Put ``_answered`` between FAB's ``@protect`` and the view it guards: replace, in the closure of
    protect's wrapper, the function it calls once the user is authenticated and allowed."""
    inner = protected.__wrapped__  # type: ignore[attr-defined]
    if getattr(inner, "_slm_answered", False):
        return
    cells = [c for c in protected.__closure__ or () if c.cell_contents is inner]  # type: ignore[attr-defined]
    if len(cells) != 1:
        raise RuntimeError(f"slm_answers: cannot find the view inside @protect of {protected.__name__}")
    cells[0].cell_contents = _answered(inner)


def _answered(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def answered(self: Any, *args: Any, **kwargs: Any) -> Any:
        from superset.extensions import cache_manager

        key = _key() if _State.on else None
        if key is None:
            return _mark(view(self, *args, **kwargs), "pass")
        cache = cache_manager.data_cache
        lock = key + "_lock"
        try:
            body = cache.get(key)
            # Single flight: when several users of one role set open the same dashboard at once, one of
            # them builds the answer and the others wait for it instead of all building it.
            building = body is None and cache.add(lock, 1, timeout=LOCK_S)
            if body is None and not building:
                body = _wait_for(cache, key, lock)
        except Exception as exc:  # noqa: BLE001 - no Redis answer: Superset answers as before
            log.warning("answer cache: read failed (%s)", exc)
            return _mark(view(self, *args, **kwargs), "pass")
        if isinstance(body, bytes):
            return _hit(body)
        try:
            response = view(self, *args, **kwargs)
            if not _storable(response):
                return _mark(response, "pass")
            try:
                cache.set(key, response.get_data(), timeout=_State.ttl)
            except Exception as exc:  # noqa: BLE001 - not stored: the answer itself is fine
                log.warning("answer cache: write failed (%s)", exc)
                return _mark(response, "pass")
            return _mark(response, "stored")
        finally:
            if building:
                _forget(cache, lock)

    answered._slm_answered = True  # type: ignore[attr-defined]
    return answered


def _wait_for(cache: Any, key: str, lock: str) -> Any:
    """The answer another request is building, or None once it is done without one (or after WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        body = cache.get(key)
        if body is not None or cache.get(lock) is None:
            return body
    return None


def _forget(cache: Any, lock: str) -> None:
    try:
        cache.delete(lock)
    except Exception as exc:  # noqa: BLE001 - it expires after LOCK_S anyway
        log.warning("answer cache: cannot release %s (%s)", lock, exc)


def _hit(body: bytes) -> Any:
    from flask import Response

    return Response(body, status=200, mimetype="application/json", headers={HEADER: "hit"})


def _mark(response: Any, what: str) -> Any:
    headers = getattr(response, "headers", None)
    if headers is not None:
        headers[HEADER] = what
    return response


def _key() -> str | None:
    """The stored answer's key for this request, or None when it must not be shared (see the docstring)."""
    import slm_security  # loaded by path by superset_config before this module
    from flask import g, request

    user = getattr(g, "user", None)
    uid = slm_security._user_id(user)  # noqa: SLF001 - None for anonymous and guest users
    if uid is None:
        return None
    generation = slm_security._request_generation()  # noqa: SLF001
    if generation is None:
        return None
    if request.method == "GET":
        if _GET_ARGS_THAT_PASS & set(request.args):
            return None
        body: Any = None
    else:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or body.get("force"):
            return None
        if body.get("result_format", "json") != "json" or body.get("result_type", "full") != "full":
            return None
    from superset import security_manager

    # By user id, as the permission cache keeps its other answers (a role or group change bumps it).
    roles = slm_security.cached(
        ("roles", uid), lambda: tuple(sorted({int(r.id) for r in security_manager.get_user_roles(user)}))
    )
    owner = slm_security.cached(("owns", uid), lambda: _owns_something(uid))
    material = json.dumps(
        [generation, list(roles), uid if owner else None, request.method, request.path,
         request.query_string.decode("latin-1"), body],
        sort_keys=True, default=str, separators=(",", ":"),
    )  # fmt: skip
    return KEY_PREFIX + hashlib.sha256(material.encode()).hexdigest()


def _owns_something(uid: int) -> bool:
    from sqlalchemy import text
    from superset.extensions import db

    return db.session.execute(text(_OWNED), {"u": uid}).first() is not None


def _storable(response: Any) -> bool:
    """A 200 JSON answer whose every result came from Superset's cache without error."""
    if getattr(response, "status_code", None) != 200:
        return False
    if getattr(response, "mimetype", "") != "application/json":
        return False
    try:
        results = json.loads(response.get_data()).get("result")
    except (ValueError, AttributeError):
        return False
    if not isinstance(results, list) or not results:
        return False
    return all(
        isinstance(r, dict)
        and r.get("is_cached") is True
        and not r.get("error")
        and r.get("status") == "success"
        for r in results
    )
