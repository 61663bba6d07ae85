"""The report goes out through the worker's relay settings (STARTTLS, login) to a real SMTP server (aiosmtpd) with
both files attached; the ``mov-report`` command writes them into the kept directory and sends them on --send."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest
import report_data as data
import yaml
from smtp_relay import Relay, make_certificate

from mov_analytics.config import ConfigError, EmailConfig
from mov_analytics.report import cli
from mov_analytics.report.mail import recipients_for, send_report
from mov_analytics.report.records import ContainerPoint, Sample, StatusPoint, UsageTotals


def _files(tmp_path: Path) -> list[Path]:
    html, pdf = tmp_path / "report-2026-11-22.html", tmp_path / "report-2026-11-22.pdf"
    html.write_text("<!DOCTYPE html><p>report</p>", encoding="utf-8")
    pdf.write_bytes(b"%PDF-1.3\n% a stand-in\n%%EOF\n")
    return [html, pdf]


def test_an_untrusted_relay_certificate_is_refused(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    with Relay(cert, key) as relay:
        cfg = EmailConfig(
            host="127.0.0.1", port=relay.port, sender="mov@example.com", recipients=("ops@example.com",), timeout_s=5.0
        )
        with pytest.raises(ssl.SSLError):
            send_report(cfg, (), "MOV weekly report", _files(tmp_path))
    assert relay.received == []


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        (EmailConfig(), "alerts.email.host"),
        (EmailConfig(host="relay", recipients=("a@b.c",)), "alerts.email.sender"),
        (EmailConfig(host="relay", sender="mov@b.c"), "report.recipients"),
    ],
)
def test_missing_mail_settings_name_their_key(cfg: EmailConfig, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        recipients_for(cfg, ())
    assert error.value.key == key


class _GeneratedSource:
    windows: ClassVar[list[tuple[datetime, datetime]]] = []
    infra_buckets: ClassVar[list[str]] = []

    def __init__(self, cfg: object) -> None:
        pass

    def readings(self, start: datetime, stop: datetime) -> Iterator[Sample]:
        self.windows.append((start, stop))
        return iter(data.samples())

    def statuses(self, start: datetime, stop: datetime) -> Iterator[StatusPoint]:
        return iter(data.statuses())

    def container_states(self, bucket: str, start: datetime, stop: datetime) -> Iterator[ContainerPoint]:
        self.infra_buckets.append(bucket)
        return iter(data.container_points())

    def usage(self, bucket: str, start: datetime, stop: datetime) -> Iterator[UsageTotals]:
        return iter(data.usage_totals())

    def close(self) -> None:
        pass


def _config(tmp_path: Path, email: dict[str, object]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "influxdb": {"url": "http://127.0.0.1:9", "bucket": "mov_status"},
                "alerts": {"email": email},
                "report": {"recipients": ["boss@example.com"]},
            }
        ),
        encoding="utf-8",
    )
    return path


def test_the_command_writes_both_files_and_sends_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the weekly job runs it (group_vars/all/report.yml, mov_report_env): the relay, its STARTTLS, login and
    password file, and the recipients given to the worker's config as environment overrides."""
    monkeypatch.setattr(cli, "InfluxSource", _GeneratedSource)
    out = tmp_path / "kept" / "reports"
    cert, key = make_certificate(tmp_path)
    (tmp_path / "smtp.password").write_text("relay-pw\n", encoding="utf-8")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the relay's certificate, trusted as a system CA would be
    with Relay(cert, key, users={"mov": "relay-pw"}) as relay:
        for name, value in {
            "HOST": "127.0.0.1",
            "PORT": str(relay.port),
            "STARTTLS": "true",
            "USERNAME": "mov",
            "PASSWORD_FILE": str(tmp_path / "smtp.password"),
            "SENDER": "mov@example.com",
            "RECIPIENTS": "boss@example.com,ops@example.com",
        }.items():
            monkeypatch.setenv(f"MOV_ANALYTICS_ALERTS__EMAIL__{name}", value)
        monkeypatch.setenv("MOV_ANALYTICS_REPORT__RECIPIENTS", "boss@example.com,ops@example.com")
        config = _config(tmp_path, {})
        code = cli.main(["--config", str(config), "--week-ending", "2026-11-22", "--out", str(out), "--send"])
    assert code == 0
    assert _GeneratedSource.windows[-1] == (datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC))
    html, pdf = out / "report-2026-11-22.html", out / "report-2026-11-22.pdf"
    assert "industria_abc / sensor_001" in html.read_text(encoding="utf-8")
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert sorted(p.name for p in out.iterdir()) == ["report-2026-11-22.html", "report-2026-11-22.pdf"]
    (got,) = relay.received
    assert (got.tls, got.login, got.sender) == (True, "mov", "mov@example.com")
    assert got.recipients == ["boss@example.com", "ops@example.com"]
    assert got.message["Subject"] == "MOV weekly report 2026-11-16 to 2026-11-22"
    assert got.message["To"] == "boss@example.com, ops@example.com"
    body = got.message.get_body(("plain",))
    assert body is not None
    assert body.get_content().splitlines() == [
        "MOV weekly report 2026-11-16 to 2026-11-22",
        "",
        "Attached: report-2026-11-22.html, report-2026-11-22.pdf.",
    ]
    attachments = {p.get_filename() or "": p for p in got.message.iter_attachments()}
    assert sorted(attachments) == ["report-2026-11-22.html", "report-2026-11-22.pdf"]
    assert attachments["report-2026-11-22.pdf"].get_content_type() == "application/pdf"
    assert attachments["report-2026-11-22.pdf"].get_content() == pdf.read_bytes()
    assert attachments["report-2026-11-22.html"].get_content_type() == "text/html"
    assert attachments["report-2026-11-22.html"].get_content() == html.read_text(encoding="utf-8")


def test_send_without_a_relay_stops_before_querying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "InfluxSource", _GeneratedSource)
    before = len(_GeneratedSource.windows)
    code = cli.main(["--config", str(_config(tmp_path, {})), "--out", str(tmp_path / "out"), "--send"])
    assert code == 2
    assert "config error: alerts.email.host:" in capsys.readouterr().err
    assert len(_GeneratedSource.windows) == before
    assert not (tmp_path / "out").exists()


def test_the_command_adds_the_infrastructure_and_the_weeks_backups_from_its_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "InfluxSource", _GeneratedSource)
    history = tmp_path / "mov-backup" / "history.jsonl"
    history.parent.mkdir()
    history.write_text("\n".join(data.history_lines()) + "\n", encoding="utf-8")
    # As the weekly job sets them (group_vars/all/report.yml): env over the worker's config file.
    monkeypatch.setenv("MOV_ANALYTICS_REPORT__INFRA_BUCKET", "mov_infra")
    monkeypatch.setenv("MOV_ANALYTICS_REPORT__BACKUP_HISTORY_FILE", str(history))
    out = tmp_path / "out"
    code = cli.main(["--config", str(_config(tmp_path, {})), "--week-ending", "2026-11-22", "--out", str(out)])
    assert code == 0
    assert _GeneratedSource.infra_buckets[-1] == "mov_infra"
    html = (out / "report-2026-11-22.html").read_text(encoding="utf-8")
    assert "<td>mov-analytics-1</td><td>running</td>" in html
    assert "no successful backup on 2026-11-20" in html and "1.5 GiB" in html


def test_the_command_says_what_it_has_not_instead_of_failing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "InfluxSource", _GeneratedSource)
    monkeypatch.setenv("MOV_ANALYTICS_REPORT__INFRA_BUCKET", "")
    monkeypatch.setenv("MOV_ANALYTICS_REPORT__BACKUP_HISTORY_FILE", str(tmp_path / "none" / "history.jsonl"))
    before = len(_GeneratedSource.infra_buckets)
    out = tmp_path / "out"
    assert cli.main(["--config", str(_config(tmp_path, {})), "--week-ending", "2026-11-22", "--out", str(out)]) == 0
    html = (out / "report-2026-11-22.html").read_text(encoding="utf-8")
    assert "Infrastructure metrics are off" in html and "No backup record" in html
    assert len(_GeneratedSource.infra_buckets) == before  # metrics off: no query
