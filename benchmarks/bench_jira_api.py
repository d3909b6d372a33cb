"""Jira extraction throughput (issues/s) against the local Jira/JSM server of tests/jira_fake.py.

    .venvs/airflow/bin/python benchmarks/bench_jira_api.py [--issues 2000] [--page-size 50 100]
        [--embedded 100] [--sla] [--repeat 3]

For each page size (best of ``--repeat``):
  - baseline: the same requests as the connector (myself, status, the search/jql token pages with
    expand=changelog, the /changelog pages of issues whose embedded changelog is truncated, and with
    ``--sla`` one servicedeskapi SLA request per issue), answers decoded from JSON, nothing else;
  - extract: the connector (window filter, changelog → canonical events, mapping, tickets.csv and
    ticket_events.csv, jsm_sla.csv), without the load.
Prints issues/s and events/s of both and the ratio extract / baseline (the share of the time that is the
server and the wire). The fake runs in this process (Python's http.server), so absolute figures are a lower
bound of a real site (Jira Cloud also rate-limits); the ratio is the connector's own overhead. Nothing is
asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slm_platform.sources.http_auth import Auth  # noqa: E402
from slm_platform.sources.jira.api import extract_issues  # noqa: E402
from slm_platform.sources.jira.mapping import load_mapping  # noqa: E402
from tests.jira_fake import FakeJira, populate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START = datetime(2026, 10, 15, tzinfo=UTC)
UNTIL = datetime(2026, 12, 31, tzinfo=UTC)


def baseline(fake: FakeJira, mapping, page: int, sla: bool) -> int:
    s = requests.Session()
    s.auth = (fake.email, fake.api_token)
    s.get(f"{fake.url}/rest/api/3/myself", timeout=60).json()
    s.get(f"{fake.url}/rest/api/3/status", timeout=60).json()
    jql = f'({mapping.jql}) AND updated >= "1970-01-01 00:00" ORDER BY updated DESC, key DESC'
    params = {"jql": jql, "fields": ",".join(mapping.fields()), "expand": "changelog", "maxResults": page}
    n, token = 0, None
    while True:
        body = s.get(f"{fake.url}/rest/api/3/search/jql", params=dict(params, **({"nextPageToken": token}
                     if token else {})), timeout=60).json()  # fmt: skip
        for issue in body["issues"]:
            n += 1
            log = issue["changelog"]
            start = 0
            while log["total"] > len(log["histories"]) and start < log["total"]:
                cl = s.get(f"{fake.url}/rest/api/3/issue/{issue['key']}/changelog",
                           params={"startAt": start, "maxResults": 100}, timeout=60).json()  # fmt: skip
                start += len(cl["values"])
                if cl["isLast"]:
                    break
            if sla:
                s.get(f"{fake.url}/rest/servicedeskapi/request/{issue['key']}/sla", timeout=60).json()
        token = body.get("nextPageToken")
        if not token:
            return n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--issues", type=int, default=2000)
    ap.add_argument("--page-size", type=int, nargs="+", default=[50, 100])
    ap.add_argument("--embedded", type=int, default=100, help="histories embedded per issue by the search")
    ap.add_argument("--sla", action="store_true", help="also read JSM's SLA of every issue")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    mapping = load_mapping(REPO / "config" / "sources" / "jira_sample.yaml")
    t0 = time.monotonic()
    with FakeJira(embedded_limit=a.embedded, max_page=max(a.page_size)) as fake:
        populate(fake, a.issues, START, seed=1, sla=a.sla)
        histories = sum(len(i["histories"]) for i in fake.issues.values())
        print(f"{a.issues} issues, {histories} changelog entries generated in {time.monotonic() - t0:.1f} s;"
              f" embedded changelog {a.embedded}, sla {'on' if a.sla else 'off'}")  # fmt: skip
        for page in a.page_size:
            base, ext, events = [], [], 0
            for _ in range(a.repeat):
                t = time.monotonic()
                n = baseline(fake, mapping, page, a.sla)
                base.append(time.monotonic() - t)
                with tempfile.TemporaryDirectory() as tmp:
                    t = time.monotonic()
                    auth = Auth.basic(fake.email, fake.api_token)
                    out = Path(tmp) / "d"
                    res = extract_issues(
                        fake.url, auth, mapping, None, UNTIL, out, page_size=page, with_sla=a.sla
                    )
                    ext.append(time.monotonic() - t)
                    events = res.events
                assert n == res.issues == a.issues
            b, e = min(base), min(ext)
            print(
                f"page {page:4}: baseline {n / b:8.0f} issues/s ({b:.2f} s) | extract {n / e:8.0f} issues/s, "
                f"{events / e:8.0f} events/s ({e:.2f} s, {res.requests} requests) | extract/baseline time "
                f"{e / b:.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
