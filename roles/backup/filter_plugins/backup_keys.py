"""Filters for the off-site copy's crypt key generations.

Each key pair (password, salt) writes to a path of its own: the first one (id "") to backup_remote_path, a rotated one
(scripts/platform_secrets.py --rotate backup_password) to <backup_remote_path>/keys-<id>, so no snapshot is ever
written with two keys under one path. A retired pair stays readable (its own crypt remote in rclone.conf, its own
mov-backup config) until the off-site retention has dropped every snapshot written with it: the longest span the
retention keeps (daily days, weekly weeks, monthly months of 31 days, the last N runs at one a day) after the day it
was retired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any


def backup_key_path(base: str, key_id: str) -> str:
    """The backend path the key `key_id` writes to."""
    return f"{base.rstrip('/')}/keys-{key_id}" if key_id else base


def backup_retention_days(retention: Mapping[str, Any]) -> int:
    """How many days of the new key's snapshots replace every slot of the off-site retention (mov-backup's
    retention.keep_set: the newest of each of the last N days, ISO weeks and months, and the `last` N, with at least
    one run a day)."""
    return max(
        int(retention.get("daily", 0)),
        7 * int(retention.get("weekly", 0)),
        31 * int(retention.get("monthly", 0)),
        int(retention.get("last", 0)),
    )


def _generation(key_id: str, password: str, salt: str, base: str, remote: str) -> dict[str, str]:
    return {
        "id": key_id,
        "remote": remote,
        "path": backup_key_path(base, key_id),
        "password": password,
        "salt": salt,
    }


def backup_key_generations(
    current: Mapping[str, str],
    retired: Sequence[Mapping[str, str]],
    base: str,
    retention: Mapping[str, Any],
    today: str,
    remote: str,
) -> dict[str, list[dict[str, str]]]:
    """{"readable": [...], "expired": [...]}: readable starts with the current generation (rclone remote
    `remote`), then each retired one still within its retention (remote <remote>-retired-<id, or first>; `config`,
    the name of its mov-backup config, retired-<id or first>.json; `readable_until`); expired lists the retired ones
    past it, which the deploy no longer configures (the operator deletes their path and keys).

    current: {id, password, salt}; retired: [{id, password, salt, retired: YYYY-MM-DD}]; today: YYYY-MM-DD.
    """
    readable = [_generation(str(current.get("id", "")), current["password"], current["salt"], base, remote)]
    expired: list[dict[str, str]] = []
    keep = timedelta(days=backup_retention_days(retention))
    for key in retired:
        key_id = str(key.get("id", ""))
        generation = _generation(key_id, key["password"], key["salt"], base, f"{remote}-retired-{key_id or 'first'}")
        generation["config"] = f"retired-{key_id or 'first'}.json"
        until = date.fromisoformat(str(key["retired"])) + keep
        generation["readable_until"] = until.isoformat()
        (readable if date.fromisoformat(today) <= until else expired).append(generation)
    return {"readable": readable, "expired": expired}


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"backup_key_generations": backup_key_generations, "backup_key_path": backup_key_path}
