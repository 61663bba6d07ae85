"""The report as HTML (escaped, self-contained: no script, no remote resource) and as PDF (fpdf2).

Tag values come from devices' payloads, so every one of them is escaped in the HTML and reduced to what the
PDF's built-in font can draw (Latin-1; anything else becomes "?"). The devices come first, then the platform's
sections (render_platform.py).
"""

from __future__ import annotations

from html import escape

from fpdf import FPDF

from .compute import DeviceReport, FieldStats, Report
from .layout import duration, html_table, latin1, number, pdf_table, when
from .render_platform import Block, backup_blocks, blocks_html, blocks_pdf, infra_blocks


def title(report: Report) -> str:
    return f"MOV weekly report {when(report.start_s)[:10]} to {when(report.end_s - 1)[:10]}"


def _beyond_cells(stats: FieldStats) -> list[str]:
    cells = []
    for level in ("alerta", "critico"):
        match = [(t, s) for t, s in stats.beyond if t.level == level]
        if match:
            threshold, seconds = match[0]
            sign = ">" if threshold.direction == "above" else "<"
            cells.append(f"{duration(seconds)} ({sign} {threshold.value:g})")
        else:
            cells.append("-")
    return cells


def field_rows(device: DeviceReport) -> list[list[str]]:
    return [
        [s.field, str(s.count), number(s.minimum), number(s.mean), number(s.maximum), *_beyond_cells(s)]
        for s in device.fields
    ]


FIELD_HEADERS = ["field", "samples", "min", "mean", "max", "time above alerta", "time above critico"]

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 1.5em; border-bottom: 1px solid #ccc; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.muted { color: #666; }
.attention { color: #a00; }
"""


def platform_sections(report: Report) -> list[tuple[str, list[Block]]]:
    """The platform's sections this report has, after the devices: (heading, blocks)."""
    sections = []
    if report.infra is not None:
        sections.append(("Infrastructure", infra_blocks(report.infra)))
    if report.backups is not None:
        sections.append(("Backups and restore drills", backup_blocks(report.backups)))
    return sections


def _device_html(device: DeviceReport) -> str:
    d = device.device
    parts = [
        f'<section class="device"><h3>{escape(d.cliente)} / {escape(d.dispositivo)}'
        f' <span class="muted">({escape(d.tipo)})</span></h3>'
    ]
    parts.append(
        f"<p>{device.readings} readings; alerts raised: alerta {device.alerts.get('alerta', 0)},"
        f" critico {device.alerts.get('critico', 0)}</p>"
    )
    if device.fields:
        parts.append(html_table(FIELD_HEADERS, field_rows(device)))
    else:
        parts.append("<p>No readings in the week.</p>")
    if device.gaps:
        items = "".join(
            f"<li>{escape(when(g.start_s))} to {escape(when(g.end_s))} ({escape(duration(g.seconds))})</li>"
            for g in device.gaps
        )
        parts.append(f"<p>Data gaps ({len(device.gaps)}):</p><ul>{items}</ul>")
    else:
        parts.append("<p>No data gaps.</p>")
    parts.append("</section>")
    return "\n".join(parts)


def render_html(report: Report) -> str:
    heading = escape(title(report))
    body = [
        f"<h1>{heading}</h1>",
        f'<p class="muted">From {escape(when(report.start_s))} to {escape(when(report.end_s))}. A gap is more'
        f" than {escape(duration(report.gap_limit_s))} without a reading (publish interval"
        f" {report.publish_interval_s:g} s). Time above a threshold is time-weighted, without hysteresis.</p>",
    ]
    if not report.devices:
        body.append("<p>No device sent a reading or changed status in the week.</p>")
    for site, devices in report.sites():
        body.append(f"<h2>Site {escape(site)}</h2>")
        body.extend(_device_html(d) for d in devices)
    body.extend(blocks_html(name, blocks) for name, blocks in platform_sections(report))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{heading}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


_WIDTHS = (34, 18, 20, 20, 20, 32, 32)


def render_pdf(report: Report) -> bytes:
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title(latin1(title(report)))
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 14)
    pdf.multi_cell(0, 8, latin1(title(report)), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    pdf.multi_cell(
        0,
        5,
        latin1(
            f"From {when(report.start_s)} to {when(report.end_s)}. A gap is more than "
            f"{duration(report.gap_limit_s)} without a reading."
        ),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    if not report.devices:
        pdf.multi_cell(0, 6, "No device sent a reading or changed status in the week.", new_x="LMARGIN", new_y="NEXT")
    for site, devices in report.sites():
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 12)
        pdf.multi_cell(0, 7, latin1(f"Site {site}"), new_x="LMARGIN", new_y="NEXT")
        for device in devices:
            d = device.device
            pdf.set_font("Helvetica", "B", 10)
            pdf.multi_cell(0, 6, latin1(f"{d.cliente} / {d.dispositivo} ({d.tipo})"), new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", size=8)
            pdf.multi_cell(
                0,
                5,
                latin1(
                    f"{device.readings} readings; alerts raised: alerta "
                    f"{device.alerts.get('alerta', 0)}, critico {device.alerts.get('critico', 0)}"
                ),
                new_x="LMARGIN",
                new_y="NEXT",
            )
            if device.fields:
                pdf_table(pdf, _WIDTHS, FIELD_HEADERS, field_rows(device))
            gaps = "; ".join(f"{when(g.start_s)} to {when(g.end_s)} ({duration(g.seconds)})" for g in device.gaps)
            pdf.multi_cell(
                0, 5, latin1(f"Data gaps: {gaps}" if gaps else "No data gaps."), new_x="LMARGIN", new_y="NEXT"
            )
            pdf.ln(2)
    for name, blocks in platform_sections(report):
        blocks_pdf(pdf, name, blocks)
    return bytes(pdf.output())
