"""A local SMTP relay for tests (stdlib only): EHLO, STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA, QUIT.

With ``cert``/``key`` it offers STARTTLS and only accepts AUTH and mail after it, as a submission relay does.
Every accepted message is kept with its envelope, whether TLS was on and who logged in.
"""

from __future__ import annotations

import base64
import email
import email.policy
import io
import socket
import socketserver
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: bool
    user: str | None


@dataclass
class _State:
    tls_context: ssl.SSLContext | None
    users: dict[str, str]
    received: list[Received] = field(default_factory=list)


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), returned as (cert, key)."""
    cert, key = directory / "relay.crt", directory / "relay.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def _reply(self, out: io.BufferedIOBase, text: str) -> None:
        out.write(text.encode() + b"\r\n")
        out.flush()

    def handle(self) -> None:
        state = self.server.state
        conn: socket.socket = self.request
        rfile: io.BufferedIOBase = self.rfile
        wfile: io.BufferedIOBase = self.wfile
        tls, user = False, None
        sender, recipients = "", list[str]()
        self._reply(wfile, "220 relay.test ESMTP")
        while True:
            raw = rfile.readline()
            if not raw:
                return
            line = raw.decode().rstrip("\r\n")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb in ("EHLO", "HELO"):
                offers = ["250-relay.test"]
                if state.tls_context is not None and not tls:
                    offers.append("250-STARTTLS")
                if tls or state.tls_context is None:
                    offers.append("250-AUTH PLAIN")
                offers.append("250 8BITMIME")
                self._reply(wfile, "\r\n".join(offers))
            elif verb == "STARTTLS" and state.tls_context is not None and not tls:
                self._reply(wfile, "220 go ahead")
                conn = state.tls_context.wrap_socket(conn, server_side=True)
                rfile, wfile = conn.makefile("rb"), conn.makefile("wb")
                tls = True
            elif verb == "AUTH":
                mechanism, _, initial = arg.partition(" ")
                parts = base64.b64decode(initial).split(b"\0") if mechanism.upper() == "PLAIN" else []
                if len(parts) == 3 and state.users.get(parts[1].decode()) == parts[2].decode():
                    user = parts[1].decode()
                    self._reply(wfile, "235 ok")
                else:
                    self._reply(wfile, "535 bad credentials")
            elif verb == "MAIL":
                if state.tls_context is not None and not tls:
                    self._reply(wfile, "530 STARTTLS first")
                    continue
                sender, recipients = arg.split(":", 1)[1].strip().split()[0].strip("<>"), []
                self._reply(wfile, "250 ok")
            elif verb == "RCPT":
                recipients.append(arg.split(":", 1)[1].strip().strip("<>"))
                self._reply(wfile, "250 ok")
            elif verb == "DATA":
                self._reply(wfile, "354 end with .")
                chunks = []
                while (data := rfile.readline()) not in (b".\r\n", b""):
                    chunks.append(data[1:] if data.startswith(b"..") else data)
                parsed = email.message_from_bytes(b"".join(chunks), policy=email.policy.default)
                assert isinstance(parsed, EmailMessage)
                state.received.append(Received(sender, recipients, parsed, tls, user))
                self._reply(wfile, "250 queued")
            elif verb == "RSET":
                sender, recipients = "", []
                self._reply(wfile, "250 ok")
            elif verb == "NOOP":
                self._reply(wfile, "250 ok")
            elif verb == "QUIT":
                self._reply(wfile, "221 bye")
                return
            else:
                self._reply(wfile, "502 not implemented")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: _State


class SmtpRelay:
    def __init__(self, cert: Path | None = None, key: Path | None = None, users: dict[str, str] | None = None) -> None:
        context = None
        if cert is not None and key is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = _State(context, users or {})
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def received(self) -> list[Received]:
        return self._server.state.received

    def __enter__(self) -> SmtpRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
