"""The report's platform sections, infrastructure and backups: built once as paragraphs and tables, then drawn as
HTML (escaped) and into the PDF by render.py, after the devices."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from fpdf import FPDF

from .backups import BackupSection
from .infra import InfraSection, Spread
from .layout import html_table, number, pdf_line, pdf_table, size, when


@dataclass(frozen=True, slots=True)
class Paragraph:
    text: str
    strong: bool = False  # a finding that needs the reader's attention


@dataclass(frozen=True, slots=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    widths: Sequence[float]  # mm in the PDF (A4 portrait: 190 between the margins)


Block = Paragraph | Table


def _spread(value: Spread | None, shown: Callable[[float], str]) -> list[str]:
    return ["-", "-"] if value is None else [shown(value.mean), shown(value.maximum)]


CONTAINER_HEADERS = (
    *("container", "status", "last seen", "restarts", "recreated"),
    *("CPU mean %", "CPU max %", "memory mean", "memory max"),
)


def infra_blocks(section: InfraSection) -> list[Block]:
    if section.note:
        return [Paragraph(section.note)]
    rows = [
        [
            c.name,
            c.status or "-",
            when(c.last_seen_s) if c.last_seen_s is not None else "-",
            str(c.restarts),
            str(c.recreated),
            *_spread(c.cpu, number),
            *_spread(c.memory, size),
        ]
        for c in section.containers
    ]
    blocks: list[Block] = [
        Paragraph(
            "Containers: status at their latest point in the week, restarts by their restart policy, recreations;"
            " CPU (100 % is one CPU) and memory while running."
        ),
        Table(CONTAINER_HEADERS, rows, (30, 15, 36, 14, 15, 19, 19, 21, 21)),
    ]
    if section.one_off_containers:
        blocks.append(Paragraph(f"One-off containers (docker compose run) seen: {section.one_off_containers}."))
    host = [
        [name, *_spread(value, number)]
        for name, value in (("CPU", section.host_cpu), ("memory", section.host_memory))
        if value is not None
    ]
    if host:
        blocks.append(Table(("host", "mean % used", "max % used"), host, (40, 30, 30)))
    if section.disks:
        disks = [[d.path, number(d.maximum), number(d.latest)] for d in section.disks]
        blocks.append(Table(("disk (mount point)", "max % used", "latest % used"), disks, (60, 30, 30)))
    return blocks


def backup_blocks(section: BackupSection) -> list[Block]:
    blocks: list[Block] = []
    if section.attention:
        blocks.append(Paragraph("Needs attention: " + "; ".join(section.attention) + ".", strong=True))
    if section.note:
        return [*blocks, Paragraph(section.note)]
    if not section.attention:
        blocks.append(Paragraph("Every day had a successful backup, and every restore drill passed."))
    if section.backups:
        rows = [
            [
                when(b.time_s),
                b.result,
                b.snapshot or "-",
                size(b.size_bytes),
                size(b.new_bytes),
                "-" if b.uploaded_objects is None else str(b.uploaded_objects),
                b.offsite,
            ]
            for b in section.backups
        ]
        headers = ("backup", "result", "snapshot", "size", "new", "uploaded objects", "off-site")
        blocks.append(Table(headers, rows, (38, 15, 36, 22, 22, 28, 18)))
    else:
        blocks.append(Paragraph("No backup ran in the week."))
    if section.drills:
        rows = [[when(d.time_s), d.result, d.origin, d.snapshot or "-"] for d in section.drills]
        blocks.append(Table(("restore drill", "result", "from", "snapshot"), rows, (38, 15, 20, 36)))
    errors = [(b.time_s, "backup", b.error) for b in section.backups if b.error]
    errors += [(d.time_s, "restore drill", d.error) for d in section.drills if d.error]
    blocks.extend(Paragraph(f"{when(t)}, {kind}: {error}") for t, kind, error in sorted(errors))
    if section.unreadable:
        blocks.append(Paragraph(f"{section.unreadable} line(s) of the history could not be read and were skipped."))
    return blocks


def blocks_html(heading: str, blocks: Sequence[Block]) -> str:
    parts = [f"<h2>{escape(heading)}</h2>"]
    for block in blocks:
        if isinstance(block, Table):
            parts.append(html_table(block.headers, block.rows))
        elif block.strong:
            parts.append(f'<p class="attention"><strong>{escape(block.text)}</strong></p>')
        else:
            parts.append(f"<p>{escape(block.text)}</p>")
    return "\n".join(parts)


def blocks_pdf(pdf: FPDF, heading: str, blocks: Sequence[Block]) -> None:
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 12)
    pdf_line(pdf, heading, 7)
    for block in blocks:
        pdf.set_font("Helvetica", "B" if isinstance(block, Paragraph) and block.strong else "", 8)
        if isinstance(block, Table):
            pdf_table(pdf, block.widths, block.headers, block.rows)
            pdf.ln(1)
        else:
            pdf_line(pdf, block.text)
