"""A cross-request cache of the security manager's permission answers (issue 13).

A cached chart request spent about 70 % of its time in Superset/FAB's security manager asking the metadata
database the same questions on every request (docs/design/dashboards_under_load.md, sections 3 and 9). The
mixin below remembers, per gunicorn worker and across requests, the answers that cost a query:

- ``_has_view_access(user, permission, view)`` (FAB's ``has_access``, Superset's ``can_access``), by user id;
- ``is_item_public(permission, view)`` (FAB's ``@protect`` asks it on every API call), user-independent;
- ``user_view_menu_names(permission)`` (``datasource_access``, ``schema_access``, ``database_access``...),
  by user id; ``get_accessible_databases`` derives from it;
- ``get_rls_filters(table)`` (part of the chart cache key, so it must be exact), by user id and dataset id.

Anonymous and guest users are never cached (their answers go to Superset as before).

Invalidation, so that isolation never weakens:

1. a *generation* token in Redis (``SUPERSET_REDIS_URL``), read once per request (lazily, by the first cached
   question); an entry is served only if it was stored under the request's generation. Without Redis the cache
   is off (a per-process cache cannot be invalidated in the other workers).
2. the token is replaced (a new random value, never a counter a Redis restart could bring back) whenever a
   statement of Superset's process writes a table that permissions are made of (``WATCHED_TABLES``: users,
   roles, their links, permission views, groups, RLS filters and their links, dashboard roles, datasets,
   databases): once when the statement runs and again when its connection goes back to the pool, i.e. after
   the commit, so a request that read the old rows between the two is invalidated too. This catches the UI,
   the REST API, ORM flushes, bulk and core statements, and ``superset`` CLI commands alike. FAB's login
   bookkeeping (``UPDATE ab_user SET last_login, login_count...``) is not a permission change and is ignored.
3. every entry lives ``TTL_SECONDS`` at most: the safety net for changes made behind Superset's back (psql).
4. ``SUPERSET_SLM_PERMISSION_CACHE=0`` turns the cache off (the side-by-side benchmark's switch).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

try:
    from flask import g, has_request_context, request
except ImportError:  # read outside Superset's environment (the unit tests of touches_permissions)
    g = request = None

    def has_request_context() -> bool:
        return False


from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

log = logging.getLogger("slm_security")

ENV_SWITCH = "SUPERSET_SLM_PERMISSION_CACHE"
TTL_SECONDS = 60.0
MAX_ENTRIES = 100_000
GENERATION_KEY = "slm_permission_generation"

# The metadata tables whose rows decide an answer above (FAB's ab_*, Superset's RLS, dashboard roles,
# datasets and databases, whose permission views follow them).
WATCHED_TABLES = frozenset(
    {
        "ab_user",
        "ab_role",
        "ab_user_role",
        "ab_permission",
        "ab_view_menu",
        "ab_permission_view",
        "ab_permission_view_role",
        "ab_group",
        "ab_user_group",
        "ab_group_role",
        "row_level_security_filters",
        "rls_filter_roles",
        "rls_filter_tables",
        "dashboard_roles",
        "dashboards",
        "tables",
        "dbs",
        # What a stored chart-data answer (slm_answers.py) is also made of: ownership, the charts' saved
        # query contexts, the dashboards' charts, the datasets' columns and metrics.
        "slice_user",
        "sqlatable_user",
        "dashboard_user",
        "slices",
        "dashboard_slices",
        "table_columns",
        "sql_metrics",
    }
)
_DML = re.compile(r'^\s*(?:insert\s+into|update|delete\s+from)\s+"?(\w+)"?', re.IGNORECASE)
_SET_PART = re.compile(r"\bset\b(.*?)(?:\bwhere\b|$)", re.IGNORECASE | re.DOTALL)
_ASSIGNED = re.compile(r'"?(\w+)"?\s*=')
# FAB updates these on every login: not a permission change.
_LOGIN_COLUMNS = frozenset({"last_login", "login_count", "fail_login_count", "changed_on"})


def touches_permissions(statement: str) -> bool:
    """True when ``statement`` writes a table of WATCHED_TABLES (other than FAB's login bookkeeping)."""
    match = _DML.match(statement)
    if not match or match.group(1).lower() not in WATCHED_TABLES:
        return False
    if match.group(1).lower() == "ab_user" and statement.lstrip()[:6].lower() == "update":
        set_part = _SET_PART.search(statement)
        columns = {c.lower() for c in _ASSIGNED.findall(set_part.group(1))} if set_part else set()
        return not (columns and columns <= _LOGIN_COLUMNS)
    return True


class _Generation:
    """The shared generation token in Redis."""

    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)

    def read(self) -> str | None:
        try:
            value = self._client.get(GENERATION_KEY)
            if value is None:  # first start, or Redis restarted: a fresh token nobody has cached under
                self._client.set(GENERATION_KEY, uuid.uuid4().hex, nx=True)
                value = self._client.get(GENERATION_KEY)
        except Exception as exc:  # noqa: BLE001 - no Redis answer: this request is not cached
            log.warning("permission cache: cannot read the generation (%s); request not cached", exc)
            return None
        return value.decode() if value is not None else None

    def bump(self) -> None:
        try:
            self._client.set(GENERATION_KEY, uuid.uuid4().hex)
        except Exception as exc:  # noqa: BLE001
            log.warning(
                "permission cache: cannot bump the generation (%s); other workers keep their answers "
                "up to %.0f s",
                exc,
                TTL_SECONDS,
            )


class _State:
    generation: _Generation | None = None
    # Bumped with the shared token: invalidates this process's entries at once, even if Redis is unreachable.
    epoch = 0
    store: dict[tuple[Any, ...], tuple[str, int, float, Any]] = {}
    lock = threading.Lock()
    listening = False


_UNSET = object()
_DIRTY = "slm_permission_dirty"


def enabled() -> bool:
    return _State.generation is not None


def bump() -> None:
    """Invalidate every worker's answers (also called by the statement events below)."""
    with _State.lock:
        _State.epoch += 1
        _State.store = {}
    if _State.generation is not None:
        _State.generation.bump()


def _after_cursor_execute(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
    if touches_permissions(statement):
        conn.info[_DIRTY] = True
        bump()


def _checkin(dbapi_connection, connection_record) -> None:  # noqa: ANN001
    # After the transaction's commit or rollback: a request that read the old rows after the first bump
    # stored them under a generation this one retires.
    if connection_record is not None and connection_record.info.pop(_DIRTY, False):
        bump()


def switched_off(environ: Any, name: str) -> bool:
    """An on-by-default switch set to 0 / false / no / off (this cache's, and slm_answers')."""
    return str(environ.get(name, "1")).strip().lower() in {"0", "false", "no", "off"}


def configure(redis_url: str, environ: dict[str, str] | None = None) -> bool:
    """Turn the cache on (once per process) when Redis is configured and the switch is not 0."""
    environ = os.environ if environ is None else environ
    if switched_off(environ, ENV_SWITCH) or not redis_url:
        _State.generation = None
        return False
    _State.generation = _Generation(redis_url)
    if not _State.listening:
        event.listen(Engine, "after_cursor_execute", _after_cursor_execute)
        event.listen(Pool, "checkin", _checkin)
        _State.listening = True
    return True


def _request_generation() -> str | None:
    if _State.generation is None or not has_request_context():
        return None
    req = request._get_current_object()  # noqa: SLF001 - an attribute per request, not per app context
    gen = getattr(req, "_slm_permission_generation", _UNSET)
    if gen is _UNSET:
        gen = _State.generation.read()
        req._slm_permission_generation = gen  # type: ignore[attr-defined]
    return gen  # type: ignore[return-value]


def cached(key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    gen = _request_generation()
    if gen is None:
        return compute()
    now = time.monotonic()
    entry = _State.store.get(key)
    if entry is not None and entry[0] == gen and entry[1] == _State.epoch and entry[2] > now:
        return entry[3]
    epoch = _State.epoch  # read before computing: a bump meanwhile makes the new entry invalid
    value = compute()
    store = _State.store
    if len(store) >= MAX_ENTRIES:
        store.clear()
    store[key] = (gen, epoch, now + TTL_SECONDS, value)
    return value


def _user_id(user: Any) -> int | None:
    """The id of a real, authenticated user; None for anonymous and guest users (never cached)."""
    if user is None or getattr(user, "is_anonymous", True) or getattr(user, "is_guest_user", False):
        return None
    uid = getattr(user, "id", None)
    return uid if isinstance(uid, int) else None


def _current_user_id() -> int | None:
    return _user_id(getattr(g, "user", None)) if has_request_context() else None


class RlsRow(NamedTuple):
    id: int
    group_key: str | None
    clause: str


class PermissionCacheMixin:
    """Put before SupersetSecurityManager in the bases."""

    def _has_view_access(self, user: Any, permission_name: str, view_name: str) -> bool:
        parent = super()._has_view_access  # type: ignore[misc]
        uid = _user_id(user)
        if uid is None:
            return parent(user, permission_name, view_name)
        return cached(
            ("view", uid, permission_name, view_name), lambda: bool(parent(user, permission_name, view_name))
        )

    def is_item_public(self, permission_name: str, view_name: str) -> bool:
        parent = super().is_item_public  # type: ignore[misc]
        return cached(
            ("public", permission_name, view_name), lambda: bool(parent(permission_name, view_name))
        )

    def user_view_menu_names(self, permission_name: str) -> set[str]:
        parent = super().user_view_menu_names  # type: ignore[misc]
        uid = _current_user_id()
        if uid is None:
            return parent(permission_name)
        return set(cached(("menus", uid, permission_name), lambda: frozenset(parent(permission_name))))

    def get_rls_filters(self, table: Any) -> list[Any]:
        parent = super().get_rls_filters  # type: ignore[misc]
        uid = _current_user_id()
        table_id = getattr(table, "id", None)
        if uid is None or table_id is None:
            return parent(table)

        def compute() -> tuple[RlsRow, ...]:
            return tuple(RlsRow(f.id, f.group_key, f.clause) for f in parent(table))

        # A new list each time: get_rls_sorted sorts it in place.
        return list(cached(("rls", uid, type(table).__name__, table_id), compute))
