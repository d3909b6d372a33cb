"""Publishing swaps the built marts in atomically and keeps the reader's grants."""

from __future__ import annotations

import psycopg2
import pytest

from slm_platform.transform.publish import publish_marts


def _exec(dsn: str, *stmts: str) -> list:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        out = []
        for s in stmts:
            cur.execute(s)
            out = cur.fetchall() if cur.description else out
    conn.close()
    return out


def test_publish_swaps_and_grants(fresh_db: str) -> None:
    _exec(
        fresh_db,
        "do $$ begin create role slm_reader_test login; exception when duplicate_object then null; end $$",
        "create schema marts",
        "create table marts.fct_x as select 1 as v",
        "create schema marts_build",
        "create table marts_build.fct_x as select 2 as v",
        "create table marts_build.fct_y as select 3 as v",
    )
    assert publish_marts(fresh_db, reader="slm_reader_test") == ["fct_x", "fct_y"]
    assert _exec(fresh_db, "select v from marts.fct_x") == [(2,)]
    schemas = _exec(fresh_db, "select nspname from pg_namespace where nspname like 'marts%' order by 1")
    assert schemas == [("marts",)]
    assert _exec(fresh_db, "select has_table_privilege('slm_reader_test', 'marts.fct_y', 'select')") == [
        (True,)
    ]


def test_nothing_built_is_refused_and_published_marts_stay(fresh_db: str) -> None:
    _exec(fresh_db, "create schema marts", "create table marts.fct_x as select 1 as v")
    with pytest.raises(RuntimeError, match="nothing to publish"):
        publish_marts(fresh_db)
    assert _exec(fresh_db, "select v from marts.fct_x") == [(1,)]


def _independent_checksums(dsn: str, schema: str) -> dict[str, tuple[int, str]]:
    """Every table of ``schema``: (rows, md5 of all its rows' text in order), apart from publish.py's sum."""
    tables = [
        r[0]
        for r in _exec(
            dsn,
            f"select table_name from information_schema.tables where table_schema = '{schema}' order by 1",
        )
    ]
    out = {}
    for table in tables:
        out[table] = _exec(
            dsn,
            f"select count(*), coalesce(md5(string_agg(t::text, E'\\n' order by t::text)), '')"
            f" from {schema}.{table} as t",
        )[0]
    return out


FCT_X = (
    "create table marts_build.fct_x as select g as v, 'P' || (g % 4) as priority"
    " from generate_series(1, 50) g"
)
# A real PostgreSQL failure in the middle of the swap: after the published schema was renamed away, the
# rename of the build schema into its place raises (an event trigger at the end of that ALTER SCHEMA).
FAIL_SWAP = [
    """create or replace function test_fail_publish() returns event_trigger language plpgsql as $$
    begin
        if exists (select 1 from pg_event_trigger_ddl_commands() c where c.object_identity = 'marts') then
            raise exception 'injected fault: publish interrupted after marts was renamed away';
        end if;
    end $$""",
    "create event trigger test_fail_publish on ddl_command_end when tag in ('ALTER SCHEMA')"
    " execute function test_fail_publish()",
]


def test_publish_records_every_table_and_its_checksum(fresh_db: str) -> None:
    _exec(
        fresh_db,
        "create schema marts_build",
        FCT_X,
        "create table marts_build.fct_y as select 3 as v",
        "create table marts_build.fct_empty (v int)",
    )
    publish_marts(fresh_db, reader="nobody_here")
    ((published_at, target, tables),) = _exec(
        fresh_db, "select published_at, target_schema, tables from raw.mart_publications"
    )
    assert target == "marts" and published_at is not None
    assert (
        {t: r["rows"] for t, r in tables.items()}
        == {t: rows for t, (rows, _) in _independent_checksums(fresh_db, "marts").items()}
        == {"fct_empty": 0, "fct_x": 50, "fct_y": 1}
    )
    # The recorded checksum moves with one changed value in one column (a priority, not a summed number).
    first = tables["fct_x"]["checksum"]
    _exec(
        fresh_db,
        "create schema marts_build",
        FCT_X,
        "update marts_build.fct_x set priority = 'P9' where v = 17",
        "create table marts_build.fct_y as select 3 as v",
        "create table marts_build.fct_empty (v int)",
    )
    publish_marts(fresh_db, reader="nobody_here")
    records = _exec(fresh_db, "select tables from raw.mart_publications order by publication_id")
    assert len(records) == 2
    assert records[1][0]["fct_x"]["checksum"] != first
    assert records[1][0]["fct_y"] == records[0][0]["fct_y"]


def test_failed_swap_leaves_published_marts_and_record_unchanged(fresh_db: str) -> None:
    _exec(
        fresh_db,
        "create schema marts_build",
        "create table marts_build.fct_x as select g as v from generate_series(1, 10) g",
    )
    publish_marts(fresh_db, reader="nobody_here")
    before = _independent_checksums(fresh_db, "marts")
    record = _exec(fresh_db, "select * from raw.mart_publications")
    _exec(
        fresh_db,
        "create schema marts_build",
        "create table marts_build.fct_x as select g as v from generate_series(1, 20) g",
        "create table marts_build.fct_new as select 1 as v",
        *FAIL_SWAP,
    )
    with pytest.raises(psycopg2.Error, match="injected fault"):
        publish_marts(fresh_db, reader="nobody_here")
    assert _independent_checksums(fresh_db, "marts") == before
    assert _exec(fresh_db, "select * from raw.mart_publications") == record
    # the build is still there for a retry, untouched; nothing half-swapped is left behind
    assert _independent_checksums(fresh_db, "marts_build")["fct_x"][0] == 20
    schemas = _exec(fresh_db, "select nspname from pg_namespace where nspname like 'marts%' order by 1")
    assert schemas == [("marts",), ("marts_build",)]


def test_a_review_publish_records_only_the_tables_it_replaced(fresh_db: str) -> None:
    """An incident review republishes some tables (incident_review.publish): its record says so (kind
    'tables'), beside the nightly's full ones, with the same checksums as the tables now published."""
    from slm_platform.orchestration import incident_review as ir

    _exec(fresh_db, "create schema marts_build", FCT_X, "create table marts_build.fct_y as select 3 as v")
    publish_marts(fresh_db, reader="nobody_here")
    _exec(
        fresh_db,
        f"create schema {ir.BUILD_SCHEMA}",
        f"create table {ir.BUILD_SCHEMA}.fct_y as select 4 as v",
    )
    assert ir.publish(fresh_db) == ["fct_y"]
    records = _exec(fresh_db, "select kind, tables from raw.mart_publications order by publication_id")
    assert [kind for kind, _ in records] == ["full", "tables"]
    assert set(records[0][1]) == {"fct_x", "fct_y"} and set(records[1][1]) == {"fct_y"}
    assert records[1][1]["fct_y"]["checksum"] != records[0][1]["fct_y"]["checksum"]
    assert _exec(fresh_db, "select v from marts.fct_y") == [(4,)]
    assert _exec(fresh_db, "select count(*) from marts.fct_x") == [(50,)]


def test_a_failed_review_run_records_its_own_review_only(fresh_db: str) -> None:
    from slm_platform.orchestration import incident_review as ir

    conn = psycopg2.connect(fresh_db)
    try:
        ir.record_review(conn, "INC1", "run_a", {"ticket_id": "INC1"}, "running", triggered_by="manual")
        ir.record_review(conn, "INC2", "run_b", {"ticket_id": "INC2"}, "running", triggered_by="manual")
        ir.record_review(conn, "INC3", "run_c", {"ticket_id": "INC3"}, "success", triggered_by="manual")
        assert ir.mark_review_failed(conn, "run_a") == 1
        assert ir.mark_review_failed(conn, "run_a") == 0  # a retry changes nothing more
        assert ir.mark_review_failed(conn, "run_c") == 0  # a finished review stays as it ended
        assert ir.mark_review_failed(conn, "run_refused") == 0  # refused by validate: nothing recorded
    finally:
        conn.close()
    rows = _exec(
        fresh_db,
        "select ticket_id, run_id, status, finished_at is not null from raw.incident_reviews order by 1",
    )
    assert rows == [
        ("INC1", "run_a", "failed", True),
        ("INC2", "run_b", "running", False),
        ("INC3", "run_c", "success", True),
    ]
