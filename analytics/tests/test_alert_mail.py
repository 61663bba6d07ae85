"""The worker's e-mail alerts arrive at a real SMTP server (aiosmtpd) over STARTTLS with a login, the way a
submission relay takes them: the worker as a process, a real Mosquitto, one critical reading."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import Publisher, WorkerProcess, reading
from influx_write_double import InfluxWriteDouble
from mosquitto_runner import Mosquitto, free_port
from smtp_double import make_certificate

RELAY_USER, RELAY_PASSWORD = "mov", "test-only-relay-pw"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage, bool]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message, session.ssl is not None))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            RELAY_USER.encode(),
            RELAY_PASSWORD.encode(),
        )
        if ok:
            self.logins.append(RELAY_USER)
        return AuthResult(success=ok)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[Inbox, int, Path]]:
    cert, key = make_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=inbox.authenticate,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield inbox, port, cert
    finally:
        controller.stop()


def test_a_critical_reading_is_mailed_through_the_relay(
    tmp_path: Path,
    broker: Mosquitto,
    double: InfluxWriteDouble,
    relay: tuple[Inbox, int, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inbox, port, cert = relay
    (tmp_path / "smtp_password").write_text(RELAY_PASSWORD + "\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the worker trusts the relay's certificate as a system CA
    email = {
        "host": "127.0.0.1",
        "port": port,
        "starttls": True,
        "username": RELAY_USER,
        "password_file": str(tmp_path / "smtp_password"),
        "sender": "mov@example.com",
        "recipients": ["ops@example.com", "oncall@example.com"],
    }
    w = WorkerProcess(tmp_path, broker, double, alerts={"email": email})
    w.start()
    publisher = Publisher(broker.port)
    try:
        publisher.publish(reading(36.5, time.time() - 5))
        deadline = time.monotonic() + 15
        while not inbox.messages and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        publisher.close()
        w.stop()
    assert len(inbox.messages) == 1, w.log.read_text()[-2000:]
    sender, recipients, message, tls = inbox.messages[0]
    assert (sender, recipients, tls, inbox.logins) == (
        "mov@example.com",
        ["ops@example.com", "oncall@example.com"],
        True,
        [RELAY_USER],
    )
    assert message["Subject"] == "[MOV critico] industria_abc/sensor_001"
    body = message.get_content()
    assert "36.5" in body and '"kind": "critico"' in body
