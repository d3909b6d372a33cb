"""The dashboards' cache warm-up as an Airflow task body, for every DAG that publishes marts (the nightly;
the incident review should call it after its publish too).

Never fails the run: the marts are published whatever happens here (docs/design/dashboards_under_load.md).
"""

from __future__ import annotations

import logging
import time

# Superset for the warm-up (http, host, port, login and password of an Admin; set by the stack).
SUPERSET_CONN_ID = "slm_superset"
ATTEMPTS, PAUSE_S = 2, 20


def warm_after_publish(log: logging.Logger) -> dict:
    """Empty and refill Superset's chart-data cache for every client's dashboards; a summary.

    No connection: AirflowSkipException. Superset unreachable after ATTEMPTS, or charts that fail to warm:
    WARNINGs naming ``./slm superset warm``, and the summary says so; nothing raised."""
    from airflow.exceptions import AirflowSkipException
    from airflow.sdk import Connection

    from slm_platform.dashboards.warm import warm

    try:
        conn = Connection.get(SUPERSET_CONN_ID)
    except Exception as exc:  # noqa: BLE001 - the SDK raises its own not-found error
        raise AirflowSkipException(f"no {SUPERSET_CONN_ID} connection: nothing to warm ({exc})") from exc
    url = f"{conn.schema or 'http'}://{conn.host}:{conn.port}"
    error = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            result = warm(url, conn.login, conn.password, log=log.info)
            break
        except Exception as exc:  # noqa: BLE001 - unreachable, refused, 5xx: the same warning
            error = f"{type(exc).__name__}: {exc}"[:500]
            log.warning(f"warm-up attempt {attempt} against {url} failed: {error}")
            if attempt < ATTEMPTS:
                time.sleep(PAUSE_S)
    else:
        log.warning("dashboards NOT warmed (the cache may hold the previous marts): ./slm superset warm")
        return {"warmed": 0, "error": error}
    for chart_error in result.errors:
        log.warning(f"chart not warmed: {chart_error}")
    return result.summary()
