"""The e2e job's mail relay (aiosmtpd on the runner) and the reading of what it received.

The platform in the box sends every e-mail through the tree's mov_smtp, which the job points here: STARTTLS is
required and then a login, as on a provider's submission port, with a certificate the job made for the runner's
address on the box's network (the job makes the box's services trust it: SSL_CERT_FILE in their containers). Each
message received is appended to a file as one JSON line (mail_record), which the checks read (messages).
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def mail_record(sender: str, recipients: Iterable[str], content: bytes, tls: bool, login: str | None) -> dict[str, Any]:
    """One received message as the checks read it: envelope, headers, the plain-text body, the attachments' names."""
    message = message_from_bytes(content, policy=policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain", "html"))
    return {
        "envelope_from": sender,
        "envelope_to": list(recipients),
        "from": str(message["From"] or ""),
        "to": str(message["To"] or ""),
        "subject": str(message["Subject"] or ""),
        "body": body.get_content() if body is not None else "",
        "attachments": [part.get_filename() or "" for part in message.iter_attachments()],
        "tls": tls,
        "login": login,
    }


def messages(lines: Iterable[str], subject_has: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The received messages whose subject holds every one of `subject_has` (lines that are not records skipped)."""
    wanted = list(subject_has)
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and all(part in str(record.get("subject", "")) for part in wanted):
            found.append(record)
    return found


class _Inbox:
    def __init__(self, out: Path, user: str, password: str) -> None:
        self._out, self._user, self._password = out, user, password
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook name
        login = session.auth_data.login.decode() if session.authenticated else None
        record = mail_record(envelope.mail_from, envelope.rcpt_tos, envelope.content, session.ssl is not None, login)
        with self._lock, self._out.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(f"mail: {record['envelope_from']} -> {record['envelope_to']}: {record['subject']}", flush=True)
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == (
            self._user,
            self._password,
        )
        # handled=False: aiosmtpd answers 535 itself on a refusal (with handled=True it would answer nothing).
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


def serve(port: int, out: Path, cert: Path, key: Path, user: str, password_file: Path) -> None:
    """Run the relay on every address until killed (the box's containers reach it over Docker's bridge)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    inbox = _Inbox(out, user, password_file.read_text().strip())
    controller = Controller(
        inbox,
        hostname="0.0.0.0",  # every address: the box's containers call it over Docker's bridge
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=inbox.authenticate,
        auth_require_tls=True,
    )
    controller.start()
    print(f"mail relay on :{port} (STARTTLS, login {user}), writing {out}", flush=True)
    threading.Event().wait()
