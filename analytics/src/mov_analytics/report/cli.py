"""One week's report from InfluxDB, written as HTML and PDF into a kept directory and e-mailed on --send.

    mov-report --out /var/lib/mov/reports                      # the week ending yesterday (UTC)
    mov-report --week-ending 2026-11-22 --out reports --send

The week ending D is [D-6 00:00, D+1 00:00) UTC. Settings come from the worker's config (--config or
$MOV_ANALYTICS_CONFIG, MOV_ANALYTICS_* env): influxdb.* to read, rules for the thresholds, alerts.email.* to send,
report.* for the readings bucket, the fields, what counts as a gap, the infrastructure bucket and mov-backup's
history. Exit codes: 0 written (and sent), 1 InfluxDB or the mail relay failed, 2 bad config or arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import smtplib
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from .. import logs
from ..config import Config, ConfigError, load
from .backups import read_backup_section
from .compute import Report, build_report
from .infra import InfraSection, infra_off, infra_section, infra_unreadable
from .mail import recipients_for, send_report
from .query import BucketNotFound, InfluxSource, QueryError
from .render import render_html, render_pdf, title

log = logging.getLogger("mov_analytics.report")


def week_window(week_ending: date) -> tuple[datetime, datetime]:
    stop = datetime.combine(week_ending + timedelta(days=1), time(0), tzinfo=UTC)
    return stop - timedelta(days=7), stop


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def write_files(report: Report, out: Path, week_ending: date) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    html_path = out / f"report-{week_ending.isoformat()}.html"
    pdf_path = out / f"report-{week_ending.isoformat()}.pdf"
    _write(html_path, render_html(report).encode("utf-8"))
    _write(pdf_path, render_pdf(report))
    return [html_path, pdf_path]


def read_infra(bucket: str, source: InfluxSource, start: datetime, stop: datetime) -> InfraSection:
    """The infrastructure section; metrics switched off or a bucket InfluxDB does not have are said in it."""
    if not bucket:
        return infra_off()
    try:
        return infra_section(
            source.container_states(bucket, start, stop), source.usage(bucket, start, stop), bucket=bucket
        )
    except BucketNotFound as exc:
        return infra_unreadable(bucket, str(exc))


def generate(cfg: Config, source: InfluxSource, week_ending: date) -> Report:
    start, stop = week_window(week_ending)
    report = build_report(
        source.readings(start, stop),
        source.statuses(start, stop),
        cfg.rules,
        start_s=start.timestamp(),
        end_s=stop.timestamp(),
        publish_interval_s=cfg.report.publish_interval_s,
        gap_factor=cfg.report.gap_factor,
    )
    return replace(
        report,
        infra=read_infra(cfg.report.infra_bucket, source, start, stop),
        backups=read_backup_section(cfg.report.backup_history_file, start_s=start.timestamp(), end_s=stop.timestamp()),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mov-report", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        default=os.environ.get("MOV_ANALYTICS_CONFIG") or None,
        help="the worker's YAML config (default: $MOV_ANALYTICS_CONFIG); MOV_ANALYTICS_* env overrides",
    )
    parser.add_argument(
        "--week-ending", type=_date, default=None, help="the last day of the week, YYYY-MM-DD (default: yesterday, UTC)"
    )
    parser.add_argument("--out", type=Path, required=True, help="directory the HTML and PDF are written to (kept)")
    parser.add_argument("--send", action="store_true", help="e-mail both files through alerts.email's relay")
    args = parser.parse_args(argv)
    week_ending: date = args.week_ending or (datetime.now(UTC).date() - timedelta(days=1))
    try:
        cfg = load(args.config)
        if args.send:
            recipients_for(cfg.alerts.email, cfg.report.recipients)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    logs.setup(cfg.log_level)
    source = InfluxSource(cfg)
    try:
        report = generate(cfg, source, week_ending)
    except QueryError as exc:
        log.error("cannot read from InfluxDB", extra={"error": str(exc)})
        return 1
    finally:
        source.close()
    try:
        files = write_files(report, args.out, week_ending)
    except OSError as exc:
        log.error("cannot write the report", extra={"out": str(args.out), "error": str(exc)})
        return 1
    log.info("report written", extra={"files": [str(f) for f in files], "devices": len(report.devices)})
    if args.send:
        try:
            send_report(cfg.alerts.email, cfg.report.recipients, title(report), files)
        except (OSError, smtplib.SMTPException) as exc:
            log.error("report not sent", extra={"error": str(exc)})
            return 1
        log.info("report sent", extra={"relay": cfg.alerts.email.host})
    return 0
