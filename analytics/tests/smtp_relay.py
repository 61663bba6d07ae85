"""A real SMTP server for the tests (aiosmtpd on loopback), and a listener that accepts and never answers.

Given a certificate, ``Relay`` takes mail the way a submission relay does: STARTTLS first, then AUTH (PLAIN or
LOGIN) and mail only over TLS. With ``answer`` it refuses or defers every message at DATA (e.g. ``554 5.7.1 no``).
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from mosquitto_runner import free_port


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: bool
    login: str | None


@dataclass
class _Handler:
    users: dict[str, str]
    answer: str | None
    received: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        if self.answer is not None:
            return self.answer
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if session.authenticated else None
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), message, session.ssl is not None, login)
        )
        self.arrived.set()
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self.users.get(data.login.decode()) == data.password.decode()
        # handled=False: aiosmtpd answers 535 itself (with its default handled=True it answers nothing).
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl, an EC key: quick to make), returned as (cert, key)."""
    cert, key = directory / "relay.crt", directory / "relay.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            # Its own trust anchor: key usages as OpenSSL's strict checks want them (Python 3.13 turns those on).
            *("-addext", "keyUsage=critical,digitalSignature,keyCertSign", "-addext", "extendedKeyUsage=serverAuth"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class Relay:
    """aiosmtpd on 127.0.0.1; with cert and key, STARTTLS and (with users) AUTH are required, as on port 587."""

    def __init__(
        self,
        cert: Path | None = None,
        key: Path | None = None,
        users: dict[str, str] | None = None,
        answer: str | None = None,
    ) -> None:
        self._handler = _Handler(users or {}, answer)
        self.port = free_port()
        options: dict[str, Any] = {}
        if cert is not None and key is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert), str(key))
            options = {"tls_context": context, "require_starttls": True}
            if users:
                options |= {"authenticator": self._handler.authenticate, "auth_require_tls": True}
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=self.port, **options)

    @property
    def received(self) -> list[Received]:
        return self._handler.received

    @property
    def answer(self) -> str | None:
        return self._handler.answer

    @answer.setter
    def answer(self, value: str | None) -> None:
        """From now on refuse (or defer) with this reply, or (None) take the mail."""
        self._handler.answer = value

    def wait(self, count: int, timeout_s: float) -> list[Received]:
        """The messages received, once there are ``count`` of them or the time is up."""
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count and time.monotonic() < deadline:
            self._handler.arrived.wait(0.05)
            self._handler.arrived.clear()
        return list(self.received)

    def __enter__(self) -> Relay:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


@contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never says a word: a relay that hangs. Yields the port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)  # the kernel completes the handshakes; nobody reads, nobody writes
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()
