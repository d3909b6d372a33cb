"""Superset configuration for the SLM platform: every setting comes from the environment.

Loaded by Superset through ``SUPERSET_CONFIG_PATH``
(see ``slm_platform.dashboards.superset_service.superset_env``).

Environment:
  SUPERSET_SECRET_KEY      required; in production (``SLM_ENV=production``) a missing, short or
                           well-known key makes the import fail instead of starting an insecure server.
  SUPERSET_METADATA_DSN    SQLAlchemy URL of the metadata database (PostgreSQL).
  SUPERSET_FEATURE_FLAGS   optional JSON object merged over the defaults below.
  SUPERSET_REDIS_URL       optional; Redis as the cache shared by every worker (26 h timeouts, emptied and
                           refilled after each publish by /slm/warm-up) and Celery (production workers).
  SUPERSET_TALISMAN        "true" to enable Talisman (HTTPS deployments); off for loopback dev.
  SUPERSET_SLM_PERMISSION_CACHE  "0" turns off the cross-request permission cache (superset/slm_security.py;
                           on by default when SUPERSET_REDIS_URL is set, off without Redis).
  SUPERSET_SLM_ANSWER_CACHE  "0" turns off the shared chart-data answers (superset/slm_answers.py; on with
                           the permission cache, off without it).
  SUPERSET_SLM_ANSWER_TTL  seconds a shared answer lives at most (default 3600).
"""

from __future__ import annotations

import json
import os

SLM_ENV = os.environ.get("SLM_ENV", "development")
_PRODUCTION = SLM_ENV == "production"

# Keys shipped in docs/defaults: a server using one of them can have its sessions forged.
_WELL_KNOWN_KEYS = {
    "",
    "CHANGE_ME_TO_A_COMPLEX_RANDOM_SECRET",
    "thisISaSECRET_1234",
    "TEST_NON_DEV_SECRET",
    "changeme",
    "secret",
    "superset",
}
_MIN_KEY_LENGTH = 32

SECRET_KEY = os.environ.get("SUPERSET_SECRET_KEY", "")
if _PRODUCTION and (SECRET_KEY in _WELL_KNOWN_KEYS or len(SECRET_KEY) < _MIN_KEY_LENGTH):
    raise RuntimeError(
        f"SUPERSET_SECRET_KEY must be set to a random value of at least {_MIN_KEY_LENGTH} characters "
        "when SLM_ENV=production (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
    )
if not SECRET_KEY:
    # Development without a key: Superset itself refuses its built-in default, so fail clearly here.
    raise RuntimeError("SUPERSET_SECRET_KEY is not set")

SQLALCHEMY_DATABASE_URI = os.environ.get("SUPERSET_METADATA_DSN", "")
if not SQLALCHEMY_DATABASE_URI:
    raise RuntimeError("SUPERSET_METADATA_DSN is not set (SQLAlchemy URL of the metadata database)")
if SQLALCHEMY_DATABASE_URI.startswith("postgresql://"):
    SQLALCHEMY_DATABASE_URI = "postgresql+psycopg2://" + SQLALCHEMY_DATABASE_URI[len("postgresql://") :]

# Feature flags: dashboards are shared per role; nothing is embedded in third-party pages.
FEATURE_FLAGS: dict[str, bool] = {
    "DASHBOARD_RBAC": True,
    "EMBEDDED_SUPERSET": False,
    "ALERT_REPORTS": False,
    "ENABLE_TEMPLATE_PROCESSING": False,
}
_extra_flags = os.environ.get("SUPERSET_FEATURE_FLAGS")
if _extra_flags:
    FEATURE_FLAGS.update({str(k): bool(v) for k, v in json.loads(_extra_flags).items()})

# No example data, CSRF stays on (the REST client fetches a token), no public role.
SUPERSET_LOAD_EXAMPLES = False
WTF_CSRF_ENABLED = True
try:  # Superset's own list (this file runs at the end of superset.config, where it is already defined)
    from superset.config import WTF_CSRF_EXEMPT_LIST as _SUPERSET_CSRF_EXEMPT
except ImportError:  # read outside Superset's environment
    _SUPERSET_CSRF_EXEMPT = []
# The cache warm-up's POST routes accept a bearer token only (superset/slm_warmup.py): no cookie, no CSRF.
WTF_CSRF_EXEMPT_LIST = [*_SUPERSET_CSRF_EXEMPT, "slm_warmup.clear", "slm_warmup.warm"]
PUBLIC_ROLE_LIKE = None
AUTH_ROLE_PUBLIC = "Public"

# Talisman (CSP/HSTS) only where Superset is served over HTTPS; on loopback dev it breaks nothing but
# warns, and HSTS on http://127.0.0.1 is harmful.
TALISMAN_ENABLED = os.environ.get("SUPERSET_TALISMAN", "false").lower() == "true"
CONTENT_SECURITY_POLICY_WARNING = False
SESSION_COOKIE_SECURE = _PRODUCTION and TALISMAN_ENABLED

ROW_LIMIT = 50_000
SUPERSET_WEBSERVER_TIMEOUT = 120

_REDIS_URL = os.environ.get("SUPERSET_REDIS_URL", "")
# The marts change only when the nightly (or an incident review) publishes them, and every publish is followed
# by a warm-up that empties the chart-data cache and refills it for every client's dashboards (superset/
# slm_warmup.py): with a cache shared by all workers an entry can live until the next night (26 h: the
# nightly's own duration and a late start included). A per-process SimpleCache cannot be emptied or warmed
# from one request (each gunicorn worker has its own), so it keeps a short timeout: a stale entry after a
# publish lives 5 minutes at most.
CACHE_TIMEOUT_SHARED = 26 * 3600
CACHE_TIMEOUT_PER_PROCESS = 300
if _REDIS_URL:
    _cache = {
        "CACHE_TYPE": "RedisCache",
        "CACHE_REDIS_URL": _REDIS_URL,
        "CACHE_DEFAULT_TIMEOUT": CACHE_TIMEOUT_SHARED,
    }
else:
    _cache = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": CACHE_TIMEOUT_PER_PROCESS}
CACHE_CONFIG = {**_cache, "CACHE_KEY_PREFIX": "slm_superset_"}
# A stored chart-data answer (superset/slm_answers.py) lives in the chart-data cache beside the results it
# was made of, emptied with them after each publish; an hour at most, the bound for a permission change made
# behind Superset's back (psql), which no generation bump announces.
ANSWER_CACHE_TIMEOUT = int(os.environ.get("SUPERSET_SLM_ANSWER_TTL", "3600"))
DATA_CACHE_CONFIG = {**_cache, "CACHE_KEY_PREFIX": "slm_data_"}


class CeleryConfig:  # only used when SUPERSET_REDIS_URL is set (production workers)
    broker_url = _REDIS_URL
    result_backend = _REDIS_URL
    imports = ("superset.sql_lab", "superset.tasks.cache", "superset.tasks.scheduler")
    worker_prefetch_multiplier = 1
    task_acks_late = False


CELERY_CONFIG = CeleryConfig if _REDIS_URL else None


# Chart-data result types that are features with a permission of their own in the UI (samples, drill to
# detail, view query), which Superset 6.1's chart-data API does not check: measured, a client role without
# can_samples got result_type=samples and drill_detail (every column of its rows) and the SQL text. The
# rows stay behind RLS either way; the check makes the API refuse what the role was never given.
_RESULT_TYPE_PERMISSIONS = {
    "samples": ("can_samples", "Datasource"),
    "drill_detail": ("can_drill", "Dashboard"),
    "query": ("can_view_query", "Dashboard"),
}

try:
    from superset.errors import ErrorLevel, SupersetError, SupersetErrorType
    from superset.exceptions import SupersetSecurityException
    from superset.security import SupersetSecurityManager
except ImportError:  # this file is also read outside Superset's environment (tests of the settings above)
    SupersetSecurityManager = None


def _load_sibling(name: str):  # type: ignore[no-untyped-def]
    """A module of this folder, loaded by path once per process (this file is not on sys.path)."""
    import importlib.util
    import sys
    from pathlib import Path

    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


SLM_PERMISSION_CACHE = False  # outside Superset's environment; set below inside it
if SupersetSecurityManager is not None:
    # The cross-request permission cache (superset/slm_security.py; docs/design/dashboards_under_load.md,
    # section 9): on with Redis, off with SUPERSET_SLM_PERMISSION_CACHE=0.
    _slm_security = _load_sibling("slm_security")
    SLM_PERMISSION_CACHE = _slm_security.configure(_REDIS_URL)

    class SlmSecurityManager(_slm_security.PermissionCacheMixin, SupersetSecurityManager):
        def raise_for_access(self, *args: object, **kwargs: object) -> None:
            query_context = kwargs.get("query_context")
            if query_context is not None:
                kinds = {query_context.result_type, *(q.result_type for q in query_context.queries)}
                for kind in kinds:
                    needed = _RESULT_TYPE_PERMISSIONS.get(str(getattr(kind, "value", kind)))
                    if needed and not self.can_access(*needed):
                        raise SupersetSecurityException(
                            SupersetError(
                                error_type=SupersetErrorType.QUERY_SECURITY_ACCESS_ERROR,
                                message=f"result type {kind} needs the permission {needed[0]} on {needed[1]}",
                                level=ErrorLevel.ERROR,
                            )
                        )
            super().raise_for_access(*args, **kwargs)

    CUSTOM_SECURITY_MANAGER = SlmSecurityManager


# A dashboard page stores the labels it drew and their colors in its dashboard's metadata
# (``PUT /api/v1/dashboard/<id>/colors``, and the whole metadata when it is saved) whenever its user may edit
# it: as the Admin on a client dashboard, every client's series names (service codes), which each client then
# reads in its own dashboard's metadata (measured: tests/test_isolation.py). The bundle sets no shared or
# mapped label colors, so none is ever stored: every write of a dashboard, whatever its route (the colors
# PUT, a save from the UI, an import), leaves these two keys empty. Colors a user picks (``label_colors``,
# ``color_scheme``) are kept.
_LABEL_COLOR_KEYS = {"shared_label_colors": list, "map_label_colors": dict}


def strip_label_colors(json_metadata: str | None) -> str | None:
    """The dashboard metadata with its stored series names emptied, unchanged (same text) when none is."""
    try:
        metadata = json.loads(json_metadata or "")
    except ValueError:
        return json_metadata  # not ours to judge: Superset validates what it accepts
    if not isinstance(metadata, dict) or not any(metadata.get(k) for k in _LABEL_COLOR_KEYS):
        return json_metadata
    metadata.update({k: empty() for k, empty in _LABEL_COLOR_KEYS.items() if k in metadata})
    return json.dumps(metadata)


def _before_dashboard_write(_mapper: object, _connection: object, dashboard: object) -> None:
    stripped = strip_label_colors(dashboard.json_metadata)  # type: ignore[attr-defined]
    if stripped != dashboard.json_metadata:  # type: ignore[attr-defined]
        dashboard.json_metadata = stripped  # type: ignore[attr-defined]


def FLASK_APP_MUTATOR(app: object) -> None:  # noqa: N802 (Superset's setting name)
    from sqlalchemy import event
    from superset.models.dashboard import Dashboard

    for hook in ("before_insert", "before_update"):
        if not event.contains(Dashboard, hook, _before_dashboard_write):
            event.listen(Dashboard, hook, _before_dashboard_write)
    # Shared chart-data answers (superset/slm_answers.py; dashboards_under_load.md, section 11).
    app.config["SLM_ANSWER_CACHE"] = _load_sibling("slm_answers").install(  # type: ignore[attr-defined]
        SLM_PERMISSION_CACHE, FEATURE_FLAGS, ttl=ANSWER_CACHE_TIMEOUT
    )


# The quality gate's Great Expectations Data Docs ($SLM_HOME/data_docs, rebuilt by every gate run), served
# beside the dashboards and linked from the Data quality dashboard. Managers (and Admin) only: a failed
# expectation's page lists raw values of every client. Browser session required (no API token route).
def _data_docs_blueprint():  # type: ignore[no-untyped-def]
    from pathlib import Path

    from flask import Blueprint, abort, send_from_directory
    from flask_login import current_user

    docs = Path(os.environ.get("SLM_HOME") or Path(__file__).resolve().parents[1] / ".slm") / "data_docs"
    blueprint = Blueprint("slm_data_docs", __name__, url_prefix="/slm/data-docs")

    @blueprint.route("/", defaults={"path": "index.html"})
    @blueprint.route("/<path:path>")
    def serve(path: str):  # type: ignore[no-untyped-def]
        if not current_user.is_authenticated:
            abort(401)
        if not {role.name for role in current_user.roles} & {"Admin", "manager"}:
            abort(403)
        return send_from_directory(docs, path)  # refuses paths outside docs (werkzeug safe_join)

    return blueprint


def _warm_up_blueprint():  # type: ignore[no-untyped-def]
    """POST /slm/warm-up (superset/slm_warmup.py, loaded by path: this file is not on sys.path)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("slm_warmup", Path(__file__).with_name("slm_warmup.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.blueprint()


try:
    BLUEPRINTS = [_data_docs_blueprint(), _warm_up_blueprint()]
except ImportError:  # read outside Superset's environment (no flask_login): no server to add it to
    BLUEPRINTS = []


# The event logger: Superset's DBEventLogger writes and commits a row of its metadata `logs` table for every
# logged action, 3 per cached chart (6 when the query runs), which measured as the largest removable cost of a
# chart under load (docs/design/dashboards_under_load.md). The chart-data path is not logged any more; logins,
# dashboard views, edits and every other action still are (the audit trail of who opened what).
_UNLOGGED_ACTIONS = (
    "ChartDataRestApi.",  # .data, .json_dumps, .data_from_cache
    "_get_data_response",
    "load_into_dataframe",
    "QueryObject.post_processing",
)
# execute_sql is both a chart's query (logged from superset.models.core) and a SQL Lab statement (from
# superset.sql_lab): only the first is dropped, SQL Lab stays in the audit trail.
_UNLOGGED_QUERY = ("execute_sql", "superset.models.core")


def _logged(action: object, object_ref: object) -> bool:
    name = str(action)
    return not (name.startswith(_UNLOGGED_ACTIONS) or (name, object_ref) == _UNLOGGED_QUERY)


try:
    from superset.utils.log import DBEventLogger
except ImportError:
    DBEventLogger = None

if DBEventLogger is not None:

    class SlmEventLogger(DBEventLogger):
        """Superset's DBEventLogger without the chart-data actions (see _UNLOGGED_ACTIONS)."""

        def log_with_context(  # type: ignore[override]
            self,
            action: str,
            duration: object = None,
            object_ref: object = None,
            *args: object,
            **kwargs: object,
        ) -> None:
            if _logged(action, object_ref):
                super().log_with_context(action, duration, object_ref, *args, **kwargs)  # type: ignore[arg-type]

    EVENT_LOGGER = SlmEventLogger()
