"""Credentials for the source clients (Prometheus, ServiceNow, Jira, the survey tools): one ``Auth`` for all.

Each client decides where credentials come from (environment, which connection extra key); this module only
holds them and turns them into the ``Authorization`` header, and reads an Airflow connection's URL and
``extra``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Auth:
    """Basic (user + password) or bearer token. The secret never shows in repr or errors."""

    kind: str  # "basic" or "bearer"
    secret: str = field(repr=False)
    user: str | None = None

    def headers(self) -> dict[str, str]:
        if self.kind == "bearer":
            return {"Authorization": f"Bearer {self.secret}"}
        token = base64.b64encode(f"{self.user}:{self.secret}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    @classmethod
    def basic(cls, user: str, password: str) -> Auth:
        return cls("basic", password, user)

    @classmethod
    def bearer(cls, token: str) -> Auth:
        return cls("bearer", token)


def connection_base_url(conn: Any) -> str:
    """``scheme://host[:port]`` of an Airflow connection whose host is a bare name or a full URL (scheme
    from the connection's ``schema``, default https); "" when it has no host."""
    host = (getattr(conn, "host", None) or "").rstrip("/")
    if not host:
        return ""
    if "://" not in host:
        host = f"{getattr(conn, 'schema', None) or 'https'}://{host}"
    port = getattr(conn, "port", None)
    return f"{host}:{port}" if port and host.count(":") < 2 else host


def connection_extra(conn: Any) -> dict:
    """A connection's extra as a dict: ``extra_dejson``, else ``extra`` (JSON text or a dict)."""
    extra = getattr(conn, "extra_dejson", None)
    if extra is None:
        raw = getattr(conn, "extra", None) or "{}"
        extra = raw if isinstance(raw, dict) else json.loads(raw)
    return extra or {}
