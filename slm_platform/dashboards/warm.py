"""Warm Superset's chart-data cache after a publish: every dashboard of every client, with its own RLS.

The work happens inside Superset (``superset/slm_warmup.py``, ``/slm/warm-up``, Admin only); this module is
its HTTP client, used by ``./slm superset warm`` and by the nightly DAG's ``warm_dashboards`` task after
``publish``. It only needs the URL and an Admin login, so it works the same against the local stack and a
container.

Steps: ``POST /slm/warm-up/clear`` (no entry computed from the previous marts survives), ``GET /slm/warm-up``
(the scopes: one per distinct set of roles, with a user that stands for it and the dashboards it may open),
then ``POST /slm/warm-up`` once per scope and dashboard (a request stays short whatever the number of
clients).

The dashboard page does not ask for a chart's saved query context: its frontend builds its own body for
``POST /api/v1/chart/data`` (the native filters' default values included), whose cache key differs. So,
before the scopes, every dashboard is opened once in headless chromium as the Admin and the bodies it posts
are captured (``capture_dashboard_requests``; they do not depend on the user, Superset applies row-level
security to whoever runs them); each scope's request carries its dashboard's bodies, run there as the
scope's user. Without chromium (or Playwright) the warm-up still fills the saved query contexts' entries
and says the dashboards' first views will be cold.

The captured bodies depend on the dashboards' definitions, not on the data: they are kept in
``$SLM_HOME/superset/warm_requests.json``, per Superset URL and dashboard, with a fingerprint of the
dashboard (its layout and metadata) and of its charts (their form data), and a dashboard is opened in
chromium again only when its fingerprint changed (a new bundle, an edit in the UI). The nightly's warm-up
after an unchanged deployment opens no browser. This holds because no native filter of the bundle takes
its default from the data ("select first item by default": tests/test_dashboard_warm.py checks the bundle).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from slm_platform.dashboards.superset_api import SupersetClient

Log = Callable[[str], None]
CHROMIUM = os.environ.get("SLM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
# A viewport taller than any dashboard: charts below the fold are requested on load like the others.
VIEWPORT = {"width": 1400, "height": 4000}
PAGE_WAIT_MS = 240_000  # a dashboard's first, cold, load on a shared machine
QUIET_S = 2.0  # no new chart-data request for this long after the network is idle: the page is done
CAPTURE_PASSES = 2  # see capture_dashboard_requests
COLORS_ROUTE = "**/api/v1/dashboard/*/colors*"  # PUT by the page: never during a capture (see below)
CAPTURE_FORMAT = 2  # bumped when the capture changes what it keeps: earlier captures are taken again


@dataclass
class WarmResult:
    scopes: int = 0
    dashboards: int = 0
    charts: int = 0
    warmed: int = 0
    skipped: int = 0
    requests: int = 0  # the dashboard pages' own chart-data bodies, per scope
    requests_warmed: int = 0
    pages_captured: int = 0  # dashboards opened in chromium by this warm-up
    pages_reused: int = 0  # dashboards whose bodies were captured before, definitions unchanged
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    per_scope: dict[str, dict[str, int]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "scopes": self.scopes,
            "dashboards": self.dashboards,
            "charts": self.charts,
            "warmed": self.warmed,
            "skipped": self.skipped,
            "page_requests": self.requests,
            "page_requests_warmed": self.requests_warmed,
            "pages_captured": self.pages_captured,
            "pages_reused": self.pages_reused,
            "errors": len(self.errors),
            "seconds": round(self.seconds, 1),
        }


def capture_dashboard_requests(
    base_url: str, username: str, password: str, dashboards: list[int], passes: int = CAPTURE_PASSES
) -> dict[int, list[dict]]:
    """Open each dashboard in headless chromium as ``username``: the bodies its page posts to
    ``/api/v1/chart/data`` (charts and native filters' values), identical ones once, by dashboard.

    Every dashboard is opened ``passes`` times (all of them, then all again) and the bodies are united:
    a page's native-filter requests differ with the order their answers come back in, and the first
    page after a login differs from a later one (measured: 232 to 246 bodies for the same dashboards in
    three single-pass captures, and a client's first page once sent two filter bodies none had seen)."""
    from playwright.sync_api import sync_playwright

    seen: list[dict] = []
    unique: dict[int, dict[str, dict]] = {d: {} for d in dashboards}
    keys: dict[int, set[str]] = {d: set() for d in dashboards}

    def on_request(request: Any) -> None:
        if request.method == "POST" and "/api/v1/chart/data" in request.url:
            body = request.post_data_json
            if isinstance(body, dict):
                seen.append(body)

    with tempfile.TemporaryDirectory(prefix="slm-warm-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, viewport=VIEWPORT
        )
        try:
            # The page stores its label colors in the dashboard's metadata when its user may edit it (the
            # Admin may): the series names of every client, which each client then reads in its own
            # dashboard's metadata (tests/test_isolation.py caught it). The capture changes nothing.
            context.route(COLORS_ROUTE, lambda route: route.abort())
            page = context.new_page()
            page.on("request", on_request)
            page.goto(base_url + "/login/")
            page.fill("#username, input[name=username]", username)
            page.fill("#password, input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/login" not in url, timeout=60_000)
            for dashboard in [d for _ in range(passes) for d in dashboards]:
                seen.clear()
                page.goto(f"{base_url}/superset/dashboard/{dashboard}/")
                count = -1
                while count != len(seen):  # filters answer first, then the charts they reach post theirs
                    count = len(seen)
                    page.wait_for_load_state("networkidle", timeout=PAGE_WAIT_MS)
                    time.sleep(QUIET_S)
                # Only this page's: a request the previous page fired while this one was loading is not.
                mine = [b for b in seen if (b.get("form_data") or {}).get("dashboardId") == dashboard]
                for body in mine + _unfiltered_variants(mine):
                    unique[dashboard].setdefault(json.dumps(body, sort_keys=True), body)
                key = parse_qs(urlparse(page.url).query).get("native_filters_key", [None])[0]
                if key:
                    keys[dashboard].add(key)
        finally:
            context.close()
    out: dict[int, list[dict]] = {}
    for dashboard, found in unique.items():
        bodies = list(found.values())
        for body in [*bodies]:
            for key in keys[dashboard] | {None}:
                variant = _with_filters_key(body, key)
                if json.dumps(variant, sort_keys=True) not in found:
                    found[json.dumps(variant, sort_keys=True)] = variant
                    bodies.append(variant)
        out[dashboard] = bodies
    return out


def _with_filters_key(body: dict, key: str | None) -> dict:
    """The same body as the page sends it before (``key`` None) or after its URL carries the dashboard's
    ``native_filters_key`` (the stored filter state; the same key for every user of an unchanged dashboard:
    measured, the Admin's and a client's pages got the same one). The page sends either, depending on
    which comes first, and ``url_params`` is part of the answer's cache key."""

    def swap(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "url_params" and isinstance(v, dict) and set(v) <= {"native_filters_key"}:
                    out[k] = {"native_filters_key": key} if key else {}
                else:
                    out[k] = swap(v)
            return out
        if isinstance(node, list):
            return [swap(v) for v in node]
        return node

    return swap(body)


def dashboard_fingerprint(dashboard: dict, charts: list[dict]) -> str:
    """What a dashboard page's request bodies are built from: the dashboard's layout and metadata (native
    filters and their defaults) and its charts' form data, from ``GET /api/v1/dashboard/<id>`` and
    ``/charts``. Fields that change with time alone (humanized ages) are left out."""
    stable = {
        "capture": CAPTURE_FORMAT,
        "dashboard": {k: dashboard.get(k) for k in ("id", "json_metadata", "position_json", "changed_on")},
        "charts": sorted(
            ({k: c.get(k) for k in ("id", "form_data", "changed_on")} for c in charts),
            key=lambda c: str(c.get("id")),
        ),
    }
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()


def default_capture_cache() -> Path:
    from slm_platform.settings import slm_home

    return slm_home() / "superset" / "warm_requests.json"


def _read_cache(path: Path | None, base_url: str) -> dict[str, dict]:
    if path is None or not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text()).get(base_url) or {})
    except (OSError, ValueError, AttributeError):
        return {}  # unreadable: captured again, and rewritten below


def _write_cache(path: Path | None, base_url: str, entries: dict[str, dict], log: Log) -> None:
    if path is None:
        return
    try:
        whole = json.loads(path.read_text()) if path.exists() else {}
        whole = whole if isinstance(whole, dict) else {}
    except (OSError, ValueError):
        whole = {}
    whole[base_url] = entries
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(whole))
        os.replace(tmp, path)  # a concurrent warm-up reads the old file or the new one, never half
    except OSError as exc:
        log(f"  captured requests not kept ({exc}): the next warm-up opens the dashboards again")


def page_requests(
    api: SupersetClient,
    base_url: str,
    username: str,
    password: str,
    dashboards: list[int],
    cache: Path | None,
    result: WarmResult,
    log: Log,
) -> dict[int, list[dict]]:
    """Each dashboard's page bodies: from the capture cache when its fingerprint is unchanged, otherwise
    captured in chromium (and kept)."""
    kept = _read_cache(cache, base_url)
    prints = {
        d: dashboard_fingerprint(
            api.get(f"/api/v1/dashboard/{d}")["result"], api.get(f"/api/v1/dashboard/{d}/charts")["result"]
        )
        for d in dashboards
    }
    pages = {
        d: kept[str(d)]["bodies"]
        for d in dashboards
        if (kept.get(str(d)) or {}).get("fingerprint") == prints[d]
    }
    stale = [d for d in dashboards if d not in pages]
    result.pages_reused = len(pages)
    if stale:
        try:
            captured = capture_dashboard_requests(base_url, username, password, stale)
        except Exception as exc:  # noqa: BLE001 - no chromium, no Playwright, a page that never settles
            message = f"dashboard pages not captured ({type(exc).__name__}: {str(exc)[:300]})"
            result.errors.append(message)
            log(f"  {message}: their first views will run their queries")
        else:
            result.pages_captured = len(captured)
            pages.update(captured)
            entries = {
                str(d): {"fingerprint": prints[d], "bodies": pages[d]} for d in dashboards if d in pages
            }
            _write_cache(cache, base_url, entries, log)
    log(
        f"  dashboard pages: {sum(map(len, pages.values()))} chart-data requests of {len(pages)} dashboards"
        f" ({result.pages_captured} opened in chromium, {result.pages_reused} unchanged since captured)"
    )
    return pages


def _unfiltered_variants(bodies: list[dict]) -> list[dict]:
    """A native filter's values asked before its parent filter's default applies, for each filter that
    depends on another one (the service review's Period on Period type): the page sends both or only the
    second, depending on which answer comes first, so both are warmed."""
    variants = []
    for body in bodies:
        form_data = body.get("form_data") or {}
        parents = (form_data.get("extra_form_data") or {}).get("filters") or []
        if form_data.get("type") != "NATIVE_FILTER" or not parents:
            continue
        variant = copy.deepcopy(body)
        variant["form_data"]["extra_form_data"] = {}
        for query in variant.get("queries") or []:
            query["filters"] = [f for f in query.get("filters") or [] if f not in parents]
        variants.append(variant)
    return variants


def warm(
    base_url: str,
    username: str,
    password: str,
    log: Log = print,
    clear: bool = True,
    capture_cache: Path | None | str = "default",
) -> WarmResult:
    """Empty the chart-data cache (``clear``) and refill it for every scope's dashboards.

    ``capture_cache``: where the dashboard pages' captured bodies are kept (default
    ``default_capture_cache()``; None: capture every time, keep nothing)."""
    started = time.monotonic()
    cache = default_capture_cache() if capture_cache == "default" else capture_cache
    cache = Path(cache) if cache is not None else None
    api = SupersetClient(base_url, username, password, timeout=300)
    result = WarmResult()
    if clear:
        api.post("/slm/warm-up/clear")
    plan = api.get("/slm/warm-up")["scopes"]
    result.scopes = len(plan)
    every = sorted({d for scope in plan for d in scope["dashboards"]})
    try:
        pages = page_requests(api, base_url, username, password, every, cache, result, log)
    except Exception as exc:  # noqa: BLE001 - no chromium, no Playwright, a page that never settles
        pages = {}
        message = f"dashboard pages not captured ({type(exc).__name__}: {str(exc)[:300]})"
        result.errors.append(message)
        log(f"  {message}: their first views will run their queries")
    for scope in plan:
        name = "+".join(scope["roles"])
        stats = result.per_scope.setdefault(name, {"dashboards": 0, "charts": 0, "warmed": 0})
        for dashboard in scope["dashboards"]:
            body = {"user": scope["user"], "dashboard": dashboard, "requests": pages.get(dashboard, [])}
            answer = api.post("/slm/warm-up", json=body)
            for request in answer.get("requests", []):
                result.requests += 1
                if request["status"] == "warmed":
                    result.requests_warmed += 1
                else:
                    where = f"{name} dashboard {dashboard} page request ({request['chart']})"
                    result.errors.append(f"{where}: {request.get('error')}")
            result.dashboards += 1
            stats["dashboards"] += 1
            for chart in answer["charts"]:
                result.charts += 1
                stats["charts"] += 1
                if chart["status"] == "warmed":
                    result.warmed += 1
                    stats["warmed"] += 1
                elif chart["status"] == "skipped":
                    result.skipped += 1
                else:
                    where = f"{name} dashboard {dashboard} chart {chart['chart']}"
                    result.errors.append(f"{where}: {chart['error']}")
        also = ", ".join(scope.get("same_entries_as") or [])
        log(
            f"  {name:24} {stats['dashboards']:3} dashboards, {stats['warmed']}/{stats['charts']} charts"
            + (f" (the same entries serve {also})" if also else "")
        )
    result.seconds = time.monotonic() - started
    return result
