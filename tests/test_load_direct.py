"""The loader's direct path (typed COPY of a clean file) against its text path.

The direct path must never accept what the text path refuses, and must leave exactly the same tables:
the stream check is compared value by value with the text path's own regexes (no database), then whole
sequences of drops, clean and dirty, are loaded both ways and the databases compared.
"""

from __future__ import annotations

import io
import random
import re
from pathlib import Path

import psycopg2
import pytest

from slm_platform.canonical import ENTITY_BY_NAME
from slm_platform.load import loader
from slm_platform.load.loader import DATE_RE, INT_RE, TS_RE, load_drop
from slm_platform.load.scan import CheckedCsvStream, ScanRefused

from .test_loader import TICKET_HEADER, assert_balanced, by_entity, query, ticket, write_drop

TICKETS = ENTITY_BY_NAME["tickets"]
UPDATED_AT = TICKETS.column_names.index("updated_at")
IS_MAJOR = TICKETS.column_names.index("is_major")
CHECK_HEADER = "service_code,checked_at,status,latency_ms"


def scan(text: str, header: str = TICKET_HEADER, entity: str = "tickets") -> bool:
    """True when the stream vouches for every record of ``text`` (a CSV body without its header)."""
    stream = CheckedCsvStream(
        io.BytesIO(text.encode()), header.split(","), ENTITY_BY_NAME[entity], TS_RE, DATE_RE, INT_RE
    )
    try:
        while stream.read(1 << 16):
            pass
    except ScanRefused:
        return False
    return True


def with_field(index: int, value: str, row: str | None = None) -> str:
    fields = (row or ticket("INC1", "new", "2026-10-05T10:00:00+02:00")).split(",")
    fields[index] = value
    return ",".join(fields)


def text_path_accepts_timestamp(value: str) -> bool:
    """The text path's strict rule: TS_RE (the day-of-month bound is the cast's, in both paths)."""
    return value == "" or re.fullmatch(TS_RE, value) is not None


SPELLINGS = [
    # accepted by both
    "2026-10-05T10:00:00+02:00",
    "2026-10-05T10:00:00Z",
    "2026-10-05t10:00:00z",
    "2026-10-05 10:00:00+0200",
    "2026-10-05T10:00+02",
    "2026-10-05T10:00:00.123456-05:30",
    "2026-10-05T23:59:59.5+15:59",
    "1000-01-01T00:00:00Z",
    "",
    # refused by the text path; a typed COPY would take most of them
    "2026-10-05 10:00:00",  # no zone: the session's zone would be guessed
    "2026-10-05",
    "2026-10-05T24:00:00Z",  # PostgreSQL reads 24:00 as the next midnight
    "2026-10-05T23:59:60Z",  # a leap second, read as the next minute
    "0999-10-05T10:00:00Z",
    "2026-10-05T10:00:00+16:00",
    "2026-10-05T10:00:00+02:60",
    "2026-13-05T10:00:00Z",
    "2026-00-05T10:00:00Z",
    "2026-10-00T10:00:00Z",
    "2026-10-32T10:00:00Z",
    "2026-10-05T10:60:00Z",
    "Oct 5 2026 10:00 +02",
    "2026-10-05T10:00:00 Europe/Paris",
    "2026-10-05T10:00:00 CET",
    "epoch",
    " 2026-10-05T10:00:00Z",
    "2026-10-05T10:00:00Z ",
    "20261005T100000Z",
    "+2026-10-05T10:00:00Z",
    "2026-10-05T10:00:00.Z",
]


@pytest.mark.parametrize("value", SPELLINGS)
def test_stream_accepts_a_timestamp_exactly_when_the_text_path_does(value: str) -> None:
    row = with_field(UPDATED_AT, value)
    assert scan(row + "\n") is text_path_accepts_timestamp(value)
    # The same value among a thousand good ones (vectorised per block; mixed widths and shapes).
    good = [with_field(UPDATED_AT, f"2026-10-05T10:{m % 60:02d}:00+02:00") for m in range(1000)]
    good[500] = row
    assert scan("\n".join(good) + "\n") is text_path_accepts_timestamp(value)


def test_stream_refuses_every_mutant_the_text_path_refuses() -> None:
    """Random one-character mutations of valid timestamps: whenever the text path refuses the mutant, the
    stream refuses its block (it may refuse more, never less); and it accepts the unmutated ones."""
    rnd = random.Random(7)
    alphabet = "0123456789:-+TZ .tz/ab"
    seeds = ["2026-10-05T10:00:00+02:00", "2026-02-28T23:59:59Z", "2026-10-05 08:15:30.25-0330"]
    refused = accepted = 0
    for _ in range(3000):
        seed = rnd.choice(seeds)
        i = rnd.randrange(len(seed))
        mutant = seed[:i] + rnd.choice(alphabet) + seed[i + 1 :]
        verdict = scan(with_field(UPDATED_AT, mutant) + "\n" + with_field(UPDATED_AT, seed) + "\n")
        if not text_path_accepts_timestamp(mutant):
            assert verdict is False, mutant
            refused += 1
        elif verdict:
            accepted += 1
    assert refused > 500 and accepted > 500, (refused, accepted)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("false", True), ("TRUE", True), ("True", True), ("", True), ("yes", False), ("t", False), ("1", False)],
)
def test_stream_booleans_are_true_or_false_in_any_case(value: str, ok: bool) -> None:
    assert scan(with_field(IS_MAJOR, value) + "\n") is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("120", True),
        ("", True),
        ("0007", True),
        ("+5", True),
        ("-5", True),
        ("1e3", False),
        (" 5", False),
        ("5.0", False),
        ("1" * 19, False),
    ],
)
def test_stream_integers_follow_the_text_paths_rule(value: str, ok: bool) -> None:
    row = f"ACME-ERP,2026-10-05T08:00:00Z,up,{value}"
    assert scan(row + "\n", CHECK_HEADER, "checks") is ok
    assert ok is (value == "" or re.fullmatch(INT_RE, value) is not None)


def test_stream_layouts() -> None:
    rows = [ticket(f"INC{i}", "new", "2026-10-05T10:00:00+02:00") for i in range(3)]
    assert scan("\r\n".join(rows) + "\r\n")  # CRLF
    assert scan("\n".join(rows))  # no final line break
    quoted = with_field(TICKETS.column_names.index("category"), '"network, core ""A"""')
    assert scan(quoted + "\n" + with_field(UPDATED_AT, '"2026-10-05T10:00:00Z"') + "\n")
    assert not scan(with_field(UPDATED_AT, '"2026-10-05 10:00"') + "\n")  # quoted, zone-less
    assert not scan(rows[0] + ",extra\n")  # a record wider than the header
    assert not scan(rows[0] + "\n\n" + rows[1] + "\n")  # a blank line


# ---------------------------------------------------------------------------------------------------
# Whole loads, both ways


def _state(dsn: str) -> dict[str, list[tuple]]:
    cols = ", ".join(TICKETS.column_names)
    return {
        "tickets": query(dsn, f"select {cols}, _batch_id, _source from raw.tickets order by ticket_id"),
        "checks": query(
            dsn,
            "select service_code, checked_at, status, latency_ms, _batch_id from raw.checks order by 1, 2",
        ),
        "services": query(dsn, "select service_code, service_name, _batch_id from raw.services order by 1"),
        "quarantine": query(
            dsn, "select batch_id, location, reason, raw_record from raw.quarantine order by 1, 2"
        ),
        "batches": query(
            dsn,
            "select batch_id, entity, rows_read, rows_loaded, rows_unchanged, rows_quarantined, status "
            "from raw.load_batches order by 1",
        ),
        "watermarks": query(dsn, "select entity, high_water from raw.watermarks order by 1"),
        "keys": query(
            dsn,
            "select conrelid::regclass::text, pg_get_constraintdef(oid) from pg_constraint "
            "where connamespace = 'raw'::regnamespace and contype = 'p' order by 1",
        ),
        "defaults": query(
            dsn,
            "select count(*) from pg_attrdef d join pg_class c on c.oid = d.adrelid "
            "where c.relnamespace = 'raw'::regnamespace and c.relname in ('tickets', 'checks')",
        ),
    }


def _drops(tmp_path: Path) -> list[tuple[Path, dict[str, str]]]:
    """Drops in load order, each with the path its tickets / checks file must take directly."""
    clean = [ticket(f"INC{i}", "new", f"2026-10-05T10:{i:02d}:00+02:00") for i in range(1, 9)]
    clean[3] = clean[3].replace(",false,", ",TRUE,").replace(",application,", ',"app, core",')
    checks = "".join(
        f"ACME-ERP,2026-10-05T08:{m:02d}:00Z,{'down' if m % 7 else 'up'},{m}\n" for m in range(30)
    )
    more_checks = "".join(f"ACME-ERP,2026-10-05T08:{m:02d}:00Z,up,{m}\n" for m in range(20, 40))
    newer = [
        ticket("INC1", "resolved", "2026-10-05T09:00:00Z"),  # newer than 08:01Z: replaces
        ticket("INC2", "closed", "2026-10-05T07:00:00Z"),  # older: ignored
        ticket("INC3", "new", "2026-10-05T10:03:00+02:00"),  # same instant: unchanged
        ticket("INC20", "new", "2026-10-05T09:00:00Z"),  # new
    ]
    dirty = {
        "zone-less": [with_field(UPDATED_AT, "2026-10-05 10:00:00", ticket("INC30", "new", "x"))],
        "yes": [ticket("INC31", "new", "2026-10-05T09:00:00Z").replace(",false,", ",yes,")],
        "24:00": [with_field(UPDATED_AT, "2026-10-05T24:00:00Z", ticket("INC32", "new", "x"))],
        "feb-30": [ticket("INC33", "new", "2026-10-05T09:00:00Z", opened="2026-02-30T09:00:00Z")],
        "client": [
            ticket("INC34", "new", "2026-10-05T09:00:00Z").replace("ACME,ACME-ERP", "NOBODY,ACME-ERP")
        ],
        "no-key": [ticket("", "new", "2026-10-05T09:00:00Z")],
        "twice": [
            ticket("INC35", "new", "2026-10-05T09:00:00Z"),
            ticket("INC35", "closed", "2026-10-05T11:00:00Z"),
        ],
    }
    drops = [
        (write_drop(tmp_path / "first", clean, **{"checks.csv": CHECK_HEADER + "\n" + checks}), "direct_key"),
        (
            write_drop(tmp_path / "again", clean, **{"checks.csv": CHECK_HEADER + "\n" + checks}),
            "direct_merge",
        ),
        (
            write_drop(tmp_path / "newer", newer, **{"checks.csv": CHECK_HEADER + "\n" + more_checks}),
            "direct_merge",
        ),
    ]
    for i, (name, rows) in enumerate(dirty.items()):
        good = ticket(f"INC5{i}", "new", "2026-10-05T09:00:00Z")  # loaded by the text path beside the bad row
        drops.append((write_drop(tmp_path / name, [good, *rows]), "refused"))
    crlf = [ticket("INC40", "new", "2026-10-06T10:00:00Z"), ticket("INC41", "new", "2026-10-06T10:00:00Z")]
    crlf_drop = write_drop(tmp_path / "crlf")
    (crlf_drop / "tickets.csv").write_text(TICKET_HEADER + "\r\n" + "\r\n".join(crlf) + "\r\n")
    drops.append((crlf_drop, "direct_merge"))
    return drops


def _other_db(dsn: str, name: str) -> str:
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"drop database if exists {name}")
        cur.execute(f"create database {name}")
    admin.close()
    return dsn.rsplit("/", 1)[0] + "/" + name


SIP_HEADER = ",".join(ENTITY_BY_NAME["sip_actions"].column_names)


@pytest.mark.parametrize(
    ("due_on", "ok"),
    [
        ("2026-10-31", True),
        ("", True),
        ("2026-13-01", False),
        ("2026-10-32", False),
        ("0999-10-01", False),
        ("2026-1-01", False),
        ("2026/10/01", False),
    ],
)
def test_stream_dates_follow_the_text_paths_rule(due_on: str, ok: bool) -> None:
    """A date column is checked like a timestamp's date part (a date's shape has no time fields: asking for
    them once raised, so every file with a date column took the text path)."""
    row = f"A1,ACME,review,R1,Fix it,ops,2026-10-05T10:00:00Z,{due_on},open,"
    assert scan(row + "\n", SIP_HEADER, "sip_actions") is ok


def test_direct_and_text_paths_leave_the_same_database(fresh_db: str, tmp_path: Path) -> None:
    drops = _drops(tmp_path)
    text_db = _other_db(fresh_db, "slm_loader_textpath")

    def run(dsn: str, direct: bool) -> list[list[tuple]]:
        counts = []
        for drop, expected in drops:
            results = by_entity(load_drop(dsn, drop, options=loader.LoadOptions(direct_copy=direct)))
            assert_balanced(results.values())
            for entity in ("tickets", "checks"):
                if entity not in results:
                    continue
                steps = results[entity].step_seconds
                if not direct:
                    assert not any(s.startswith("direct") for s in steps), steps
                elif expected == "refused":
                    assert "direct_refused" in steps and "copy" in steps, (drop.name, steps)
                else:
                    assert expected in steps and "copy" not in steps, (drop.name, entity, steps)
            counts.append(
                sorted(
                    (r.entity, r.rows_read, r.rows_loaded, r.rows_unchanged, r.rows_quarantined)
                    for r in results.values()
                )
            )
        return counts

    direct_counts = run(fresh_db, True)
    text_counts = run(text_db, False)
    assert direct_counts == text_counts
    direct_state, text_state = _state(fresh_db), _state(text_db)
    assert direct_state == text_state
    # The state is what the drops say (not merely equal): spot checks.
    tickets = {r[0]: r for r in direct_state["tickets"]}
    status = TICKETS.column_names.index("status")
    assert tickets["INC1"][status] == "resolved" and tickets["INC2"][status] == "new"
    assert (
        tickets["INC4"][IS_MAJOR] is True
        and tickets["INC4"][TICKETS.column_names.index("category")] == "app, core"
    )
    assert {"INC40", "INC41"} <= set(tickets) and not {"INC30", "INC31", "INC32", "INC33", "INC34"} & set(
        tickets
    )
    reasons = [r[2] for r in direct_state["quarantine"]]
    for expected in (
        "timestamp without offset in updated_at",
        "bad boolean in is_major: 'yes'",
        "bad timestamp in updated_at: '2026-10-05T24:00:00Z'",
        "bad timestamp in opened_at: '2026-02-30T09:00:00Z'",
        "unknown client_code: 'NOBODY'",
        "missing key: ticket_id",
        "duplicate key in file",
    ):
        assert any(r.startswith(expected) for r in reasons), (expected, reasons)
    by_minute = {r[1].minute: (r[2], r[3]) for r in direct_state["checks"]}
    assert by_minute == {
        **{m: ("down" if m % 7 else "up", m) for m in range(20)},
        **{m: ("up", m) for m in range(20, 40)},  # 20-29 changed (unversioned: a changed value replaces)
    }
    assert ("raw.tickets", "PRIMARY KEY (ticket_id)") in direct_state["keys"]
    assert ("raw.checks", "PRIMARY KEY (service_code, checked_at)") in direct_state["keys"]
    assert direct_state["defaults"] == [(0,)]  # the first load's defaults did not outlive it


CASTABLE = [
    "2026-10-05T10:00:00+02:00",
    "2026-10-05t10:00:00z",
    "2026-10-05 10:00:00+0200",
    "2026-10-05T10:00+02",
    "2026-10-05T10:00:00.123456-05:30",
    "2026-10-05T10:00:00.1234567890123Z",  # a fraction longer than the listed shapes: the regex decides
    "1000-01-01T00:00:00Z",
    # PostgreSQL casts these; the loader's rule (TS_RE) refuses them
    "2026-10-05T24:00:00Z",
    "2026-10-05T23:59:60Z",
    "0999-10-05T10:00:00Z",
    "2026-10-05T10:00:00 +02:00",
    "2026-10-05T10:00:00 Z",
    "2026-10-05 10:00:00",
    "2026-10-05",
]


def test_text_paths_fast_validation_follows_the_timestamp_rule(fresh_db: str, tmp_path: Path) -> None:
    """The text path's fast validation (shapes and casts, no regex per value) accepts exactly TS_RE's
    values among values PostgreSQL can cast (its strict fallback is not allowed to decide here)."""
    rows = [with_field(UPDATED_AT, v, ticket(f"INC{i}", "new", "x")) for i, v in enumerate(CASTABLE)]
    text_fast_only = loader.LoadOptions(direct_copy=False, validation_paths=(False,))
    load_drop(fresh_db, write_drop(tmp_path / "d", rows), options=text_fast_only)
    loaded = {r[0] for r in query(fresh_db, "select ticket_id from raw.tickets")}
    expected = {f"INC{i}" for i, v in enumerate(CASTABLE) if text_path_accepts_timestamp(v)}
    assert loaded == expected and len(expected) == 7
