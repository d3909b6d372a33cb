"""A small Superset REST client: database login → bearer token, CSRF token on the same cookie jar."""

from __future__ import annotations

from typing import Any

import requests


class SupersetApiError(RuntimeError):
    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url} -> HTTP {status}: {body[:2000]}")
        self.status = status
        self.body = body


class SupersetClient:
    """Authenticated session against one Superset; every helper raises on HTTP errors."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self._login(username, password)

    def _login(self, username: str, password: str) -> None:
        resp = self.session.post(
            self.url("/api/v1/security/login"),
            json={"username": username, "password": password, "provider": "db", "refresh": False},
            timeout=self.timeout,
        )
        self._check(resp)
        self.session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"
        # The CSRF token is bound to the session cookie set by this call: keep the same jar.
        csrf = self.request("GET", "/api/v1/security/csrf_token/")["result"]
        # Superset checks the Referer on writes (Flask-WTF strict mode over HTTPS; harmless over HTTP).
        self.session.headers.update({"X-CSRFToken": csrf, "Referer": self.base_url + "/"})

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}{path}"

    @staticmethod
    def _check(resp: requests.Response) -> None:
        if resp.status_code >= 400:
            raise SupersetApiError(resp.request.method or "?", resp.url, resp.status_code, resp.text)

    def raw(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send a request without raising (tests look at denials)."""
        kwargs.setdefault("timeout", self.timeout)
        return self.session.request(method, self.url(path), **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.raw(method, path, **kwargs)
        self._check(resp)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def list_all(
        self, path: str, filters: list[dict[str, Any]] | None = None, order_column: str | None = "id"
    ) -> list[dict[str, Any]]:
        """Every row of a FAB list endpoint (pages of 100), optionally filtered with FAB's rison filters.

        ``order_column`` must be one the endpoint allows; None only for queries that fit in one page.
        """
        rows: list[dict[str, Any]] = []
        page = 0
        while True:
            # A stable order: unordered OFFSET pages on PostgreSQL can overlap and skip rows.
            query: dict[str, Any] = {"page": page, "page_size": 100, "filters": filters or []}
            if order_column:
                query.update(order_column=order_column, order_direction="asc")
            q = _rison(query)
            body = self.get(path, params={"q": q})
            batch = body.get("result", [])
            rows.extend(batch)
            if len(batch) < 100 or len(rows) >= int(body.get("count", len(rows))):
                return rows
            page += 1


def _rison(value: Any) -> str:
    """Encode dicts/lists/scalars as rison (enough for FAB list queries)."""
    if isinstance(value, dict):
        return "(" + ",".join(f"{k}:{_rison(v)}" for k, v in value.items()) + ")"
    if isinstance(value, list | tuple):
        return "!(" + ",".join(_rison(v) for v in value) + ")"
    if value is True:
        return "!t"
    if value is False:
        return "!f"
    if value is None:
        return "!n"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if text and all(c.isalnum() or c in "-_./~" for c in text) and not text[0].isdigit() and text[0] != "-":
        return text
    return "'" + text.replace("!", "!!").replace("'", "!'") + "'"
