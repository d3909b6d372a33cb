"""Publishing swaps the built marts in atomically and keeps the reader's grants."""

from __future__ import annotations

import psycopg2
import pytest

from slm_platform.publish import publish_marts


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
