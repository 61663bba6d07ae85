"""`movctl bench`'s temporary devices: accounts added to the broker's password file for one run, then removed.

The broker's ACL already lets an account named "<client>/<device>" publish under <topic>/<client>/<device>/ and
read nothing (roles/mosquitto templates/acl.j2), so a bench device has exactly a real device's rights. Mosquitto
re-reads the file on SIGHUP. Afterwards the file is read again and only the bench's entries are taken out, so it is
as the deploy wrote it (the next deploy finds nothing changed, and a file a deploy rewrote meanwhile is kept);
entries of the bench's client left by a run that was killed are removed at the next run's start.

The hash is Mosquitto 2.0's "$7$" PBKDF2-SHA512 (what mosquitto_passwd writes; roles/mosquitto's filter plugin
writes the same on the controller). Written here because mosquitto_passwd takes a password only on its command
line or a terminal, and a command line is visible to every process on the host.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mov_host.movctl.config import Config, MovctlError
from mov_host.movctl.docker import compose

ITERATIONS = 101
# Seconds given to the broker to re-read its files after SIGHUP before the devices connect.
RELOAD_SETTLE_S = 1.0


@dataclass(frozen=True)
class Account:
    username: str
    password: str


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS, 64)
    return f"$7${ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def without_client(text: str, client: str) -> str:
    """The password file without any entry of `client`'s devices."""
    kept = [line for line in text.splitlines(keepends=True) if not line.startswith(f"{client}/")]
    return "".join(kept)


def with_accounts(text: str, accounts: list[Account]) -> str:
    base = text if not text or text.endswith("\n") else text + "\n"
    return base + "".join(f"{a.username}:{mosquitto_hash(a.password)}\n" for a in accounts)


def _write_like(path: Path, text: str) -> None:
    """Replace the file atomically, keeping its owner and mode (the broker's user reads it, nobody else)."""
    info = path.stat()
    partial = path.with_name(f".{path.name}.bench")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, info.st_mode & 0o777)
    try:
        os.write(fd, text.encode())
        os.fchown(fd, info.st_uid, info.st_gid)
        os.fchmod(fd, info.st_mode & 0o777)
    finally:
        os.close(fd)
    partial.replace(path)


def reload_broker(cfg: Config) -> None:
    compose(cfg, "kill", "-s", "SIGHUP", "mosquitto", what="reloading the broker (SIGHUP to mosquitto)")


@contextmanager
def temporary_accounts(cfg: Config, client: str, count: int, passwd_file: str) -> Iterator[list[Account]]:
    path = Path(passwd_file)
    try:
        original = path.read_text()
    except OSError as exc:
        raise MovctlError(f"cannot read the broker's password file {passwd_file}: {exc}") from exc
    clean = without_client(original, client)
    accounts = [Account(f"{client}/d{i:02d}", secrets.token_urlsafe(24)) for i in range(1, count + 1)]
    _write_like(path, with_accounts(clean, accounts))
    try:
        reload_broker(cfg)
        time.sleep(RELOAD_SETTLE_S)
        yield accounts
    finally:
        # Read again: only the bench's entries go, whatever else changed the file meanwhile.
        _write_like(path, without_client(path.read_text(), client))
        reload_broker(cfg)
