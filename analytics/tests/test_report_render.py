"""The report's HTML names every site and device and escapes tag values; the PDF is a real PDF."""

from __future__ import annotations

import io

import pypdf
import report_data as data

from mov_analytics.report.compute import Report, build_report
from mov_analytics.report.records import Device, Sample
from mov_analytics.report.render import duration, render_html, render_pdf

HOSTILE = Device(
    localizacao='<img src=x onerror="alert(1)">',
    cliente="acme & co",
    dispositivo="<script>alert('x')</script>",
    tipo='"quoted"',
)
UNICODE = Device(localizacao="sala", cliente="cliente_é", dispositivo="sensor_→_1", tipo="temperatura")


def _report(*extra: Sample) -> Report:
    return build_report(
        [*data.samples(), *extra],
        data.statuses(),
        data.RULES,
        start_s=data.START,
        end_s=data.END,
        publish_interval_s=data.INTERVAL,
        gap_factor=data.GAP_FACTOR,
    )


def test_html_names_each_site_and_device_with_its_numbers() -> None:
    html = render_html(_report())
    for text in (
        "Site sala",
        "Site linha",
        "industria_abc / sensor_001",
        "industria_abc / sensor_002",
        "<td>temperatura_c</td><td>1320</td><td>20.00</td><td>23.20</td><td>36.00</td>",
        "<td>00:14:15 (&gt; 30)</td><td>00:05:55 (&gt; 35)</td>",
        "alerta 1, critico 2",
        "2026-11-16 00:29:55 UTC to 2026-11-16 00:40:00 UTC (00:10:05)",
    ):
        assert text in html, text
    assert html.startswith("<!DOCTYPE html>")


def test_html_escapes_hostile_tag_values() -> None:
    html = render_html(_report(Sample(data.START + 30, HOSTILE, "temperatura_c", 40.0)))
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "Site &lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "acme &amp; co" in html and "&quot;quoted&quot;" in html


def test_pdf_is_a_valid_pdf_with_the_devices() -> None:
    pdf = render_pdf(
        _report(
            Sample(data.START + 30, UNICODE, "temperatura_c", 40.0),
            Sample(data.START + 30, HOSTILE, "temperatura_c", 40.0),
        )
    )
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    reader = pypdf.PdfReader(io.BytesIO(pdf), strict=True)
    assert len(reader.pages) >= 1
    text = "\n".join(page.extract_text() for page in reader.pages)
    for name in (
        "Site sala",
        "Site linha",
        "sensor_001",
        "sensor_002",
        "cliente_é / sensor_?_1",
        "<script>alert('x')</script>",
    ):
        assert name in text, name


def test_an_empty_week_still_renders() -> None:
    report = build_report(
        [], [], data.RULES, start_s=data.START, end_s=data.END, publish_interval_s=5.0, gap_factor=3.0
    )
    assert "No device sent a reading" in render_html(report)
    assert len(pypdf.PdfReader(io.BytesIO(render_pdf(report))).pages) == 1


def test_duration_format() -> None:
    assert duration(0) == "00:00:00"
    assert duration(3 * 86_400 + 4 * 3600 + 5 * 60 + 6) == "3d 04:05:06"
