"""Survey API extraction throughput (records/s) against the local servers of tests/survey_fakes.py.

    .venvs/airflow/bin/python benchmarks/bench_survey_api.py [--responses 5000] [--page-size 100 500]
        [--repeat 3]

For each tool and page size (best of ``--repeat``):
  - baseline: the same requests as the connector (LimeSurvey: the id listing, the id-range pages, the
    participant pages; Typeform: the before-token pages), answers decoded (JSON, base64), nothing else;
  - extract: the connector (window selection, flattening, staging JSON, conversion with the mapping into
    ``surveys.csv``), without the load.
Prints records/s of both and their ratio (extract / baseline: the share of the time that is the server and
the wire). The fakes run in this process (Python's http.server, one thread per connection), so absolute
figures are a lower bound of what a real server allows; the ratio is the connector's own overhead. Nothing
is asserted.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slm_platform.load.imports import extract_survey_api  # noqa: E402
from slm_platform.sources.http_auth import Auth  # noqa: E402
from tests.survey_fakes import FakeLimeSurvey, FakeTypeform  # noqa: E402
from tests.test_survey_api import LS_MAPPING, T0, TF_MAPPING, local, ls_response, participant, tf_item  # noqa: E402


def limesurvey(n: int) -> FakeLimeSurvey:
    fake = FakeLimeSurvey()
    for i in range(1, n + 1):
        sent = T0 + timedelta(minutes=i)
        answered = i % 4 != 0
        fake.participants.append(participant(i, f"t{i}", sent, local(sent) if answered else "N"))
        if answered:
            fake.responses[i] = ls_response(i, f"t{i}", sent + timedelta(minutes=30), satis=f"A{1 + i % 5}")
    return fake


def typeform(n: int) -> FakeTypeform:
    fake = FakeTypeform()
    fake.items = [tf_item(i, T0 + timedelta(minutes=i), csat=1 + i % 5) for i in range(1, n + 1)]
    return fake


def baseline_limesurvey(fake: FakeLimeSurvey, page: int) -> int:
    s = requests.Session()

    def call(method, *params):
        r = s.post(fake.url, json={"method": method, "params": list(params), "id": 1}, timeout=60)
        return r.json()["result"]

    key = call("get_session_key", fake.user, fake.password)
    fields = ["id", "token", "submitdate", "startdate", "datestamp"]
    doc = call(
        "export_responses", key, fake.survey_id, "json", None, "all", "code", "short", None, None, fields
    )
    ids = sorted(int(next(iter(r))) for r in json.loads(base64.b64decode(doc))["responses"])
    records = 0
    for k in range(0, len(ids), page):
        chunk = ids[k : k + page]
        doc = call(
            "export_responses", key, fake.survey_id, "json", None, "all", "code", "short", chunk[0], chunk[-1]
        )
        records += len(json.loads(base64.b64decode(doc))["responses"])
    start = 0
    while True:
        got = call("list_participants", key, fake.survey_id, start, page, False, ["sent", "completed"], {})
        if not isinstance(got, list):
            break
        records += len(got)
        start += len(got)
        if len(got) < page:
            break
    call("release_session_key", key)
    return records


def baseline_typeform(fake: FakeTypeform, page: int) -> int:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {fake.token}"
    records, before = 0, None
    while True:
        q = {"page_size": page, **({"before": before} if before else {})}
        items = s.get(f"{fake.url}/forms/{fake.form_id}/responses", params=q, timeout=60).json()["items"]
        records += len(items)
        if len(items) < page:
            return records
        before = items[-1]["token"]


def best(fn, repeat: int) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t0)
    return min(times), n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--responses", type=int, default=5000)
    ap.add_argument("--page-size", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    until = T0 + timedelta(days=365)
    print(f"{'tool':<11}{'page':>6}{'records':>9}{'baseline rec/s':>16}{'extract rec/s':>15}{'ratio':>7}")
    with tempfile.TemporaryDirectory(prefix="bench-survey-") as tmp:
        with limesurvey(args.responses) as ls:
            for page in args.page_size:

                def ext(page=page):
                    r = extract_survey_api(
                        LS_MAPPING, None, until, Path(tmp) / f"ls{page}", url=ls.url, user=ls.user,
                        password=ls.password, page_size=page,
                    )  # fmt: skip
                    return r.responses_in_window + r.invitations_read

                tb, nb = best(lambda page=page: baseline_limesurvey(ls, page), args.repeat)
                te, ne = best(ext, args.repeat)
                print(f"{'limesurvey':<11}{page:>6}{ne:>9}{nb / tb:>16.0f}{ne / te:>15.0f}{te / tb:>7.2f}")
        with typeform(args.responses) as tf:
            for page in [min(p, 1000) for p in args.page_size]:

                def ext_tf(page=page):
                    r = extract_survey_api(
                        TF_MAPPING, None, until, Path(tmp) / f"tf{page}", url=tf.url,
                        auth=Auth.bearer(tf.token), page_size=page,
                    )  # fmt: skip
                    return r.responses_in_window

                tb, nb = best(lambda page=page: baseline_typeform(tf, page), args.repeat)
                te, ne = best(ext_tf, args.repeat)
                print(f"{'typeform':<11}{page:>6}{ne:>9}{nb / tb:>16.0f}{ne / te:>15.0f}{te / tb:>7.2f}")


if __name__ == "__main__":
    main()
