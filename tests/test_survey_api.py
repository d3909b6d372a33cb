"""Survey tools pulled by API (LimeSurvey RemoteControl 2, Typeform Responses API) against local servers
speaking each protocol (tests/survey_fakes.py), loaded into a real PostgreSQL.

Expected rows are computed here from the fakes' data (tokens, dates, codes), not by the connector's code.
"""

from __future__ import annotations

import csv
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from slm_platform.load.imports import extract_survey_api, survey_api_window
from slm_platform.load.loader import load_drop
from slm_platform.sources.http_auth import Auth
from slm_platform.sources.surveys.api import SurveyApiAuthError, SurveyApiError, api_settings
from slm_platform.sources.surveys.mapping import MappingError, load_mapping
from tests.conftest import query_dicts
from tests.survey_fakes import FakeLimeSurvey, FakeTypeform, Fault

REPO = Path(__file__).resolve().parents[1]
LS_MAPPING = load_mapping(REPO / "config" / "sources" / "survey_api_limesurvey_sample.yaml")
TF_MAPPING = load_mapping(REPO / "config" / "sources" / "survey_api_typeform_sample.yaml")
PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)
FAST = {"backoff_base": 0.01, "timeout": 1.0}
SERVICES = ["ACME-ERP", "ACME-WEB"]


def local(dt: datetime) -> str:
    """LimeSurvey's zone-less server time (Europe/Paris)."""
    return dt.astimezone(PARIS).strftime("%Y-%m-%d %H:%M:%S")


def ls_response(
    rid: int, token: str, at: datetime, satis: str = "A5", nps: str = "9", done: bool = True
) -> dict:
    return {
        "id": str(rid),
        "submitdate": local(at) if done else None,
        "lastpage": "2" if done else "1",
        "startlanguage": "en",
        "seed": str(1000 + rid),
        "token": token,
        "startdate": local(at - timedelta(minutes=3)),
        "datestamp": local(at),
        "SATIS": satis,
        "RECOMMEND": nps,
        "EFFORT": "2.0000000000",
        "COMMENTS": f"comment {rid}",
        "CLIENT": "ACME",
        "TICKET": f"INC{rid:07d}",
        "SERVICE": SERVICES[rid % 2],
        "STYPE": "ticket",
    }


def participant(tid: int, token: str, sent: datetime | None, completed: str = "N") -> dict:
    return {
        "tid": str(tid),
        "token": token,
        "firstname": f"P{tid}",
        "lastname": "Test",
        "email": f"p{tid}@example.com",
        "sent": local(sent) if sent else "N",
        "completed": completed,
        "attribute_1": "ACME",
        "attribute_2": f"INC{tid:07d}",
        "attribute_3": SERVICES[tid % 2],
    }


def limesurvey_data(n: int = 30) -> FakeLimeSurvey:
    """n invitations, every third unanswered, one never sent; the answered ones respond an hour later;
    plus two anonymous responses (no token)."""
    fake = FakeLimeSurvey()
    for tid in range(1, n + 1):
        token = f"tok{tid:03d}"
        sent = T0 + timedelta(hours=tid)
        if tid == n:
            fake.participants.append(participant(tid, token, None))  # never sent
            continue
        answered = tid % 3 != 0
        fake.participants.append(
            participant(tid, token, sent, local(sent + timedelta(hours=1)) if answered else "N")
        )
        if answered:
            fake.responses[tid] = ls_response(tid, token, sent + timedelta(hours=1), satis=f"A{1 + tid % 5}")
    for rid in (n + 1, n + 2):
        fake.responses[rid] = ls_response(rid, "", T0 + timedelta(hours=rid))
    return fake


def expected_limesurvey(fake: FakeLimeSurvey) -> dict[str, dict]:
    """response_id -> (answered?, csat) from the fake's data; a tokened response is keyed by its
    invitation."""
    out: dict[str, dict] = {}
    answered_tokens = {r["token"] for r in fake.responses.values() if r["token"]}
    for r in fake.responses.values():
        rid = f"LSAPI482915-T-{r['token']}" if r["token"] else f"LSAPI482915-{r['id']}"
        out[rid] = {
            "answered": bool(r["submitdate"]),
            "csat": int(r["SATIS"][1:]) if r["submitdate"] else None,
        }
    for p in fake.participants:
        if p["sent"] != "N" and p["token"] not in answered_tokens and p["completed"] == "N":
            out[f"LSAPI482915-T-{p['token']}"] = {"answered": False, "csat": None}
    return out


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "surveys.csv", newline="") as fh:
        return {r["response_id"]: r for r in csv.DictReader(fh)}


def _ls(fake: FakeLimeSurvey, tmp: Path, since=None, until=None, name="w", **kw):
    kw = {**FAST, **kw}
    return extract_survey_api(
        LS_MAPPING,
        since,
        until or T0 + timedelta(days=30),
        tmp / name,
        url=kw.pop("url", fake.url),
        user=kw.pop("user", fake.user),
        password=kw.pop("password", fake.password),
        **kw,
    )


@pytest.fixture()
def db_with_clients(fresh_db: str, tmp_path: Path) -> str:
    """The demo clients and services (the surveys' hidden fields name them), nothing else."""
    from slm_platform.sources.demo_data import generate

    generate(tmp_path / "demo")
    (tmp_path / "ref").mkdir()
    for name in ("clients.csv", "services.csv"):
        shutil.copy(tmp_path / "demo" / name, tmp_path / "ref" / name)
    load_drop(fresh_db, tmp_path / "ref")
    return fresh_db


def _raw(dsn: str, source: str) -> dict[str, dict]:
    rows = query_dicts(
        dsn,
        "select s.response_id, s.answered_at, s.sent_at, s.csat, s.nps, s.comment, s.client_code"
        " from raw.surveys s where s.response_id like %s",
        ("LSAPI%" if source == "ls" else "TF-%",),
    )
    return {r.pop("response_id"): r for r in rows}


# -- LimeSurvey ------------------------------------------------------------------------------------------


def test_limesurvey_full_extract_equals_the_server(tmp_path: Path) -> None:
    with limesurvey_data() as fake:
        res = _ls(fake, tmp_path, page_size=4)
        fake_calls = {m: fake.calls(m) for m in ("get_session_key", "export_responses", "list_participants")}
        assert fake.calls("release_session_key") == 1 and not fake.sessions
    want = expected_limesurvey(fake)
    got = _rows(tmp_path / "w")
    assert set(got) == set(want)
    for rid, w in want.items():
        assert bool(got[rid]["answered_at"]) == w["answered"], rid
        assert (int(got[rid]["csat"]) if got[rid]["csat"] else None) == w["csat"], rid
    assert res.responses_listed == len(fake.responses) and res.responses_in_window == len(fake.responses)
    # paging: one listing + ceil(responses / 4) pages; participants ceil(30 / 4) pages (the last is short)
    assert fake_calls == {
        "get_session_key": 1,
        "export_responses": 1 + -(-len(fake.responses) // 4),
        "list_participants": 8,
    }
    # sent_at of an invited response is its invitation's, in UTC; of an anonymous one its start time
    assert got["LSAPI482915-T-tok001"]["sent_at"] == (T0 + timedelta(hours=1)).astimezone(PARIS).isoformat()
    assert (
        got["LSAPI482915-31"]["sent_at"]
        == (T0 + timedelta(hours=31, minutes=-3)).astimezone(PARIS).isoformat()
    )
    # the pulled records are kept beside the drop (quarantine locations point into them)
    assert (tmp_path / "w.api" / "limesurvey_api_482915_responses.json").exists()


def test_limesurvey_unwrapped_documents_are_read_too(tmp_path: Path) -> None:
    fake = limesurvey_data(9)
    fake.wrapped = False  # newer LimeSurvey writes the record without the {"<id>": …} wrapper
    with fake:
        _ls(fake, tmp_path)
    assert set(_rows(tmp_path / "w")) == set(expected_limesurvey(fake))


def test_limesurvey_windows_with_ties_at_the_watermark(tmp_path: Path) -> None:
    """(since, until]: a response changed exactly at a window's end is that window's, never the next's."""
    fake = limesurvey_data(30)
    cut = T0 + timedelta(hours=11)  # response 10's datestamp is exactly T0 + 11h
    assert fake.responses[10]["datestamp"] == local(cut)
    with fake:
        first = _ls(fake, tmp_path, None, cut, "w1")
        second = _ls(fake, tmp_path, cut, T0 + timedelta(days=30), "w2")
    r1 = {k: v for k, v in _rows(tmp_path / "w1").items() if v["answered_at"] or "-T-" not in k}
    r2 = {k: v for k, v in _rows(tmp_path / "w2").items() if v["answered_at"] or "-T-" not in k}
    responses = {k for k, v in expected_limesurvey(fake).items() if v["answered"] or "-T-" not in k}
    assert "LSAPI482915-T-tok010" in r1 and "LSAPI482915-T-tok010" not in r2
    assert set(r1).isdisjoint(r2) and set(r1) | set(r2) == responses
    assert first.responses_in_window + second.responses_in_window == len(fake.responses)


def test_limesurvey_rerun_and_later_changes_upsert_without_duplicates(
    db_with_clients: str, tmp_path: Path
) -> None:
    dsn = db_with_clients
    fake = limesurvey_data(30)
    cut = T0 + timedelta(days=3)
    with fake:
        first = survey_api_window(
            dsn,
            LS_MAPPING,
            None,
            cut,
            tmp_path / "w1",
            url=fake.url,
            user=fake.user,
            password=fake.password,
            **FAST,
        )
        before = _raw(dsn, "ls")
        assert set(before) == set(expected_limesurvey(fake))
        [b] = first.load
        assert b.rows_read == b.rows_loaded and b.rows_quarantined == 0
        # rerun of the same window: nothing new, nothing duplicated
        again = survey_api_window(
            dsn,
            LS_MAPPING,
            None,
            cut,
            tmp_path / "w1",
            url=fake.url,
            user=fake.user,
            password=fake.password,
            **FAST,
        )
        [b2] = again.load
        assert b2.rows_unchanged == b2.rows_read and _raw(dsn, "ls") == before
        # after the window: invitation 3 (unanswered) is answered, response 4 is edited after submission
        fake.responses[3] = ls_response(3, "tok003", cut + timedelta(hours=2), satis="A2")
        fake.participants[2]["completed"] = local(cut + timedelta(hours=2))
        fake.responses[4] = {**fake.responses[4], "SATIS": "A1", "datestamp": local(cut + timedelta(hours=3))}
        survey_api_window(
            dsn,
            LS_MAPPING,
            cut,
            cut + timedelta(days=1),
            tmp_path / "w2",
            url=fake.url,
            user=fake.user,
            password=fake.password,
            **FAST,
        )
    after = _raw(dsn, "ls")
    assert set(after) == set(before)  # same keys: the invitation became its answer, the edit replaced
    assert before["LSAPI482915-T-tok003"]["answered_at"] is None
    assert (
        after["LSAPI482915-T-tok003"]["answered_at"] is not None
        and after["LSAPI482915-T-tok003"]["csat"] == 2
    )
    assert after["LSAPI482915-T-tok004"]["csat"] == 1
    # response rate as the marts compute it: answered / sent, each invitation once
    answered = sum(1 for r in after.values() if r["answered_at"])
    assert (answered, len(after)) == (sum(1 for r in fake.responses.values() if r["submitdate"]), len(after))


def test_limesurvey_records_changed_while_paging(tmp_path: Path) -> None:
    """A response edited between the listing and its page is written as it is now; one that arrives while
    paging (after ``until``) is left to the next window."""
    fake = limesurvey_data(30)
    until = T0 + timedelta(days=10)

    def meanwhile(method, params, n):
        if (
            method == "export_responses"
            and len(params) > 8
            and params[7] is not None
            and params[7] <= 11 <= params[8]
        ):
            if 11 in fake.responses and fake.responses[11]["SATIS"] != "A3":
                fake.responses[11] = {
                    **fake.responses[11],
                    "SATIS": "A3",
                    "datestamp": local(until + timedelta(minutes=5)),
                }
                fake.responses[99] = ls_response(99, "", until + timedelta(minutes=6))

    fake.before_answer = meanwhile
    with fake:
        res = _ls(fake, tmp_path, None, until, "w1", page_size=5)
        _ls(fake, tmp_path, until, until + timedelta(hours=1), "w2", page_size=5)
    got1, got2 = _rows(tmp_path / "w1"), _rows(tmp_path / "w2")
    assert got1["LSAPI482915-T-tok011"]["csat"] == "3"
    assert "LSAPI482915-99" not in got1 and "LSAPI482915-99" in got2
    assert "LSAPI482915-T-tok011" in got2  # its edit falls in the next window too: upserted (unchanged) there
    assert res.responses_in_window == len(fake.responses) - 1  # all but the late arrival (99)


def test_limesurvey_retries_429_5xx_timeouts_and_garbled_answers(tmp_path: Path) -> None:
    fake = limesurvey_data(12)
    fake.faults = {
        1: Fault(503),
        3: Fault(429, retry_after="0"),
        4: Fault(200, body="<html>proxy error</html>"),
        6: Fault(200, sleep=1.5),  # past the client's 1 s timeout
        7: Fault(502),
    }
    with fake:
        res = _ls(fake, tmp_path, page_size=3)
    assert set(_rows(tmp_path / "w")) == set(expected_limesurvey(fake))
    assert res.retries == {"5xx": 2, "429": 1, "bad_json": 1, "timeout": 1}


def test_limesurvey_persistent_outage_fails_with_the_last_error(tmp_path: Path) -> None:
    fake = limesurvey_data(3)
    fake.faults = {n: Fault(503) for n in range(1, 20)}
    with (
        fake,
        pytest.raises(
            SurveyApiError, match=r"get_session_key .* failed after 3 attempts; last error: HTTP 503"
        ),
    ):
        _ls(fake, tmp_path, max_retries=2)
    assert not (tmp_path / "w" / "surveys.csv").exists()


def test_limesurvey_auth_failure_is_clear_and_expired_sessions_are_renewed(tmp_path: Path) -> None:
    fake = limesurvey_data(6)
    with fake:
        with pytest.raises(
            SurveyApiAuthError, match="refused the credentials of user 'slm_reader'.*Invalid user"
        ) as refused:
            _ls(fake, tmp_path, password="wrong-pw-123")
        assert "wrong-pw-123" not in str(refused.value)  # the password never shows in the error
        assert not (tmp_path / "w" / "surveys.csv").exists()

        def expire(method, params, n):
            if method == "list_participants" and not getattr(expire, "done", False):
                expire.done = True
                fake.expire_sessions()

        fake.before_answer = expire
        res = _ls(fake, tmp_path, name="w2")
    assert res.session_renewals == 1 and fake.calls("get_session_key") == 3  # refused, first, renewed
    assert set(_rows(tmp_path / "w2")) == set(expected_limesurvey(fake))


def test_limesurvey_malformed_records_are_quarantined_with_a_reason(
    db_with_clients: str, tmp_path: Path
) -> None:
    dsn = db_with_clients
    fake = limesurvey_data(9)
    fake.responses[1]["RECOMMEND"] = "11"
    fake.responses[2]["CLIENT"] = "UMBRELLA"
    fake.responses[4]["SATIS"] = "A9"
    fake.responses[5]["submitdate"] = "05/10/2026 11:00"  # not a LimeSurvey date: datestamp still places it
    with fake:
        res = survey_api_window(
            dsn,
            LS_MAPPING,
            None,
            T0 + timedelta(days=30),
            tmp_path / "w",
            url=fake.url,
            user=fake.user,
            password=fake.password,
            **FAST,
        )
    [batch] = res.load
    q = query_dicts(
        dsn,
        "select raw_record ->> 'response_id' as rid, reason, raw_record ->> 'export_location' as loc"
        " from raw.quarantine where batch_id = %s",
        (batch.batch_id,),
    )
    reasons = {r["rid"]: r["reason"] for r in q}
    assert reasons == {
        "LSAPI482915-T-tok001": "nps out of range 0..10: '11'",
        "LSAPI482915-T-tok002": "unknown client_code: 'UMBRELLA'",
        "LSAPI482915-T-tok004": "bad integer in csat: 'A9'",
        "LSAPI482915-T-tok005": "bad timestamp in answered_at: '05/10/2026 11:00'",
    }
    assert all(r["loc"].startswith("limesurvey_api_482915_responses.json:") for r in q)
    assert batch.rows_read == batch.rows_loaded + batch.rows_quarantined


# -- Typeform --------------------------------------------------------------------------------------------


def tf_item(i: int, submitted: datetime | None, csat: int | str = 4, landed: datetime | None = None) -> dict:
    token = f"r{i:04d}tok"
    landed = landed or (submitted or T0) - timedelta(minutes=2)
    answers = [
        {"field": {"id": "f1", "ref": "csat", "type": "opinion_scale"}, "type": "number", "number": csat},
        {"field": {"id": "f2", "ref": "nps", "type": "nps"}, "type": "number", "number": i % 11},
        {"field": {"id": "f3", "ref": "comment", "type": "long_text"}, "type": "text", "text": f"c{i}"},
    ]
    return {
        "landing_id": token,
        "token": token,
        "response_id": token,
        "landed_at": landed.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "submitted_at": submitted.strftime("%Y-%m-%dT%H:%M:%SZ") if submitted else None,
        "metadata": {"platform": "other", "browser": "default"},
        "hidden": {"client": "ACME", "ticket": f"INC{i:07d}", "service": SERVICES[i % 2]},
        "calculated": {"score": 0},
        "answers": answers if submitted else answers[:1],
    }


def typeform_data(n: int = 23) -> FakeTypeform:
    fake = FakeTypeform()
    fake.items = [tf_item(i, T0 + timedelta(hours=i), csat=1 + i % 5) for i in range(1, n + 1)]
    return fake


def _tf(fake: FakeTypeform, tmp: Path, since=None, until=None, name="w", **kw):
    kw = {**FAST, **kw}
    return extract_survey_api(
        TF_MAPPING,
        since,
        until or T0 + timedelta(days=30),
        tmp / name,
        url=fake.url,
        auth=kw.pop("auth", Auth.bearer(fake.token)),
        **kw,
    )


def test_typeform_pages_with_before_tokens(tmp_path: Path) -> None:
    import dataclasses

    fake = typeform_data(23)
    mapping_path = tmp_path / "tf.yaml"
    mapping_path.write_text(TF_MAPPING.path.read_text().replace("page_size: 200", "page_size: 5"))
    mapping = dataclasses.replace(TF_MAPPING, path=mapping_path)
    assert api_settings(mapping).page_size == 5
    with fake:
        res = extract_survey_api(
            mapping,
            None,
            T0 + timedelta(days=30),
            tmp_path / "w",
            url=fake.url,
            auth=Auth.bearer(fake.token),
            **FAST,
        )
    got = _rows(tmp_path / "w")
    assert set(got) == {f"TF-{it['token']}" for it in fake.items}
    assert got["TF-r0007tok"]["csat"] == "3" and got["TF-r0007tok"]["nps"] == "7"
    assert got["TF-r0007tok"]["service_code"] == "ACME-WEB" and got["TF-r0007tok"]["comment"] == "c7"
    befores = [p.get("before") for _path, p, _n in fake.log]
    assert befores[0] is None and len(befores) == 5 and len(set(befores)) == 5  # 5+5+5+5+3
    assert res.requests == 5


def test_typeform_windows_with_ties_and_partial_responses_upserted(
    db_with_clients: str, tmp_path: Path
) -> None:
    dsn = db_with_clients
    fake = typeform_data(10)
    cut = T0 + timedelta(hours=5)  # item 5 submitted exactly at the cut: the first window's
    fake.items.append(tf_item(50, None, landed=T0 + timedelta(hours=2)))  # started, not submitted
    with fake:
        w1 = survey_api_window(
            dsn, TF_MAPPING, None, cut, tmp_path / "w1", url=fake.url, auth=Auth.bearer(fake.token), **FAST
        )
        assert set(_rows(tmp_path / "w1")) == {f"TF-r{i:04d}tok" for i in (1, 2, 3, 4, 5, 50)}
        # the started response is submitted later: same response id, upserted
        fake.items[-1] = tf_item(50, cut + timedelta(hours=1), csat=5, landed=T0 + timedelta(hours=2))
        w2 = survey_api_window(
            dsn,
            TF_MAPPING,
            cut,
            cut + timedelta(days=1),
            tmp_path / "w2",
            url=fake.url,
            auth=Auth.bearer(fake.token),
            **FAST,
        )
    assert set(_rows(tmp_path / "w2")) == {f"TF-r{i:04d}tok" for i in (6, 7, 8, 9, 10, 50)}
    assert w2.responses_outside_window >= 1  # item 5, returned by the inclusive since, not taken twice
    raw = _raw(dsn, "tf")
    assert (
        len(raw) == 11 and raw["TF-r0050tok"]["answered_at"] is not None and raw["TF-r0050tok"]["csat"] == 5
    )
    assert w1.load[0].rows_loaded == 6 and w2.load[0].rows_loaded == 6


def test_typeform_records_added_while_paging_are_neither_skipped_nor_doubled(tmp_path: Path) -> None:
    """New responses arriving between pages sort before the first page (newest first) and after ``until``:
    the before-token pages still hold every response of the window, once."""
    import dataclasses

    fake = typeform_data(20)
    until = T0 + timedelta(days=1)
    mapping_path = tmp_path / "tf.yaml"
    mapping_path.write_text(TF_MAPPING.path.read_text().replace("page_size: 200", "page_size: 6"))
    mapping = dataclasses.replace(TF_MAPPING, path=mapping_path)

    def meanwhile(path, params, n):
        if params.get("before"):  # from the second page on, two responses arrive per page
            fake.items.append(tf_item(100 + 2 * n, until + timedelta(minutes=n)))
            fake.items.append(tf_item(101 + 2 * n, until + timedelta(minutes=n, seconds=30)))

    fake.before_answer = meanwhile
    with fake:
        res = extract_survey_api(
            mapping, None, until, tmp_path / "w", url=fake.url, auth=Auth.bearer(fake.token), **FAST
        )
    got = _rows(tmp_path / "w")
    assert set(got) == {f"TF-r{i:04d}tok" for i in range(1, 21)}
    assert res.responses_in_window == 20 and res.requests == 4  # 6 + 6 + 6 + 2
    assert len(fake.items) > 20  # responses did arrive meanwhile


def test_typeform_retries_then_auth_failure(tmp_path: Path) -> None:
    fake = typeform_data(7)
    fake.faults = {
        1: Fault(429, retry_after="0"),
        2: Fault(500),
        3: Fault(200, sleep=1.5),
        4: Fault(200, body='{"items": ['),
    }
    with fake:
        res = _tf(fake, tmp_path)
        assert res.retries == {"429": 1, "5xx": 1, "timeout": 1, "bad_json": 1}
        assert len(_rows(tmp_path / "w")) == 7
        with pytest.raises(SurveyApiAuthError, match="Typeform refused the token .*HTTP 401"):
            _tf(fake, tmp_path, name="w2", auth=Auth.bearer("wrong"))
    assert not (tmp_path / "w2" / "surveys.csv").exists()


def test_typeform_malformed_records_quarantined_and_rerun_duplicates_nothing(
    db_with_clients: str, tmp_path: Path
) -> None:
    dsn = db_with_clients
    fake = typeform_data(6)
    fake.items[0]["hidden"]["client"] = "UMBRELLA"
    fake.items[1]["answers"][0]["number"] = 9  # csat out of range
    fake.bad_items = ["not an object"]
    with fake:
        res = survey_api_window(
            dsn,
            TF_MAPPING,
            None,
            T0 + timedelta(days=1),
            tmp_path / "w",
            url=fake.url,
            auth=Auth.bearer(fake.token),
            **FAST,
        )
        again = survey_api_window(
            dsn,
            TF_MAPPING,
            None,
            T0 + timedelta(days=1),
            tmp_path / "w",
            url=fake.url,
            auth=Auth.bearer(fake.token),
            **FAST,
        )
    [b] = res.load
    q = query_dicts(
        dsn,
        "select raw_record ->> 'response_id' as rid, reason from raw.quarantine where batch_id = %s",
        (b.batch_id,),
    )
    assert sorted(((r["rid"] or ""), r["reason"]) for r in q) == [
        ("", "missing key: response_id"),
        ("TF-r0001tok", "unknown client_code: 'UMBRELLA'"),
        ("TF-r0002tok", "csat out of range 1..5: '9'"),
    ]
    assert res.malformed and b.rows_loaded == 4
    [b2] = again.load
    assert b2.rows_loaded == 0 and b2.rows_unchanged == 4 and len(_raw(dsn, "tf")) == 4


def test_mapping_without_api_section_is_refused_clearly(tmp_path: Path) -> None:
    bare = load_mapping(REPO / "config" / "sources" / "survey_export_sample.yaml")
    with pytest.raises(MappingError, match="api is required"):
        api_settings(bare)


def test_cli_extract_surveys_then_from_the_recorded_mark(
    db_with_clients: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from slm_platform import cli

    class _Server:
        def dsn(self, _dbname: str) -> str:
            return db_with_clients

    monkeypatch.setattr("slm_platform.ops.stack.pg_server", lambda: _Server())
    monkeypatch.setenv("SLM_HOME", str(tmp_path / "home"))
    fake = limesurvey_data(12)
    monkeypatch.setenv("SLM_LIMESURVEY_USER", fake.user)
    monkeypatch.setenv("SLM_LIMESURVEY_PASSWORD", fake.password)
    mapping = str(LS_MAPPING.path)
    cut, end = T0 + timedelta(hours=8), T0 + timedelta(days=2)
    with fake:
        args = ["extract", "surveys", "--mapping", mapping, "--url", fake.url]
        assert cli.main([*args, "--all", "--end", cut.isoformat()]) == 0
        first = capsys.readouterr().out
        assert cli.main([*args, "--end", end.isoformat()]) == 0  # from the mark the first run recorded
        second = capsys.readouterr().out
    assert "pulled 5 responses of 10 listed" in first  # ids 1, 2, 4, 5, 7 answered by T0 + 8h
    assert "pulled 5 responses of 10 listed" in second  # 8, 10, 11 and the two anonymous ones
    assert set(_raw(db_with_clients, "ls")) == set(expected_limesurvey(fake))
    marks = query_dicts(
        db_with_clients,
        "select window_end from raw.extract_windows where dag_id = 'slm_surveys:limesurvey_api_482915'"
        " order by window_end",
    )
    assert [m["window_end"] for m in marks] == [cut, end]
