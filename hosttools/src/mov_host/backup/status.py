"""What a run leaves behind for the others: its status file, a line of the history, and an alert (webhook, e-mail)
when it failed."""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from mov_host.backup.config import Config, drill_status_file, history_file
from mov_host.backup.errors import log
from mov_host.backup.history import append_history
from mov_host.backup.influx import record_result
from mov_host.backup.records import BackupStatus, DrillStatus, RunKind


def write_status(cfg: Config, status: BackupStatus | DrillStatus, kind: RunKind) -> None:
    """The result as the last one (the status file, or drill.json), as a line of the history beside it and as a point
    of the metrics bucket (Grafana's alerts)."""
    path = drill_status_file(cfg) if kind == "drill" else cfg.status_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(status, indent=2) + "\n", encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(path)
    append_history(history_file(cfg), {"kind": kind, "status": status})
    record_result(cfg, kind, status)


def alert(cfg: Config, message: str, kind: str = "backup_failed") -> None:
    """The failure, by webhook and by e-mail (each where configured); a channel that fails is logged."""
    if not cfg.webhook_url and not cfg.email.enabled:
        log("no alert webhook or e-mail configured; failure only logged")
        return
    if cfg.webhook_url:
        post_webhook(cfg, message, kind)
    if cfg.email.enabled:
        send_email(cfg, message, kind)


def post_webhook(cfg: Config, message: str, kind: str) -> None:
    body = json.dumps(
        {"kind": kind, "subject": f"mov/{cfg.env}", "host": socket.gethostname(), "message": message}
    ).encode()
    request = urllib.request.Request(
        cfg.webhook_url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            log(f"alert posted to the webhook (HTTP {response.status})")
    except OSError as exc:
        log(f"alert webhook failed: {exc}")


def alert_email(cfg: Config, message: str, kind: str) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = f"[mov/{cfg.env}] {kind.replace('_', ' ')} on {socket.gethostname()}"
    mail["From"] = cfg.email.sender
    mail["To"] = ", ".join(cfg.email.to)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=socket.gethostname())
    mail.set_content(
        f"{message}\n\nStatus: {cfg.status_file} (backup), {drill_status_file(cfg)} (restore drill)."
        "\nLog: the cron runner's log of the job (mov-cron-run).\n"
    )
    return mail


def smtp_password(cfg: Config) -> str:
    """The relay's password from its 0600 file (never the command line or the environment)."""
    if not cfg.email.password_file:
        return ""
    try:
        return Path(cfg.email.password_file).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""


def send_email(cfg: Config, message: str, kind: str) -> None:
    mail = cfg.email
    try:
        with smtplib.SMTP(mail.host, mail.port, timeout=30) as smtp:
            if mail.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if mail.user:
                smtp.login(mail.user, smtp_password(cfg))
            smtp.send_message(alert_email(cfg, message, kind))
        log(f"alert e-mailed to {', '.join(mail.to)} through {mail.host}:{mail.port}")
    except OSError as exc:  # smtplib.SMTPException is an OSError
        log(f"alert e-mail through {mail.host}:{mail.port} failed: {exc}")
