"""mosquitto_passwd: a Mosquitto 2.0 password file from username -> password, keeping hashes that still match;
mosquitto_replaced: the accounts a password rotation replaced, which the file keeps until their consumer switched.

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


def mosquitto_replaced(current: str, usernames: dict[str, str]) -> dict[str, list[str]]:
    """Per service account (its name -> its username now): the usernames it had before a rotation that the password
    file `current` still holds, "<name>" or "<name>@<rotation id>" other than the one it has now."""
    existing = parse(current or "")
    return {
        name: sorted(u for u in existing if u != username and (u == name or u.startswith(name + "@")))
        for name, username in usernames.items()
    }


def mosquitto_passwd(
    passwords: dict[str, str], current: str = "", usernames: dict[str, str] | None = None, keep: list[str] | None = None
) -> str:
    """The file for `passwords` (account name -> password), each account under its username in `usernames` (default:
    its name), plus the lines of `current` for the usernames in `keep`, as they are (their password is not known)."""
    existing = parse(current or "")
    renamed = {(usernames or {}).get(name, name): password for name, password in passwords.items()}
    entries = {user: existing[user] for user in keep or [] if user in existing and user not in renamed}
    for user, password in renamed.items():
        if ":" in user or "\n" in user:
            raise ValueError(f"MQTT username {user!r} may not contain ':' or a newline")
        encoded = existing.get(user, "")
        entries[user] = (
            encoded if verify(str(password), encoded) else hash_password(str(password), os.urandom(SALT_BYTES))
        )
    return "".join(f"{user}:{entries[user]}\n" for user in sorted(entries))


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"mosquitto_passwd": mosquitto_passwd, "mosquitto_replaced": mosquitto_replaced}
