"""The canonical loader: validation, quarantine, idempotence, versioning, file variants, errors."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from pathlib import Path

import psycopg2
import pytest

from slm_platform.canonical import ENTITY_BY_NAME
from slm_platform.load import loader
from slm_platform.load.loader import LoadError, load_drop
from slm_platform.sources.demo_data import generate

BAD_DROP = Path(__file__).parent / "data" / "bad_drop"

CLIENTS = "client_code,client_name,timezone,country\nACME,ACME Europe,Europe/Paris,FR\n"
SERVICES = (
    "service_code,client_code,service_name,calendar_code,criticality\nACME-ERP,ACME,ERP,FR-BUSINESS,high\n"
)
TICKET_HEADER = ",".join(ENTITY_BY_NAME["tickets"].column_names)


def ticket(tid: str, status: str, updated_at: str, opened: str = "2026-10-05T09:00:00+02:00") -> str:
    return f"{tid},ACME,ACME-ERP,incident,P2,{opened},,,,{status},ServiceDesk,false,,application,{updated_at}"


def write_drop(path: Path, tickets: list[str] | None = None, **files: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "clients.csv").write_text(CLIENTS)
    (path / "services.csv").write_text(SERVICES)
    if tickets is not None:
        (path / "tickets.csv").write_text(TICKET_HEADER + "\n" + "\n".join(tickets) + "\n")
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def query(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def primary_key(dsn: str, table: str) -> tuple[str, str]:
    return query(
        dsn,
        "select conname, pg_get_constraintdef(oid) from pg_constraint where conrelid = %s::regclass "
        "and contype = 'p'",
        (table,),
    )[0]


def by_entity(results: list[loader.BatchResult]) -> dict[str, loader.BatchResult]:
    return {r.entity: r for r in results}


def assert_balanced(results: list[loader.BatchResult]) -> None:
    for r in results:
        assert r.rows_read == r.rows_loaded + r.rows_unchanged + r.rows_quarantined, r


@pytest.fixture(scope="module")
def demo_drop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("demo")
    return out, generate(out)


def test_demo_drop_loads_clean_and_second_load_changes_nothing(fresh_db: str, demo_drop) -> None:
    drop, counts = demo_drop
    first = by_entity(load_drop(fresh_db, drop))
    assert set(first) == set(counts)
    for name, n in counts.items():
        r = first[name]
        assert (r.rows_read, r.rows_loaded, r.rows_unchanged, r.rows_quarantined) == (n, n, 0, 0), r
        assert query(fresh_db, f"select count(*) from raw.{name}")[0][0] == n
    snapshot = {n: query(fresh_db, f"select * from raw.{n} order by 1, 2") for n in counts}

    second = by_entity(load_drop(fresh_db, drop))
    for name, n in counts.items():
        r = second[name]
        assert (r.rows_read, r.rows_loaded, r.rows_unchanged, r.rows_quarantined) == (n, 0, n, 0), r
        # Not even the metadata moves: unchanged rows are not rewritten.
        assert query(fresh_db, f"select * from raw.{name} order by 1, 2") == snapshot[name]
    batches = query(fresh_db, "select status, count(*) from raw.load_batches group by status")
    assert batches == [("ok", 2 * len(counts))]
    # Watermarks follow the entity's time column (tickets: updated_at).
    hw = dict(query(fresh_db, "select entity, high_water from raw.watermarks"))
    assert hw["tickets"] == query(fresh_db, "select max(updated_at) from raw.tickets")[0][0]
    assert hw["checks"] == query(fresh_db, "select max(checked_at) from raw.checks")[0][0]
    assert "clients" not in hw


def test_newer_updated_at_replaces_older_or_equal_does_not(fresh_db: str, tmp_path: Path) -> None:
    write_drop(tmp_path / "v1", [ticket("INC1", "in_progress", "2026-10-05T10:00:00+02:00")])
    load_drop(fresh_db, tmp_path / "v1")

    def status() -> tuple:
        return query(fresh_db, "select status, updated_at::text from raw.tickets where ticket_id = 'INC1'")[0]

    # Newer (same instant written in another offset would be equal: 08:30Z is 10:30+02:00).
    write_drop(tmp_path / "v2", [ticket("INC1", "resolved", "2026-10-05T08:30:00Z")])
    r = by_entity(load_drop(fresh_db, tmp_path / "v2"))["tickets"]
    assert (r.rows_loaded, r.rows_unchanged) == (1, 0)
    assert status() == ("resolved", "2026-10-05 08:30:00+00")

    # Older version: ignored.
    write_drop(tmp_path / "v0", [ticket("INC1", "new", "2026-10-05T09:00:00+02:00")])
    r = by_entity(load_drop(fresh_db, tmp_path / "v0"))["tickets"]
    assert (r.rows_loaded, r.rows_unchanged) == (0, 1)
    assert status()[0] == "resolved"

    # Same updated_at, other values: not a newer version, unchanged.
    write_drop(tmp_path / "v2b", [ticket("INC1", "closed", "2026-10-05T10:30:00+02:00")])
    r = by_entity(load_drop(fresh_db, tmp_path / "v2b"))["tickets"]
    assert (r.rows_loaded, r.rows_unchanged) == (0, 1)
    assert status()[0] == "resolved"
    assert query(fresh_db, "select high_water::text from raw.watermarks where entity = 'tickets'") == [
        ("2026-10-05 08:30:00+00",)
    ]


def test_unversioned_entity_is_replaced_only_when_a_value_changed(fresh_db: str, tmp_path: Path) -> None:
    header = "service_code,checked_at,status,latency_ms\n"
    write_drop(tmp_path / "a", **{"checks.csv": header + "ACME-ERP,2026-10-05T08:00:00Z,up,120\n"})
    load_drop(fresh_db, tmp_path / "a")
    # Same key (same instant in another offset), same values: unchanged.
    write_drop(tmp_path / "b", **{"checks.csv": header + "ACME-ERP,2026-10-05T10:00:00+02:00,up,120\n"})
    r = by_entity(load_drop(fresh_db, tmp_path / "b"))["checks"]
    assert (r.rows_loaded, r.rows_unchanged) == (0, 1)
    write_drop(tmp_path / "c", **{"checks.csv": header + "ACME-ERP,2026-10-05T08:00:00Z,down,\n"})
    r = by_entity(load_drop(fresh_db, tmp_path / "c"))["checks"]
    assert (r.rows_loaded, r.rows_unchanged) == (1, 0)
    assert query(fresh_db, "select status, latency_ms from raw.checks") == [("down", None)]


TICKET_REASONS = {
    "tickets.csv:3": "unknown client_code: 'NOBODY'",
    "tickets.csv:4": "resolved_at before opened_at",
    "tickets.csv:5": "bad priority: 'P7' (expected one of P1, P2, P3, P4)",
    "tickets.csv:6": "timestamp without offset in opened_at: '2026-10-05 11:00:00'",
    "tickets.csv:7": "duplicate key in file",
    "tickets.csv:9": "bad ticket_type: 'outage' (expected one of incident, request, complaint, problem, "
    "change)",
    "tickets.csv:10": "service_code 'ACME-ERP' belongs to client 'ACME', not 'GLOBEX'",
    "tickets.csv:11": "missing key: ticket_id",
    "tickets.csv:12": "bad boolean in is_major: 'maybe'",
}
CHECK_REASONS = {
    "checks.csv:3": "bad status: 'sideways' (expected one of up, down)",
    "checks.csv:4": "bad timestamp in checked_at: '2026-13-05T08:10:00Z'",
    "checks.csv:5": "bad integer in latency_ms: 'fast'",
    "checks.csv:6": "duplicate key in file",  # 10:20+02:00 is 08:20Z, line 7: the last one wins
    "checks.csv:8": "unknown service_code: 'UNKNOWN-SVC'",
    "checks.csv:9": "bad timestamp in checked_at: '2026-02-30T08:25:00Z'",
    "checks.csv:10": "latency_ms out of range 0..2147483647: '-5'",
}
EVENT_REASONS = {
    "ticket_events.jsonl:2": "bad field: 'colour' (expected one of status, assignment_group, priority)",
    "ticket_events.jsonl:3": "unknown ticket_id: 'INC404'",
    "ticket_events.jsonl:4": "invalid JSON",
    "ticket_events.jsonl:6": "not a JSON object: list",
}


def test_bad_drop_rows_are_quarantined_with_their_reason(fresh_db: str) -> None:
    results = by_entity(load_drop(fresh_db, BAD_DROP))
    assert_balanced(list(results.values()))
    t, c, e = results["tickets"], results["checks"], results["ticket_events"]
    assert (t.rows_read, t.rows_loaded, t.rows_unchanged, t.rows_quarantined) == (12, 3, 0, 9)
    assert (c.rows_read, c.rows_loaded, c.rows_unchanged, c.rows_quarantined) == (9, 2, 0, 7)
    assert (e.rows_read, e.rows_loaded, e.rows_unchanged, e.rows_quarantined) == (6, 2, 0, 4)

    got = dict(query(fresh_db, "select location, reason from raw.quarantine"))
    expected = {**TICKET_REASONS, **CHECK_REASONS, **EVENT_REASONS}
    assert set(got) == set(expected)
    for location, reason in expected.items():
        assert got[location].startswith(reason), (location, got[location])

    assert [r[0] for r in query(fresh_db, "select ticket_id from raw.tickets order by 1")] == [
        "INC001",
        "INC006",
        "INC010",
    ]
    # The newest of the duplicate INC006 rows won; the same instant in two offsets is one key for checks.
    assert query(fresh_db, "select status from raw.tickets where ticket_id = 'INC006'") == [("in_progress",)]
    assert query(fresh_db, "select checked_at::text, latency_ms from raw.checks order by 1") == [
        ("2026-10-05 08:00:00+00", 120),
        ("2026-10-05 08:20:00+00", 99),
    ]
    # The raw record is kept as read, header names as keys, empty fields as null.
    record = query(fresh_db, "select raw_record from raw.quarantine where location = 'tickets.csv:5'")[0][0]
    assert record["priority"] == "P7" and record["ticket_id"] == "INC004" and record["closed_at"] is None
    bad_json = query(
        fresh_db, "select raw_record from raw.quarantine where location = 'ticket_events.jsonl:4'"
    )
    assert bad_json[0][0] == {"_unparsed": "this is not json"}
    counts = query(
        fresh_db,
        "select b.entity, b.rows_quarantined, count(q.*) from raw.load_batches b "
        "left join raw.quarantine q using (batch_id) group by 1, 2 order by 1",
    )
    assert all(n == m for _, n, m in counts), counts
    # The first load of checks built its key after the insert; the duplicate made it roll back: key intact.
    assert primary_key(fresh_db, "raw.checks") == ("checks_pkey", "PRIMARY KEY (service_code, checked_at)")


@pytest.mark.parametrize("strict", [False, True], ids=["fast-path", "strict-path"])
def test_both_validation_paths_give_the_same_verdicts(fresh_db: str, tmp_path: Path, strict: bool) -> None:
    """tickets.csv of the bad drop holds only castable values, so the fast path handles it; forcing the
    strict (regex-guarded) path must quarantine the very same rows with the very same reasons."""
    drop = tmp_path / "drop"
    drop.mkdir()
    for name in ("clients.csv", "services.csv", "tickets.csv"):
        shutil.copy(BAD_DROP / name, drop / name)
    load_drop(fresh_db, drop, options=loader.LoadOptions(validation_paths=(strict,)))
    got = dict(query(fresh_db, "select location, reason from raw.quarantine"))
    assert set(got) == set(TICKET_REASONS)
    for location, reason in TICKET_REASONS.items():
        assert got[location].startswith(reason)


def test_fast_path_falls_back_when_a_cast_fails(fresh_db: str, tmp_path: Path) -> None:
    drop = write_drop(tmp_path / "d", **{"checks.csv": (BAD_DROP / "checks.csv").read_text()})
    with pytest.raises(LoadError, match="checks.csv"):
        load_drop(fresh_db, drop, options=loader.LoadOptions(validation_paths=(False,)))  # no strict fallback
    assert query(fresh_db, "select count(*) from raw.checks") == [(0,)]


def _variant(src: Path, dst: Path, fmt: str) -> None:
    """Rewrite every CSV of ``src`` as ``fmt`` (csv-bom-extra, csv.gz, jsonl, jsonl.gz) into ``dst``."""
    dst.mkdir(parents=True)
    for path in sorted(src.glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        name = path.stem
        if fmt == "csv-bom-extra":
            cols = ["zz_extra", *rows[0].keys(), "Another Extra"]
            with open(dst / f"{name}.csv", "w", newline="", encoding="utf-8-sig") as fh:
                w = csv.DictWriter(fh, cols, lineterminator="\r\n")
                w.writeheader()
                w.writerows({**r, "zz_extra": 'x,"y"', "Another Extra": "line\nbreak"} for r in rows)
        elif fmt == "csv.gz":
            with open(path, "rb") as fh, gzip.open(dst / f"{name}.csv.gz", "wb") as out:
                out.write(fh.read())
        else:
            lines = []
            for r in rows:
                obj = {k: (v if v != "" else None) for k, v in r.items()}
                for k in ("is_major", "approved"):
                    if obj.get(k) is not None:
                        obj[k] = obj[k] == "true"  # JSON booleans
                if obj.get("latency_ms") is not None:
                    obj["latency_ms"] = int(obj["latency_ms"])  # JSON numbers
                lines.append(json.dumps(obj) + "\n")
            text = "".join(lines).encode()
            if fmt == "jsonl.gz":
                with gzip.open(dst / f"{name}.jsonl.gz", "wb") as out:
                    out.write(text)
            else:
                (dst / f"{name}.jsonl").write_bytes(text)


def test_gz_jsonl_bom_and_extra_columns_load_the_same_rows(fresh_db: str, demo_drop, tmp_path: Path) -> None:
    drop, counts = demo_drop
    small = tmp_path / "small"
    small.mkdir()
    for name in counts:  # a small slice keeps the test quick, all entities included
        with open(drop / f"{name}.csv") as fh:
            head = [next(fh) for _ in range(min(counts[name], 300) + 1)]
        (small / f"{name}.csv").write_text("".join(head))

    tables = list(counts)
    canon_cols = {n: ", ".join(ENTITY_BY_NAME[n].column_names) for n in tables}

    def snapshot() -> dict[str, list[tuple]]:
        return {n: query(fresh_db, f"select {canon_cols[n]} from raw.{n} order by 1, 2") for n in tables}

    def reset() -> None:
        conn = psycopg2.connect(fresh_db)
        with conn, conn.cursor() as cur:
            cur.execute("truncate " + ", ".join(f"raw.{n}" for n in tables))
        conn.close()

    base = by_entity(load_drop(fresh_db, small))
    assert all(r.rows_quarantined == 0 for r in base.values())
    expected = snapshot()
    assert sum(len(v) for v in expected.values()) > 1000
    for fmt in ("csv-bom-extra", "csv.gz", "jsonl", "jsonl.gz"):
        reset()
        variant = tmp_path / fmt
        _variant(small, variant, fmt)
        results = by_entity(load_drop(fresh_db, variant))
        assert {n: (r.rows_read, r.rows_loaded) for n, r in results.items()} == {
            n: (base[n].rows_read, base[n].rows_read) for n in tables
        }, fmt
        assert snapshot() == expected, fmt


def test_header_missing_a_key_column_is_a_clear_error(fresh_db: str, tmp_path: Path) -> None:
    header = TICKET_HEADER.replace("ticket_id,", "")
    drop = write_drop(tmp_path / "d", **{"tickets.csv": header + "\n" + ticket("X", "new", "x")[2:] + "\n"})
    with pytest.raises(LoadError) as err:
        load_drop(fresh_db, drop)
    message = str(err.value)
    assert "tickets.csv" in message and "ticket_id" in message and "key column" in message
    # The files before it were committed; the failure is recorded; nothing of tickets was written.
    assert query(fresh_db, "select entity, status from raw.load_batches order by batch_id") == [
        ("clients", "ok"),
        ("services", "ok"),
        ("tickets", "failed"),
    ]
    assert "ticket_id" in query(fresh_db, "select error from raw.load_batches where status = 'failed'")[0][0]
    assert query(fresh_db, "select count(*) from raw.tickets") == [(0,)]


def test_malformed_csv_and_unreadable_gzip_name_the_file(fresh_db: str, tmp_path: Path) -> None:
    ragged = TICKET_HEADER + "\n" + ticket("INC1", "new", "2026-10-05T10:00:00Z") + "\nINC2,ACME\n"
    drop = write_drop(tmp_path / "ragged", **{"tickets.csv": ragged})
    with pytest.raises(LoadError, match=r"tickets\.csv: malformed file at line 3"):
        load_drop(fresh_db, drop)
    assert query(fresh_db, "select count(*) from raw.tickets") == [(0,)]

    broken = tmp_path / "gz"
    broken.mkdir()
    (broken / "clients.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(LoadError, match=r"clients\.csv\.gz"):
        load_drop(fresh_db, broken)


def test_ticket_events_need_a_known_ticket_and_drop_order_is_respected(fresh_db: str, tmp_path: Path) -> None:
    # tickets.csv and ticket_events.csv in the same drop: the events see the tickets loaded just before.
    events = "ticket_id,occurred_at,field,from_value,to_value\nINC1,2026-10-05T10:00:00Z,status,,new\n"
    drop = write_drop(
        tmp_path / "d",
        [ticket("INC1", "new", "2026-10-05T10:00:00Z")],
        **{"ticket_events.csv": events},
    )
    results = load_drop(fresh_db, drop)
    assert [r.entity for r in results] == ["clients", "services", "tickets", "ticket_events"]
    assert by_entity(results)["ticket_events"].rows_loaded == 1


def test_missing_drop_directory_is_an_error(fresh_db: str, tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="not a directory"):
        load_drop(fresh_db, tmp_path / "nope")
    assert load_drop(fresh_db, tmp_path) == []


def _ticket_sequence(tmp_path: Path) -> list[Path]:
    """Three drops of tickets with unique keys (so the single pass applies): a first load with bad rows,
    the same file again, then an increment (newer, older, equal-time, new, bad rows, a changed service)."""
    first = [
        ticket("INC1", "new", "2026-10-05T10:00:00+02:00"),
        ticket("INC2", "new", "2026-10-05T10:00:00+02:00"),
        ticket("INC3", "new", "2026-10-05 10:00:00"),  # zone-less updated_at
        ticket("INC4", "new", "2026-10-05T10:00:00Z", opened="2026-10-05T11:00:00Z").replace(
            ",,,,new", ",,2026-10-05T10:30:00Z,,new"
        ),  # resolved before opened
        ticket("INC5", "new", "2026-10-05T10:00:00Z").replace("ACME,ACME-ERP", "NOBODY,ACME-ERP"),
        ticket("INC6", "new", "2026-10-05T10:00:00Z").replace(",P2,", ",P9,"),
        ticket("INC7", "new", "2026-10-05T10:00:00Z").replace(",false,", ",TRUE,"),
    ]
    increment = [
        ticket("INC1", "resolved", "2026-10-05T09:00:00Z"),  # newer (08:00Z before): replaces
        ticket("INC2", "closed", "2026-10-05T07:00:00Z"),  # older: ignored
        ticket("INC7", "closed", "2026-10-05T12:00:00+02:00"),  # same instant: unchanged
        ticket("INC8", "new", "2026-10-05T09:00:00Z"),  # new key
        ticket("INC9", "new", "2026-10-05T09:00:00Z").replace(",incident,", ",outage,"),
    ]
    services = SERVICES + "ACME-WEB,ACME,Web shop,FR-BUSINESS,low\n"
    return [
        write_drop(tmp_path / "first", first),
        write_drop(tmp_path / "again", first),
        write_drop(tmp_path / "incr", increment, **{"services.csv": services.replace("ERP,FR", "ERP!,FR")}),
    ]


def _load_state(dsn: str) -> dict[str, list[tuple]]:
    return {
        "tickets": query(
            dsn, "select ticket_id, status, is_major, updated_at, _batch_id from raw.tickets order by 1"
        ),
        "services": query(dsn, "select service_code, service_name, _batch_id from raw.services order by 1"),
        "quarantine": query(
            dsn, "select batch_id, location, reason, raw_record from raw.quarantine order by 1, 2"
        ),
        "watermarks": query(dsn, "select entity, high_water from raw.watermarks order by 1"),
    }


def test_single_pass_and_step_by_step_paths_agree(pg_server, fresh_db: str, tmp_path: Path) -> None:
    """The same drops with and without the single pass: same counts, rows, quarantine (reasons, raw
    records), watermarks."""
    drops = _ticket_sequence(tmp_path)
    other = fresh_db.rsplit("/", 1)[0] + "/slm_loader_stepwise"
    admin = psycopg2.connect(fresh_db)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("drop database if exists slm_loader_stepwise")
        cur.execute("create database slm_loader_stepwise")
    admin.close()

    def run(dsn: str, single: bool) -> list[list[tuple]]:
        out = []
        for i, drop in enumerate(drops):
            results = load_drop(dsn, drop, options=loader.LoadOptions(single_pass=single))
            assert_balanced(results)
            t = by_entity(results)["tickets"]
            # Proof of the path taken (the step names differ): the single pass is for an empty table.
            assert ("single_pass" in t.step_seconds) is (single and i == 0), t.step_seconds
            assert ("merge" in t.step_seconds) is (single and i > 0), t.step_seconds  # a filled table
            out.append(
                [
                    (r.entity, r.rows_read, r.rows_loaded, r.rows_unchanged, r.rows_quarantined)
                    for r in results
                ]
            )
        return out

    fast = run(fresh_db, True)
    slow = run(other, False)
    assert fast == slow
    tickets = [[c for c in step if c[0] == "tickets"][0] for step in fast]
    assert tickets == [
        ("tickets", 7, 3, 0, 4),  # INC3 zone-less, INC4 resolved before opened, INC5 client, INC6 priority
        ("tickets", 7, 0, 3, 4),  # rerun: nothing written, the same four refused again
        ("tickets", 5, 2, 2, 1),  # INC1 newer + INC8 new loaded; INC2 older, INC7 same time; INC9 refused
    ]
    services = [[c for c in step if c[0] == "services"][0] for step in fast]
    assert services[2] == ("services", 2, 2, 0, 0)  # ACME-ERP renamed (a value changed) + ACME-WEB new
    fast_state, slow_state = _load_state(fresh_db), _load_state(other)
    assert fast_state == slow_state
    assert [r[:3] for r in fast_state["tickets"]] == [
        ("INC1", "resolved", False),
        ("INC2", "new", False),
        ("INC7", "new", True),  # 'TRUE' is a boolean; the equal-time version did not replace it
        ("INC8", "new", False),
    ]
    first_load = [
        ("tickets.csv:4", "timestamp without offset in updated_at: '2026-10-05 10:00:00'"),
        ("tickets.csv:5", "resolved_at before opened_at"),
        ("tickets.csv:6", "unknown client_code: 'NOBODY'"),
        ("tickets.csv:7", "bad priority: 'P9' (expected one of P1, P2, P3, P4)"),
    ]
    outage = "bad ticket_type: 'outage' (expected one of incident, request, complaint, problem, change)"
    by_batch: dict[int, list[tuple]] = {}
    for batch, location, reason, _ in fast_state["quarantine"]:
        by_batch.setdefault(batch, []).append((location, reason))
    assert list(by_batch.values()) == [first_load, first_load, [("tickets.csv:6", outage)]]
    record = fast_state["quarantine"][0][3]
    assert record["ticket_id"] == "INC3" and record["updated_at"] == "2026-10-05 10:00:00"
    hw = dict(fast_state["watermarks"])
    assert hw["tickets"] == query(fresh_db, "select max(updated_at) from raw.tickets")[0][0]


def test_single_pass_falls_back_on_a_value_the_fast_casts_refuse(fresh_db: str, tmp_path: Path) -> None:
    """31 September passes the cheap shape test, the cast raises: the step-by-step path takes over."""
    drop = write_drop(
        tmp_path / "d",
        [ticket("INC1", "new", "2026-10-05T10:00:00Z"), ticket("INC2", "new", "2026-09-31T10:00:00Z")],
    )
    t = by_entity(load_drop(fresh_db, drop))["tickets"]
    assert "single_pass" not in t.step_seconds and "validate" in t.step_seconds
    assert (t.rows_read, t.rows_loaded, t.rows_quarantined) == (2, 1, 1)
    assert query(fresh_db, "select location, reason from raw.quarantine") == [
        ("tickets.csv:3", "bad timestamp in updated_at: '2026-09-31T10:00:00Z'")
    ]


def test_single_pass_duplicate_keys_fall_back_and_an_invalid_twin_is_no_duplicate(
    fresh_db: str, tmp_path: Path
) -> None:
    """Into an empty table the primary key catches a key twice among the good rows (step-by-step path
    then keeps the newest); a key whose other row is invalid is no duplicate: the valid row loads."""
    dup = write_drop(
        tmp_path / "dup",
        [
            ticket("INC1", "new", "2026-10-05T10:00:00Z"),
            ticket("INC1", "resolved", "2026-10-05T11:00:00Z"),
            ticket("INC1", "closed", "2026-10-05T09:00:00Z"),
        ],
    )
    t = by_entity(load_drop(fresh_db, dup))["tickets"]
    assert "single_pass" not in t.step_seconds
    assert (t.rows_read, t.rows_loaded, t.rows_quarantined) == (3, 1, 2)
    assert query(fresh_db, "select status from raw.tickets") == [("resolved",)]
    assert query(fresh_db, "select location, reason from raw.quarantine order by 1") == [
        ("tickets.csv:2", "duplicate key in file"),
        ("tickets.csv:4", "duplicate key in file"),
    ]

    conn = psycopg2.connect(fresh_db)
    with conn, conn.cursor() as cur:
        cur.execute("truncate raw.tickets")
    conn.close()
    twin = write_drop(
        tmp_path / "twin",
        [
            ticket("INC1", "new", "2026-10-05T10:00:00Z").replace(",P2,", ",P0,"),
            ticket("INC1", "resolved", "2026-10-05T11:00:00Z"),
        ],
    )
    t = by_entity(load_drop(fresh_db, twin))["tickets"]
    assert "single_pass" in t.step_seconds
    assert (t.rows_read, t.rows_loaded, t.rows_unchanged, t.rows_quarantined) == (2, 1, 0, 1)
    assert query(fresh_db, "select status from raw.tickets") == [("resolved",)]
    assert query(fresh_db, "select reason from raw.quarantine where batch_id = %s", (t.batch_id,)) == [
        ("bad priority: 'P0' (expected one of P1, P2, P3, P4)",)
    ]


def test_merge_into_a_filled_table_falls_back_on_duplicate_keys(fresh_db: str, tmp_path: Path) -> None:
    """Into a filled table a key twice in the file is no unique violation when the key is stored already
    (both rows meet the same stored row): the merge sees it and the step-by-step path takes over, for
    stored and new keys alike, for versioned (tickets) and unversioned (checks) entities."""
    header = "service_code,checked_at,status,latency_ms\n"
    base = write_drop(
        tmp_path / "base",
        [ticket("INC1", "new", "2026-10-05T10:00:00+02:00")],
        **{"checks.csv": header + "ACME-ERP,2026-10-05T08:00:00Z,up,120\n"},
    )
    load_drop(fresh_db, base)
    incr = write_drop(
        tmp_path / "incr",
        [
            ticket("INC1", "resolved", "2026-10-05T09:00:00Z"),  # stored key, newest version: wins
            ticket("INC1", "in_progress", "2026-10-05T08:30:00Z"),
            ticket("INC2", "new", "2026-10-05T08:00:00Z"),
            ticket("INC2", "closed", "2026-10-05T08:10:00Z"),  # new key, newest version: wins
        ],
        **{
            "checks.csv": header + "ACME-ERP,2026-10-05T08:00:00Z,down,\n"
            "ACME-ERP,2026-10-05T10:00:00+02:00,up,130\n"  # the same stored key: the last line wins
            "ACME-ERP,2026-10-05T08:05:00Z,up,5\n"
        },
    )
    results = by_entity(load_drop(fresh_db, incr))
    assert_balanced(list(results.values()))
    t, c = results["tickets"], results["checks"]
    for r in (t, c):
        assert "merge" not in r.step_seconds and "duplicates" in r.step_seconds, r.step_seconds
    assert (t.rows_read, t.rows_loaded, t.rows_unchanged, t.rows_quarantined) == (4, 2, 0, 2)
    assert (c.rows_read, c.rows_loaded, c.rows_unchanged, c.rows_quarantined) == (3, 2, 0, 1)
    assert query(fresh_db, "select ticket_id, status from raw.tickets order by 1") == [
        ("INC1", "resolved"),
        ("INC2", "closed"),
    ]
    assert query(fresh_db, "select checked_at::text, status, latency_ms from raw.checks order by 1") == [
        ("2026-10-05 08:00:00+00", "up", 130),
        ("2026-10-05 08:05:00+00", "up", 5),
    ]
    quarantined = "select location, reason from raw.quarantine where batch_id = %s order by 1"
    assert query(fresh_db, quarantined, (t.batch_id,)) == [
        ("tickets.csv:3", "duplicate key in file"),
        ("tickets.csv:4", "duplicate key in file"),
    ]
    assert query(fresh_db, quarantined, (c.batch_id,)) == [("checks.csv:2", "duplicate key in file")]


def test_merge_writes_only_what_changed_and_counts_add_up(fresh_db: str, tmp_path: Path) -> None:
    """A rerun with one bad row, one newer version and one new key into a filled table: the merge path,
    the reasons of the refused row, unchanged rows untouched (their batch id stays)."""
    rows = [ticket(f"INC{i}", "new", "2026-10-05T10:00:00Z") for i in range(1, 6)]
    first = by_entity(load_drop(fresh_db, write_drop(tmp_path / "a", rows)))["tickets"]
    rows[1] = ticket("INC2", "resolved", "2026-10-05T11:00:00Z")  # newer
    rows[2] = rows[2].replace(",P2,", ",P5,")  # now refused
    rows.append(ticket("INC6", "new", "2026-10-05T12:00:00+01:00"))  # new
    t = by_entity(load_drop(fresh_db, write_drop(tmp_path / "b", rows)))["tickets"]
    assert "merge" in t.step_seconds, t.step_seconds
    assert (t.rows_read, t.rows_loaded, t.rows_unchanged, t.rows_quarantined) == (6, 2, 3, 1)
    assert query(fresh_db, "select ticket_id, status, _batch_id from raw.tickets order by 1") == [
        ("INC1", "new", first.batch_id),
        ("INC2", "resolved", t.batch_id),
        ("INC3", "new", first.batch_id),  # the refused row left the stored one alone
        ("INC4", "new", first.batch_id),
        ("INC5", "new", first.batch_id),
        ("INC6", "new", t.batch_id),
    ]
    assert query(fresh_db, "select location, reason from raw.quarantine") == [
        ("tickets.csv:4", "bad priority: 'P5' (expected one of P1, P2, P3, P4)")
    ]
    hw = query(fresh_db, "select high_water::text from raw.watermarks where entity = 'tickets'")
    assert hw == [("2026-10-05 11:00:00+00",)]  # INC6 (11:00Z) and INC2 (11:00Z): the newest written


def test_line_numbers_of_refused_rows_span_many_pages(fresh_db: str, tmp_path: Path) -> None:
    """CSV staging rows are numbered from their physical order only when some must be named: the
    numbers must be the file's record numbers far beyond the first page, on both paths."""
    header = "service_code,checked_at,status,latency_ms\n"
    lines = [f"ACME-ERP,2026-10-05T{m // 60:02d}:{m % 60:02d}:00Z,up,{m}\n" for m in range(1400)]
    lines[700] = "ACME-ERP,2026-10-05T11:40:00,up,1\n"  # zone-less: file line 702
    lines[1398] = lines[1398].replace(",up,", ",sideways,")  # file line 1400
    drop = write_drop(tmp_path / "d", **{"checks.csv": header + "".join(lines)})
    first = by_entity(load_drop(fresh_db, drop))["checks"]
    assert "single_pass" in first.step_seconds
    assert primary_key(fresh_db, "raw.checks") == ("checks_pkey", "PRIMARY KEY (service_code, checked_at)")
    lines[3] = lines[3].replace(",up,3", ",down,3")  # changed: written by the merge
    drop = write_drop(tmp_path / "e", **{"checks.csv": header + "".join(lines)})
    again = by_entity(load_drop(fresh_db, drop))["checks"]
    assert "merge" in again.step_seconds
    assert (again.rows_loaded, again.rows_unchanged, again.rows_quarantined) == (1, 1397, 2)
    lines.append(lines[1000])  # a duplicate key: the step-by-step path, line 1402
    drop = write_drop(tmp_path / "f", **{"checks.csv": header + "".join(lines)})
    third = by_entity(load_drop(fresh_db, drop))["checks"]
    assert "duplicates" in third.step_seconds
    for batch in (first, again, third):
        got = query(
            fresh_db,
            "select location, reason from raw.quarantine where batch_id = %s order by 1",
            (batch.batch_id,),
        )
        expected = [
            ("checks.csv:1400", "bad status: 'sideways' (expected one of up, down)"),
            ("checks.csv:702", "timestamp without offset in checked_at: '2026-10-05T11:40:00'"),
        ]
        if batch is third:
            expected.insert(0, ("checks.csv:1002", "duplicate key in file"))  # sorted as text
        assert got == expected
