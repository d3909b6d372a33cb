"""Print an HTML file to PDF with Debian's headless chromium (the browser the browser tests drive).

One chromium process per document, `--print-to-pdf`: no Python browser driver in the production image, no
long-lived browser to manage, about one second per pack. Page size, margins and the running footer (page
x of y) come from the document's own CSS (`@page` and its margin boxes), so the printer stays generic.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

DEFAULT_CHROMIUM = "/usr/bin/chromium"
_PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


class PdfError(RuntimeError):
    """chromium is missing or could not print."""


def chromium_path() -> str:
    return os.environ.get("SLM_CHROMIUM", DEFAULT_CHROMIUM)


def print_pdf(html: Path, pdf: Path, timeout: float = 120) -> Path:
    """Print ``html`` to ``pdf`` (overwritten); returns ``pdf``. Raises :class:`PdfError`."""
    exe = chromium_path()
    if not os.access(exe, os.X_OK):
        raise PdfError(
            f"chromium not found at {exe} (install Debian's chromium: make chromium; or set SLM_CHROMIUM)"
        )
    pdf = pdf.resolve()
    tmp_pdf = pdf.with_name(pdf.name + ".part")
    # A profile of its own: two printers running at once must not share (and lock) one.
    with tempfile.TemporaryDirectory(prefix="slm-chromium-") as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",  # runs as root in containers and CI
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-pdf-header-footer",  # the document prints its own footer
            f"--user-data-dir={profile}",
            f"--print-to-pdf={tmp_pdf}",
            html.resolve().as_uri(),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise PdfError(f"chromium did not print {html} within {timeout:.0f} s") from exc
    if proc.returncode != 0 or not tmp_pdf.exists() or tmp_pdf.stat().st_size == 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        tmp_pdf.unlink(missing_ok=True)
        raise PdfError(f"chromium failed to print {html} (exit {proc.returncode}): {tail}")
    # Written aside then renamed: a reader never sees half a PDF, and a rerun replaces the old one whole.
    tmp_pdf.replace(pdf)
    return pdf


def count_pages(pdf: Path) -> int:
    """Pages of a PDF chromium printed: its page objects (Skia writes them uncompressed, one per page).

    Checked against poppler's pdfinfo by the tests; good enough for the registry without poppler in the
    production image."""
    return len(_PAGE_OBJECT.findall(pdf.read_bytes()))
