"""Status-page outage history import, on the real GitHub history (../shared/data) and on small cases.

The real file must be taken whole: every incident id it holds ends up in raw.outages, raw.maintenance or
raw.quarantine (with a reason), never in two of them and never nowhere. For the titles GitHub generates
from its component list ("Incident with Actions, Issues and Pages") the services are checked against an
independent reading of that list, not against the mapping's regular expressions.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from slm_platform.contracts.catalogue import load_catalogue
from slm_platform.load import imports
from slm_platform.settings import REPO_ROOT, shared_data_file
from slm_platform.sources import statuspage as sp
from tests.conftest import query_dicts, slm

REAL_FILE = shared_data_file("statuspage_downtime_windows.csv")
HEADER = "incident_id,downtime_start,downtime_end,duration_minutes,source,title,impact\n"
# GitHub's status page components, as its generated titles spell them.
COMPONENTS = {
    "Actions": "GH-ACTIONS",
    "API Requests": "GH-API",
    "Codespaces": "GH-CODESPACES",
    "Copilot": "GH-COPILOT",
    "Git Operations": "GH-GIT",
    "Issues": "GH-ISSUES",
    "Packages": "GH-PACKAGES",
    "Pages": "GH-PAGES",
    "Pull Requests": "GH-PULLS",
    "Webhooks": "GH-WEBHOOKS",
}
GENERATED = re.compile(r"^(?:\[Retroactive\] )?Incident with (.+)$")


def _listed_components(title: str) -> set[str] | None:
    """Services of a generated title whose every listed item is a component; None for other titles."""
    m = GENERATED.match(title)
    if not m:
        return None
    items = re.split(r", and |, | and ", m.group(1))
    names = [i.removeprefix("GitHub ").strip() for i in items]
    if not names or any(n not in COMPONENTS for n in names):
        return None
    return {COMPONENTS[n] for n in names}


def _file_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def imported(pg_server, tmp_path_factory) -> dict:
    from tests.conftest import scratch_database

    with scratch_database(pg_server) as dsn:
        out = tmp_path_factory.mktemp("statuspage")
        res, batches = imports.statuspage_file(dsn, REAL_FILE, out)
        yield {"dsn": dsn, "res": res, "batches": batches, "out": out}


def _ids(refs: list[str | None]) -> list[str]:
    return [i for r in refs if r for i in r.split(",")]


def test_real_file_is_taken_whole(imported: dict) -> None:
    dsn, res = imported["dsn"], imported["res"]
    rows = _file_rows(REAL_FILE)
    all_ids = {r["incident_id"] for r in rows}
    assert len(all_ids) == len(rows) == res.rows_read  # one row per incident in this file
    outage_ids = set(_ids([r["source_ref"] for r in query_dicts(dsn, "select source_ref from raw.outages")]))
    maint = query_dicts(dsn, "select change_ref, approved from raw.maintenance")
    maint_ids = set(_ids([r["change_ref"] for r in maint]))
    q = query_dicts(dsn, "select entity, reason, raw_record from raw.quarantine")
    q_ids = [r["raw_record"].get("source_ref") or r["raw_record"].get("change_ref") for r in q]
    # every row in exactly one place: outages, maintenance or quarantine
    assert len(q_ids) == len(set(q_ids)) == res.rows_unmapped
    assert outage_ids.isdisjoint(maint_ids) and outage_ids.isdisjoint(q_ids) and maint_ids.isdisjoint(q_ids)
    assert outage_ids | maint_ids | set(q_ids) == all_ids
    assert len(outage_ids) + len(maint_ids) + len(q_ids) == len(rows)
    assert len(outage_ids) + len(maint_ids) == res.rows_mapped
    # kinds follow the impact; maintenance is approved planned downtime
    impact = {r["incident_id"]: r["impact"] for r in rows}
    assert {impact[i] for i in maint_ids} == {"maintenance"}
    assert "maintenance" not in {impact[i] for i in outage_ids}
    assert maint and all(r["approved"] for r in maint)
    # what is quarantined says why
    assert {r["reason"] for r in q} == {"missing key: service_code"}
    assert all("names no service" in r["raw_record"]["unmapped"] for r in q)
    assert all(r["raw_record"]["title"] for r in q)
    # per file: read = loaded + unchanged + quarantined
    by_entity = {b.entity: b for b in imported["batches"]}
    assert set(by_entity) == {"clients", "services", "outages", "maintenance"}
    for b in by_entity.values():
        assert b.rows_read == b.rows_loaded + b.rows_unchanged + b.rows_quarantined
    assert by_entity["outages"].rows_quarantined + by_entity["maintenance"].rows_quarantined == len(q)


def test_real_file_services_and_times(imported: dict) -> None:
    dsn = imported["dsn"]
    rows = {r["incident_id"]: r for r in _file_rows(REAL_FILE)}
    services_of: dict[str, set[str]] = {}
    outages = query_dicts(dsn, "select service_code, started_at, ended_at, source_ref from raw.outages")
    for o in outages:
        refs = o["source_ref"].split(",")
        for ref in refs:
            services_of.setdefault(ref, set()).add(o["service_code"])
        src = [rows[r] for r in refs]
        # start is the file's; end the latest end of the windows merged into this row
        assert {s["downtime_start"] for s in src} == {o["started_at"].strftime("%Y-%m-%dT%H:%M:%SZ")}
        assert max(s["downtime_end"] for s in src) == o["ended_at"].strftime("%Y-%m-%dT%H:%M:%SZ")
    checked = 0
    for ref, r in rows.items():
        expected = _listed_components(r["title"])
        if expected is not None and r["impact"] != "maintenance":
            assert services_of.get(ref) == expected, r["title"]
            checked += 1
    assert checked > 200  # most incidents carry a generated title
    # the sample client and its services came with the import
    assert query_dicts(dsn, "select client_code, timezone from raw.clients") == [
        {"client_code": "GITHUB", "timezone": "UTC"}
    ]
    svc = query_dicts(dsn, "select service_code, calendar_code from raw.services order by 1")
    assert {s["service_code"] for s in svc} == set(COMPONENTS.values())
    assert {s["calendar_code"] for s in svc} == {"24x7"}


def test_rerun_changes_nothing(imported: dict, tmp_path: Path) -> None:
    dsn = imported["dsn"]
    before = query_dicts(
        dsn, "select service_code, started_at, ended_at, source_ref from raw.outages order by 1, 2"
    )
    res, batches = imports.statuspage_file(dsn, REAL_FILE, tmp_path)
    assert sum(b.rows_loaded for b in batches) == 0
    after = query_dicts(
        dsn, "select service_code, started_at, ended_at, source_ref from raw.outages order by 1, 2"
    )
    assert after == before


def test_windows_with_one_start_merge_and_overlaps_stay(tmp_path: Path, fresh_db: str) -> None:
    src = tmp_path / "history.csv"
    src.write_text(
        HEADER
        + "1,2024-05-01T10:00:00Z,2024-05-01T10:20:00Z,20,updates,Incident with Webhooks,minor\n"
        + "2,2024-05-01T10:00:00Z,2024-05-01T14:00:00Z,240,updates,Incident with Webhooks,major\n"
        + "3,2024-05-01T11:00:00Z,2024-05-01T12:00:00Z,60,updates,Incident with Webhooks and Actions,minor\n"
        + "4,2024-05-02T01:00:00Z,2024-05-02T03:00:00Z,120,updates,Scheduled Codespaces Maintenance,"
        + "maintenance\n"
    )
    res, _ = imports.statuspage_file(fresh_db, src, tmp_path / "out")
    assert (res.rows_read, res.rows_mapped, res.rows_unmapped, res.merged) == (4, 4, 0, 1)
    got = query_dicts(
        fresh_db,
        "select service_code, started_at::text, ended_at::text, source_ref from raw.outages order by 1, 2",
    )
    assert got == [
        {
            "service_code": "GH-ACTIONS",
            "started_at": "2024-05-01 11:00:00+00",
            "ended_at": "2024-05-01 12:00:00+00",
            "source_ref": "3",
        },
        {
            "service_code": "GH-WEBHOOKS",
            "started_at": "2024-05-01 10:00:00+00",
            "ended_at": "2024-05-01 14:00:00+00",
            "source_ref": "1,2",
        },
        {
            "service_code": "GH-WEBHOOKS",
            "started_at": "2024-05-01 11:00:00+00",
            "ended_at": "2024-05-01 12:00:00+00",
            "source_ref": "3",
        },
    ]
    m = query_dicts(fresh_db, "select service_code, change_ref, approved from raw.maintenance")
    assert m == [{"service_code": "GH-CODESPACES", "change_ref": "4", "approved": True}]


def test_unmapped_unknown_impact_and_bad_times_are_quarantined(tmp_path: Path, fresh_db: str) -> None:
    src = tmp_path / "history.csv"
    src.write_text(
        HEADER
        + "1,2024-05-01T10:00:00Z,2024-05-01T10:20:00Z,20,updates,Disruption with some services,minor\n"
        + "2,2024-05-01T10:00:00Z,2024-05-01T11:00:00Z,60,updates,Incident with Pages,cosmic\n"
        + "3,2024-05-01 10:00,2024-05-01T11:00:00Z,60,updates,Incident with Pages,minor\n"
        + "4,2024-05-01T12:00:00Z,2024-05-01T11:00:00Z,-60,updates,Incident with Pages,minor\n"
        + "5,2024-05-03T12:00:00Z,2024-05-03T13:00:00Z,60,updates,Incident with Pages,critical\n"
    )
    res, batches = imports.statuspage_file(fresh_db, src, tmp_path / "out")
    assert (res.rows_read, res.rows_mapped, res.rows_unmapped) == (5, 3, 2)
    q = query_dicts(
        fresh_db,
        "select reason, raw_record->>'source_ref' as ref, raw_record->>'unmapped' as why from raw.quarantine",
    )
    by_ref = {r["ref"]: r for r in q}
    assert set(by_ref) == {"1", "2", "3", "4"}
    assert "names no service" in by_ref["1"]["why"]
    assert "impact 'cosmic'" in by_ref["2"]["why"]
    assert by_ref["3"]["reason"].startswith("timestamp without offset in started_at")
    assert by_ref["4"]["reason"] == "ended_at before started_at"
    assert [r["source_ref"] for r in query_dicts(fresh_db, "select source_ref from raw.outages")] == ["5"]
    outages = next(b for b in batches if b.entity == "outages")
    assert (outages.rows_read, outages.rows_loaded, outages.rows_quarantined) == (5, 1, 4)


def test_a_file_without_the_needed_columns_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "history.csv"
    src.write_text("incident_id,start,end,title\n1,a,b,c\n")
    with pytest.raises(ValueError, match="lacks column.*downtime_start.*downtime_end.*impact"):
        sp.convert(src, sp.load_mapping(), tmp_path / "out")


def test_bad_mapping_names_the_entry(tmp_path: Path) -> None:
    doc = {
        "client": {"client_code": "X", "client_name": "X"},
        "impacts": {"minor": "outage"},
        "services": [{"service_code": "X-A", "match": ["(unclosed"]}],
    }
    with pytest.raises(sp.MappingError, match=r"m.yaml: services\[1\] \(X-A\): bad regular expression"):
        sp.mapping_from_dict(doc, "m.yaml")
    with pytest.raises(sp.MappingError, match="is not one of outage, maintenance"):
        sp.mapping_from_dict({**doc, "impacts": {"minor": "downtime"}}, "m.yaml")


def test_sample_contract_covers_the_sample_client() -> None:
    mapping = sp.load_mapping()
    catalogue = load_catalogue(REPO_ROOT / "contracts" / "statuspage_sample.yaml")
    (agreement,) = catalogue.agreements
    assert agreement.party == mapping.client_code
    (objective,) = agreement.objectives
    assert (objective.metric, objective.target_pct, objective.period) == ("availability", 99.9, "month")
    assert objective.calendar == mapping.calendar_code


def test_cli_import_statuspage(stack_home: Path, fresh_db: str, tmp_path: Path) -> None:
    proc = slm(stack_home, "import", "statuspage", str(REAL_FILE), "--dsn", fresh_db, "--out", str(tmp_path))
    n = len(_file_rows(REAL_FILE))
    m = re.search(r"read (\d+) rows: (\d+) mapped .*, (\d+) unmapped", proc.stdout)
    assert m, proc.stdout
    assert int(m.group(1)) == n == int(m.group(2)) + int(m.group(3))
    assert re.search(
        r"quarantined rows \(batch [0-9, ]+\): \./slm quarantine list \[--batch N\] \[--rows\] shows why",
        proc.stdout,
    )
    valid = slm(stack_home, "contracts", "validate", str(REPO_ROOT / "contracts" / "statuspage_sample.yaml"))
    assert valid.stdout.startswith("OK")
    bad = slm(stack_home, "import", "statuspage", str(tmp_path / "nope.csv"), "--dsn", fresh_db, check=False)
    assert bad.returncode == 1 and "cannot import" in bad.stderr
