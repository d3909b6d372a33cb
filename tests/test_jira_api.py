"""Jira Cloud / JSM extractor against a local server speaking the REST protocol (tests/jira_fake.py).

Expected values come from the fake's generated truth (its canonical lifecycle), never from the mapping code.
"""

from __future__ import annotations

import base64
import csv
import importlib.util
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import psycopg2
import pytest

from slm_platform.load.loader import load_drop
from slm_platform.sources.http_auth import Auth
from slm_platform.sources.jira.api import (
    JiraAuthError,
    JiraError,
    auth_from_connection,
    extract_issues,
    jql_time,
)
from slm_platform.sources.jira.mapping import MappingError, load_mapping
from tests.jira_fake import STATUSES, FakeJira, Fault, change, iso, jtime, populate

REPO = Path(__file__).resolve().parents[1]
MAPPING = load_mapping(REPO / "config" / "sources" / "jira_sample.yaml")
START = datetime(2026, 10, 15, tzinfo=UTC)
UNTIL = datetime(2026, 11, 20, tzinfo=UTC)


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _events(out: Path) -> dict[str, list[tuple]]:
    got: dict[str, list[tuple]] = {}
    for e in _read(out / "ticket_events.csv"):
        got.setdefault(e["ticket_id"], []).append(
            (e["occurred_at"], e["field"], e["from_value"] or None, e["to_value"] or None)
        )
    return {k: sorted(v) for k, v in got.items()}


def _extract(fake: FakeJira, out: Path, since=None, until=UNTIL, **kw):
    kw.setdefault("page_size", 20)
    kw.setdefault("backoff_base", 0.01)
    auth = kw.pop("auth", Auth.basic(fake.email, fake.api_token))
    return extract_issues(fake.url, auth, kw.pop("mapping", MAPPING), since, until, out, **kw)


def _searches(fake: FakeJira) -> list[dict]:
    return [p for path, p, _s in fake.log if path == "/rest/api/3/search/jql"]


def test_full_extract_equals_the_server(tmp_path: Path) -> None:
    with FakeJira(embedded_limit=5, max_page=13) as fake:
        populate(fake, 70, START)
        res = _extract(fake, tmp_path / "d")
    tickets = {t["ticket_id"]: t for t in _read(tmp_path / "d" / "tickets.csv")}
    assert len(tickets) == res.issues == 70
    for key, expected in fake.expected.items():
        assert {k: tickets[key][k] for k in expected} == expected, key
    assert _events(tmp_path / "d") == {k: sorted(v) for k, v in fake.truth.items()}
    assert res.events == sum(len(v) for v in fake.truth.values())
    # every case the generator covers shows up, so the comparison above exercised them
    kinds = {(e[1], e[3]) for v in fake.truth.values() for e in v}
    for case in [("status", "pending_customer"), ("status", "awaiting_vendor"), ("status", "closed"),
                 ("status", "cancelled"), ("assignment_group", "Carrier-X")]:  # fmt: skip
        assert case in kinds, case
    assert any(e[1] == "priority" for v in fake.truth.values() for e in v)
    # "Work in progress" and "Escalated" are not in the mapping file: their status category maps them
    assert "work in progress" not in MAPPING.statuses and STATUSES["3"][0] == "Work in progress"
    # paging: asked 20, served at most 13 (Jira may return fewer); the token chain ends on isLast
    searches = _searches(fake)
    assert len(searches) == 6 and "nextPageToken" not in searches[0]
    assert all(int(p["maxResults"]) == 20 and p["expand"] == "changelog" for p in searches)
    assert searches[0]["jql"] == (
        '(project in (ACME, GLOB)) AND updated >= "1970-01-01 00:00" ORDER BY updated DESC, key DESC'
    )
    # embedded changelogs hold 5 histories: longer ones were paged through /changelog (100 per page)
    long = [k for k, i in fake.issues.items() if len(i["histories"]) > 5]
    assert long and res.changelog_requests == len(long)
    assert res.histories == sum(len(i["histories"]) for i in fake.issues.values())
    # JSM SLA beside the drop, one request per issue (404 for the service requests: no SLA)
    sla = _read(tmp_path / "d.jsm" / "jsm_sla.csv")
    assert {r["ticket_id"] for r in sla} == set(fake.slas)
    assert res.sla_cycles == sum(
        len(s[0]["completedCycles"]) + ("ongoingCycle" in s[0]) for s in fake.slas.values()
    )
    assert res.requests == fake.requests and res.retries == {}
    assert not (tmp_path / "d" / ".partial").exists()


def _reference_data(dsn: str, tmp: Path) -> None:
    ref = tmp / "ref"
    ref.mkdir()
    (ref / "clients.csv").write_text(
        "client_code,client_name,timezone,country\nACME,ACME Europe,Europe/Paris,FR\n"
        "GLOBEX,Globex,America/New_York,US\n"
    )
    (ref / "services.csv").write_text(
        "service_code,client_code,service_name,calendar_code,criticality\n"
        "ACME-ERP,ACME,ERP,24x7,high\nACME-WEB,ACME,Web shop,24x7,critical\nGLOBEX-CRM,GLOBEX,CRM,24x7,high\n"
    )
    load_drop(dsn, ref)


def _count(dsn: str, sql: str, args=()) -> int:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


def test_increment_ties_at_the_watermark_and_rerun_duplicates_nothing(fresh_db: str, tmp_path: Path) -> None:
    _reference_data(fresh_db, tmp_path)
    w1 = UNTIL
    with FakeJira() as fake:
        populate(fake, 40, START, seed=11, sla=False)
        open_ones = sorted(k for k, e in fake.expected.items() if e["status"] in ("new", "in_progress"))
        assert len(open_ones) >= 4
        tie_a, tie_b, same_minute, later = open_ones[:4]
        # two issues updated exactly at the watermark (to the millisecond): they belong to window 1 only
        change(fake, tie_a, w1, status="pending_customer")
        change(fake, tie_b, w1, team="Carrier-X")
        first = _extract(fake, tmp_path / "d1", until=w1)
        assert first.issues == 40 and first.watermark == w1
        b1 = {r.entity: r for r in load_drop(fresh_db, tmp_path / "d1", source="jira")}
        assert b1["tickets"].rows_loaded == 40 and b1["tickets"].rows_quarantined == 0
        assert b1["ticket_events"].rows_quarantined == 0
        # window 2: one change 30 s after the watermark (same JQL minute), one an hour later
        change(fake, same_minute, w1 + timedelta(seconds=30), status="resolved")
        change(fake, later, w1 + timedelta(hours=1), team="Carrier-X")
        w2 = w1 + timedelta(hours=2)
        second = _extract(fake, tmp_path / "d2", since=first.watermark, until=w2)
        got = sorted(t["ticket_id"] for t in _read(tmp_path / "d2" / "tickets.csv"))
        assert got == sorted([same_minute, later]) and second.issues == 2
        # the query starts at the watermark's minute in the account's zone (Paris, UTC+1 in November)
        assert (
            f'updated >= "{(w1 + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")}"'
            in _searches(fake)[-1]["jql"]
        )
        assert second.outside_window == 2  # the ties, returned by the minute-precision JQL, left to window 1
        assert _events(tmp_path / "d2") == {k: sorted(fake.truth[k]) for k in (same_minute, later)}
        b2 = {r.entity: r for r in load_drop(fresh_db, tmp_path / "d2", source="jira")}
        assert b2["tickets"].rows_loaded == 2
        assert (
            b2["ticket_events"].rows_loaded == 2 and b2["ticket_events"].rows_unchanged == second.events - 2
        )
        # a rerun of window 2 extracts the same and loads nothing new
        again = _extract(fake, tmp_path / "d2b", since=first.watermark, until=w2)
        assert again.issues == 2
    b3 = {r.entity: r for r in load_drop(fresh_db, tmp_path / "d2b", source="jira")}
    assert b3["tickets"].rows_loaded == 0 and b3["ticket_events"].rows_loaded == 0
    assert _count(fresh_db, "select count(*) from raw.tickets") == 40
    assert _count(fresh_db, "select count(*) from raw.ticket_events") == sum(
        len(v) for v in fake.truth.values()
    )
    assert _count(fresh_db, "select count(*) from raw.tickets where ticket_id = %s and status = 'resolved'",
                  (same_minute,)) == 1  # fmt: skip


def test_issues_changed_while_paging_are_neither_skipped_nor_doubled(tmp_path: Path) -> None:
    """The fake's nextPageToken is an offset (the least stable kind). Issues updated between two pages move to
    the front of ``ORDER BY updated DESC``: no unchanged issue is skipped; an issue changed after we passed
    it keeps its old version here (the issues before it shift, not after); one changed before we reached it
    shifts the ones before it by one (page 1's last issue comes again, de-duplicated) and gets an
    ``updated`` past the window's end: the next window extracts it."""
    with FakeJira(max_page=10) as fake:
        populate(fake, 50, START, seed=5, sla=False)
        order = sorted(
            fake.issues, key=lambda k: (datetime.fromisoformat(fake.issues[k]["fields"]["updated"]), k)
        )
        order.reverse()  # the server's order
        until = datetime.fromisoformat(fake.issues[order[0]]["fields"]["updated"]).astimezone(UTC)
        ahead, behind = order[35], order[3]  # not yet served / already served when page 2 is asked for
        moved_at = until + timedelta(minutes=10)

        def hook(params: dict, n: int) -> None:
            if params.get("nextPageToken") and not hook.done:  # type: ignore[attr-defined]
                hook.done = True  # type: ignore[attr-defined]
                change(fake, ahead, moved_at, team="Carrier-X")
                change(fake, behind, moved_at + timedelta(seconds=1), team="Carrier-X")

        hook.done = False  # type: ignore[attr-defined]
        fake.before_search = hook
        res = _extract(fake, tmp_path / "d", until=until, page_size=10)
        got = [t["ticket_id"] for t in _read(tmp_path / "d" / "tickets.csv")]
        assert len(got) == len(set(got)) == 49 and set(got) == set(order) - {ahead}
        # `ahead` moved to the front: the issues before it shifted one place, so page 1's last one came again
        assert res.duplicates == 1 and res.outside_window == 0
        fake.before_search = None
        nxt = _extract(fake, tmp_path / "d2", since=until, until=moved_at + timedelta(minutes=5))
        assert sorted(t["ticket_id"] for t in _read(tmp_path / "d2" / "tickets.csv")) == sorted(
            [ahead, behind]
        )
        assert nxt.issues == 2


def test_429_5xx_and_timeouts_are_retried_and_counted(tmp_path: Path) -> None:
    with FakeJira(max_page=10) as clean:
        populate(clean, 25, START, seed=3)
        _extract(clean, tmp_path / "clean")
        n_clean = clean.requests
    with FakeJira(max_page=10) as fake:
        populate(fake, 25, START, seed=3)
        fake.faults = {
            3: Fault(429, retry_after="1"),
            5: Fault(503),
            8: Fault(502, body="<html><body>502 Bad Gateway</body></html>"),
            11: Fault(200, sleep=1.5),
        }
        waits: list[float] = []

        def sleep(s: float) -> None:
            waits.append(s)
            time.sleep(s)

        res = _extract(fake, tmp_path / "faulty", timeout=0.5, sleep=sleep)
    assert res.retries == {"429": 1, "5xx": 2, "timeout": 1}
    assert res.requests == fake.requests == n_clean + 4
    assert 1.0 in waits  # Retry-After honoured
    for name in ("tickets.csv", "ticket_events.csv"):
        assert (tmp_path / "faulty" / name).read_text() == (tmp_path / "clean" / name).read_text()
    assert (tmp_path / "faulty.jsm" / "jsm_sla.csv").read_text() == (
        tmp_path / "clean.jsm" / "jsm_sla.csv"
    ).read_text()


def test_a_persistent_outage_gives_up_and_leaves_no_drop(tmp_path: Path) -> None:
    with FakeJira() as fake:
        populate(fake, 5, START, sla=False)
        fake.faults = {n: Fault(503) for n in range(3, 20)}
        with pytest.raises(JiraError, match=r"search/jql failed after 4 attempts; last error: HTTP 503"):
            _extract(fake, tmp_path / "d", max_retries=3)
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_auth_failure_is_clear_and_never_shows_the_token(tmp_path: Path) -> None:
    with FakeJira() as fake:
        populate(fake, 3, START, sla=False)
        wrong = Auth.basic(fake.email, "ATATT3x-wrong-token-value")
        with pytest.raises(JiraAuthError) as err:
            _extract(fake, tmp_path / "d", auth=wrong)
        assert fake.requests == 1  # not retried
    msg = str(err.value)
    assert "HTTP 401" in msg and "e-mail and API token" in msg and "Client must be authenticated" in msg
    secret = base64.b64encode(f"{fake.email}:ATATT3x-wrong-token-value".encode()).decode()
    assert "wrong-token" not in msg and secret not in msg and "wrong-token" not in repr(wrong)
    conn = SimpleNamespace(host="example.atlassian.net", login="a@example.com", password="", extra=None)
    with pytest.raises(JiraAuthError, match="API token"):
        auth_from_connection(conn)


def test_malformed_and_unmappable_issues_are_quarantined_with_a_reason(fresh_db: str, tmp_path: Path) -> None:
    _reference_data(fresh_db, tmp_path)
    with FakeJira() as fake:
        populate(fake, 6, START, seed=2, sla=False)
        keys = sorted(fake.issues)
        fake.issues[keys[0]]["fields"]["created"] = "yesterday"
        fake.issues[keys[1]]["fields"]["customfield_10050"] = {"value": "Mainframe"}  # not in service.map
        fake.issues[keys[2]]["fields"]["issuetype"] = {"name": "Epic"}
        fake.issues[keys[2]]["fields"]["customfield_10010"] = None  # no request type, an unmapped type
        fake.issues[keys[3]]["fields"]["priority"] = None
        res = _extract(fake, tmp_path / "d")
    assert res.issues == 6
    batches = {r.entity: r for r in load_drop(fresh_db, tmp_path / "d", source="jira")}
    t = batches["tickets"]
    assert t.rows_loaded == 2 and t.rows_quarantined == 4 and t.rows_read == 6
    with psycopg2.connect(fresh_db) as conn, conn.cursor() as cur:
        cur.execute(
            "select raw_record ->> 'ticket_id', reason from raw.quarantine where batch_id = %s", (t.batch_id,)
        )
        reasons = dict(cur.fetchall())
    assert reasons[keys[0]] == "bad timestamp in opened_at: 'yesterday'"
    assert "unknown service_code" in reasons[keys[1]] and "Mainframe" in reasons[keys[1]]
    assert "ticket_type" in reasons[keys[2]]
    assert "priority" in reasons[keys[3]]


def test_mapping_file_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("priorities: {Highest: P0}\n")
    with pytest.raises(MappingError, match=r"priorities.Highest: 'P0' is not one of P1..P4"):
        load_mapping(bad)
    bad.write_text("statuses: {Open: new}\nstatus: {}\n")
    with pytest.raises(MappingError, match="unknown key.*status"):
        load_mapping(bad)
    bad.write_text("issue_types: {Bug: defect}\n")
    with pytest.raises(MappingError, match="issue_types.Bug: 'defect'"):
        load_mapping(bad)


def test_jql_literals_are_minutes_in_the_accounts_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    assert jql_time(datetime(2026, 11, 20, 10, 15, 42, tzinfo=UTC), paris) == "2026-11-20 11:15"
    # 2026-10-25 02:30 Paris happens twice (fall back): ask an hour earlier rather than miss the first
    assert jql_time(datetime(2026, 10, 25, 0, 30, tzinfo=UTC), paris) == "2026-10-25 01:30"
    assert jql_time(datetime(2026, 10, 25, 1, 30, tzinfo=UTC), paris) == "2026-10-25 02:30"
    assert jtime(datetime(2026, 11, 20, 10, 0, tzinfo=UTC)) == "2026-11-20T11:00:00.000+0100"
    assert iso(datetime(2026, 11, 20, 10, 0, 0, 123000, tzinfo=UTC)) == "2026-11-20T10:00:00.123Z"


def _sla_report():
    spec = importlib.util.spec_from_file_location("jira_sla_report", REPO / "tools" / "jira_sla_report.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["jira_sla_report"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_jsm_sla_compared_with_ours_and_every_difference_explained(tmp_path: Path) -> None:
    """JSM's "Time to resolution" (computed by the fake with JSM's configuration: 9-17 Mon-Fri, no holidays,
    pauses in Waiting for customer and Pending, a new cycle at each reopen) against our verdicts on
    contracts/jira_sample.yaml (08-18 with French holidays, pauses in pending_customer only, one clock)."""
    with FakeJira() as fake:
        populate(fake, 120, START, seed=21)
        _extract(fake, tmp_path / "d")
    rep = _sla_report()
    jsm_cal = {
        "P1": rep.ALWAYS,
        **{p: rep.weekday_calendar("9-5", "Europe/Paris", 9, 17) for p in ("P2", "P3", "P4")},
    }
    c = rep.compare(
        tmp_path / "d",
        tmp_path / "d.jsm" / "jsm_sla.csv",
        REPO / "contracts" / "jira_sample.yaml",
        jsm_cal,
        {"pending_customer", "awaiting_vendor"},
    )
    print(rep.render(c))
    resolved_incidents = [
        k
        for k, e in fake.expected.items()
        if e["ticket_type"] == "incident" and e["status"] in ("resolved", "closed")
    ]
    assert c.compared == len(resolved_incidents) > 50
    # reading JSM's cycles is exact: with JSM's configuration our computation gives its elapsed minutes
    assert c.reproduced == c.compared
    assert 0 < c.compared - c.agreed and c.agreement_pct > 70
    assert "unexplained" not in c.explanations()
    assert set(c.explanations()) <= {
        "calendar (JSM's hours/holidays differ from ours)",
        "pause statuses (JSM also pauses other waits)",
        "cycles (JSM restarts its clock at a reopen)",
    }


def test_cli_extracts_all_then_continues_from_its_mark(fresh_db: str, tmp_path: Path) -> None:
    import os
    import subprocess

    _reference_data(fresh_db, tmp_path)
    with FakeJira() as fake:
        populate(fake, 12, START, seed=4, sla=False)
        env = dict(
            os.environ, SLM_JIRA_EMAIL=fake.email, SLM_JIRA_TOKEN=fake.api_token, SLM_HOME=str(tmp_path)
        )
        cli = [
            sys.executable,
            "-m",
            "slm_platform.cli",
            "extract",
            "jira",
            "--url",
            fake.url,
            "--dsn",
            fresh_db,
        ]

        def run(*args: str) -> str:
            proc = subprocess.run(
                [*cli, *args], env=env, capture_output=True, text=True, cwd=REPO, timeout=120
            )
            assert proc.returncode == 0, proc.stdout + proc.stderr
            return proc.stdout

        out = run("--all", "--end", UNTIL.isoformat())
        assert "jira: 12 issues" in out
        key = next(k for k, e in sorted(fake.expected.items()) if e["status"] == "in_progress")
        change(fake, key, UNTIL + timedelta(minutes=5), status="pending_customer")
        out = run("--end", (UNTIL + timedelta(hours=1)).isoformat())  # from the mark left by the first run
        assert f"issues updated in ({UNTIL.isoformat()}" in out and "jira: 1 issues" in out
        env.pop("SLM_JIRA_TOKEN")
        proc = subprocess.run([*cli, "--all"], env=env, capture_output=True, text=True, cwd=REPO, timeout=120)
        assert proc.returncode != 0 and "SLM_JIRA_TOKEN" in proc.stdout + proc.stderr
    sql = "select count(*) from raw.tickets where status = 'pending_customer' and ticket_id = %s"
    assert _count(fresh_db, sql, (key,)) == 1
    assert _count(fresh_db, "select count(*) from raw.extract_windows where dag_id = 'slm_jira'") == 2
