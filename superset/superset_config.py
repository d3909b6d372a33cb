"""Superset configuration for the SLM platform: every setting comes from the environment.

Loaded by Superset through ``SUPERSET_CONFIG_PATH`` (see ``slm_platform.superset_service.superset_env``).

Environment:
  SUPERSET_SECRET_KEY      required; in production (``SLM_ENV=production``) a missing, short or
                           well-known key makes the import fail instead of starting an insecure server.
  SUPERSET_METADATA_DSN    SQLAlchemy URL of the metadata database (PostgreSQL).
  SUPERSET_FEATURE_FLAGS   optional JSON object merged over the defaults below.
  SUPERSET_REDIS_URL       optional; enables Redis caching and Celery (production workers).
  SUPERSET_TALISMAN        "true" to enable Talisman (HTTPS deployments); off for loopback dev.
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
if _REDIS_URL:
    _cache = {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": _REDIS_URL, "CACHE_DEFAULT_TIMEOUT": 300}
else:
    # Per-process cache: fine for two gunicorn workers on one machine; results are small aggregates.
    _cache = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}
CACHE_CONFIG = {**_cache, "CACHE_KEY_PREFIX": "slm_superset_"}
DATA_CACHE_CONFIG = {**_cache, "CACHE_KEY_PREFIX": "slm_data_"}


class CeleryConfig:  # only used when SUPERSET_REDIS_URL is set (production workers)
    broker_url = _REDIS_URL
    result_backend = _REDIS_URL
    imports = ("superset.sql_lab", "superset.tasks.cache", "superset.tasks.scheduler")
    worker_prefetch_multiplier = 1
    task_acks_late = False


CELERY_CONFIG = CeleryConfig if _REDIS_URL else None
