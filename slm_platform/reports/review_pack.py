"""Build one service review pack: read the marts, render the HTML, print the PDF, record it in the registry.

`./slm review-pack build` builds one; the nightly DAG builds every client's packs of the periods a run closes
(:func:`build_closed_period_packs`). Files are `<out>/<client>_<period>_<edition>.html` and `.pdf`, replaced
whole on a rerun, and the registry row is upserted: generation is idempotent per client x period x edition.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from markupsafe import Markup, escape

from slm_platform.reports import svg
from slm_platform.reports.pdf import count_pages, print_pdf
from slm_platform.reports.periods import Period
from slm_platform.reports.registry import PackRecord, record_pack
from slm_platform.reports.render import make_local, render
from slm_platform.reports.review_data import EDITIONS, ReviewData, ReviewDataError, load_review

TEMPLATE = "review.html.j2"
_MONTH_NAMES = "January February March April May June July August September October November December".split()


@dataclass(frozen=True)
class PackResult:
    client_code: str
    period: Period
    edition: str
    html_path: Path
    pdf_path: Path
    pages: int  # printed pages (the PDF's)
    sections: int  # pages the HTML lays out (one per section): equal to pages unless a section overflowed
    seconds: float


def row(source: str, **key: object) -> Markup:
    """Attributes marking an element as a row of ``source`` with its key (JSON), for the tests' parser."""
    attrs = f'data-row="{escape(source)}"'
    if key:
        text = json.dumps({k: svg.data_value(v) for k, v in key.items()}, sort_keys=True)
        attrs += f" data-key='{escape(text)}'"
    return Markup(attrs)


def period_title(p: Period) -> str:
    if p.period_type == "month":
        return f"{_MONTH_NAMES[p.start.month - 1]} {p.start.year}"
    if p.period_type == "quarter":
        return f"Q{(p.start.month - 1) // 3 + 1} {p.start.year}"
    return f"Year {p.start.year}"


def _trend_charts(d: ReviewData) -> list[Markup]:
    labels = [t["period_label"] for t in d.trend]

    def points(col: str) -> list[svg.Point]:
        return [
            svg.Point(label, json.dumps({"period_start": t["period_start"].isoformat()}), t[col])
            for label, t in zip(labels, d.trend, strict=True)
        ]

    csat_target = d.review.get("csat_target_pct")
    # Availability's chart needs no target line of its own: objectives differ by service; the table says.
    return [
        svg.line_chart(
            points("sla_attainment_pct"),
            figure="sla_attainment_pct",
            title="SLA attainment, tickets (%)",
            unit=" %",
            floor=0.0,
        ),
        svg.line_chart(
            points("availability_pct"),
            figure="availability_pct",
            title="Availability (%)",
            unit=" %",
            decimals=3,
        ),
        svg.line_chart(
            points("csat_pct"),
            figure="csat_pct",
            title="CSAT (%)",
            unit=" %",
            target=float(csat_target) if csat_target is not None else None,
            floor=0.0,
        ),
        svg.line_chart(points("nps"), figure="nps", title="NPS", decimals=0),
        svg.line_chart(
            points("objectives_breached"),
            figure="objectives_breached",
            title="Objectives breached",
            decimals=0,
            floor=0.0,
        ),
        svg.line_chart(
            points("response_rate_pct"),
            figure="response_rate_pct",
            title="Survey response rate (%)",
            unit=" %",
            floor=0.0,
        ),
    ]


def render_review(d: ReviewData, generated_at: datetime) -> str:
    local = make_local(d.client["timezone"])
    as_of_text = local(d.as_of, "%Y-%m-%d %H:%M %Z")
    footer = (
        f"{d.client['client_code']} · service review {d.period.label} · {d.edition} edition"
        f" · cut-off {as_of_text}"
    )
    return render(
        TEMPLATE,
        d=d,
        row=row,
        local=local,
        charts=_trend_charts(d),
        # The footer is a CSS string (in <style>, where entities are not decoded): no quotes or backslashes.
        footer=Markup(footer.replace("\\", "").replace('"', "").replace("<", "").replace(">", "")),
        period_title=period_title(d.period),
        prev_label=d.period.previous().label,
        as_of_text=as_of_text,
        generated_text=local(generated_at, "%Y-%m-%d %H:%M %Z"),
    )


def pack_stem(client_code: str, period: Period, edition: str) -> str:
    return f"{client_code}_{period.label}_{edition}"


def build_pack(
    conn,
    client_code: str,
    period: Period,
    edition: str,
    out_dir: Path,
    schema: str = "marts",
    generated_at: datetime | None = None,
) -> PackResult:
    """Build one pack into ``out_dir`` and upsert its registry row. Raises ReviewDataError, PdfError."""
    t0 = time.perf_counter()
    data = load_review(conn, client_code, period, edition, schema)
    conn.rollback()  # end the read transaction: the registry write below commits on its own
    html = render_review(data, generated_at or datetime.now(UTC))
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = pack_stem(client_code, period, edition)
    html_path = (out_dir / f"{stem}.html").resolve()
    pdf_path = out_dir.resolve() / f"{stem}.pdf"
    tmp = html_path.with_name(html_path.name + ".part")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, html_path)
    print_pdf(html_path, pdf_path)
    pages = count_pages(pdf_path)
    record_pack(
        conn, PackRecord(client_code, period, edition, str(html_path), str(pdf_path), pages, data.as_of)
    )
    return PackResult(
        client_code,
        period,
        edition,
        html_path,
        pdf_path,
        pages,
        html.count('<section class="page'),
        time.perf_counter() - t0,
    )


def build_packs(
    conn,
    periods: Iterable[Period],
    out_dir: Path,
    clients: Iterable[str] | None = None,
    editions: Iterable[str] = EDITIONS,
    schema: str = "marts",
    log: Callable[[str], None] = print,
) -> list[PackResult]:
    """Every client's packs (both editions) for ``periods``; a client without data for a period is skipped
    and said so (a client whose contract starts later has no review yet)."""
    if clients is None:
        with conn.cursor() as cur:
            cur.execute(f'select client_code from "{schema}".dim_clients order by client_code')
            clients = [r[0] for r in cur.fetchall()]
        conn.rollback()
    results = []
    for period in periods:
        for client in clients:
            for edition in editions:
                try:
                    res = build_pack(conn, client, period, edition, out_dir, schema)
                except ReviewDataError as exc:
                    conn.rollback()
                    log(f"skipped {client} {period.label} {edition}: {exc}")
                    break  # the other edition has no data either
                log(f"{res.pdf_path} ({res.pages} pages, {res.seconds:.1f} s)")
                if res.pages != res.sections:
                    log(f"WARNING: {res.pdf_path}: {res.pages} pages for {res.sections} sections (overflow)")
                results.append(res)
    return results


def build_closed_period_packs(
    dsn: str, interval_end: date, out_dir: Path, log: Callable[[str], None] = print
) -> list[PackResult]:
    """The nightly's packs: every client, both editions, for each period the run closes (none most days)."""
    import psycopg2

    from slm_platform.reports.periods import periods_closed_by

    periods = periods_closed_by(interval_end)
    if not periods:
        log(f"no period closes with the run ending {interval_end}: no pack to build")
        return []
    conn = psycopg2.connect(dsn)
    try:
        return build_packs(conn, periods, out_dir, log=log)
    finally:
        conn.close()
