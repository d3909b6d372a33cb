"""The committed GX checkpoint `raw_tickets`: passes on good rows, fails naming the broken expectations,
and never writes into the committed project files."""

from __future__ import annotations

import hashlib
from datetime import datetime

import psycopg2
import pytest

from slm_platform.quality import GX_PROJECT_ROOT, DataQualityError, raise_on_failure, run_checkpoint
from slm_platform.raw_schema import ensure_raw_schema

GOOD = [
    # ticket_id, client, type, priority, opened_at, resolved_at
    ("T1", "ACME", "incident", "P1", "2026-10-31T23:30:00Z", "2026-11-01T00:10:00Z"),
    ("T2", "ACME", "request", "P3", "2026-11-02T09:00:00Z", None),
    ("T3", "NYC", "complaint", "P4", "2026-11-03T09:00:00Z", "2026-11-03T09:00:00Z"),  # resolved == opened
    ("T4", "NYC", "change", "P2", "2026-11-04T09:00:00Z", "2026-11-05T09:00:00+02:00"),
]
BROKEN = [
    ("T1", "ACME", "incident", "P1", "2026-11-07T10:00:00Z", None),  # duplicate id
    ("T5", "ACME", "incident", "P9", "2026-11-07T10:00:00Z", None),  # unknown priority
    ("T6", "NYC", "problem", "P2", "2026-11-07T10:00:00Z", "2026-11-07T09:59:00Z"),  # resolved before opened
]


def _raw_tickets(dsn: str, rows: list[tuple], drop_key: bool = False) -> None:
    conn = psycopg2.connect(dsn)
    try:
        ensure_raw_schema(conn)
        with conn.cursor() as cur:
            if drop_key:
                # The loader's primary key would refuse a duplicate; GX must catch it all the same.
                cur.execute(
                    "select conname from pg_constraint"
                    " where conrelid = 'raw.tickets'::regclass and contype = 'p'"
                )
                (pkey,) = cur.fetchone()
                cur.execute(f'alter table raw.tickets drop constraint "{pkey}"')
            for ticket_id, client, ticket_type, priority, opened, resolved in rows:
                cur.execute(
                    "insert into raw.tickets (ticket_id, client_code, service_code, ticket_type, priority,"
                    " opened_at, resolved_at, _batch_id, _source, _loaded_at)"
                    " values (%s, %s, %s, %s, %s, %s, %s, 1, 'test', now())",
                    (
                        ticket_id,
                        client,
                        f"{client}-WEB",
                        ticket_type,
                        priority,
                        datetime.fromisoformat(opened),
                        datetime.fromisoformat(resolved) if resolved else None,
                    ),
                )
        conn.commit()
    finally:
        conn.close()


def _committed_files_digest() -> dict[str, str]:
    gx_dir = GX_PROJECT_ROOT / "gx"
    return {
        str(path.relative_to(gx_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(gx_dir.rglob("*"))
        if path.is_file() and "uncommitted" not in path.relative_to(gx_dir).parts
    }


def test_checkpoint_passes_on_good_rows(fresh_db: str) -> None:
    _raw_tickets(fresh_db, GOOD)
    before = _committed_files_digest()
    assert "great_expectations.yml" in before and "checkpoints/raw_tickets.json" in before

    result = run_checkpoint("raw_tickets", fresh_db)

    assert result.success, result.summary()
    assert result.failures == []
    assert result.evaluated == 8
    assert raise_on_failure(result) is result
    assert _committed_files_digest() == before, "running the checkpoint rewrote committed GX files"


def test_checkpoint_fails_and_names_broken_expectations(fresh_db: str) -> None:
    _raw_tickets(fresh_db, GOOD + BROKEN, drop_key=True)

    result = run_checkpoint("raw_tickets", fresh_db)

    assert not result.success
    failed = {(f.expectation_type, f.column): f.unexpected_count for f in result.failures}
    assert failed == {
        ("expect_column_values_to_be_unique", "ticket_id"): 2,
        ("expect_column_values_to_be_in_set", "priority"): 1,
        ("expect_column_pair_values_a_to_be_greater_than_b", "resolved_at,opened_at"): 1,
    }
    with pytest.raises(DataQualityError) as gate:
        raise_on_failure(result)
    message = str(gate.value)
    for expectation_type, column in failed:
        assert f"{expectation_type} on {column}" in message


def test_checkpoint_fails_on_empty_table(fresh_db: str) -> None:
    _raw_tickets(fresh_db, [])

    result = run_checkpoint("raw_tickets", fresh_db)

    assert not result.success
    assert [f.expectation_type for f in result.failures] == ["expect_table_row_count_to_be_between"]
