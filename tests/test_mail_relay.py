"""One place for the mail relay: mov_smtp (host, port, STARTTLS, user; the password is vault_mov_smtp_password) and
mov_alert_contacts.emails reach every sender of e-mail: the analytics worker's alerts, Grafana's [smtp] and contact
point, the weekly report's job and the backup's alerts. Their delivery is tested against real SMTP servers in
analytics/tests (test_alert_mail.py, test_report_mail.py), tests/test_backup_tool.py and the e2e job (Grafana)."""

from __future__ import annotations

import configparser
import json
import stat
from pathlib import Path

import yaml
from mov_render import rendered, resolved, workspace


def test_the_tree_s_mail_relay_reaches_the_worker_grafana_the_report_and_the_backup(tmp_path: Path) -> None:
    """mov_alert_contacts.emails and mov_smtp (with the vault's relay password) are the one place every e-mail's
    relay and recipients are written: the worker's alerts, Grafana's [smtp] and contact point, the weekly report's
    job and the backup's alerts. The env's mov_smtp names no starttls, as staging's and prod's do: STARTTLS stays on.
    The password stands only in private secret files (compose secrets, Grafana's $__file{}), never in a config."""
    smtp = {"host": "relay.example.net", "port": 2525, "user": "mov-relay", "from_address": "mov@example.com"}
    emails = ["ops@example.com", "oncall@example.com"]
    extra = json.dumps(
        {
            "mov_alert_contacts": {"webhook_url": "", "emails": emails},
            "mov_smtp": smtp,
            "vault_mov_smtp_password": "test-only-relay-password",
        }
    )
    ws = workspace()
    ws.render("staging", tmp_path / "out", "-e", extra)
    [host_dir] = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    worker = yaml.safe_load((host_dir / "opt/mov/analytics/config.yaml").read_text())
    assert worker["alerts"]["email"] == {
        "password_file": "/run/secrets/analytics_smtp_password",
        "host": "relay.example.net",
        "port": 2525,
        "starttls": True,
        "username": "mov-relay",
        "sender": "mov@example.com",
        "recipients": emails,
    }
    compose = yaml.safe_load((host_dir / "opt/mov/compose.yaml").read_text())
    assert "analytics_smtp_password" in compose["services"]["analytics"]["secrets"]
    assert compose["secrets"]["analytics_smtp_password"]["file"] == "/opt/mov/analytics/secrets/smtp.password"
    ini = configparser.ConfigParser(interpolation=None)
    ini.optionxform = str  # type: ignore[assignment,method-assign]  # Grafana's keys are case-sensitive (go-ini)
    ini.read_string((host_dir / "opt/mov/grafana/grafana.ini").read_text())
    assert dict(ini["smtp"]) == {
        "enabled": "true",
        "host": "relay.example.net:2525",
        "user": "mov-relay",
        "password": "$__file{/opt/mov/grafana/secrets/smtp.password}",
        "from_address": "mov@example.com",
        "from_name": "MOV staging",
        "startTLS_policy": "MandatoryStartTLS",
    }
    points = yaml.safe_load((host_dir / "opt/mov/grafana/provisioning/alerting/mov-contact-points.yml").read_text())
    (receiver,) = [r for r in points["contactPoints"][0]["receivers"] if r["type"] == "email"]
    assert receiver["settings"] == {"addresses": "ops@example.com;oncall@example.com", "singleEmail": True}
    holders = [
        p for p in host_dir.rglob("*") if p.is_file() and "test-only-relay-password" in p.read_text(errors="replace")
    ]
    # Grafana's file; the worker's is the compose secret above, which the deploy writes (the render does not).
    assert {str(p.relative_to(host_dir)) for p in holders} == {"opt/mov/grafana/secrets/smtp.password"}
    for holder in holders:
        assert stat.S_IMODE(holder.stat().st_mode) & 0o077 == 0, holder
    # The weekly report's job and the backup's alerts, as the tree resolves them.
    report, backup, backup_emails = resolved("[mov_report_env,backup_smtp,backup_alert_emails]", "-e", extra)
    assert {k.rsplit("__", 1)[1]: str(v) for k, v in report.items() if "__EMAIL__" in k} == {
        "HOST": "relay.example.net",
        "PORT": "2525",
        "STARTTLS": "true",
        "USERNAME": "mov-relay",
        "SENDER": "mov@example.com",
        "RECIPIENTS": "ops@example.com,oncall@example.com",
        "PASSWORD_FILE": "/run/report-secrets/smtp.password",
    }
    assert report["MOV_ANALYTICS_REPORT__RECIPIENTS"] == "ops@example.com,oncall@example.com"
    assert backup == smtp | {"starttls": True} and backup_emails == emails
    # Without a relay (the local env has none), no e-mail section and no password secret.
    plain = yaml.safe_load((rendered("local")[0] / "opt/mov/analytics/config.yaml").read_text())
    assert "email" not in plain.get("alerts", {})
    local = yaml.safe_load((rendered("local")[0] / "opt/mov/compose.yaml").read_text())
    assert "analytics_smtp_password" not in local["services"]["analytics"]["secrets"]


def test_a_relay_without_starttls_reaches_every_consumer_as_plain_smtp() -> None:
    """mov_smtp.starttls: false (a relay on a trusted network, no login): the worker, the report and the backup
    send without STARTTLS, and Grafana's policy is NoStartTLS (roles/grafana/vars/main.yml)."""
    smtp = {"host": "relay.internal", "port": 25, "starttls": False, "user": "", "from_address": "mov@example.com"}
    extra = json.dumps({"mov_alert_contacts": {"webhook_url": "", "emails": ["ops@example.com"]}, "mov_smtp": smtp})
    worker, report, backup, grafana = resolved(
        "[stack_analytics_config_overrides.alerts.email,mov_report_env,backup_smtp,grafana_smtp]", "-e", extra
    )
    assert (worker["starttls"], worker["port"], worker["username"]) == (False, 25, "")
    assert report["MOV_ANALYTICS_ALERTS__EMAIL__STARTTLS"] == "false"
    assert backup["starttls"] is False and grafana["starttls"] is False
