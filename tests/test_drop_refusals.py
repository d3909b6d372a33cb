"""No silent loss in a drop: every file is loaded or refused with a batch row and a reason; a misspelt
column or JSON key is refused by name; a batch that does not reconcile stops the run and keeps nothing.

Extra columns and keys with other names stay allowed (CANONICAL_FORMAT.md: "kept or ignored, never an
error"); what is refused is a name that reads as a misspelling of a canonical column the file lacks, whose
values would otherwise load as null with the row counted as loaded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slm_platform.canonical import ENTITY_BY_NAME
from slm_platform.load import loader, text_path
from slm_platform.load.loader import LoadError, ReconciliationError, RefusedFilesError, load_drop
from slm_platform.sources.canonical_drop import land_drop
from tests.conftest import query_dicts
from tests.test_loader import TICKET_HEADER, ticket, write_drop

EVENT = {"ticket_id": "INC1", "occurred_at": "2026-10-05T09:00:00+02:00", "field": "status"}


def _batches(dsn: str) -> list[dict]:
    return query_dicts(
        dsn, "select entity, file, status, error, rows_read from raw.load_batches order by batch_id"
    )


def _count(dsn: str, table: str) -> int:
    return query_dicts(dsn, f"select count(*) as n from {table}")[0]["n"]


def test_every_misspelt_file_name_gets_a_failed_batch_row_and_stops_the_run(
    fresh_db: str, tmp_path: Path
) -> None:
    drop = write_drop(tmp_path / "drop", [ticket("INC1", "new", "2026-10-05T09:00:00+02:00")])
    body = (drop / "tickets.csv").read_text()
    misspelt = ["Tickets.csv", "tickets.CSV", "ticket.csv", "tickets.csv.bak", "tickets.txt", "notes.txt"]
    for name in misspelt:
        (drop / name).write_text(body)
    (drop / "contracts.yaml").write_text("calendars: []\n")  # a companion file: named, loaded elsewhere
    said: list[str] = []
    with pytest.raises(RefusedFilesError) as exc:
        load_drop(fresh_db, drop, log=said.append)
    assert all(name in str(exc.value) for name in misspelt), exc.value

    rows = _batches(fresh_db)
    failed = {Path(r["file"]).name: r for r in rows if r["status"] == "failed"}
    assert sorted(failed) == sorted(misspelt)
    for name, r in failed.items():
        assert r["error"].startswith(f"refused: {name}: not a canonical file name"), r
        # a name close to an entity says which one it was probably meant for
        assert r["entity"] == ("unknown" if name == "notes.txt" else "tickets"), r
        if r["entity"] == "tickets":
            assert "did you mean one of tickets.csv" in r["error"], r
    # the canonical files were loaded all the same (each once), and the companion file has no batch
    assert sorted(r["entity"] for r in rows if r["status"] == "ok") == ["clients", "services", "tickets"]
    assert _count(fresh_db, "raw.tickets") == 1
    assert not any("contracts.yaml" in r["file"] for r in rows)
    assert any(s.startswith("contracts.yaml: the contract catalogue") for s in said), said


def test_a_drop_of_only_misspelt_files_is_refused_not_empty(fresh_db: str, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "CHECKS.CSV").write_text("service_code,checked_at,status,latency_ms\n")
    with pytest.raises(RefusedFilesError, match="CHECKS.CSV"):
        load_drop(fresh_db, drop)
    (row,) = _batches(fresh_db)
    assert (row["entity"], row["status"]) == ("checks", "failed") and "checks.csv" in row["error"]


def test_landing_keeps_misspelt_files_for_the_loader_to_refuse(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("tickets.csv", "Tickets.CSV", "README"):
        (src / name).write_text("x\n")
    landed = land_drop(src, tmp_path / "landing", datetime(2026, 10, 5, tzinfo=UTC))
    assert sorted(p.name for p in landed.iterdir()) == ["README", "Tickets.CSV", "tickets.csv"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="is empty"):
        land_drop(empty, tmp_path / "landing", datetime(2026, 10, 6, tzinfo=UTC))


@pytest.mark.parametrize(
    ("wrong", "meant"),
    [("categry", "category"), ("Resolved At", "resolved_at"), ("first-response_at", "first_response_at")],
)
def test_a_misspelt_csv_column_refuses_the_file_by_name(
    fresh_db: str, tmp_path: Path, wrong: str, meant: str
) -> None:
    header = TICKET_HEADER.replace(meant, wrong)
    assert header != TICKET_HEADER
    drop = write_drop(
        tmp_path / "d",
        **{"tickets.csv": header + "\n" + ticket("INC1", "new", "2026-10-05T09:00:00Z") + "\n"},
    )
    with pytest.raises(LoadError, match=rf"unknown column\(s\) '{wrong}' \(did you mean {meant}\?\)"):
        load_drop(fresh_db, drop)
    failed = [r for r in _batches(fresh_db) if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["entity"] == "tickets" and wrong in failed[0]["error"]
    assert _count(fresh_db, "raw.tickets") == 0


def test_extra_columns_with_other_names_are_still_allowed(fresh_db: str, tmp_path: Path) -> None:
    # updated_by is two letters from updated_at, but updated_at is present: an extra, not a misspelling
    header = TICKET_HEADER + ",updated_by,vendor_reference"
    row = ticket("INC1", "new", "2026-10-05T09:00:00Z") + ",agent7,V-99"
    drop = write_drop(tmp_path / "d", **{"tickets.csv": f"{header}\n{row}\n"})
    r = {b.entity: b for b in load_drop(fresh_db, drop)}["tickets"]
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined) == (1, 1, 0)


def test_a_misspelt_json_key_quarantines_the_row_by_name(fresh_db: str, tmp_path: Path) -> None:
    lines = [
        {**EVENT, "from_value": None, "to_value": "new"},  # good
        {**EVENT, "occurred_at": "2026-10-05T09:10:00+02:00", "from_value": "new", "to_valu": "in_progress"},
        {**EVENT, "occurred_at": "2026-10-05T09:20:00+02:00", "From_Value": "x", "to_value": "resolved"},
        {**EVENT, "occurred_at": "2026-10-05T09:30:00+02:00", "to_value": "closed", "agent": "a7"},  # extra
    ]
    drop = write_drop(
        tmp_path / "d",
        [ticket("INC1", "new", "2026-10-05T09:00:00Z")],
        **{"ticket_events.jsonl": "".join(json.dumps(o) + "\n" for o in lines)},
    )
    r = {b.entity: b for b in load_drop(fresh_db, drop)}["ticket_events"]
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined) == (4, 2, 2)
    q = query_dicts(fresh_db, "select location, reason, raw_record from raw.quarantine order by location")
    assert [(x["location"].rsplit(":", 1)[1], x["reason"]) for x in q] == [
        ("2", "unknown key(s) 'to_valu' (did you mean to_value?)"),
        ("3", "unknown key(s) 'From_Value' (did you mean from_value?)"),
    ]
    assert q[0]["raw_record"] == lines[1]  # the object as it came, not an unparsed string
    loaded = query_dicts(fresh_db, "select to_value from raw.ticket_events order by occurred_at")
    assert [x["to_value"] for x in loaded] == ["new", "closed"]


def test_the_near_miss_rule() -> None:
    cols = ENTITY_BY_NAME["tickets"].column_names
    assert loader.near_miss("Opened At", cols) == "opened_at"
    assert loader.near_miss("priorty", cols) == "priority"
    assert loader.near_miss("vendor_reference", cols) is None
    assert loader.near_miss("zz_extra", cols) is None
    assert loader.near_miss("ticket", loader.LOAD_ORDER) == "tickets"
    assert loader.near_miss("sip_action", loader.LOAD_ORDER) == "sip_actions"
    assert loader.near_miss("incidents", loader.LOAD_ORDER) is None


@pytest.mark.parametrize("direct", [True, False])
def test_a_batch_that_does_not_reconcile_stops_the_run_and_keeps_nothing(
    fresh_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    """A loader bug that loses a row between its counts (played by a quarantine that reports one row
    fewer than it wrote, or a direct load that reports one row more) is refused: the batch is rolled
    back and recorded as failed, and the files after it are not loaded."""
    good = ticket("INC1", "new", "2026-10-05T09:00:00Z")
    bad = ticket("INC2", "new", "2026-10-05T09:00:00Z").replace(",P2,", ",P9,")
    rows = [good] if direct else [good, bad]
    checks = "service_code,checked_at,status,latency_ms\nACME-ERP,2026-10-05T08:00:00Z,up,120\n"
    drop = write_drop(tmp_path / "d", rows, **{"checks.csv": checks})
    if direct:
        real_direct = loader.direct_load

        def lying_direct(*args, **kw):
            out = real_direct(*args, **kw)
            if out is None or args[2].name != "tickets":
                return out
            return (out[0], out[1], out[2] + 1, out[3])

        monkeypatch.setattr(loader, "direct_load", lying_direct)
    else:
        real_quarantine = text_path._quarantine
        monkeypatch.setattr(text_path, "_quarantine", lambda *a, **kw: real_quarantine(*a, **kw) - 1)
    with pytest.raises(ReconciliationError, match="tickets.csv: the batch does not reconcile"):
        load_drop(fresh_db, drop)
    by_entity = {r["entity"]: r for r in _batches(fresh_db)}
    assert (
        by_entity["tickets"]["status"] == "failed" and "does not reconcile" in by_entity["tickets"]["error"]
    )
    assert "checks" not in by_entity  # the run stopped at the file
    assert _count(fresh_db, "raw.tickets") == 0 and _count(fresh_db, "raw.quarantine") == 0
    assert query_dicts(fresh_db, "select * from raw.watermarks where entity = 'tickets'") == []
