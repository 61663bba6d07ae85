"""mosquitto_passwd: a Mosquitto 2.0 password file from username -> password, keeping hashes that still match.

Mosquitto 2.0 reads "<username>:$7$<iterations>$<base64 salt>$<base64 hash>" where the hash is
PBKDF2-HMAC-SHA512 of the password with that salt (what `mosquitto_passwd` writes: 101 iterations, a 12-byte
salt, a 64-byte hash). A new salt is drawn only for an account that is new or whose password changed, so
re-running Ansible leaves the file byte for byte the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

ITERATIONS = 101
SALT_BYTES = 12
HASH_BYTES = 64


def hash_password(password: str, salt: bytes, iterations: int = ITERATIONS) -> str:
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify(password: str, encoded: str) -> bool:
    """True when `encoded` (a $7$ hash) is the hash of `password`."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(digest, expected)


def parse(text: str) -> dict[str, str]:
    entries = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            user, _, encoded = line.partition(":")
            entries[user] = encoded.strip()
    return entries


def mosquitto_passwd(passwords: dict[str, str], current: str = "") -> str:
    existing = parse(current or "")
    lines = []
    for user in sorted(passwords):
        if ":" in user or "\n" in user:
            raise ValueError(f"MQTT username {user!r} may not contain ':' or a newline")
        encoded = existing.get(user, "")
        if not verify(str(passwords[user]), encoded):
            encoded = hash_password(str(passwords[user]), os.urandom(SALT_BYTES))
        lines.append(f"{user}:{encoded}")
    return "\n".join(lines) + "\n"


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"mosquitto_passwd": mosquitto_passwd}
