"""Reports printed from the marts: HTML from Jinja2 templates (package data in ``templates/``), charts as
inline SVG (:mod:`.svg`), PDF printed by headless chromium (:mod:`.pdf`).

- :mod:`.periods`: review periods (`2026-10`, `2026-Q4`, `2026`) and which ones a nightly run closes;
- :mod:`.review_data`: what a service review pack shows, read from the marts for one client and period;
- :mod:`.review_pack`: builds a pack (HTML + PDF) and records it in ``raw.review_packs`` (:mod:`.registry`);
- :mod:`.render`: the Jinja2 environment shared by every report (``base.html.j2`` is the common layout).
"""
