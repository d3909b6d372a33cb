"""The committed GX checkpoints of the raw gate (raw_tickets, raw_checks, raw_surveys): each passes on good
rows and on the demo data, fails naming the broken expectations, and never writes into the committed files."""

from __future__ import annotations

import hashlib
from datetime import datetime

import psycopg2
import pytest

from slm_platform.gate.quality import (
    GX_PROJECT_ROOT,
    RAW_CHECKPOINTS,
    CheckResult,
    DataQualityError,
    GateRun,
    raise_on_any_failure,
    raise_on_failure,
    run_checkpoint,
    run_checkpoints,
    run_gate,
    validated_through,
)
from slm_platform.load.loader import load_drop
from slm_platform.load.raw_schema import ensure_raw_schema
from slm_platform.sources import demo_data

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


# --- raw checks and surveys -------------------------------------------------------------------------------

GOOD_CHECKS = [
    # service, checked_at, status, latency_ms
    ("ACME-WEB", "2026-11-01T00:00:00Z", "up", 120),
    ("ACME-WEB", "2026-11-01T00:05:00Z", "down", None),  # no answer: no latency
    ("ACME-WEB", "2026-11-01T01:15:00+01:00", "up", 0),  # another instant written in another zone
    ("ACME-ERP", "2026-11-01T00:00:00Z", "up", 95),  # same instant, another service
]
BROKEN_CHECKS = [
    ("ACME-WEB", "2026-11-01T00:00:00Z", "up", 130),  # a second result for the same service and instant
    ("ACME-WEB", "2026-11-01T00:10:00Z", "degraded", 80),  # not up/down
    ("ACME-ERP", "2026-11-01T00:05:00Z", "up", -5),  # negative latency
]

GOOD_SURVEYS = [
    # response_id, client, type, sent_at, answered_at, csat, nps, ces
    ("S1", "ACME", "transactional", "2026-11-01T10:00:00Z", "2026-11-01T12:00:00Z", 5, None, 1),
    (
        "S2",
        "ACME",
        "relationship",
        "2026-11-01T10:00:00Z",
        "2026-11-01T10:00:00Z",
        None,
        0,
        None,
    ),  # same time
    ("S3", "ACME", "review", "2026-11-01T10:00:00Z", None, None, None, None),  # not answered: no score
    ("S4", "NYC", "relationship", "2026-11-01T10:00:00Z", "2026-11-08T10:00:00Z", None, 10, None),
    ("S5", "NYC", "transactional", "2026-11-01T10:00:00Z", "2026-11-02T10:00:00Z", 1, None, 7),
]
BROKEN_SURVEYS = [
    ("S6", "ACME", "transactional", "2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z", 6, None, 3),  # CSAT 1-5
    (
        "S7",
        "ACME",
        "relationship",
        "2026-11-01T10:00:00Z",
        "2026-11-01T11:00:00Z",
        None,
        11,
        None,
    ),  # NPS 0-10
    ("S8", "ACME", "transactional", "2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z", 4, None, 0),  # CES 1-7
    ("S9", "NYC", "transactional", "2026-11-01T10:00:00Z", "2026-11-01T09:59:00Z", 4, None, 2),  # before sent
    ("S10", "NYC", "review", "2026-11-01T10:00:00Z", None, 3, None, None),  # scored, never answered
]


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _insert(dsn: str, sql: str, rows: list[tuple], drop_key: str | None = None) -> None:
    """Put rows straight into a raw table, as a manual fix or a faulty connector would (the loader refuses
    them); ``drop_key`` names a table whose primary key is dropped first so duplicates get in too."""
    conn = psycopg2.connect(dsn)
    try:
        ensure_raw_schema(conn)
        with conn.cursor() as cur:
            if drop_key:
                cur.execute(
                    "select conname from pg_constraint where conrelid = %s::regclass and contype = 'p'",
                    (drop_key,),
                )
                (pkey,) = cur.fetchone()
                cur.execute(f'alter table {drop_key} drop constraint "{pkey}"')
            cur.executemany(sql, rows)
        conn.commit()
    finally:
        conn.close()


def _raw_checks(dsn: str, rows: list[tuple], drop_key: bool = False) -> None:
    _insert(
        dsn,
        "insert into raw.checks (service_code, checked_at, status, latency_ms, _batch_id, _source,"
        " _loaded_at) values (%s, %s, %s, %s, 1, 'test', now())",
        [(svc, _ts(at), status, latency) for svc, at, status, latency in rows],
        drop_key="raw.checks" if drop_key else None,
    )


def _raw_surveys(dsn: str, rows: list[tuple]) -> None:
    _insert(
        dsn,
        "insert into raw.surveys (response_id, client_code, survey_type, sent_at, answered_at, csat, nps,"
        " ces, _batch_id, _source, _loaded_at) values (%s, %s, %s, %s, %s, %s, %s, %s, 1, 'test', now())",
        [
            (rid, client, kind, _ts(sent), _ts(answered), *scores)
            for rid, client, kind, sent, answered, *scores in rows
        ],
    )


def test_checks_checkpoint_passes_on_good_rows(fresh_db: str) -> None:
    _raw_checks(fresh_db, GOOD_CHECKS)

    result = run_checkpoint("raw_checks", fresh_db)

    assert result.success, result.summary()
    assert result.evaluated == 6


def test_checks_checkpoint_fails_and_names_broken_expectations(fresh_db: str) -> None:
    _raw_checks(fresh_db, GOOD_CHECKS + BROKEN_CHECKS, drop_key=True)

    result = run_checkpoint("raw_checks", fresh_db)

    assert not result.success
    failed = {(f.expectation_type, f.column): f.unexpected_count for f in result.failures}
    assert failed == {
        ("expect_compound_columns_to_be_unique", "service_code,checked_at"): 2,
        ("expect_column_values_to_be_in_set", "status"): 1,
        ("expect_column_values_to_be_between", "latency_ms"): 1,
    }


def test_surveys_checkpoint_passes_on_good_rows(fresh_db: str) -> None:
    _raw_surveys(fresh_db, GOOD_SURVEYS)

    result = run_checkpoint("raw_surveys", fresh_db)

    assert result.success, result.summary()
    assert result.evaluated == 10


def test_surveys_checkpoint_fails_and_names_broken_expectations(fresh_db: str) -> None:
    _raw_surveys(fresh_db, GOOD_SURVEYS + BROKEN_SURVEYS)

    result = run_checkpoint("raw_surveys", fresh_db)

    assert not result.success
    failed = {(f.expectation_type, f.column): f.unexpected_count for f in result.failures}
    assert failed == {
        ("expect_column_values_to_be_between", "csat"): 1,
        ("expect_column_values_to_be_between", "nps"): 1,
        ("expect_column_values_to_be_between", "ces"): 1,
        ("expect_column_pair_values_a_to_be_greater_than_b", "answered_at,sent_at"): 1,
        # a SQL rule has no column and no unexpected_count: it reports the rows its query returned
        ("unexpected_rows_expectation", None): None,
    }
    sql_rule = next(f for f in result.failures if f.expectation_type == "unexpected_rows_expectation")
    assert sql_rule.detail == "observed 1"
    assert "scores only on answered surveys" in sql_rule.describe()


@pytest.mark.parametrize("bad_row", [0, 1, 2, 3, 4])
def test_each_broken_survey_alone_fails_the_checkpoint(fresh_db: str, bad_row: int) -> None:
    _raw_surveys(fresh_db, GOOD_SURVEYS + [BROKEN_SURVEYS[bad_row]])

    result = run_checkpoint("raw_surveys", fresh_db)

    assert not result.success
    assert len(result.failures) == 1, result.summary()


def test_demo_data_passes_every_raw_checkpoint(fresh_db: str, tmp_path) -> None:
    """The generated demo drop, through the real loader: no false alarm from any checkpoint."""
    counts = demo_data.generate(tmp_path / "demo")
    assert counts["checks"] > 1000 and counts["surveys"] > 100  # not a vacuous pass
    load_drop(fresh_db, tmp_path / "demo")

    results = run_checkpoints(RAW_CHECKPOINTS, fresh_db)

    assert [r.checkpoint for r in results] == list(RAW_CHECKPOINTS)
    assert all(r.success for r in results), "\n".join(r.summary() for r in results)
    assert raise_on_any_failure(results) == results


def test_gate_runs_every_checkpoint_and_names_each_failure(fresh_db: str, tmp_path) -> None:
    """One bad row in each raw table: the gate reports all three checkpoints, not only the first."""
    demo_data.generate(tmp_path / "demo")
    load_drop(fresh_db, tmp_path / "demo")
    with psycopg2.connect(fresh_db) as conn, conn.cursor() as cur:
        cur.execute(
            "update raw.tickets set priority = 'P9'"
            " where ticket_id = (select min(ticket_id) from raw.tickets)"
        )
        cur.execute(
            "update raw.checks set latency_ms = -1 where (service_code, checked_at) ="
            " (select service_code, min(checked_at) from raw.checks group by 1 order by 1 limit 1)"
        )
        cur.execute(
            "update raw.surveys set nps = 42 where response_id = (select min(response_id) from raw.surveys)"
        )
    conn.close()

    results = run_checkpoints(RAW_CHECKPOINTS, fresh_db)

    assert [r.success for r in results] == [False, False, False]
    with pytest.raises(DataQualityError) as gate:
        raise_on_any_failure(results)
    message = str(gate.value)
    for expected in (
        "checkpoint raw_tickets: FAILED",
        "expect_column_values_to_be_in_set on priority: 1 unexpected",
        "checkpoint raw_checks: FAILED",
        "expect_column_values_to_be_between on latency_ms: 1 unexpected",
        "checkpoint raw_surveys: FAILED",
        "expect_column_values_to_be_between on nps: 1 unexpected",
    ):
        assert expected in message


# --- the nightly gate: raw.checks validated by window of load batches -------------------------------------


def _load_checks(dsn: str, day: str, count: int, bad: int = 0) -> int:
    """A load batch of ``count`` checks of ACME-WEB on ``day`` (one a minute), the last ``bad`` of them
    with a negative latency; returns its batch id (recorded in raw.load_batches, as the loader does)."""
    conn = psycopg2.connect(dsn)
    try:
        ensure_raw_schema(conn)
        with conn.cursor() as cur:
            cur.execute(
                "insert into raw.load_batches (source, entity, file, started_at, finished_at, rows_read,"
                " rows_loaded, status) values ('test', 'checks', %s, now(), now(), %s, %s, 'ok')"
                " returning batch_id",
                (f"checks-{day}.csv", count, count),
            )
            (batch,) = cur.fetchone()
            cur.execute(
                "insert into raw.checks (service_code, checked_at, status, latency_ms, _batch_id, _source,"
                " _loaded_at) select 'ACME-WEB', %s::date + i * interval '1 minute', 'up',"
                " case when i >= %s then -5 else 100 end, %s, 'test', now()"
                " from generate_series(0, %s - 1) i",
                (day, count - bad, batch, count),
            )
        conn.commit()
    finally:
        conn.close()
    return batch


def _break_check(dsn: str, batch: int) -> None:
    """Change a row of ``batch`` in place, keeping its batch id (as a manual fix bypassing the loader)."""
    _query_one(
        dsn,
        "update raw.checks set latency_ms = -1 where ctid = (select min(ctid) from raw.checks"
        " where _batch_id = %s)",
        (batch,),
    )


def _query_one(dsn: str, sql: str, args: tuple = ()) -> tuple | None:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone() if cur.description else None
    conn.close()
    return row


def _mark(dsn: str) -> int:
    conn = psycopg2.connect(dsn)
    try:
        return validated_through(conn)
    finally:
        conn.close()


def _checks_result(gate: GateRun) -> CheckResult:
    (result,) = [r for r in gate.results if r.checkpoint.startswith("raw_checks")]
    return result


def test_gate_validates_only_the_new_batches(fresh_db: str) -> None:
    """Night 1 validates everything so far; an old, validated batch broken in place afterwards does not
    fail night 2 (which reads only the new batch), but the full mode still sees it; a bad row in a new
    batch fails the gate and names the expectation."""
    _raw_tickets(fresh_db, GOOD)  # tickets are validated whole (at least one row)
    first = _load_checks(fresh_db, "2026-11-01", 50)

    night1 = run_gate(fresh_db, "2026-11-01T00:00:00+00:00")

    assert night1.success, [r.summary() for r in night1.results]
    assert [r.checkpoint for r in night1.results] == [
        "load_batches_reconciled",
        "raw_tickets",
        "raw_checks_increment",
        "raw_surveys",
    ]
    assert (night1.after_batch, night1.through_batch) == (0, first)
    assert _checks_result(night1).rows == 50
    assert _mark(fresh_db) == first

    _break_check(fresh_db, first)
    second = _load_checks(fresh_db, "2026-11-02", 30)

    night2 = run_gate(fresh_db, "2026-11-02T00:00:00+00:00")

    assert night2.success, [r.summary() for r in night2.results]
    assert (night2.after_batch, night2.through_batch) == (first, second)
    assert _checks_result(night2).rows == 30  # only the new batch was read
    assert _mark(fresh_db) == second

    # The whole-table mode sees the broken old row: the committed checkpoint, and the gate's full mode.
    (whole,) = run_checkpoints(["raw_checks"], fresh_db)
    assert not whole.success and whole.rows == 80
    full = run_gate(fresh_db, "manual-full-check", full=True)
    assert full.full_check and (full.after_batch, full.through_batch) == (0, second)
    assert [r.checkpoint for r in full.results] == ["load_batches_reconciled", *RAW_CHECKPOINTS]
    assert not full.success
    assert _mark(fresh_db) == second  # a failed full check moves nothing

    third = _load_checks(fresh_db, "2026-11-03", 20, bad=1)

    night3 = run_gate(fresh_db, "2026-11-03T00:00:00+00:00")

    assert not night3.success
    checks = _checks_result(night3)
    assert checks.rows == 20
    assert [(f.expectation_type, f.column, f.unexpected_count) for f in checks.failures] == [
        ("expect_column_values_to_be_between", "latency_ms", 1)
    ]
    with pytest.raises(DataQualityError, match="checkpoint raw_checks_increment: FAILED"):
        raise_on_any_failure(night3.results)
    assert _mark(fresh_db) == second
    assert third > second


def test_rerun_validates_the_recorded_window(fresh_db: str) -> None:
    """A rerun of the same run reads the same batches, whatever was loaded and validated since."""
    _raw_tickets(fresh_db, GOOD)
    first = _load_checks(fresh_db, "2026-11-01", 40)
    night1 = run_gate(fresh_db, "2026-11-01T00:00:00+00:00")
    assert night1.success and not night1.rerun
    second = _load_checks(fresh_db, "2026-11-02", 25, bad=2)  # next night's batch, bad

    again = run_gate(fresh_db, "2026-11-01T00:00:00+00:00")

    assert again.rerun
    assert (again.after_batch, again.through_batch) == (0, first)
    assert again.success  # the new bad batch is not in night 1's window
    assert _checks_result(again).rows == _checks_result(night1).rows == 40

    night2 = run_gate(fresh_db, "2026-11-02T00:00:00+00:00")
    assert not night2.success and (night2.after_batch, night2.through_batch) == (first, second)
    assert _checks_result(night2).rows == 25
    night2_again = run_gate(fresh_db, "2026-11-02T00:00:00+00:00")
    assert night2_again.rerun and not night2_again.success
    assert (night2_again.after_batch, night2_again.through_batch) == (first, second)
    assert _checks_result(night2_again).rows == 25
    assert _query_one(
        fresh_db, "select status from raw.quality_gate_runs where run_key = '2026-11-02T00:00:00+00:00'"
    ) == ("failed",)


def test_failed_gate_does_not_advance_the_mark(fresh_db: str) -> None:
    """A failed window leaves the mark where it was: the next night's window starts there and reads the
    failed batches again, until a window over them passes."""
    _raw_tickets(fresh_db, GOOD)
    first = _load_checks(fresh_db, "2026-11-01", 10)
    assert run_gate(fresh_db, "2026-11-01T00:00:00+00:00").success
    _load_checks(fresh_db, "2026-11-02", 10, bad=1)
    assert not run_gate(fresh_db, "2026-11-02T00:00:00+00:00").success
    assert _mark(fresh_db) == first
    third = _load_checks(fresh_db, "2026-11-03", 10)

    night3 = run_gate(fresh_db, "2026-11-03T00:00:00+00:00")

    assert (night3.after_batch, night3.through_batch) == (first, third)
    assert _checks_result(night3).rows == 20  # night 2's batch again, and night 3's
    assert not night3.success
    assert _mark(fresh_db) == first

    # Fixed (the loader would give the corrected row a new batch): the next window passes and moves the mark.
    fix = _load_checks(fresh_db, "2026-11-04", 1)
    _query_one(fresh_db, "update raw.checks set latency_ms = 5, _batch_id = %s where latency_ms < 0", (fix,))
    night4 = run_gate(fresh_db, "2026-11-04T00:00:00+00:00")
    assert night4.success and (night4.after_batch, night4.through_batch) == (first, fix)
    assert _mark(fresh_db) == fix


def test_empty_window_passes_and_increment_needs_a_window(fresh_db: str) -> None:
    """A night without new checks validates no check row (and passes: monitoring may be absent); the
    increment checkpoint run without a window fails instead of validating nothing."""
    _raw_tickets(fresh_db, GOOD)
    first = _load_checks(fresh_db, "2026-11-01", 10)
    assert run_gate(fresh_db, "2026-11-01T00:00:00+00:00").success

    quiet = run_gate(fresh_db, "2026-11-02T00:00:00+00:00")

    assert quiet.success and (quiet.after_batch, quiet.through_batch) == (first, first)
    assert _checks_result(quiet).rows == 0

    (unbounded,) = run_checkpoints(["raw_checks_increment"], fresh_db)
    assert not unbounded.success
    assert any("gate_after_batch" in f.detail for f in unbounded.failures), unbounded.summary()


def test_window_waits_for_a_check_load_in_progress(fresh_db: str) -> None:
    """A checks load holds the loader's lock with its batch not yet committed while a later batch (of
    another entity) commits: the gate must wait for the load, else its window would end above a batch it
    cannot see, and the next window would start above it: those checks would never be validated."""
    import threading

    from slm_platform.gate.quality import open_window

    _load_checks(fresh_db, "2026-11-01", 10)
    loading = psycopg2.connect(fresh_db)  # a checks load, as slm_platform.load.loader._load_file runs it
    lcur = loading.cursor()
    lcur.execute("select pg_advisory_xact_lock(hashtext('slm_platform.loader.checks'))")
    lcur.execute(
        "insert into raw.load_batches (source, entity, file, started_at, status) "
        "values ('test', 'checks', 'late.csv', now(), 'running') returning batch_id"
    )
    (late,) = lcur.fetchone()
    other = _query_one(  # another entity's batch, committed meanwhile: a higher id, visible at once
        fresh_db,
        "insert into raw.load_batches (source, entity, file, started_at, finished_at, status) "
        "values ('test', 'clients', 'clients.csv', now(), now(), 'ok') returning batch_id",
    )[0]
    assert other > late

    window: list[tuple] = []
    gate_conn = psycopg2.connect(fresh_db)
    gate = threading.Thread(target=lambda: window.append(open_window(gate_conn, "2026-11-02T00:00:00+00:00")))
    gate.start()
    waiting = 0
    for _ in range(200):  # the gate's backend shows up waiting for the loader's advisory lock
        waiting = _query_one(
            fresh_db, "select count(*) from pg_locks where locktype = 'advisory' and not granted"
        )[0]
        if waiting or not gate.is_alive():
            break
        threading.Event().wait(0.05)
    assert waiting == 1 and gate.is_alive() and not window, "the gate did not wait for the load in progress"
    lcur.execute(
        "insert into raw.checks (service_code, checked_at, status, latency_ms, _batch_id, _source,"
        " _loaded_at) values ('ACME-WEB', '2026-11-02T00:00:00Z', 'up', 100, %s, 'test', now())",
        (late,),
    )
    lcur.execute(
        "update raw.load_batches set status = 'ok', finished_at = now() where batch_id = %s", (late,)
    )
    loading.commit()
    loading.close()
    gate.join(timeout=60)
    gate_conn.close()
    ((after, through, _, _),) = window
    assert after < late <= through and through >= other


def test_gate_refuses_a_batch_that_does_not_reconcile(fresh_db: str) -> None:
    """A committed ok batch whose counts do not add up (read 30 != loaded 25 + unchanged 0 + quarantined
    0), or whose quarantined count differs from its rows in raw.quarantine, fails the gate by batch id, even
    though every expectation passes; a failed batch (rolled back, no rows) does not block."""
    _raw_tickets(fresh_db, GOOD)
    good = _load_checks(fresh_db, "2026-11-01", 10)
    short = _load_checks(fresh_db, "2026-11-02", 30)
    _query_one(fresh_db, "update raw.load_batches set rows_loaded = 25 where batch_id = %s", (short,))
    lost = _load_checks(fresh_db, "2026-11-03", 5)
    _query_one(  # says 2 rows were quarantined, none is in raw.quarantine
        fresh_db,
        "update raw.load_batches set rows_loaded = 3, rows_quarantined = 2 where batch_id = %s",
        (lost,),
    )
    _query_one(
        fresh_db,
        "insert into raw.load_batches (source, entity, file, started_at, finished_at, status, error)"
        " values ('test', 'tickets', 'tickets.csv', now(), now(), 'failed', 'refused')",
    )

    gate = run_gate(fresh_db, "2026-11-03T00:00:00+00:00")

    assert not gate.success
    (check,) = [r for r in gate.results if r.checkpoint == "load_batches_reconciled"]
    assert not check.success and check.rows == 3  # the three ok batches were read, the failed one skipped
    (failure,) = check.failures
    assert failure.unexpected_count == 2
    assert f"batch {short} (checks): read 30 != loaded 25" in failure.detail
    assert f"batch {lost} (checks)" in failure.detail and f"batch {good} " not in failure.detail
    assert all(r.success for r in gate.results if r.checkpoint != "load_batches_reconciled")
    with pytest.raises(DataQualityError, match="load_batch_reconciled"):
        raise_on_any_failure(gate.results)
    assert _mark(fresh_db) == 0  # the window stays to be validated again


def test_gate_builds_data_docs_under_the_stack_home(fresh_db: str, tmp_path, monkeypatch) -> None:
    """Every gate run rebuilds the Data Docs site under SLM_HOME/data_docs: the suites and this run's
    validation results, the failed expectation included; nothing is written into the checkout's docs."""
    monkeypatch.setenv("SLM_HOME", str(tmp_path / "home"))
    _raw_tickets(fresh_db, GOOD)
    _load_checks(fresh_db, "2026-11-01", 10, bad=1)

    gate = run_gate(fresh_db, "2026-11-01T00:00:00+00:00")

    assert not gate.success
    assert gate.data_docs == tmp_path / "home" / "data_docs" / "index.html"
    index = gate.data_docs.read_text()
    for suite in RAW_CHECKPOINTS:
        assert (gate.data_docs.parent / "expectations" / f"{suite}.html").exists()
        assert suite in index
    pages = list((gate.data_docs.parent / "validations" / "raw_checks").rglob("*.html"))
    assert pages, "no validation page for raw_checks"
    assert any(
        "expect_column_values_to_be_between" in p.read_text() or "latency_ms" in p.read_text() for p in pages
    )
    assert not (GX_PROJECT_ROOT / "gx" / "uncommitted" / "data_docs").exists()
    assert list((tmp_path / "home" / "gx_validations").rglob("*.json"))  # results under the home too
