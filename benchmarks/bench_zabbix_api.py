"""Zabbix extraction throughput (records/s) against the local JSON-RPC server of tests/zabbix_fake.py.

    .venvs/airflow/bin/python benchmarks/bench_zabbix_api.py [--problems 5000] [--checks 20000]
        [--page-size 500 1000] [--repeat 3]

Data: ``--problems`` problem events (each with its recovery, 1 in 10 still open, 1 in 20 on an unmapped host)
spread over one day on six hosts in two mapped groups, and ``--checks`` icmpping values of one item.
For each page size (best of ``--repeat``):
  - baseline: the bare download: the same event.get pages (problems, recoveries) and history.get pages,
    as raw JSON-RPC POSTs decoded, nothing else;
  - extract: the connector (auth, host groups, problems, recoveries and the older problems they close,
    maintenance, checks; mapping; the drop's CSV files), without the load.
Records = problem + recovery events + check values. Prints records/s of both and the ratio (extract /
baseline). The fake runs in this process (http.server, one thread per connection, filtering in Python), so
absolute figures are a lower bound of a real server; the ratio is the connector's overhead. Nothing is
asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slm_platform.sources import zabbix as zbx  # noqa: E402
from tests.zabbix_fake import FakeZabbix  # noqa: E402

T0 = datetime(2026, 11, 2, tzinfo=UTC)
MAPPING = {
    "min_severity": "average",
    "services": [
        {"service_code": "B-ERP", "host_groups": ["ERP"], "check": {"host": "h1", "key": "icmpping"}},
        {"service_code": "B-MAIL", "host_groups": ["MAIL"]},
    ],
}


def build(n_problems: int, n_checks: int) -> FakeZabbix:
    z = FakeZabbix()
    z.hosts = {str(i): f"h{i}" for i in range(1, 8)}
    z.groups = {"ERP": ["1", "2", "3"], "MAIL": ["4", "5", "6"]}  # host 7: unmapped
    t0 = int(T0.timestamp())
    step = 86400 // max(1, n_problems)
    for i in range(n_problems):
        host = "7" if i % 20 == 0 else str(1 + i % 6)
        start = t0 + i * step
        z.add_problem(
            host,
            start,
            None if i % 10 == 0 else start + step // 2,
            severity=3 + i % 3,
            triggerid=f"t{i % 50}",
        )
    z.items = [{"itemid": "1", "host": "h1", "key_": "icmpping", "value_type": "3"}]
    z.history["1"] = [
        {
            "itemid": "1",
            "clock": str(t0 + i * 86400 // max(1, n_checks)),
            "ns": str(i),
            "value": "1" if i % 97 else "0",
        }
        for i in range(n_checks)
    ]
    return z


def baseline(z: FakeZabbix, page: int) -> int:
    s = requests.Session()
    ids = iter(range(1, 10**9))

    def call(method, params, auth=True):
        body = {"jsonrpc": "2.0", "method": method, "params": params, "id": next(ids)}
        h = {"Authorization": f"Bearer {z.token}"} if auth else {}
        return s.post(z.url, json=body, headers=h, timeout=120).json()["result"]

    call("apiinfo.version", {}, auth=False)
    lo, hi = int(T0.timestamp()), int(T0.timestamp()) + 86400 - 1
    n = 0
    for value in (1, 0):
        after = 0
        while True:
            got = call(
                "event.get",
                {
                    "output": zbx.EVENT_OUTPUT,
                    "source": 0,
                    "object": 0,
                    "value": value,
                    "time_from": lo,
                    "time_till": hi,
                    "eventid_from": str(after + 1),
                    "sortfield": ["eventid"],
                    "sortorder": "ASC",
                    "limit": page,
                    "selectHosts": ["hostid", "host"],
                    "selectTags": "extend",
                },
            )
            n += len(got)
            if len(got) < page:
                break
            after = max(int(e["eventid"]) for e in got)
    frm = lo
    seen = set()
    while True:
        got = call(
            "history.get",
            {
                "output": "extend",
                "history": 3,
                "itemids": ["1"],
                "time_from": frm,
                "time_till": hi,
                "sortfield": "clock",
                "sortorder": "ASC",
                "limit": page,
            },
        )
        fresh = [r for r in got if (r["clock"], r["ns"]) not in seen]
        seen.update((r["clock"], r["ns"]) for r in fresh)
        n += len(fresh)
        if len(got) < page or not fresh:
            break
        frm = max(int(r["clock"]) for r in got)
    return n


def extract(z: FakeZabbix, page: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        res = zbx.extract(
            zbx.mapping_from_dict(MAPPING),
            T0,
            T0 + timedelta(days=1),
            tmp,
            url=z.url,
            creds=zbx.Credentials(token=z.token),
            page_size=page,
        )
    return res.problems + res.recoveries + res.check_rows + res.check_bad


def best(fn, repeat: int) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t)
    return min(times), n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=5000)
    ap.add_argument("--checks", type=int, default=20000)
    ap.add_argument("--page-size", type=int, nargs="+", default=[500, 1000])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with build(a.problems, a.checks) as z:
        for page in a.page_size:
            tb, nb = best(lambda page=page: baseline(z, page), a.repeat)
            te, ne = best(lambda page=page: extract(z, page), a.repeat)
            print(
                f"page {page:>5}: baseline {nb} records in {tb:.2f} s = {nb / tb:,.0f}/s; "
                f"extract {ne} records in {te:.2f} s = {ne / te:,.0f}/s; "
                f"ratio extract/baseline {ne / te / (nb / tb):.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
