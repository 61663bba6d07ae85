"""The report's HTML names every site and device and escapes tag values; the PDF is a real PDF. Both have the
containers, the host's resources and the week's backups and drills, or say why they have not."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pypdf
import report_data as data

from mov_analytics.report.backups import BackupSection, backup_section, parse_history, read_backup_section
from mov_analytics.report.compute import Report, build_report
from mov_analytics.report.infra import InfraSection, infra_off, infra_section
from mov_analytics.report.layout import duration
from mov_analytics.report.records import ContainerPoint, Device, Sample
from mov_analytics.report.render import render_html, render_pdf

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


def _platform_report(infra: InfraSection, backups: BackupSection) -> Report:
    return replace(_report(), infra=infra, backups=backups)


def _weekly() -> Report:
    return _platform_report(
        infra_section(data.container_points(), data.usage_totals(), bucket=data.INFRA_BUCKET),
        backup_section(parse_history(data.history_lines()), start_s=data.WEEK_START, end_s=data.WEEK_END),
    )


def _pdf_text(report: Report) -> str:
    reader = pypdf.PdfReader(io.BytesIO(render_pdf(report)), strict=True)
    return "\n".join(page.extract_text() for page in reader.pages)


def test_html_has_the_containers_the_host_and_the_weeks_backups() -> None:
    html = render_html(_weekly())
    for text in (
        "<h2>Infrastructure</h2>",
        "<td>mov-analytics-1</td><td>running</td><td>2026-11-22 23:59:55 UTC</td><td>2</td><td>0</td>"
        "<td>2.50</td><td>40.00</td><td>50.0 MiB</td><td>80.0 MiB</td>",
        "<td>mov-grafana-1</td><td>exited</td>",
        "<td>mov-influxdb-1</td><td>running</td><td>2026-11-22 23:59:55 UTC</td><td>2</td><td>1</td>",
        "One-off containers (docker compose run) seen: 1.",
        "<td>CPU</td><td>12.50</td><td>97.00</td>",
        "<td>memory</td><td>41.00</td><td>63.00</td>",
        "<td>/</td><td>71.25</td><td>70.50</td>",
        "<h2>Backups and restore drills</h2>",
        '<p class="attention"><strong>Needs attention: no successful backup on 2026-11-18; no successful backup on'
        " 2026-11-20; the restore drill failed on 2026-11-22.</strong></p>",
        "<td>2026-11-16 02:30:00 UTC</td><td>ok</td><td>20261116T023000Z</td><td>1.5 GiB</td><td>20.0 MiB</td>"
        "<td>12</td><td>ok</td>",
        "<td>2026-11-18 02:30:00 UTC</td><td>failed</td><td>-</td><td>0 B</td><td>0 B</td><td>-</td><td>failed</td>",
        "<td>2026-11-22 04:30:00 UTC</td><td>failed</td><td>remote</td><td>20261122T023000Z</td>",
        "2026-11-18 02:30:00 UTC, backup: sqlite backup of grafana.db: disk I/O error",
        "2026-11-22 04:30:00 UTC, restore drill: restored copy differs from production: influxdb",
        "2 line(s) of the history could not be read and were skipped.",
    ):
        assert text in html, text
    # The platform's sections follow the devices.
    assert html.index("Site sala") < html.index("<h2>Infrastructure</h2>") < html.index("<h2>Backups")


def test_pdf_has_the_containers_the_host_and_the_weeks_backups() -> None:
    text = _pdf_text(_weekly())
    for name in (
        "Infrastructure",
        "mov-analytics-1",
        "mov-influxdb-1",
        "exited",
        "50.0 MiB",
        "71.25",
        "Backups and restore drills",
        "no successful backup on 2026-11-20",
        "the restore drill failed on 2026-11-22",
        "20261116T023000Z",
        "1.5 GiB",
        "sqlite backup of grafana.db: disk I/O error",
    ):
        assert name in text, name


def test_absent_metrics_and_history_are_said_in_both_formats(tmp_path: Path) -> None:
    missing = tmp_path / "history.jsonl"
    report = _platform_report(
        infra_off(), read_backup_section(str(missing), start_s=data.WEEK_START, end_s=data.WEEK_END)
    )
    html, text = render_html(report), _pdf_text(report)
    for said in ("Infrastructure metrics are off", "No backup record", "Needs attention: no backup record."):
        assert said in html and said in text, said
    assert "<table><thead><tr><th>container" not in html


def test_container_names_are_escaped() -> None:
    hostile = ContainerPoint(data.WEEK_START + 5, "<b>x</b>", "h1", 0, "running")
    html = render_html(_platform_report(infra_section([hostile], [], bucket="b"), BackupSection(note="-")))
    assert "<b>x</b>" not in html and "<td>&lt;b&gt;x&lt;/b&gt;</td>" in html


def test_a_report_without_the_platform_sections_has_no_such_headings() -> None:
    html = render_html(_report())
    assert "Infrastructure" not in html and "Backups" not in html
