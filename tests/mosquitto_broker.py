"""A real mosquitto (the one on PATH, or $MOSQUITTO) on a free 127.0.0.1 port, running a rendered config.

Only what ties the config to a host is changed: one plain listener on loopback instead of the three, the password
file and ACL from the render directory, persistence_location in the test's directory, and the user to run as. Every
other global line (persistence, queues, in-flight, $SYS) is the rendered one, verbatim.
"""

from __future__ import annotations

import os
import pwd
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shlex.split(os.environ.get("MOSQUITTO", "mosquitto"))
CONF = "opt/mov/mosquitto/config"


def _settings(conf: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in conf.splitlines() if line and not line.startswith("#") and " " in line)


class Broker:
    """The rendered config on one loopback listener; start, SIGKILL and start again on the same database."""

    def __init__(self, host_dir: Path, tmp: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        config_dir = host_dir / CONF
        text = (config_dir / "mosquitto.conf").read_text()
        self.settings = _settings(text)
        lines = text.split("\n# Plain MQTT", 1)[0].splitlines()  # every global line; the listeners follow
        paths = {
            "password_file": config_dir / "passwd",
            "acl_file": config_dir / "acl",
            "persistence_location": f"{tmp}/",
        }
        lines = [
            f"{line.split(' ', 1)[0]} {paths[line.split(' ', 1)[0]]}" if line.split(" ", 1)[0] in paths else line
            for line in lines
        ]
        # Started as root, mosquitto switches to the user "mosquitto", which could not read the test's files.
        lines += [f"user {pwd.getpwuid(os.getuid()).pw_name}", f"listener {self.port} 127.0.0.1", "protocol mqtt"]
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.log = tmp / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([*MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()[-2000:]
                time.sleep(0.05)
        raise AssertionError(f"mosquitto did not listen within 10 s:\n{self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def reload(self) -> None:
        """SIGHUP: the broker reads its password file and ACL again (what the deploy's reload command sends)."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGHUP)
