"""The report by e-mail: the worker's alert relay settings (``alerts.email``) and its SMTP sender."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path

from ..alerts import smtp_send
from ..config import ConfigError, EmailConfig


def recipients_for(email: EmailConfig, report_recipients: Sequence[str]) -> tuple[str, ...]:
    """The report's recipients (``report.recipients``, else ``alerts.email.recipients``); a relay is required."""
    if not email.host:
        raise ConfigError("alerts.email.host", "a mail relay to send the report through")
    if not email.sender:
        raise ConfigError("alerts.email.sender", "a sender address to send the report from")
    recipients = tuple(report_recipients) or email.recipients
    if not recipients:
        raise ConfigError("report.recipients", "at least one address (or alerts.email.recipients)")
    return recipients


def build_message(
    subject: str, text: str, sender: str, recipients: Sequence[str], attachments: Sequence[Path]
) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg.set_content(text)
    for path in attachments:
        subtype = "pdf" if path.suffix == ".pdf" else "html"
        maintype = "application" if subtype == "pdf" else "text"
        msg.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name)
    return msg


def send_report(
    email: EmailConfig,
    report_recipients: Sequence[str],
    subject: str,
    attachments: Sequence[Path],
    tls_context: ssl.SSLContext | None = None,
) -> EmailMessage:
    recipients = recipients_for(email, report_recipients)
    names = ", ".join(p.name for p in attachments)
    msg = build_message(subject, f"{subject}\n\nAttached: {names}.\n", email.sender, recipients, attachments)
    smtp_send(email, msg, tls_context)
    return msg
