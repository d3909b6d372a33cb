"""Publish: swap the built-and-tested marts into the schema that dashboards read, in one transaction."""

from __future__ import annotations

from psycopg2 import sql

from slm_platform.settings import READER_ROLE

BUILD_SCHEMA = "marts_build"
PUBLISHED_SCHEMA = "marts"


def publish_marts(
    dsn: str, build: str = BUILD_SCHEMA, target: str = PUBLISHED_SCHEMA, reader: str = READER_ROLE
) -> list[str]:
    """Rename ``build`` to ``target`` atomically; readers never see a half-built mart.

    Returns the published table names. Raises if there is nothing built (a failed or skipped dbt run).
    """
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            # Serialised with an incident review's table-by-table publish (slm_platform.incident_review).
            cur.execute("select pg_advisory_xact_lock(hashtext('slm_platform.publish'))")
            cur.execute(
                "select table_name from information_schema.tables where table_schema = %s order by 1",
                (build,),
            )
            tables = [r[0] for r in cur.fetchall()]
            if not tables:
                raise RuntimeError(f"nothing to publish: schema {build!r} is missing or empty")
            old = sql.Identifier(f"{target}_previous")
            cur.execute(sql.SQL("drop schema if exists {} cascade").format(old))
            cur.execute("select 1 from pg_namespace where nspname = %s", (target,))
            if cur.fetchone():
                cur.execute(sql.SQL("alter schema {} rename to {}").format(sql.Identifier(target), old))
            cur.execute(
                sql.SQL("alter schema {} rename to {}").format(sql.Identifier(build), sql.Identifier(target))
            )
            cur.execute("select 1 from pg_roles where rolname = %s", (reader,))
            if cur.fetchone():
                cur.execute(
                    sql.SQL("grant usage on schema {} to {}").format(
                        sql.Identifier(target), sql.Identifier(reader)
                    )
                )
                cur.execute(
                    sql.SQL("grant select on all tables in schema {} to {}").format(
                        sql.Identifier(target), sql.Identifier(reader)
                    )
                )
            cur.execute(sql.SQL("drop schema if exists {} cascade").format(old))
    finally:
        conn.close()
    return tables
