"""SQL statements and milliseconds per cached chart request, in-process (dashboards_under_load.md §9).

Run with Superset's interpreter and the stack's Superset environment
(``slm_platform.ops.stack.superset_env()``), once with the permission cache on and once with
``SUPERSET_SLM_PERMISSION_CACHE=0``:

    SLM_HOME=/tmp/h .venvs/airflow/bin/python -c "from slm_platform.ops.stack import superset_env; \
        import json; print(json.dumps(superset_env()))" > /tmp/env.json
    env $(jq -r 'to_entries[]|"\\(.key)=\\(.value)"' /tmp/env.json) .venvs/superset/bin/python \
        benchmarks/bench_permission_cache.py --username U --password P --requests 200

It creates Superset's app (``create_app()``, the config of SUPERSET_CONFIG_PATH), logs in through the app's
test client with the API (bearer token), picks the first chart of the user's first dashboard, fetches it
``--warm`` times, then ``--requests`` times one at a time, counting the statements sent to the metadata
database (SQLAlchemy ``before_cursor_execute`` on its engine) and the wall time of each request. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument(
        "--chart", type=int, default=0, help="chart id (default: the first of the first dashboard)"
    )
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--warm", type=int, default=5)
    parser.add_argument("--show", action="store_true", help="also list the last request's statements")
    args = parser.parse_args()

    import logging

    logging.disable(logging.WARNING)
    from sqlalchemy import event
    from superset.app import create_app

    app = create_app()
    with app.app_context():
        from superset.extensions import db

        engine = db.engine
        cache_on = bool(app.config.get("SLM_PERMISSION_CACHE"))
    statements = [0]
    texts: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements[0] += 1
        texts.append(" ".join(statement.split())[:160])

    event.listen(engine, "before_cursor_execute", count)
    client = app.test_client()
    resp = client.post(
        "/api/v1/security/login",
        json={"username": args.username, "password": args.password, "provider": "db", "refresh": False},
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    headers = {"Authorization": f"Bearer {resp.json['access_token']}"}
    chart = args.chart
    if not chart:
        dashboards = client.get("/api/v1/dashboard/", headers=headers).json["result"]
        first = sorted(d["id"] for d in dashboards)[0]
        chart = sorted(
            c["id"] for c in client.get(f"/api/v1/dashboard/{first}/charts", headers=headers).json["result"]
        )[0]
    url = f"/api/v1/chart/{chart}/data/"
    for _ in range(args.warm):
        assert client.get(url, headers=headers).status_code == 200
    counts, millis, cached = [], [], 0
    for _ in range(args.requests):
        before = statements[0]
        texts.clear()
        started = time.perf_counter()
        resp = client.get(url, headers=headers)
        millis.append((time.perf_counter() - started) * 1000)
        counts.append(statements[0] - before)
        assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
        cached += all(r.get("is_cached") for r in resp.json["result"])
    print(
        json.dumps(
            {
                "permission_cache": cache_on,
                "chart": chart,
                "requests": args.requests,
                "cached_answers": cached,
                "statements_median": statistics.median(counts),
                "statements_min": min(counts),
                "statements_max": max(counts),
                "ms_median": round(statistics.median(millis), 2),
                "ms_mean": round(statistics.fmean(millis), 2),
                **({"last_request_statements": texts} if args.show else {}),
            }
        )
    )


if __name__ == "__main__":
    main()
