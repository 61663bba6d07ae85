"""Retention: which snapshots to keep (the newest of each of the last N days, weeks and months), locally."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import datetime

from mov_host.backup.config import Config, Retention
from mov_host.backup.errors import log
from mov_host.backup.files import ID_FORMAT, snapshot_ids


def keep_set(ids: Sequence[str], retention: Retention) -> set[str]:
    """The newest snapshot of each of the last N days, ISO weeks and months that have one, and the `last` newest."""
    ordered = sorted(ids, reverse=True)
    keep: set[str] = set(ordered[: retention.last])
    for count, period in ((retention.daily, "%Y-%m-%d"), (retention.weekly, "%G-W%V"), (retention.monthly, "%Y-%m")):
        seen: set[str] = set()
        for snapshot_id in ordered:
            key = datetime.strptime(snapshot_id, ID_FORMAT).strftime(period)
            if key not in seen and len(seen) < count:
                seen.add(key)
                keep.add(snapshot_id)
    return keep


def prune_local(cfg: Config) -> list[str]:
    ids = snapshot_ids(cfg.backup_dir)
    keep = keep_set(ids, cfg.retention)
    return remove_local(cfg, [i for i in ids if i not in keep])


def remove_local(cfg: Config, dropped: list[str]) -> list[str]:
    for snapshot_id in dropped:
        shutil.rmtree(cfg.backup_dir / snapshot_id)
        log(f"retention: removed local snapshot {snapshot_id}")
    return dropped


def expired_once_taken(ids: Sequence[str], retention: Retention, new_id: str) -> list[str]:
    """The snapshots retention drops as soon as a snapshot new_id exists, which may go before it is taken; never
    the newest (the new snapshot's link base, and the last good one should this run fail)."""
    keep = keep_set([*ids, new_id], retention) | set(ids[-1:])
    return [i for i in ids if i not in keep]
