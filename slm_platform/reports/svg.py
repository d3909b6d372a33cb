"""Charts as inline SVG, rendered in Python when the pack is built: the HTML needs no JavaScript and the PDF
prints exactly what the HTML shows. Every plotted value carries its figure name and exact value
(``data-figure``, ``data-value``) like the tables do, so a test can read a chart as well as a table.

Shared by every report (service review packs, incident reports): small functions returning markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from markupsafe import Markup, escape

GOOD = "#1b7f4b"
BAD = "#c0392b"
NEUTRAL = "#2f5d8a"
GRID = "#d9dee5"
TEXT = "#4a5563"
FONT = "font-family:Liberation Sans,Arial,Helvetica,sans-serif"


@dataclass(frozen=True)
class Point:
    label: str  # axis label (e.g. 2026-10)
    key: str  # machine-readable key of the point (JSON, e.g. the period's start date)
    value: Decimal | float | int | None


def _f(x: float) -> str:
    return f"{x:.1f}"


def _polyline(points: list[str]) -> str:
    return f'<polyline fill="none" stroke="{NEUTRAL}" stroke-width="1.6" points="{" ".join(points)}"/>'


def data_value(value: object) -> str:
    """The exact, machine-readable text of a figure (the marts' value as PostgreSQL returns it)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _nice_range(values: Sequence[float], target: float | None, floor: float | None) -> tuple[float, float]:
    pool = list(values) + ([target] if target is not None else [])
    lo, hi = min(pool), max(pool)
    if floor is not None:
        lo = max(floor, lo)
    span = hi - lo
    pad = span * 0.15 if span else max(abs(hi) * 0.02, 1.0)
    lo, hi = lo - pad, hi + pad
    if floor is not None:
        lo = max(lo, floor)
    return lo, hi


def line_chart(
    points: Sequence[Point],
    *,
    figure: str,
    title: str,
    target: float | None = None,
    unit: str = "",
    decimals: int = 1,
    width: int = 340,
    height: int = 160,
    floor: float | None = None,
) -> Markup:
    """A trend: one dot per period (a gap where the value is null), the target as a dashed line, the latest
    value labelled. Dots below the target are red."""
    left, right, top, bottom = 40, 22, 26, 30
    w, h = width - left - right, height - top - bottom
    vals = [float(p.value) for p in points if p.value is not None]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" style="{FONT}">',
        f'<text x="0" y="14" font-size="11" font-weight="bold" fill="#1f2933">{escape(title)}</text>',
    ]
    if not vals:
        out.append(f'<text x="{left}" y="{top + h / 2}" font-size="10" fill="{TEXT}">no data</text></svg>')
        return Markup("".join(out))
    lo, hi = _nice_range(vals, target, floor)

    def y(v: float) -> float:
        return top + h - (v - lo) / (hi - lo) * h

    n = len(points)
    step = w / max(n - 1, 1)

    def x(i: int) -> float:
        return left + (i * step if n > 1 else w / 2)

    for frac in (0.0, 0.5, 1.0):
        v = lo + (hi - lo) * frac
        out.append(
            f'<line x1="{left}" x2="{left + w}" y1="{_f(y(v))}" y2="{_f(y(v))}" stroke="{GRID}" '
            f'stroke-width="0.6"/><text x="{left - 4}" y="{_f(y(v) + 3)}" font-size="8" fill="{TEXT}" '
            f'text-anchor="end">{v:.{decimals}f}</text>'
        )
    if target is not None:
        out.append(
            f'<line x1="{left}" x2="{left + w}" y1="{_f(y(target))}" y2="{_f(y(target))}" stroke="{BAD}" '
            f'stroke-width="0.9" stroke-dasharray="4 3"/><text x="{left + w}" y="{_f(y(target) - 3)}" '
            f'font-size="8" fill="{BAD}" text-anchor="end">target {target:g}{escape(unit)}</text>'
        )
    segment: list[str] = []
    for i, p in enumerate(points):
        if p.value is None:
            if len(segment) > 1:
                out.append(_polyline(segment))
            segment = []
            continue
        segment.append(f"{_f(x(i))},{_f(y(float(p.value)))}")
    if len(segment) > 1:
        out.append(_polyline(segment))
    for i, p in enumerate(points):
        # at most six labels, counted back from the latest period so that it is always labelled
        if (n - 1 - i) % max(1, (n + 5) // 6) == 0:
            out.append(
                f'<text x="{_f(x(i))}" y="{top + h + 14}" font-size="8" fill="{TEXT}" '
                f'text-anchor="middle">{escape(p.label)}</text>'
            )
        if p.value is None:
            continue
        v = float(p.value)
        colour = BAD if target is not None and v < target else NEUTRAL
        out.append(
            f'<circle cx="{_f(x(i))}" cy="{_f(y(v))}" r="2.8" fill="{colour}" data-figure="{escape(figure)}" '
            f'data-key="{escape(p.key)}" data-value="{escape(data_value(p.value))}"/>'
        )
    last = next((p for p in reversed(points) if p.value is not None), None)
    if last is not None:
        out.append(
            f'<text x="{width - right}" y="14" font-size="11" fill="{NEUTRAL}" text-anchor="end" '
            f'font-weight="bold">{float(last.value):.{decimals}f}{escape(unit)}</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def attainment_bar(
    value: Decimal | float | None,
    target: Decimal | float | None,
    *,
    is_met: bool | None,
    width: int = 110,
    height: int = 10,
    lower: float = 0.0,
) -> Markup:
    """A horizontal bar of an attainment % against its target (a dark tick), green when met, red when not.

    ``lower`` sets the left edge of the scale (e.g. 95 for availability, where everything is near 100)."""
    if value is None:
        return Markup("")
    scale = 100.0 - lower

    def px(v: float) -> float:
        return max(0.0, min(1.0, (v - lower) / scale)) * width

    colour = GOOD if is_met else BAD if is_met is False else NEUTRAL
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="bar" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-hidden="true">',
        f'<rect x="0" y="1" width="{width}" height="{height - 2}" fill="#eef1f5"/>',
        f'<rect x="0" y="1" width="{_f(px(float(value)))}" height="{height - 2}" fill="{colour}"/>',
    ]
    if target is not None:
        t = px(float(target))
        parts.append(
            f'<rect x="{_f(min(t, width - 1.5))}" y="0" width="1.5" height="{height}" fill="#1f2933"/>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def budget_bar(
    budget: Decimal | float | None,
    downtime: Decimal | float | None,
    *,
    width: int = 220,
    height: int = 14,
) -> Markup:
    """An error budget: the share consumed by downtime (green within the budget, red beyond it: the bar
    then runs to the end and the overrun is written as a percentage)."""
    if budget is None or downtime is None:
        return Markup("")
    b, d = float(budget), float(downtime)
    share = d / b if b > 0 else (0.0 if d == 0 else float("inf"))
    filled = min(share, 1.0) * width
    colour = GOOD if share <= 0.75 else "#d68910" if share <= 1 else BAD
    label = "no budget" if b <= 0 and d > 0 else f"{share * 100:.0f} % used"
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="budget" width="{width + 70}" height="{height}" '
        f'viewBox="0 0 {width + 70} {height}" aria-hidden="true" style="{FONT}">'
        f'<rect x="0" y="1" width="{width}" height="{height - 2}" fill="#eef1f5" stroke="{GRID}"/>'
        f'<rect x="0" y="1" width="{_f(filled)}" height="{height - 2}" fill="{colour}"/>'
        f'<text x="{width + 6}" y="{height - 3}" font-size="9" fill="{TEXT}">{label}</text></svg>'
    )
