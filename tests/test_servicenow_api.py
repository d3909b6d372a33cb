"""ServiceNow Table API extractor against a local fake instance (tests/servicenow_fake.py).

Expected values come from the fake's generated truth (its canonical lifecycle), never from the mapping code.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import psycopg2
import pytest

from slm_platform.load.loader import load_drop
from slm_platform.sources.servicenow.table_api import (
    Auth,
    FieldMapping,
    ServiceNowAuthError,
    ServiceNowError,
    auth_from_connection,
    extract_incidents,
)
from tests.servicenow_fake import COMPANIES, SERVICES, FakeServiceNow, Fault, iso, populate

START = datetime(2026, 9, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 1, tzinfo=UTC)
AUTH = Auth.basic("svc_slm", "s3cret")
FIELDS = FieldMapping(client_map=COMPANIES, service_map=SERVICES)


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _events(out: Path) -> dict[str, list[tuple]]:
    got: dict[str, list[tuple]] = {}
    for e in _read(out / "ticket_events.csv"):
        got.setdefault(e["ticket_id"], []).append(
            (e["occurred_at"], e["field"], e["from_value"] or None, e["to_value"] or None)
        )
    return got


def _extract(fake: FakeServiceNow, out: Path, since=None, until=UNTIL, **kw):
    kw.setdefault("page_size", 7)
    kw.setdefault("audit_batch", 5)
    kw.setdefault("fields", FIELDS)
    kw.setdefault("backoff_base", 0.01)
    return extract_incidents(fake.url, kw.pop("auth", AUTH), since, until, out, **kw)


def _expected_ticket(fake: FakeServiceNow, inc: dict) -> dict[str, str]:
    status = fake._status(inc)
    company = fake._name("core_company", inc["company"])
    service = fake._name("cmdb_ci_service", inc["business_service"])
    truth = fake.truth[inc["number"]]
    responded = next(t for t, f, _o, n in truth if f == "status" and n != "new")
    return {
        "ticket_id": inc["number"],
        "client_code": COMPANIES[company],
        "service_code": SERVICES[service],
        "ticket_type": "incident",
        "priority": f"P{inc['priority']}",
        "status": status,
        "assignment_group": fake._name("sys_user_group", inc["assignment_group"]),
        "opened_at": iso(datetime.strptime(inc["opened_at"], "%Y-%m-%d %H:%M:%S")),
        "updated_at": iso(datetime.strptime(inc["sys_updated_on"], "%Y-%m-%d %H:%M:%S")),
        "first_response_at": responded,
        "resolved_at": next((t for t, f, _o, n in truth if f == "status" and n == "resolved"), ""),
        "closed_at": next((t for t, f, _o, n in truth if f == "status" and n == "closed"), ""),
        "category": inc["category"],
    }


def test_full_extract_equals_the_server(tmp_path: Path) -> None:
    with FakeServiceNow() as fake:
        populate(fake, 60, START)
        res = _extract(fake, tmp_path)
        tickets = {t["ticket_id"]: t for t in _read(tmp_path / "tickets.csv")}
        assert len(tickets) == res.incidents == 60
        for inc in fake.tables["incident"]:
            expected = _expected_ticket(fake, inc)
            got = {k: tickets[inc["number"]][k] for k in expected}
            assert got == expected, inc["number"]
        events = _events(tmp_path)
        assert {k: sorted(v) for k, v in events.items()} == {k: sorted(v) for k, v in fake.truth.items()}
        assert res.events == sum(len(v) for v in fake.truth.values())
        assert res.audit_rows == len(fake.tables["sys_audit"])
        # every case the generator covers shows up, so the comparison above exercised them
        statuses = Counter(e[3] for v in events.values() for e in v if e[1] == "status")
        assert statuses["pending_customer"] and statuses["awaiting_vendor"] and statuses["closed"]
        assert any(e[1] == "priority" for v in events.values() for e in v)
        # incidents arrive in pages of 7 (60 → 9 pages), and the audit in batches of 5 ids
        incident_calls = [p for path, p, _s in fake.log if path.endswith("/incident")]
        assert [int(p["sysparm_offset"]) for p in incident_calls] == list(range(0, 63, 7))
        assert all(p["sysparm_display_value"] == "all" for p in incident_calls)
        audit_calls = [p for path, p, _s in fake.log if path.endswith("/sys_audit")]
        batches = [
            len(p["sysparm_query"].split("documentkeyIN")[1].split("^")[0].split(","))
            for p in audit_calls
            if p["sysparm_offset"] == "0"
        ]  # a batch's later pages repeat its query
        assert max(batches) == 5 and sum(batches) == 60
        assert res.requests == fake.requests and res.retries == {}


def _load_reference_data(dsn: str, tmp: Path) -> None:
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


def test_increment_fetches_only_changes_and_reload_upserts(fresh_db: str, tmp_path: Path) -> None:
    _load_reference_data(fresh_db, tmp_path)
    with FakeServiceNow() as fake:
        populate(fake, 40, START)
        first = _extract(fake, tmp_path / "d1")
        results = {r.entity: r for r in load_drop(fresh_db, tmp_path / "d1", source="servicenow")}
        assert results["tickets"].rows_loaded == 40 and results["tickets"].rows_quarantined == 0
        assert results["ticket_events"].rows_quarantined == 0

        open_ones = [i["number"] for i in fake.tables["incident"] if i["state"] not in ("6", "7")]
        third = next(
            i["number"]
            for i in fake.tables["incident"]
            if i["number"] not in open_ones[:2] and i["priority"] != "1"
        )
        target = [*open_ones[:2], third]
        later = UNTIL + timedelta(hours=3)
        fake.change(target[0], later, status="resolved")
        fake.change(target[1], later + timedelta(minutes=5), group="Carrier-X", status="pending_customer")
        fake.change(target[2], later + timedelta(minutes=9), priority="1")
        second = _extract(fake, tmp_path / "d2", since=first.watermark, until=UNTIL + timedelta(days=1))
        got = [t["ticket_id"] for t in _read(tmp_path / "d2" / "tickets.csv")]
        assert sorted(got) == sorted(target) and second.incidents == 3
        # the whole history of each changed incident is re-read: its events equal the truth again
        assert {k: sorted(v) for k, v in _events(tmp_path / "d2").items()} == {
            k: sorted(fake.truth[k]) for k in target
        }
        results = {r.entity: r for r in load_drop(fresh_db, tmp_path / "d2", source="servicenow")}
        assert results["tickets"].rows_loaded == 3
        new_events = sum(1 for k in target for e in fake.truth[k] if e[0] >= iso(later))
        assert results["ticket_events"].rows_loaded == new_events == 4
        assert results["ticket_events"].rows_unchanged == second.events - new_events

    with psycopg2.connect(fresh_db) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from raw.tickets")
        assert cur.fetchone()[0] == 40
        cur.execute(
            "select ticket_id, status, priority, updated_at from raw.tickets where ticket_id = any(%s)",
            (target,),
        )
        rows = {r[0]: r[1:] for r in cur.fetchall()}
        assert rows[target[0]][0] == "resolved" and rows[target[0]][2] == later
        assert rows[target[1]][0] == "pending_customer"
        assert rows[target[2]][1] == "P1"
        cur.execute("select count(*) from raw.ticket_events")
        assert cur.fetchone()[0] == sum(len(v) for v in fake.truth.values())
    # an older version never replaces a newer one: reloading the first drop changes nothing
    again = {r.entity: r for r in load_drop(fresh_db, tmp_path / "d1", source="servicenow")}
    assert again["tickets"].rows_loaded == 0 and again["tickets"].rows_unchanged == 40


def test_faults_are_retried_and_counted(tmp_path: Path) -> None:
    with FakeServiceNow() as clean:
        populate(clean, 30, START, seed=3)
        _extract(clean, tmp_path / "clean")
        n_clean = clean.requests
    with FakeServiceNow() as fake:
        populate(fake, 30, START, seed=3)
        # same data, same sys_ids are not needed: the comparison is on canonical output
        fake.faults = {2: Fault(429, retry_after="1"), 4: Fault(503), 6: Fault(200, sleep=1.5)}
        waits: list[float] = []

        def sleep(s: float) -> None:
            waits.append(s)
            time.sleep(s)

        t0 = time.monotonic()
        res = _extract(fake, tmp_path / "faulty", timeout=0.5, sleep=sleep)
        elapsed = time.monotonic() - t0
    assert res.retries == {"429": 1, "5xx": 1, "timeout": 1}
    assert res.requests == fake.requests == n_clean + 3
    assert 1.0 in waits and elapsed >= 1.0  # Retry-After: 1 honoured
    for name in ("tickets.csv", "ticket_events.csv"):  # sys_ids differ between the two fakes: compare sets
        faulty = sorted((tmp_path / "faulty" / name).read_text().splitlines())
        assert faulty == sorted((tmp_path / "clean" / name).read_text().splitlines())


def test_a_200_without_result_or_garbled_is_retried_not_read_as_the_last_page(tmp_path: Path) -> None:
    """The known bugs: a 200 without ``result`` read as an empty last page (the paging stopped there,
    silently: the later incidents were missing), a garbled 200 crashed the extract unretried."""
    with FakeServiceNow() as clean:
        populate(clean, 30, START, seed=3)
        _extract(clean, tmp_path / "clean")
        n_clean = clean.requests
    with FakeServiceNow() as fake:
        populate(fake, 30, START, seed=3)
        # requests 2 and 4 start audit-history pagings, 6 is the second incident page (seen in fake.log)
        fake.faults = {
            2: Fault(200, body='{"status": "ok"}'),
            4: Fault(200, body='{"result": [{"sys_id"'),
            6: Fault(200, body='{"result": "none"}'),
        }
        res = _extract(fake, tmp_path / "faulty")
    assert res.retries == {"no_result": 2, "bad_json": 1} and res.requests == n_clean + 3
    for name in ("tickets.csv", "ticket_events.csv"):
        faulty = sorted((tmp_path / "faulty" / name).read_text().splitlines())
        assert faulty == sorted((tmp_path / "clean" / name).read_text().splitlines())
    assert res.incidents == 30


def test_persistent_500_fails_clearly(tmp_path: Path) -> None:
    with FakeServiceNow(always=Fault(500)) as fake:
        populate(fake, 5, START)
        with pytest.raises(ServiceNowError, match=r"failed after 3 attempts; last error: HTTP 500"):
            _extract(fake, tmp_path, max_retries=2)
        assert fake.requests == 3
    assert not (tmp_path / "tickets.csv").exists()  # no half-written drop for the loader to pick up


def test_wrong_password_is_a_clear_auth_error(tmp_path: Path) -> None:
    with FakeServiceNow(token="tok-123") as fake:
        populate(fake, 3, START)
        with pytest.raises(ServiceNowAuthError, match="HTTP 401: User Not Authenticated") as err:
            _extract(fake, tmp_path, auth=Auth.basic("svc_slm", "wrong"))
        assert "wrong" not in str(err.value)
        assert fake.requests == 1  # not retried
        # Airflow connections: login/password, or extra.oauth_token (extra as JSON text or a dict)
        bearer = auth_from_connection(
            SimpleNamespace(login="x", password="y", extra='{"oauth_token": "tok-123"}')
        )
        basic = auth_from_connection(SimpleNamespace(login="svc_slm", password="s3cret", extra=None))
        assert bearer.kind == "bearer" and "tok-123" not in repr(bearer)
        assert _extract(fake, tmp_path / "b", auth=bearer).incidents == 3
        assert _extract(fake, tmp_path / "c", auth=basic).incidents == 3


def test_watermark_has_no_gap_and_no_duplicate_at_ties(tmp_path: Path) -> None:
    with FakeServiceNow() as fake:
        boundary = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
        for i in range(7):
            fake.open_incident(
                f"INC{2000 + i}",
                boundary - timedelta(hours=1),
                "ACME Europe SA",
                "ERP",
                "ServiceDesk",
                "3",
                insert_audit=False,
            )
        tied = ["INC2000", "INC2001", "INC2002", "INC2003"]
        for n in tied:  # four updates on the boundary second, straddling pages of 3
            fake.change(n, boundary, status="in_progress")
        fake.change("INC2004", boundary + timedelta(seconds=1), status="in_progress")
        fake.change("INC2005", boundary - timedelta(seconds=1), status="in_progress")
        first = _extract(fake, tmp_path / "a", until=boundary, page_size=3)
        _extract(
            fake, tmp_path / "b", since=first.watermark, until=boundary + timedelta(hours=1), page_size=3
        )
    a = [t["ticket_id"] for t in _read(tmp_path / "a" / "tickets.csv")]
    b = [t["ticket_id"] for t in _read(tmp_path / "b" / "tickets.csv")]
    assert sorted(a) == sorted([*tied, "INC2005", "INC2006"])
    assert b == ["INC2004"]
    assert first.watermark == boundary


def test_records_leaving_the_window_while_paging_are_not_skipped(tmp_path: Path) -> None:
    with FakeServiceNow() as fake:
        populate(fake, 25, START, seed=11)
        moved: list[str] = []

        def update_one(table: str, params: dict, n: int) -> None:
            # before the 2nd incident page, an incident of the 1st page is updated (leaves the window)
            if table == "incident" and params["sysparm_offset"] == "5" and not moved:
                first = fake.query("incident", params["sysparm_query"])[0]["number"]
                fake.change(first, UNTIL + timedelta(hours=1), group="Network")
                moved.append(first)

        fake.before_answer = update_one
        res = _extract(fake, tmp_path, page_size=5)
    got = [t["ticket_id"] for t in _read(tmp_path / "tickets.csv")]
    assert len(got) == len(set(got)) == 25  # nobody skipped, nobody twice
    assert res.window_shrinks == 1 and moved
