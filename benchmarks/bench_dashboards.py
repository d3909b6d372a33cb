"""Dashboards under load (issue 13): chart-data latency for N concurrent users, and row-level security then.

Every simulated user logs in through Superset's API with its own session (the users are spread round-robin
over the client accounts and the manager of the stack's credentials.json), lists the dashboards it may open
and their charts, and fetches each chart's data with the chart's saved query context
(``GET /api/v1/chart/<id>/data/``, what tests/test_isolation.py checks one request at a time). Two modes:

- *burst*: every user fetches every chart of every dashboard it sees, back to back, ``--rounds`` times;
- *meeting*: every user opens a dashboard (all its charts at once, at most ``--parallel`` requests in flight
  as a browser does over HTTP/1.1), waits ``--pause`` seconds once they are all in, opens the next one, for
  ``--duration`` seconds (a review meeting where everyone opens their dashboards at the same time).

Before each timed part, each account fetches each of its charts ``--warm`` times (four at a time, forcing the
query so that every entry starts its cache timeout afresh): that warms Superset's result cache (the figures
are for cached charts, as the issue measures them) and records the account's reference answer per chart.
Under load, every response is checked for rows of another client:
a row whose ``client_code`` is not the user's own client (charts whose query returns that column), and a
response whose data differ from the user's own reference answer (any chart), counted as foreign when they
equal another account's answer. The manager sees every client: only the second check applies to it.

Reported per mode: requests, errors, p50/p95/max latency, requests/s, the share of responses Superset
served from its cache, foreign rows, the 1-minute load average before and after (the machine may be
shared), and, with the stack's SLM_HOME, the rows Superset's event logger wrote into its metadata ``logs``
table per request. The baseline is the first ``--superset-url``: give several (``label=url``) to measure two
configurations of the same stack side by side in one run (same data, same machine, modes alternating), and
the report adds their ratios to the first. Nothing here is a pass/fail: the figures go to
docs/design/dashboards_under_load.md.

    SLM_HOME=/tmp/bench ./slm demo up
    SLM_HOME=/tmp/bench .venvs/airflow/bin/python benchmarks/bench_dashboards.py --users 20 \\
        --mode burst,meeting --duration 120 --json /tmp/dash.json
    # two configurations side by side (the second Superset started by hand on the same metadata DB):
    SLM_HOME=/tmp/bench .venvs/airflow/bin/python benchmarks/bench_dashboards.py --users 20 \\
        --superset-url today=http://127.0.0.1:8088 --superset-url tuned=http://127.0.0.1:8090
    # the product's configuration warmed by the product's own warm-up (what the nightly does after publish):
    ... --superset-url before=http://127.0.0.1:8090 --superset-url after=http://127.0.0.1:8088 \\
        --product-warm after
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from slm_platform.dashboards.superset_api import SupersetClient


@dataclass
class Account:
    name: str  # a client code, or "manager"
    username: str
    password: str
    client: str | None  # the client code whose rows this account may read; None: every client (manager)


@dataclass
class Sample:
    ms: float
    ok: bool
    cached: bool = False
    foreign_rows: int = 0
    differs: bool = False
    foreign_answer: bool = False
    with_client_code: bool = False  # the answer has a client_code column: its rows checked one by one
    error: str = ""


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)


def _accounts(creds: dict) -> list[Account]:
    superset = creds.get("superset") or {}
    clients = superset.get("clients") or {}
    if not clients:
        raise SystemExit("no Superset client accounts in credentials.json: run `./slm demo up` first")
    out = [Account(code, c["username"], c["password"], code) for code, c in sorted(clients.items())]
    if superset.get("manager"):
        m = superset["manager"]
        out.append(Account("manager", m["username"], m["password"], None))
    return out


def _digest(body: dict) -> str:
    """The data of a chart-data answer, without its cache metadata (cached_dttm, is_cached, cache_key...)."""
    parts = [{"colnames": r.get("colnames"), "data": r.get("data")} for r in body.get("result", [])]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class Target:
    """One Superset, its accounts' dashboards and charts, and their reference answers."""

    def __init__(
        self,
        label: str,
        url: str,
        accounts: list[Account],
        warm: int,
        product_warm: tuple[str, str] | None = None,
    ) -> None:
        self.label, self.url, self.warm_passes = label, url.rstrip("/"), max(warm, 1)
        # (admin user, password): warm with the product's own warm-up (POST /slm/warm-up, what the nightly
        # does after publish) instead of fetching every chart as every account.
        self.product_warm = product_warm
        self.warm_hits = (0, 0)  # product warm-up: the first fetches that Superset served from its cache
        self.warm_seconds = 0.0
        self.charts: dict[str, list[list[int]]] = {}  # account -> dashboards -> chart ids
        self.reference: dict[tuple[str, int], str] = {}  # (account, chart) -> digest
        self.apis: dict[str, SupersetClient] = {}
        self.accounts = accounts
        for acc in accounts:
            api = self.apis[acc.name] = SupersetClient(self.url, acc.username, acc.password)
            # The dashboard API refuses ordering by id; a stack has far fewer than a page (100) of them.
            dashboards = sorted(d["id"] for d in api.list_all("/api/v1/dashboard/", order_column=None))
            self.charts[acc.name] = [
                [c["id"] for c in api.get(f"/api/v1/dashboard/{d}/charts")["result"]] for d in dashboards
            ]
        self.reference = self.warm()
        # How much the answer check can see: charts shown to several clients whose answers all differ.
        clients = {a.name for a in accounts if a.client is not None}
        by_chart: dict[int, list[str]] = {}
        for (name, chart), digest in self.reference.items():
            if name in clients:
                by_chart.setdefault(chart, []).append(digest)
        shared = [d for d in by_chart.values() if len(d) > 1]
        self.charts_told_apart = (sum(len(set(d)) == len(d) for d in shared), len(shared))

    def warm(self) -> dict[tuple[str, int], str]:
        """Warm the cache (untimed); every account's answer per chart.

        Without ``product_warm``: fetch every account's charts ``warm_passes`` times (4 at a time, forced).
        With it: the product's warm-up once, then each account's charts fetched once unforced (their answers,
        and the share already cached: what the warm-up covered)."""
        # New logins each time: an API token lives 15 minutes, less than a long run.
        for acc in self.accounts:
            self.apis[acc.name] = SupersetClient(self.url, acc.username, acc.password)
        if self.product_warm:
            return self._product_warm()

        def one(name: str, chart: int) -> tuple[tuple[str, int], str]:
            # A new connection each time (no shared session between threads either): gunicorn's workers
            # each keep a cache of their own (SimpleCache), and a kept-alive connection stays on one worker.
            headers = {**self.apis[name].session.headers, "Connection": "close"}
            for _ in range(self.warm_passes):
                # force: a still-valid entry would not be renewed and could expire during the timed part.
                resp = requests.get(
                    f"{self.url}/api/v1/chart/{chart}/data/?force=true", headers=headers, timeout=120
                )
                SupersetClient._check(resp)
            return (name, chart), _digest(resp.json())

        pairs = sorted({(n, c) for n, dashes in self.charts.items() for dash in dashes for c in dash})
        with ThreadPoolExecutor(4) as pool:
            return dict(pool.map(lambda pair: one(*pair), pairs))

    def _product_warm(self) -> dict[tuple[str, int], str]:
        from slm_platform.dashboards.warm import warm

        started = time.perf_counter()
        result = warm(self.url, *self.product_warm, log=lambda _: None)  # type: ignore[misc]
        self.warm_seconds = time.perf_counter() - started
        if result.errors:
            print(f"{self.label}: warm-up errors {result.errors[:3]}", file=sys.stderr)

        def one(name: str, chart: int) -> tuple[tuple[str, int], str, bool]:
            resp = self.apis[name].raw("GET", f"/api/v1/chart/{chart}/data/")
            SupersetClient._check(resp)
            body = resp.json()
            return (name, chart), _digest(body), all(r.get("is_cached") for r in body.get("result", []))

        pairs = sorted({(n, c) for n, dashes in self.charts.items() for dash in dashes for c in dash})
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda pair: one(*pair), pairs))
        self.warm_hits = (sum(hit for _, _, hit in answers), len(answers))
        return {key: digest for key, digest, _ in answers}

    def check(self, acc: Account, chart: int, resp: requests.Response, ms: float) -> Sample:
        if resp.status_code != 200:
            return Sample(ms, False, error=f"HTTP {resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            return Sample(ms, False, error="not JSON")
        results = body.get("result") or []
        if not results or any(r.get("status") != "success" for r in results):
            return Sample(ms, False, error="query not successful")
        foreign = 0
        with_code = any("client_code" in (r.get("colnames") or []) for r in results)
        if acc.client is not None:
            foreign = sum(
                1
                for r in results
                for row in r.get("data") or []
                if isinstance(row, dict) and "client_code" in row and row["client_code"] != acc.client
            )
        digest = _digest(body)
        differs = digest != self.reference[(acc.name, chart)]
        # Another account's answer to the same chart: a cache entry or a query shared across RLS scopes.
        foreign_answer = differs and any(
            digest == d for (name, c), d in self.reference.items() if c == chart and name != acc.name
        )
        if foreign_answer and acc.client is not None:
            foreign += sum(len(r.get("data") or []) for r in results)
        cached = all(r.get("is_cached") for r in results)
        return Sample(ms, True, cached, foreign, differs, foreign_answer, with_code)


class User:
    """One simulated user: its own login (and ``parallel`` sessions, the browser's connections)."""

    def __init__(self, target: Target, acc: Account, parallel: int) -> None:
        self.target, self.acc = target, acc
        api = SupersetClient(target.url, acc.username, acc.password)
        self.sessions = []
        for _ in range(parallel):
            s = requests.Session()
            s.headers.update(api.session.headers)
            s.cookies.update(api.session.cookies)
            self.sessions.append(s)

    def fetch(self, chart: int, session: requests.Session, run: Run) -> None:
        started = time.perf_counter()
        try:
            resp = session.get(f"{self.target.url}/api/v1/chart/{chart}/data/", timeout=120)
            resp.content  # noqa: B018 - the body is part of what the user waits for
            ms = (time.perf_counter() - started) * 1000
            run.add(self.target.check(self.acc, chart, resp, ms))
        except requests.RequestException as exc:
            run.add(Sample((time.perf_counter() - started) * 1000, False, error=type(exc).__name__))


def _burst(user: User, run: Run, rounds: int, start: threading.Barrier, **_: Any) -> None:
    start.wait()
    for _round in range(rounds):
        for dashboard in user.target.charts[user.acc.name]:
            for chart in dashboard:
                user.fetch(chart, user.sessions[0], run)


def _meeting(
    user: User, run: Run, index: int, start: threading.Barrier, duration: float, pause: float, **_: Any
) -> None:
    dashboards = [d for d in user.target.charts[user.acc.name] if d]
    start.wait()
    deadline = time.monotonic() + duration
    k = index  # users start on different dashboards, as people in a meeting do
    with ThreadPoolExecutor(len(user.sessions)) as pool:
        while time.monotonic() < deadline:
            charts = dashboards[k % len(dashboards)]
            k += 1
            # All the dashboard's charts at once, over at most len(sessions) connections.
            lanes = [charts[i :: len(user.sessions)] for i in range(len(user.sessions))]
            futures = [
                pool.submit(lambda lane, s: [user.fetch(c, s, run) for c in lane], lane, s)
                for lane, s in zip(lanes, user.sessions, strict=True)
                if lane
            ]
            for f in futures:
                f.result()
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))


MODES: dict[str, Callable[..., None]] = {"burst": _burst, "meeting": _meeting}


def _percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _metadata_log_rows() -> int | None:
    """Rows of Superset's metadata ``logs`` table (its event logger), if the stack's SLM_HOME is set."""
    if not os.environ.get("SLM_HOME"):
        return None
    try:
        import psycopg2

        from slm_platform.ops.stack import pg_server
        from slm_platform.settings import SUPERSET_DB

        with psycopg2.connect(pg_server().dsn(SUPERSET_DB)) as conn, conn.cursor() as cur:
            cur.execute("select count(*) from logs")
            return int(cur.fetchone()[0])
    except Exception:  # noqa: BLE001 - an optional figure: absent rather than a failed benchmark
        return None


def run_mode(target: Target, accounts: list[Account], mode: str, args: argparse.Namespace) -> dict[str, Any]:
    users = [User(target, accounts[i % len(accounts)], args.parallel) for i in range(args.users)]
    # Warmed again just before: results stay CACHE_DEFAULT_TIMEOUT (300 s here) in Superset's cache.
    if target.warm() != target.reference:
        print(f"{target.label}: answers changed since the first warm-up (a nightly ran?)", file=sys.stderr)
    run = Run()
    start = threading.Barrier(len(users) + 1)
    logs_before, load_before = _metadata_log_rows(), os.getloadavg()[0]
    threads = [
        threading.Thread(
            target=MODES[mode],
            kwargs={"user": u, "run": run, "index": i, "start": start, "rounds": args.rounds,
                    "duration": args.duration, "pause": args.pause},
            daemon=True,
        )
        for i, u in enumerate(users)
    ]  # fmt: skip
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    logs_after, load_after = _metadata_log_rows(), os.getloadavg()[0]
    warm_hits, warm_pairs = target.warm_hits
    ok = [s.ms for s in run.samples if s.ok]
    errors: dict[str, int] = {}
    for s in run.samples:
        if not s.ok:
            errors[s.error] = errors.get(s.error, 0) + 1
    n = len(run.samples)
    return {
        "target": target.label,
        "client_charts_with_distinct_answers": "{}/{}".format(*target.charts_told_apart),
        "url": target.url,
        "mode": mode,
        "users": args.users,
        "accounts": sorted({u.acc.name for u in users}),
        "requests": n,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "p50_ms": round(_percentile(ok, 50), 1),
        "p95_ms": round(_percentile(ok, 95), 1),
        "max_ms": round(max(ok), 1) if ok else math.nan,
        "mean_ms": round(sum(ok) / len(ok), 1) if ok else math.nan,
        "wall_s": round(wall, 2),
        "requests_per_s": round(n / wall, 2) if wall else math.nan,
        "cached_share": round(sum(s.cached for s in run.samples) / n, 3) if n else math.nan,
        "foreign_rows": sum(s.foreign_rows for s in run.samples),
        "responses_with_client_code": sum(s.with_client_code for s in run.samples),
        "responses_differing_from_reference": sum(s.differs for s in run.samples),
        "responses_equal_to_another_accounts_answer": sum(s.foreign_answer for s in run.samples),
        "metadata_log_rows_per_request": (
            round((logs_after - logs_before) / n, 2) if n and logs_before is not None and logs_after else None
        ),
        "warm": "product" if target.product_warm else f"{target.warm_passes} forced fetches per account",
        "warm_up_s": round(target.warm_seconds, 1) if target.product_warm else None,
        "first_fetch_after_warm_up_cached": f"{warm_hits}/{warm_pairs}" if target.product_warm else None,
        "loadavg_1m_before": round(load_before, 2),
        "loadavg_1m_after": round(load_after, 2),
    }


def _targets(args: argparse.Namespace) -> list[tuple[str, str]]:
    if args.superset_url:
        out = []
        for i, item in enumerate(args.superset_url):
            label, sep, url = item.partition("=")
            out.append((label, url) if sep and not label.startswith("http") else (f"t{i}", item))
        return out
    if not os.environ.get("SLM_HOME"):
        raise SystemExit("give --superset-url or SLM_HOME of a running stack")
    from slm_platform.settings import read_json, state_file

    port = (read_json(state_file()).get("superset") or {}).get("port")
    if not port:
        raise SystemExit(f"no Superset port in {state_file()}: is the stack up?")
    return [("stack", f"http://127.0.0.1:{port}")]


def _print(results: list[dict[str, Any]]) -> None:
    cols = ("target", "mode", "users", "requests", "errors", "p50_ms", "p95_ms", "max_ms", "requests_per_s",
            "cached_share", "foreign_rows", "responses_with_client_code",
            "responses_differing_from_reference", "metadata_log_rows_per_request", "loadavg_1m_before",
            "loadavg_1m_after", "first_fetch_after_warm_up_cached")  # fmt: skip
    print("\t".join(cols))
    for r in results:
        print("\t".join(str(r[c]) for c in cols))
    first = {r["mode"]: r for r in results if r["target"] == results[0]["target"]}
    for r in results:
        base = first.get(r["mode"])
        if base is None or r is base:
            continue
        print(
            f"{r['target']} / {base['target']} ({r['mode']}): p50 x{r['p50_ms'] / base['p50_ms']:.2f}, "
            f"p95 x{r['p95_ms'] / base['p95_ms']:.2f}, "
            f"requests/s x{r['requests_per_s'] / base['requests_per_s']:.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1, help="concurrent users (default 1)")
    parser.add_argument("--mode", default="burst,meeting", help="burst, meeting or both (comma-separated)")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of meeting mode (default 120)")
    parser.add_argument("--pause", type=float, default=10.0, help="meeting: seconds between dashboards")
    parser.add_argument("--rounds", type=int, default=1, help="burst: passes over every chart (default 1)")
    parser.add_argument("--parallel", type=int, default=6, help="meeting: connections per user (browser: 6)")
    parser.add_argument("--warm", type=int, default=3, help="untimed fetches of each chart per account first")
    parser.add_argument(
        "--superset-url", action="append", help="[label=]URL; repeat to compare (default: SLM_HOME's stack)"
    )
    parser.add_argument(
        "--product-warm",
        action="append",
        default=[],
        help="label of a target warmed by the product's warm-up (/slm/warm-up, the stack's admin) instead",
    )
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown or not modes:
        parser.error(f"unknown mode(s) {sorted(unknown)}: choose from {sorted(MODES)}")
    if args.users < 1:
        parser.error("--users must be at least 1")

    from slm_platform.settings import credentials_file, read_json

    creds = read_json(credentials_file())
    accounts = _accounts(creds)
    admin = ("admin", creds.get("superset_admin_password", ""))
    targets = []
    for label, url in _targets(args):
        print(f"{label}: logging in {len(accounts)} accounts at {url}, warming the cache", file=sys.stderr)
        targets.append(Target(label, url, accounts, args.warm, admin if label in args.product_warm else None))
    results = []
    for mode in modes:
        for target in targets:  # modes alternate between targets: both see the same machine load
            print(f"{target.label}: {mode}, {args.users} user(s)", file=sys.stderr)
            results.append(run_mode(target, accounts, mode, args))
            print(json.dumps(results[-1]), file=sys.stderr)  # a run cut short keeps what it measured
    _print(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"argv": sys.argv[1:], "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "cpus": os.cpu_count(), "results": results}, f, indent=2)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
