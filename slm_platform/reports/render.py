"""Jinja2 environment of the reports: templates are package data (slm_platform/reports/templates/), with
a base layout (page size, running footer, cover, styles) that every report extends, and the filters and
globals that print figures with their machine-readable markers."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from functools import cache
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from slm_platform.reports import svg


def fmt_number(value: object, decimals: int = 2) -> str:
    """A figure as printed: fixed decimals with a thin space every three digits, or an en dash for null."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    return f"{Decimal(str(value)):,.{decimals}f}".replace(",", " ")


def fig(
    name: str, value: object, decimals: int = 2, unit: str = "", tag: str = "span", cls: str = ""
) -> Markup:
    """One printed figure with its marker: ``<span data-figure="name" data-value="exact">shown</span>``."""
    shown = fmt_number(value, decimals)
    if value is not None and unit and not isinstance(value, bool):
        shown += unit
    attrs = f' class="{escape(cls)}"' if cls else ""
    return Markup(
        f'<{tag}{attrs} data-figure="{escape(name)}" data-value="{escape(svg.data_value(value))}">'
        f"{escape(shown)}</{tag}>"
    )


def change(value: object, decimals: int = 2, unit: str = " pts") -> str:
    if value is None:
        return "–"
    v = Decimal(str(value))
    sign = "+" if v > 0 else "−" if v < 0 else "±"
    return f"{sign}{abs(v):.{decimals}f}{unit}"


def make_local(tz: str):
    zone = ZoneInfo(tz)

    def local(value: datetime | date | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if value is None:
            return "–"
        if isinstance(value, datetime):
            return value.astimezone(zone).strftime(fmt)
        return value.strftime(fmt.split(" ")[0])

    return local


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("slm_platform.reports", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt_number
    env.filters["change"] = change
    env.globals["fig"] = fig
    env.globals["svg"] = svg
    env.globals["data_value"] = svg.data_value
    return env


def render(template: str, **context: object) -> str:
    return environment().get_template(template).render(**context)
