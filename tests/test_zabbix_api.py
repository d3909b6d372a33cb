"""Zabbix connector against a local server speaking Zabbix's JSON-RPC API (tests/zabbix_fake.py).

Paging by eventid (and records inserted while paging), incremental windows with ties at the boundary, a
problem left open by one window closed by the next, maintenance periods, checks from an item's history,
retries (429/5xx/timeouts/transient JSON-RPC errors), auth failures, quarantine of unmappable and malformed
problems through the real loader, a rerun that duplicates nothing, and Zabbix's SLI beside ours.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from slm_platform.load.loader import load_drop
from slm_platform.sources import zabbix as zbx
from tests.conftest import query_dicts
from tests.zabbix_fake import FakeZabbix, Fault, month_bounds

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
H = 3600


def ts(dt: datetime) -> int:
    return int(dt.timestamp())


MAPPING = {
    "min_severity": "average",
    "timezone": "Europe/Paris",
    "sla_id": "1",
    "services": [
        {
            "service_code": "ACME-ERP",
            "host_groups": ["ACME/ERP"],
            "sla_service_id": "11",
            "check": {"host": "erp-web-01", "key": "icmpping"},
        },
        {
            "service_code": "ACME-MAIL",
            "host_groups": ["ACME/MAIL"],
            "tags": {"service": "mail"},
            "sla_service_id": "12",
        },
    ],
}


def mapping(**over) -> zbx.ZabbixMapping:
    return zbx.mapping_from_dict({**MAPPING, **over})


def fake(**kw) -> FakeZabbix:
    z = FakeZabbix(**kw)
    z.hosts = {"101": "erp-web-01", "102": "erp-db-01", "201": "mx-01", "301": "lab-01"}
    z.groups = {"ACME/ERP": ["101", "102"], "ACME/MAIL": ["201"]}
    z.items = [{"itemid": "9001", "host": "erp-web-01", "key_": "icmpping", "value_type": "3"}]
    return z


def rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def run(z: FakeZabbix, start, end, out, m=None, **kw):
    creds = kw.pop("creds", zbx.Credentials(token=z.token))
    return zbx.extract(m or mapping(), start, end, out, url=z.url, creds=creds, sleep=lambda s: None, **kw)


# ---------------------------------------------------------------------------------------------------
# mapping


def test_mapping_errors_name_the_entry():
    with pytest.raises(zbx.MappingError, match="min_severity 'severe'"):
        mapping(min_severity="severe")
    with pytest.raises(zbx.MappingError, match=r"unknown key\(s\) \['colour'\]"):
        zbx.mapping_from_dict({**MAPPING, "colour": "red"})
    with pytest.raises(zbx.MappingError, match=r"services\[1\].*host_groups"):
        zbx.mapping_from_dict({"services": [{"service_code": "X"}]})
    with pytest.raises(zbx.MappingError, match="check kind 'agent.ping'"):
        zbx.mapping_from_dict(
            {
                "services": [
                    {"service_code": "X", "host_groups": ["g"], "check": {"host": "h", "key": "agent.ping"}}
                ]
            }
        )
    assert zbx.load_mapping().services  # the sample file is valid


def test_api_url_from_connection_host():
    assert zbx.api_url("zabbix.example.com") == "https://zabbix.example.com/api_jsonrpc.php"
    assert zbx.api_url("http://zbx:8080/zabbix/", None) == "http://zbx:8080/zabbix/api_jsonrpc.php"
    assert zbx.api_url("zbx", 8080, "http") == "http://zbx:8080/api_jsonrpc.php"
    conn = SimpleNamespace(
        host="zbx", port=None, schema=None, login=None, password=None, extra_dejson={"api_token": "abc"}
    )
    creds, url = zbx.credentials_from_connection(conn)
    assert creds.token == "abc" and "abc" not in repr(creds) and url == "https://zbx/api_jsonrpc.php"


# ---------------------------------------------------------------------------------------------------
# outages, maintenance, checks


def test_window_outages_maintenance_checks(tmp_path):
    z = fake()
    z.add_problem("101", ts(T0) + 600, ts(T0) + 1500)  # ERP, recovered in the window
    z.add_problem("102", ts(T0) + 1800, None)  # ERP, still open
    z.add_problem("201", ts(T0) + 60, ts(T0) + 120, tags={"service": "mail"})  # MAIL by tag
    z.add_problem("101", ts(T0) + 700, ts(T0) + 800, severity=2)  # warning: below the threshold
    z.add_problem("301", ts(T0) + 900, ts(T0) + 1000)  # a host in no mapped group: quarantined
    z.add_problem("301", ts(T0) + 200, ts(T0) + 260, tags={"service": "mail"})  # ...unless tagged
    z.add_problem("101", ts(T0) + 3000, ts(T0) + 4 * H)  # recovered after the window's end
    z.add_problem("101", ts(T0) + H, ts(T0) + H + 60)  # at the window's end: the next window's
    z.events.append(
        {**z.events[0], "eventid": "999", "clock": "abc", "r_eventid": "0", "_garbled": True}
    )  # malformed
    z.maintenances = [
        {
            "maintenanceid": "5",
            "name": "ERP patch",
            "maintenance_type": "0",
            "active_since": str(ts(T0) - 86400),
            "active_till": str(ts(T0) + 86400),
            "_groups": ["ACME/ERP"],
            "timeperiods": [{"timeperiod_type": "0", "start_date": str(ts(T0) + 2400), "period": "600"}],
        },
        {
            "maintenanceid": "6",
            "name": "weekly mx",
            "maintenance_type": "0",
            "active_since": str(ts(T0) - 30 * 86400),
            "active_till": str(ts(T0) + 30 * 86400),
            "_hosts": ["201"],
            "_groups": ["ACME/MAIL"],
            "timeperiods": [
                {
                    "timeperiod_type": "3",
                    "every": "1",
                    "dayofweek": "1",
                    "start_time": str(2 * H),
                    "period": str(H),
                }
            ],
        },
        {
            "maintenanceid": "7",
            "name": "first monday",
            "active_since": str(ts(T0) - 86400),
            "active_till": str(ts(T0) + 86400),
            "_groups": ["ACME/ERP"],
            "timeperiods": [
                {
                    "timeperiod_type": "4",
                    "dayofweek": "1",
                    "every": "1",
                    "month": "4095",
                    "start_time": "0",
                    "period": "60",
                }
            ],
        },
    ]
    z.history["9001"] = [
        {"itemid": "9001", "clock": str(ts(T0) + 60 * i), "ns": "0", "value": "0" if i == 10 else "1"}
        for i in range(61)
    ] + [{"itemid": "9001", "clock": str(ts(T0) + 30), "ns": "5", "value": "7"}]
    with z:
        res = run(z, T0, T0 + timedelta(hours=1), tmp_path, page_size=7)
    out = rows(tmp_path / "outages.csv")
    mapped = {(r["service_code"], r["started_at"]): r["ended_at"] for r in out if r["service_code"]}
    assert mapped == {
        ("ACME-ERP", "2026-11-02T10:10:00Z"): "2026-11-02T10:25:00Z",
        ("ACME-ERP", "2026-11-02T10:30:00Z"): "",
        ("ACME-ERP", "2026-11-02T10:50:00Z"): "2026-11-02T14:00:00Z",
        ("ACME-MAIL", "2026-11-02T10:01:00Z"): "2026-11-02T10:02:00Z",
        ("ACME-MAIL", "2026-11-02T10:03:20Z"): "2026-11-02T10:04:20Z",
    }
    loose = [r for r in out if not r["service_code"]]
    assert sorted(r["unmapped"].split(":")[0] for r in loose) == [
        "malformed event",
        "no host group or tag of <inline> maps this problem to a service",
    ]
    assert res.below_severity == 1 and res.open_at_end == 1 and res.outage_unmapped == 2
    assert res.unmapped_hosts == {"lab-01": 1}
    maint = {
        (r["service_code"], r["starts_at"], r["ends_at"], r["change_ref"])
        for r in rows(tmp_path / "maintenance.csv")
    }
    assert ("ACME-ERP", "2026-11-02T10:40:00Z", "2026-11-02T10:50:00Z", "zabbix:maintenance:5") in maint
    # weekly on Mondays 02:00 Paris (01:00 UTC in November): 2026-11-02 is a Monday
    assert ("ACME-MAIL", "2026-11-02T01:00:00Z", "2026-11-02T02:00:00Z", "zabbix:maintenance:6") in maint
    assert res.maintenance_unsupported == 1  # monthly by weekday: said, not guessed
    checks = rows(tmp_path / "checks.csv")
    assert len(checks) == 61  # [T0, T0+1h): 60 checks + the bad value; the one at T0+1h is the next window's
    assert sum(r["status"] == "down" for r in checks) == 1 and res.check_bad == 1 and res.check_rows == 60
    assert z.log[0][0] == "apiinfo.version"
    assert all("auth" not in p for _, p, _ in z.log if isinstance(p, dict))


def test_paging_by_eventid_and_events_inserted_while_paging(tmp_path):
    z = fake()
    for i in range(25):
        z.add_problem("101", ts(T0) + 60 * i, ts(T0) + 60 * i + 30)
    inserted = []

    def hook(method, params, n):
        if (
            method == "event.get"
            and params.get("value") == 1
            and not inserted
            and params["eventid_from"] != "1"
        ):
            inserted.append(z.add_problem("102", ts(T0) + 1, ts(T0) + 2))  # a late event, higher eventid

    z.before_answer = hook
    with z:
        res = run(z, T0, T0 + timedelta(hours=1), tmp_path, page_size=4)
    out = [r for r in rows(tmp_path / "outages.csv") if r["service_code"]]
    refs = [ref for r in out for ref in r["source_ref"].split(",")]
    assert len(refs) == len(set(refs)) == 26  # every problem once, the inserted one included
    assert res.problems == 26 and res.merged == 0
    pages = [
        int(p["eventid_from"])
        for m, p, _ in z.log
        if m == "event.get" and p.get("value") == 1 and "objectids" not in p
    ]
    assert len(pages) == 7 and pages == sorted(set(pages)) and pages[0] == 1  # 26 problems, 4 a page


def reference_services(dsn: str, tmp_path: Path) -> None:
    """The client and services the Zabbix rows refer to."""
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "clients.csv").write_text("client_code,client_name,timezone,country\nACME,ACME,Europe/Paris,FR\n")
    (ref / "services.csv").write_text(
        "service_code,client_code,service_name,calendar_code,criticality\n"
        "ACME-ERP,ACME,ERP,24x7,high\nACME-MAIL,ACME,Mail,24x7,medium\n"
    )
    load_drop(dsn, ref)


def test_open_problem_closed_by_the_next_window_and_rerun_duplicates_nothing(tmp_path, fresh_db):
    reference_services(fresh_db, tmp_path)
    z = fake()
    pid = z.add_problem("101", ts(T0) + 1800, None)
    z.add_problem("201", ts(T0) + 3599, None, tags={"service": "mail"})  # one second before the boundary
    z.add_problem("301", ts(T0) + 100, ts(T0) + 200)  # unmapped
    w1, w2 = tmp_path / "w1", tmp_path / "w2"
    with z:
        run(z, T0, T0 + timedelta(hours=1), w1)
        z.recover(pid, ts(T0) + H + 600)
        z.add_problem("201", ts(T0) + H, ts(T0) + H + 5, tags={"service": "mail"})  # exactly at the boundary
        res2 = run(z, T0 + timedelta(hours=1), T0 + timedelta(hours=2), w2)
        b1 = load_drop(fresh_db, w1, source="zabbix")
        b2 = load_drop(fresh_db, w2, source="zabbix")
        # a rerun re-extracts: window 1 read again now knows the recovery (its old landing would not)
        run(z, T0, T0 + timedelta(hours=1), w1)
        again = load_drop(fresh_db, w2, source="zabbix") + load_drop(fresh_db, w1, source="zabbix")
    assert res2.reopened == 1
    got = query_dicts(fresh_db, "select service_code, started_at, ended_at from raw.outages order by 1, 2")
    assert [
        (r["service_code"], r["started_at"].isoformat(), r["ended_at"] and r["ended_at"].isoformat())
        for r in got
    ] == [
        ("ACME-ERP", "2026-11-02T10:30:00+00:00", "2026-11-02T11:10:00+00:00"),
        ("ACME-MAIL", "2026-11-02T10:59:59+00:00", None),
        ("ACME-MAIL", "2026-11-02T11:00:00+00:00", "2026-11-02T11:00:05+00:00"),
    ]
    q = query_dicts(fresh_db, "select reason, raw_record from raw.quarantine where entity = 'outages'")
    assert len(q) >= 1 and all("service_code" in r["reason"] for r in q)
    assert "lab-01" in str(q[0]["raw_record"])
    quarantined = {b.entity: b.rows_quarantined for b in b1}
    assert quarantined["outages"] == 1 and all(b.rows_loaded == 0 for b in again)
    assert sum(b.rows_loaded for b in b2 if b.entity == "outages") == 2  # the new one + the closed one


def test_retries_on_429_5xx_timeouts_and_transient_rpc_errors(tmp_path):
    z = fake()
    z.add_problem("101", ts(T0) + 60, ts(T0) + 120)
    sql = {
        "code": -32500,
        "message": "Application error.",
        "data": 'SQL statement execution has failed "SELECT ..."',
    }
    z.faults = {
        1: Fault(503),
        2: Fault(429, retry_after="2"),
        4: Fault(200, rpc_error=sql),
        5: Fault(200, body="<html>proxy</html>"),
        6: Fault(200, sleep=1.5),
    }
    m = mapping(timeout="1s")
    with z:
        res = run(z, T0, T0 + timedelta(hours=1), tmp_path, m=m)
    assert res.retries == {"5xx": 1, "429": 1, "rpc_transient": 1, "bad_json": 1, "timeout": 1}
    assert len([r for r in rows(tmp_path / "outages.csv") if r["service_code"]]) == 1


def test_hard_rpc_error_fails_at_once_without_a_partial_drop(tmp_path):
    z = fake()
    z.faults = {
        3: Fault(
            200,
            rpc_error={
                "code": -32602,
                "message": "Invalid params.",
                "data": 'Invalid parameter "/time_from"',
            },
        )
    }
    with z, pytest.raises(zbx.ZabbixError, match="event.get failed: JSON-RPC error -32602"):
        run(z, T0, T0 + timedelta(hours=1), tmp_path)
    assert not (tmp_path / "outages.csv").exists()


@pytest.mark.parametrize("version", ["6.0.30", "7.0.5"])
def test_auth_failures_are_clear_and_never_show_the_secret(tmp_path, version):
    z = fake(version=version)
    with z:
        with pytest.raises(zbx.ZabbixAuthError, match="Not authorised") as bad_token:
            run(z, T0, T0 + timedelta(hours=1), tmp_path, creds=zbx.Credentials(token="wrong-token-xyz"))
        with pytest.raises(zbx.ZabbixAuthError, match="Incorrect user name or password") as bad_pw:
            run(
                z,
                T0,
                T0 + timedelta(hours=1),
                tmp_path,
                creds=zbx.Credentials(user="Admin", password="hunter2"),
            )
        res = run(
            z, T0, T0 + timedelta(hours=1), tmp_path, creds=zbx.Credentials(user="Admin", password="zabbix")
        )
    assert "wrong-token-xyz" not in str(bad_token.value) and "hunter2" not in str(bad_pw.value)
    assert res.api_version == version
    methods = [m for m, _, _ in z.log]
    assert methods[-1] == "user.logout"
    if version.startswith("6.0"):  # the session in the body; selectGroups for maintenance
        assert all(h.get("X-Body-Auth") for m, _, h in z.log if m == "maintenance.get")
    else:
        assert any(h.get("Authorization", "").startswith("Bearer ") for _, _, h in z.log)


# ---------------------------------------------------------------------------------------------------
# Zabbix's SLA beside ours


def test_sla_agreement_and_differences_explained(tmp_path):
    z = fake()
    a, b = month_bounds(2026, 11)
    z.add_problem("101", a + 86400, a + 86400 + 1800)  # ERP down 30 min
    z.add_problem("201", a + 2 * 86400, a + 2 * 86400 + 3600, tags={"service": "mail"})  # MAIL 60 min...
    z.maintenances = [
        {
            "maintenanceid": "8",
            "name": "mx upgrade",
            "active_since": str(a),
            "active_till": str(b),
            "_groups": ["ACME/MAIL"],
            "timeperiods": [{"timeperiod_type": "0", "start_date": str(a + 2 * 86400), "period": str(2 * H)}],
        }
    ]
    # ...inside the approved maintenance: Zabbix's SLA ignores maintenance, ours does not
    z.sla_services = {
        "11": {"hosts": ["101", "102"], "min_severity": 3},
        "12": {"hosts": ["201"], "min_severity": 3},
    }
    start, end = datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC)
    with z:
        run(z, start, end, tmp_path)
        sli = zbx.get_sli(
            mapping(), start, end, url=z.url, creds=zbx.Credentials(token=z.token), sleep=lambda s: None
        )
    cmp = {r["service_code"]: r for r in zbx.compare_sla(sli, tmp_path, cut_off=b)}
    assert cmp["ACME-ERP"]["agree"] and cmp["ACME-ERP"]["ours_pct"] == round(
        (b - a - 1800) / (b - a) * 100, 4
    )
    mail = cmp["ACME-MAIL"]
    assert not mail["agree"] and mail["ours_pct"] == 100.0 and mail["zabbix_downtime_s"] == 3600
    assert "60 min of problems inside approved maintenance" in mail["why"]
    assert len(sli) == 2  # December, which Zabbix also answers, is not compared


def test_sla_without_data_never_agrees(tmp_path):
    """A Zabbix service created after the period has no SLI for it (sli -1): said, never "agree"."""
    z = fake()
    a, b = month_bounds(2026, 11)
    z.sla_services = {"11": {"hosts": ["101"], "created_at": b + 86400}, "12": {"hosts": ["201"]}}
    start, end = datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC)
    with z:
        run(z, start, end, tmp_path)
        sli = zbx.get_sli(
            mapping(), start, end, url=z.url, creds=zbx.Credentials(token=z.token), sleep=lambda s: None
        )
    cmp = {r["service_code"]: r for r in zbx.compare_sla(sli, tmp_path, cut_off=b)}
    assert cmp["ACME-ERP"]["zabbix_pct"] == -1 and not cmp["ACME-ERP"]["agree"]
    assert "no SLI for this period" in cmp["ACME-ERP"]["why"]
    assert cmp["ACME-MAIL"]["agree"] and cmp["ACME-MAIL"]["ours_pct"] == 100.0


def test_cli_extracts_loads_and_resumes_from_its_mark(tmp_path, fresh_db):
    """``./slm extract zabbix``: a first window given, the second resumes at the first's end (the mark the
    DAG reads too); credentials from the environment, never printed."""
    import os
    import subprocess

    import yaml

    from tests.conftest import SLM

    reference_services(fresh_db, tmp_path)
    z = fake()
    pid = z.add_problem("101", ts(T0) + 600, None)
    (tmp_path / "map.yaml").write_text(yaml.safe_dump({k: v for k, v in MAPPING.items() if k != "sla_id"}))
    env = dict(os.environ, SLM_HOME=str(tmp_path / "home"), SLM_ZABBIX_TOKEN=z.token)

    def cli(*extra):
        args = [SLM, "extract", "zabbix", "--dsn", fresh_db, "--mapping", str(tmp_path / "map.yaml")]
        args += ["--url", z.url, "--out", str(tmp_path / "landing"), *extra]
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)

    with z:
        first = cli("--start", "2026-11-02T10:00Z", "--end", "2026-11-02T11:00Z")
        z.recover(pid, ts(T0) + H + 60)
        second = cli("--end", "2026-11-02T12:00Z")
        z.sla_services = {"11": {"hosts": ["101", "102"]}, "12": {"hosts": ["201"]}}
        (tmp_path / "sla.yaml").write_text(yaml.safe_dump(MAPPING))
        sla = cli(
            "--mapping",
            str(tmp_path / "sla.yaml"),
            "--start",
            "2026-11-02T12:00Z",
            "--end",
            "2026-11-02T13:00Z",
            "--compare-sla",
        )
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "1 outage rows (1 open" in first.stdout and "1 closed from earlier windows" in second.stdout
    assert "[2026-11-02T11:00:00+00:00, 2026-11-02T12:00:00+00:00)" in second.stdout
    assert sla.returncode == 0, sla.stderr
    assert "covers only part of the period" in sla.stdout and "SLA: 0/2 service-periods agree" in sla.stdout
    assert z.token not in first.stdout + first.stderr + second.stdout + second.stderr
    got = query_dicts(fresh_db, "select started_at, ended_at from raw.outages")
    assert [(r["started_at"].isoformat(), r["ended_at"].isoformat()) for r in got] == [
        ("2026-11-02T10:10:00+00:00", "2026-11-02T11:01:00+00:00")
    ]
    marks = query_dicts(fresh_db, "select window_end from raw.extract_windows where dag_id = 'slm_zabbix'")
    assert max(m["window_end"] for m in marks).isoformat() == "2026-11-02T13:00:00+00:00"
