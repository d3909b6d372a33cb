"""``./slm loads list`` and ``./slm quarantine list``: what the loads did and what they refused, from the
warehouse."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import psycopg2
import pytest

from slm_platform import cli
from slm_platform.load import report as load_report
from slm_platform.load.loader import load_drop

BAD_DROP = Path(__file__).parent / "data" / "bad_drop"


@pytest.fixture
def loaded(fresh_db: str, tmp_path: Path) -> list:
    """The bad drop loaded twice (the second time nothing new, the same rows refused again)."""
    drop = tmp_path / "drop"
    shutil.copytree(BAD_DROP, drop)
    return load_drop(fresh_db, drop) + load_drop(fresh_db, drop)


def _connect(dsn: str):
    return psycopg2.connect(dsn)


def test_summary_groups_reasons_by_kind_with_counts(fresh_db: str, loaded: list) -> None:
    conn = _connect(fresh_db)
    try:
        summary = load_report.quarantine_summary(conn)
        with conn.cursor() as cur:
            cur.execute(
                "select entity, reason, batch_id, location from raw.quarantine order by quarantine_id"
            )
            stored = cur.fetchall()
    finally:
        conn.close()
    # Independently: blank every quoted value in Python and count.
    kinds = Counter((e, re.sub(r"'[^']*'", "'…'", reason)) for e, reason, _, _ in stored)
    assert {(c.entity, c.kind): c.rows for c in summary} == dict(kinds)
    assert sum(c.rows for c in summary) == sum(r.rows_quarantined for r in loaded) == len(stored)
    by_kind = {c.kind: c for c in summary}
    assert by_kind["bad priority: '…' (expected one of P1, P2, P3, P4)"].rows == 2  # once per load
    assert by_kind["bad priority: '…' (expected one of P1, P2, P3, P4)"].batches == 2
    assert by_kind["bad priority: '…' (expected one of P1, P2, P3, P4)"].first_location == "tickets.csv:5"
    assert "service_code '…' belongs to client '…', not '…'" in by_kind
    assert [c.rows for c in summary] == sorted((c.rows for c in summary), reverse=True)


def test_filters_and_rows(fresh_db: str, loaded: list) -> None:
    tickets_second = [r for r in loaded if r.entity == "tickets"][1]
    conn = _connect(fresh_db)
    try:
        only = load_report.quarantine_summary(conn, batch=tickets_second.batch_id)
        assert {c.entity for c in only} == {"tickets"}
        assert sum(c.rows for c in only) == tickets_second.rows_quarantined
        rows = load_report.quarantine_rows(conn, entity="checks", limit=3)
        assert len(rows) == 3 and all(r[1] == "checks" for r in rows)
        assert rows[0][2] == "checks.csv:3" and rows[0][3].startswith("bad status: 'sideways'")
        assert rows[0][4]["status"] == "sideways"  # the raw record as read
        batches = load_report.recent_batches(conn, last=100)
    finally:
        conn.close()
    assert [b.batch_id for b in batches] == sorted((r.batch_id for r in loaded), reverse=True)
    got = {b.batch_id: (b.rows_read, b.rows_loaded, b.rows_unchanged, b.rows_quarantined) for b in batches}
    assert got == {
        r.batch_id: (r.rows_read, r.rows_loaded, r.rows_unchanged, r.rows_quarantined) for r in loaded
    }


def test_cli_prints_batches_and_reasons(fresh_db: str, loaded: list, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["loads", "list", "--dsn", fresh_db, "--entity", "checks"]) == 0
    out = capsys.readouterr().out.splitlines()
    checks = [r for r in loaded if r.entity == "checks"]
    assert len(out) == 1 + len(checks)  # header + one line per checks batch, newest first
    assert out[1].split()[0] == str(checks[-1].batch_id) and "checks" in out[1]
    assert cli.main(["quarantine", "list", "--dsn", fresh_db, "--entity", "tickets"]) == 0
    out = capsys.readouterr().out
    assert "bad priority: '…' (expected one of P1, P2, P3, P4)  (tickets.csv:5)" in out
    tickets_refused = sum(r.rows_quarantined for r in loaded if r.entity == "tickets")
    assert out.rstrip().endswith(f"{tickets_refused} rows in total")
    assert cli.main(["quarantine", "list", "--dsn", fresh_db, "--rows", "--limit", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1].strip().startswith("{")
