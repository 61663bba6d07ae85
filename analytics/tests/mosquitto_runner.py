"""Starts a real Mosquitto on a free loopback port, with a generated password file and ACL (tests and bench)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s}s")


class Mosquitto:
    """``users`` maps user -> password; ``acl`` is the ACL file text. Without users the broker is anonymous.
    ``tls`` (certificate file, key file): the listener speaks TLS only."""

    def __init__(
        self,
        workdir: Path,
        users: dict[str, str] | None = None,
        acl: str | None = None,
        port: int | None = None,
        persistence: bool = True,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            *([f"certfile {tls[0]}", f"keyfile {tls[1]}"] if tls else []),
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {workdir}/",
            # The default of 1000 queued messages per client would drop QoS 1 readings of a busy or absent
            # worker; the platform's broker config needs the same setting.
            "max_queued_messages 0",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise mosquitto switches to a user that cannot read our files
        if users:
            passwd = workdir / "passwd"
            passwd.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
            subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if acl:
            acl_file = workdir / "acl"
            acl_file.write_text(acl)
            lines.append(f"acl_file {acl_file}")
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.log = workdir / "mosquitto.log"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
