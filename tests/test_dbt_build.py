"""`dbt build` on hand-written raw rows: models, data tests and unit tests pass, and the mart holds the
figures computed here independently (months cut in each client's time zone, DST included)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg2
import pytest

from slm_platform.contracts.load import load_contracts
from slm_platform.load.raw_schema import ensure_raw_schema
from slm_platform.transform.dbt_runner import DbtError, dbt, dbt_env

CLIENTS = [
    {"client_code": "ACME", "client_name": "Acme SA", "timezone": "Europe/Paris", "country": "FR"},
    {"client_code": "NYC", "client_name": "Nyc Corp", "timezone": "America/New_York", "country": "US"},
]
SERVICES = [
    {"service_code": "ACME-ERP", "client_code": "ACME", "service_name": "ERP"},
    {"service_code": "ACME-WEB", "client_code": "ACME", "service_name": "Web shop"},
    {"service_code": "NYC-WEB", "client_code": "NYC", "service_name": "Portal"},
]


def _t(ticket_id, client, service, ticket_type, priority, opened, resolved=None, major=None) -> dict:
    return {
        "ticket_id": ticket_id,
        "client_code": client,
        "service_code": service,
        "ticket_type": ticket_type,
        "priority": priority,
        "opened_at": datetime.fromisoformat(opened),
        "resolved_at": datetime.fromisoformat(resolved) if resolved else None,
        "is_major": major,
    }


TICKETS = [
    # 00:30 on 1 Nov in Paris (UTC+1 once DST has ended): November, resolved in November, major.
    _t("A1", "ACME", "ACME-ERP", "incident", "P1", "2026-10-31T23:30:00Z", "2026-11-01T00:10:00Z", True),
    # 23:59 on 31 Oct in Paris, resolved at 00:05 on 1 Nov: opened in October, not resolved in October.
    _t("A2", "ACME", "ACME-ERP", "incident", "P1", "2026-10-31T22:59:00Z", "2026-10-31T23:05:00Z"),
    _t("A3", "ACME", "ACME-ERP", "incident", "P1", "2026-10-15T10:00:00Z", "2026-10-15T12:00:00Z", False),
    _t("A4", "ACME", "ACME-WEB", "request", "P3", "2026-11-03T09:00:00Z"),
    # 00:30 on 1 Apr in Paris (UTC+2 in summer): April.
    _t("A5", "ACME", "ACME-ERP", "incident", "P2", "2026-03-31T22:30:00Z", "2026-04-01T08:00:00+02:00"),
    _t("A6", "ACME", "ACME-ERP", "incident", "P1", "2026-11-05T08:00:00Z", None, None),
    # 23:30 on 31 Oct in New York (EDT, UTC-4): October, resolved in October.
    _t("N1", "NYC", "NYC-WEB", "incident", "P2", "2026-11-01T03:30:00Z", "2026-11-01T03:50:00Z"),
    # 01:30 on 1 Nov in New York: November, major.
    _t("N2", "NYC", "NYC-WEB", "incident", "P2", "2026-11-01T05:30:00Z", None, True),
    # 18:00 / 23:30 on 31 Dec in New York (EST): December, resolved in December although UTC says 2027.
    _t("N3", "NYC", "NYC-WEB", "complaint", "P4", "2026-12-31T23:00:00Z", "2027-01-01T04:30:00Z"),
    # A major flag on a problem is not a major incident.
    _t("N4", "NYC", "NYC-WEB", "problem", "P2", "2026-11-10T15:00:00Z", "2026-11-11T15:00:00Z", True),
]


def _insert(conn, table: str, rows: list[dict]) -> None:
    with conn.cursor() as cur:
        for row in rows:
            cols = [*row, "_batch_id", "_source", "_loaded_at"]
            values = [*row.values(), 1, "test", datetime.now().astimezone()]
            cur.execute(
                f"insert into raw.{table} ({', '.join(cols)}) values ({', '.join(['%s'] * len(cols))})",
                values,
            )
    conn.commit()


def _load(dsn: str, tickets: list[dict]) -> None:
    conn = psycopg2.connect(dsn)
    try:
        ensure_raw_schema(conn)
        _insert(conn, "clients", CLIENTS)
        _insert(conn, "services", SERVICES)
        _insert(conn, "tickets", tickets)
    finally:
        conn.close()
    # The SLA models read the contract catalogue: the sample one, as the nightly DAG loads it.
    load_contracts(dsn)


def _month(moment: datetime, tz: str) -> date:
    local = moment.astimezone(ZoneInfo(tz))
    return date(local.year, local.month, 1)


def expected_volume(tickets: list[dict]) -> dict[tuple, tuple]:
    """The mart computed in Python: grain -> (client_name, service_name, opened, resolved, major)."""
    clients = {c["client_code"]: c for c in CLIENTS}
    services = {s["service_code"]: s for s in SERVICES}
    opened, resolved, major = Counter(), Counter(), Counter()
    for t in tickets:
        tz = clients[t["client_code"]]["timezone"]
        month = _month(t["opened_at"], tz)
        key = (t["client_code"], t["service_code"], t["ticket_type"], t["priority"], month)
        opened[key] += 1
        if t["resolved_at"] is not None and _month(t["resolved_at"], tz) == month:
            resolved[key] += 1
        if t["is_major"] and t["ticket_type"] == "incident":
            major[key] += 1
    return {
        key: (
            clients[key[0]]["client_name"],
            services[key[1]]["service_name"],
            opened[key],
            resolved[key],
            major[key],
        )
        for key in opened
    }


def _build(dsn: str, tmp_path: Path) -> str:
    # A private target path: the project's own target/ holds the manifest Cosmos reads.
    return dbt(
        ["build", "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")],
        dbt_env(dsn),
    )


def test_dbt_build_matches_python_figures(fresh_db: str, tmp_path: Path) -> None:
    _load(fresh_db, TICKETS)
    _build(fresh_db, tmp_path)

    run_results = json.loads((tmp_path / "target" / "run_results.json").read_text())
    statuses = {r["unique_id"]: r["status"] for r in run_results["results"]}
    # Exposures (dbt_project/models/_exposures.yml) document who reads the marts: dbt build lists them
    # as no-op nodes.
    exposures = {uid: statuses.pop(uid) for uid in list(statuses) if uid.startswith("exposure.")}
    assert set(exposures.values()) <= {"no-op"}, exposures
    assert set(statuses.values()) <= {"success", "pass"}, statuses
    assert any(uid.startswith("unit_test.") for uid in statuses), "no dbt unit test ran"
    assert sum(uid.startswith("test.") for uid in statuses) >= 10

    conn = psycopg2.connect(fresh_db)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select table_schema, table_name, table_type from information_schema.tables"
                " where table_schema in ('staging', 'marts_build') order by 1, 2"
            )
            relations = {(s, n): kind for s, n, kind in cur.fetchall()}
            cur.execute(
                "select client_code, service_code, ticket_type, priority, period_month,"
                " client_name, service_name, tickets_opened, tickets_resolved, major_incidents"
                " from marts_build.fct_ticket_volume"
            )
            actual = {tuple(row[:5]): tuple(row[5:]) for row in cur.fetchall()}
    finally:
        conn.close()

    assert relations[("marts_build", "fct_ticket_volume")] == "BASE TABLE"
    assert relations[("staging", "stg_canonical__tickets")] == "VIEW"
    expected = expected_volume(TICKETS)
    assert actual == expected
    # The boundary cases really landed on both sides of the month change.
    assert ("ACME", "ACME-ERP", "incident", "P1", date(2026, 10, 1)) in actual
    assert actual[("ACME", "ACME-ERP", "incident", "P1", date(2026, 11, 1))][2:] == (2, 1, 1)
    assert actual[("NYC", "NYC-WEB", "complaint", "P4", date(2026, 12, 1))][2:] == (1, 1, 0)


def test_dbt_build_fails_on_broken_rows(fresh_db: str, tmp_path: Path) -> None:
    broken = [
        *TICKETS,
        _t("X1", "ACME", "ACME-ERP", "incident", "P7", "2026-11-02T10:00:00Z"),  # unknown priority
        _t("X2", "GHOST", "ACME-ERP", "incident", "P1", "2026-11-02T10:00:00Z"),  # unknown client
    ]
    _load(fresh_db, broken)
    with pytest.raises(DbtError) as failure:
        _build(fresh_db, tmp_path)
    message = str(failure.value)
    assert "accepted_values_stg_canonical__tickets_priority" in message
    assert "relationships_stg_canonical__tickets_client_code" in message
