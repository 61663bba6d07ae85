"""What every section of the report shares: how times, durations, numbers and sizes read, and tables in HTML
(escaped) and in the PDF (Latin-1: anything else the built-in font cannot draw becomes "?")."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from fpdf import FPDF


def when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """``3d 04:05:06`` / ``04:05:06``, rounded to the second."""
    total = round(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def number(value: float) -> str:
    return f"{value:.2f}"


def size(value: float | None) -> str:
    """Bytes in binary units (``1.5 GiB``); ``-`` when not known."""
    if value is None:
        return "-"
    units = ("B", "KiB", "MiB", "GiB")
    step = 0
    while abs(value) >= 1024 and step < len(units) - 1:
        value /= 1024
        step += 1
    return f"{value:.0f} B" if step == 0 else f"{value:.1f} {units[step]}"


def latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def pdf_line(pdf: FPDF, text: str, height: float = 5) -> None:
    pdf.multi_cell(0, height, latin1(text), new_x="LMARGIN", new_y="NEXT")


def pdf_table(pdf: FPDF, widths: Sequence[float], headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    for row in [headers, *rows]:
        for width, cell in zip(widths, row, strict=True):
            pdf.cell(width, 5, latin1(cell)[:40], border=1)
        pdf.ln(5)
