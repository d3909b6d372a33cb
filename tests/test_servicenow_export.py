"""ServiceNow audit-log export → canonical drop → loader, on the real reference file and on small cases."""

from __future__ import annotations

import csv
import gzip
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg2
import pytest

from slm_platform.load.loader import load_drop
from slm_platform.settings import shared_data_file
from slm_platform.sources.servicenow.export import MADE_SLA_FILE, ExportError, convert_export

EXPORT = shared_data_file("servicenow_incident_event_log.csv.gz")
ZONE = "Europe/Lisbon"
# The brief's mapping of export labels, written out here as the oracle.
LABELS = {
    "New": "new",
    "Active": "in_progress",
    "Awaiting User Info": "pending_customer",
    "Awaiting Vendor": "awaiting_vendor",
    "Awaiting Problem": "awaiting_problem",
    "Awaiting Evidence": "awaiting_evidence",
    "Resolved": "resolved",
    "Closed": "closed",
    "-100": "unknown",
}


def _raw_rows(path: Path):
    with gzip.open(path, "rt", newline="") as fh:
        yield from csv.DictReader(fh)


def _utc(text: str) -> datetime | None:
    if text == "?":
        return None
    naive = datetime.strptime(text, "%d/%m/%Y %H:%M")
    return naive.replace(tzinfo=ZoneInfo(ZONE)).astimezone(UTC)  # fold=0: the documented choice


def _independent_events(path: Path) -> dict[tuple[str, datetime, str], tuple[str | None, str | None]]:
    """A second, plain implementation of the documented event rules (whole file in memory: fine here)."""
    by_inc: dict[str, list[tuple[datetime, int, dict]]] = {}
    for i, r in enumerate(_raw_rows(path)):
        by_inc.setdefault(r["number"], []).append((_utc(r["sys_updated_at"]), i, r))
    events: dict[tuple[str, datetime, str], tuple[str | None, str | None]] = {}

    def put(key, old, new):
        if key in events:
            old = events[key][0]
        events[key] = (old, new)

    for num, rows in by_inc.items():
        rows.sort(key=lambda x: (x[0], x[1]))
        first = rows[0][2]
        t0 = min(_utc(first["opened_at"]), rows[0][0])
        put((num, t0, "status"), None, LABELS[first["incident_state"]])
        if first["assignment_group"] != "?":
            put((num, t0, "assignment_group"), None, first["assignment_group"])
        for (_, _, a), (t, _, b) in zip(rows, rows[1:], strict=False):
            for fld, col, conv in (
                ("status", "incident_state", LABELS.get),
                ("assignment_group", "assignment_group", lambda v: None if v == "?" else v),
                ("priority", "priority", lambda v: f"P{v[0]}"),
            ):
                if conv(a[col]) != conv(b[col]):
                    put((num, t, fld), conv(a[col]), conv(b[col]))
    return {k: v for k, v in events.items() if v[0] != v[1]}


def test_real_export_converts_and_loads_whole(fresh_db: str, tmp_path: Path) -> None:
    res = convert_export(EXPORT, tmp_path, timezone=ZONE, client_code="SNOWCO", country="PT")
    numbers = set()
    n_rows = 0
    for r in _raw_rows(EXPORT):
        numbers.add(r["number"])
        n_rows += 1
    assert res.rows_read == n_rows == 141_712
    assert res.incidents == res.tickets == len(numbers) == 24_918
    assert res.grouped_input  # the reference file is grouped by incident: streamed, no SQLite sort

    t0 = time.monotonic()
    batches = load_drop(fresh_db, tmp_path, source="servicenow_export")
    print(
        f"\nconvert {res.seconds:.1f} s, load {time.monotonic() - t0:.1f} s; {res}"
    )  # figures for the report
    for b in batches:
        print(f"  {b.entity}: read {b.rows_read} loaded {b.rows_loaded} quarantined {b.rows_quarantined}")
    by_entity = {b.entity: b for b in batches}
    assert set(by_entity) == {"clients", "services", "tickets", "ticket_events"}  # the side file is ignored
    for b in batches:  # per batch, the loader's own counts reconcile with the file's data lines
        with open(b.file) as fh:
            lines = sum(1 for _ in fh) - 1
        assert b.rows_read == lines == b.rows_loaded + b.rows_unchanged + b.rows_quarantined, b.entity

    with psycopg2.connect(fresh_db) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from raw.tickets")
        loaded = cur.fetchone()[0]
        cur.execute(
            "select reason, count(*) from raw.quarantine where entity = 'tickets' group by reason order by 1"
        )
        reasons = dict(cur.fetchall())
        # incidents in file = tickets loaded + tickets quarantined (with reasons)
        assert len(numbers) == loaded + sum(reasons.values())
        assert (
            sum(v for k, v in reasons.items() if "resolved_at before opened_at" in k)
            == res.resolved_before_opened
        )
        cur.execute("select count(*) from raw.ticket_events")
        assert cur.fetchone()[0] + by_entity["ticket_events"].rows_quarantined == res.events

        # events: an independent pass over the raw file gives the same set, value for value
        expected = _independent_events(EXPORT)
        assert len(expected) == res.events == sum(res.events_by_field.values())
        cur.execute("select ticket_id, occurred_at, field, from_value, to_value from raw.ticket_events")
        got = {(t, o, f): (a, b) for t, o, f, a, b in cur.fetchall()}
        assert got == expected

        # a sample incident, checked against its four raw rows by hand (Lisbon in April = UTC+1):
        # New 18/4 15:12 · Awaiting User Info 15:58 · Resolved 19/4 12:24 · Closed 24/4 13:07, opened 15:09
        cur.execute(
            "select occurred_at, field, from_value, to_value from raw.ticket_events "
            "where ticket_id = 'INC0020511' order by occurred_at, field"
        )
        z = UTC
        assert cur.fetchall() == [
            (datetime(2016, 4, 18, 14, 9, tzinfo=z), "assignment_group", None, "Group 46"),
            (datetime(2016, 4, 18, 14, 9, tzinfo=z), "status", None, "new"),
            (datetime(2016, 4, 18, 14, 58, tzinfo=z), "status", "new", "pending_customer"),
            (datetime(2016, 4, 19, 11, 24, tzinfo=z), "status", "pending_customer", "resolved"),
            (datetime(2016, 4, 24, 12, 7, tzinfo=z), "status", "resolved", "closed"),
        ]
        cur.execute(
            "select client_code, service_code, priority, opened_at, first_response_at, resolved_at, "
            "closed_at, status, assignment_group, category from raw.tickets where ticket_id = 'INC0020511'"
        )
        assert cur.fetchone() == (
            "SNOWCO",
            "SNOWCO-LOCATION-107",
            "P3",
            datetime(2016, 4, 18, 14, 9, tzinfo=z),
            datetime(2016, 4, 18, 14, 58, tzinfo=z),
            datetime(2016, 4, 19, 11, 24, tzinfo=z),
            datetime(2016, 4, 24, 12, 7, tzinfo=z),
            "closed",
            "Group 46",
            "Category 37",
        )
        cur.execute("select count(*) from raw.services")
        assert (
            cur.fetchone()[0] == res.services == len({r["location"] for r in _raw_rows(EXPORT)} - {"?"}) + 1
        )

    made_sla = list(csv.DictReader(open(tmp_path / MADE_SLA_FILE)))
    assert len(made_sla) == len(numbers)
    last = {}
    for r in _raw_rows(EXPORT):
        last[r["number"]] = r["made_sla"]  # the file is in time order but for one incident (see report)
    assert sum(1 for r in made_sla if r["made_sla"] != last[r["ticket_id"]]) <= res.incidents_reordered


HEADER = (
    "number,incident_state,active,reassignment_count,reopen_count,sys_mod_count,made_sla,caller_id,opened_by,"
    "opened_at,sys_created_by,sys_created_at,sys_updated_by,sys_updated_at,contact_type,location,category,"
    "subcategory,u_symptom,cmdb_ci,impact,urgency,priority,assignment_group,assigned_to,knowledge,"
    "u_priority_confirmation,notify,problem_id,rfc,vendor,caused_by,closed_code,resolved_by,resolved_at,closed_at"
)


def _row(
    number: str,
    state: str,
    opened: str,
    updated: str,
    group: str = "Group 1",
    priority: str = "3 - Moderate",
    resolved: str = "?",
    location: str = "Location 1",
) -> str:
    cells = dict.fromkeys(HEADER.split(","), "?")
    cells.update(
        number=number,
        incident_state=state,
        opened_at=opened,
        sys_updated_at=updated,
        assignment_group=group,
        priority=priority,
        resolved_at=resolved,
        location=location,
        made_sla="true",
        sys_mod_count="0",
        closed_at="?",
    )
    return ",".join(cells[c] for c in HEADER.split(","))


def _write(path: Path, rows: list[str]) -> Path:
    with gzip.open(path, "wt") as fh:
        fh.write(HEADER + "\n" + "\n".join(rows) + "\n")
    return path


def test_zoneless_timestamps_need_a_configured_zone(tmp_path: Path) -> None:
    src = _write(tmp_path / "x.csv.gz", [_row("INC1", "New", "1/3/2016 10:00", "1/3/2016 10:05")])
    with pytest.raises(ExportError, match=r"line 2 column .*has no time zone.*timezone="):
        convert_export(src, tmp_path / "out", timezone=None)
    with pytest.raises(ExportError, match="unknown time zone"):
        convert_export(src, tmp_path / "out", timezone="Europe/Atlantis")


def test_dst_ambiguous_and_missing_local_times(tmp_path: Path) -> None:
    # Lisbon: 30/10/2016 01:00–02:00 happens twice (WEST +01, then WET +00);
    # 27/3/2016 01:00–02:00 never happens.
    src = _write(
        tmp_path / "dst.csv.gz",
        [
            _row("INC1", "New", "30/10/2016 01:30", "30/10/2016 01:30"),
            _row("INC1", "Active", "30/10/2016 01:30", "30/10/2016 01:45"),
            _row("INC2", "New", "27/3/2016 01:30", "27/3/2016 01:30"),
        ],
    )
    res = convert_export(src, tmp_path / "a", timezone=ZONE)
    tickets = {t["ticket_id"]: t for t in csv.DictReader(open(tmp_path / "a" / "tickets.csv"))}
    assert tickets["INC1"]["opened_at"] == "2016-10-30T00:30:00Z"  # earlier instant (+01:00)
    assert tickets["INC2"]["opened_at"] == "2016-03-27T01:30:00Z"  # offset before the gap: 02:30 WEST
    # counted per timestamp value converted: every row's sys_updated_at, the last row's opened_at
    assert (res.ambiguous_times, res.nonexistent_times) == (3, 2)
    later = convert_export(src, tmp_path / "b", timezone=ZONE, ambiguous="later")
    tickets = {t["ticket_id"]: t for t in csv.DictReader(open(tmp_path / "b" / "tickets.csv"))}
    assert tickets["INC1"]["opened_at"] == "2016-10-30T01:30:00Z" and later.ambiguous_times == 3
    with pytest.raises(ExportError, match="ambiguous in Europe/Lisbon"):
        convert_export(src, tmp_path / "c", timezone=ZONE, ambiguous="error")
    with pytest.raises(ExportError, match="does not exist in Europe/Lisbon"):
        convert_export(src, tmp_path / "d", timezone=ZONE, nonexistent="error")


def test_ungrouped_file_ties_and_bad_order_are_handled(fresh_db: str, tmp_path: Path) -> None:
    rows = [
        _row("INC1", "New", "1/3/2016 10:00", "1/3/2016 10:00"),
        _row("INC2", "New", "2/3/2016 09:00", "2/3/2016 09:00", resolved="1/3/2016 09:00"),
        # INC1 again after INC2: the file is not grouped → the SQLite path
        _row("INC1", "Active", "1/3/2016 10:00", "1/3/2016 10:20", group="Group 2"),
        # two updates in the same minute: file order decides (Active→Awaiting→Active merges away)
        _row("INC1", "Awaiting User Info", "1/3/2016 10:00", "1/3/2016 11:00", group="Group 2"),
        _row("INC1", "Active", "1/3/2016 10:00", "1/3/2016 11:00", group="Group 2", priority="2 - High"),
        _row(
            "INC1",
            "Resolved",
            "1/3/2016 10:00",
            "1/3/2016 12:00",
            group="Group 2",
            priority="2 - High",
            resolved="1/3/2016 12:00",
        ),
    ]
    src = _write(tmp_path / "u.csv.gz", rows)
    res = convert_export(src, tmp_path / "drop", timezone=ZONE, client_code="ACME")
    assert not res.grouped_input and res.tickets == 2 and res.resolved_before_opened == 1
    assert res.same_time_updates == 1 and res.events_merged == 2
    events = [tuple(e.values()) for e in csv.DictReader(open(tmp_path / "drop" / "ticket_events.csv"))]
    assert [e for e in events if e[0] == "INC1"] == [
        ("INC1", "2016-03-01T10:00:00Z", "status", "", "new"),
        ("INC1", "2016-03-01T10:00:00Z", "assignment_group", "", "Group 1"),
        ("INC1", "2016-03-01T10:20:00Z", "status", "new", "in_progress"),
        ("INC1", "2016-03-01T10:20:00Z", "assignment_group", "Group 1", "Group 2"),
        ("INC1", "2016-03-01T11:00:00Z", "priority", "P3", "P2"),
        ("INC1", "2016-03-01T12:00:00Z", "status", "in_progress", "resolved"),
    ]
    results = {b.entity: b for b in load_drop(fresh_db, tmp_path / "drop")}
    assert results["tickets"].rows_loaded == 1 and results["tickets"].rows_quarantined == 1
    with psycopg2.connect(fresh_db) as conn, conn.cursor() as cur:
        cur.execute("select location, reason from raw.quarantine where entity = 'tickets'")
        assert cur.fetchall() == [("tickets.csv:3", "resolved_at before opened_at")]
        cur.execute(
            "select count(*) from raw.quarantine where entity = 'ticket_events' and reason like 'unknown%'"
        )
        assert cur.fetchone()[0] == 2  # INC2's initial status and group events follow its ticket


def test_sorted_and_shuffled_files_give_the_same_drop(tmp_path: Path) -> None:
    blocks: dict[str, list[str]] = {}
    with gzip.open(EXPORT, "rt", newline="") as fh:
        header = fh.readline()
        for line in fh:
            number = line.split(",", 1)[0]
            if number not in blocks and len(blocks) == 300:
                break
            blocks.setdefault(number, []).append(line)
    lines = [ln for b in blocks.values() for ln in b]
    # interleave the incidents at random, each keeping its own row order: no incident is contiguous any more
    turns = [n for n, b in blocks.items() for _ in b]
    random.Random(5).shuffle(turns)
    queues = {n: iter(b) for n, b in blocks.items()}
    shuffled = [next(queues[n]) for n in turns]
    assert shuffled != lines
    for name, body in (("sorted", lines), ("shuffled", shuffled)):
        with gzip.open(tmp_path / f"{name}.csv.gz", "wt") as fh:
            fh.write(header + "".join(body))
    a = convert_export(tmp_path / "sorted.csv.gz", tmp_path / "a", timezone=ZONE)
    b = convert_export(tmp_path / "shuffled.csv.gz", tmp_path / "b", timezone=ZONE)
    assert a.grouped_input and not b.grouped_input and a.tickets == b.tickets == 300
    for f in ("tickets.csv", "ticket_events.csv", "services.csv", MADE_SLA_FILE):
        assert sorted((tmp_path / "a" / f).read_text().splitlines()) == sorted(
            (tmp_path / "b" / f).read_text().splitlines()
        ), f
