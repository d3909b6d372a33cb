"""Warm Superset's chart-data cache after a publish: every dashboard of every client, with its own RLS.

The work happens inside Superset (``superset/slm_warmup.py``, ``/slm/warm-up``, Admin only); this module is
its HTTP client, used by ``./slm superset warm`` and by the nightly DAG's ``warm_dashboards`` task after
``publish``. It only needs the URL and an Admin login, so it works the same against the local stack and a
container.

Steps: ``POST /slm/warm-up/clear`` (no entry computed from the previous marts survives), ``GET /slm/warm-up``
(the scopes: one per distinct set of roles, with a user that stands for it and the dashboards it may open),
then ``POST /slm/warm-up`` once per scope and dashboard (a request stays short whatever the number of
clients).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slm_platform.dashboards.superset_api import SupersetClient

Log = Callable[[str], None]


@dataclass
class WarmResult:
    scopes: int = 0
    dashboards: int = 0
    charts: int = 0
    warmed: int = 0
    skipped: int = 0
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
            "errors": len(self.errors),
            "seconds": round(self.seconds, 1),
        }


def warm(base_url: str, username: str, password: str, log: Log = print, clear: bool = True) -> WarmResult:
    """Empty the chart-data cache (``clear``) and refill it for every scope's dashboards."""
    started = time.monotonic()
    api = SupersetClient(base_url, username, password, timeout=300)
    result = WarmResult()
    if clear:
        api.post("/slm/warm-up/clear")
    plan = api.get("/slm/warm-up")["scopes"]
    result.scopes = len(plan)
    for scope in plan:
        name = "+".join(scope["roles"])
        stats = result.per_scope.setdefault(name, {"dashboards": 0, "charts": 0, "warmed": 0})
        for dashboard in scope["dashboards"]:
            answer = api.post("/slm/warm-up", json={"user": scope["user"], "dashboard": dashboard})
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
