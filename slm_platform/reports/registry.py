"""The pack registry, ``raw.review_packs``: one row per client x period x edition, upserted by every
generation (a rerun replaces the row, as it replaces the files). dbt's ``fct_review_pack`` view lists it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from slm_platform.load.raw_schema import ensure_raw_schema
from slm_platform.reports.periods import Period

UPSERT = """
insert into raw.review_packs (
    client_code, period_type, period_start, period_label, edition, html_path, pdf_path, pages, as_of,
    generated_at
) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())
on conflict (client_code, period_type, period_start, edition) do update set
    period_label = excluded.period_label,
    html_path = excluded.html_path,
    pdf_path = excluded.pdf_path,
    pages = excluded.pages,
    as_of = excluded.as_of,
    generated_at = excluded.generated_at
"""


@dataclass(frozen=True)
class PackRecord:
    client_code: str
    period: Period
    edition: str
    html_path: str
    pdf_path: str
    pages: int
    as_of: datetime


def record_pack(conn, rec: PackRecord) -> None:
    """Upsert one pack's row (psycopg2 connection; commits)."""
    ensure_raw_schema(conn)
    with conn.cursor() as cur:
        cur.execute(
            UPSERT,
            (
                rec.client_code,
                rec.period.period_type,
                rec.period.start,
                rec.period.label,
                rec.edition,
                rec.html_path,
                rec.pdf_path,
                rec.pages,
                rec.as_of,
            ),
        )
    conn.commit()
