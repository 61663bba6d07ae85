"""SQLite sources: whether a live database changed since the previous snapshot, a consistent copy of it, and the
summary the restore drill compares."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from mov_host.backup.errors import BackupError
from mov_host.backup.records import ManifestFile, SqliteSignature

# A source file's ctime must be this much older than the check that saw it before the check can vouch that
# the file did not change since (filesystem timestamps are coarse; git's "racily clean" rule).
RACY_NS = 2_000_000_000


def sqlite_signature(path: Path) -> SqliteSignature:
    """What says an SQLite database did not change: identity, size and times of its file and its WAL."""
    files: list[list[int] | None] = []
    for member in (path, Path(f"{path}-wal")):
        try:
            st = member.stat()
        except FileNotFoundError:
            files.append(None)
            continue
        files.append([st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
    return {"source_files": files, "source_seen_ns": time.time_ns()}


def sqlite_unchanged(prev: ManifestFile, seen: SqliteSignature) -> bool:
    """Whether the database is the one the previous snapshot copied: same files, none touched since.

    Every write changes a file's ctime, which nothing can set back; the ctimes must also be clearly older than
    the moment the previous snapshot looked (RACY_NS), or a write in the same timestamp tick could hide.
    """
    before = prev.get("source_files")
    if before is None or before != seen["source_files"]:
        return False
    looked = int(prev.get("source_seen_ns", 0))
    return all(f[4] < looked - RACY_NS for f in before if f is not None)


def sqlite_copy(src: Path, dst: Path) -> None:
    """A consistent copy of a live SQLite database (online backup API: readers and writers keep going)."""
    sidecars = [Path(f"{src}{suffix}") for suffix in ("-wal", "-shm")]
    existed = [p.exists() for p in sidecars]
    try:
        _sqlite_backup(src, dst)
    finally:
        # Opening a WAL database leaves -wal/-shm behind; ones made here must belong to the database's owner,
        # or the service (not root) could no longer write its database.
        owner = src.stat() if src.exists() else None
        for path, was_there in zip(sidecars, existed, strict=True):
            if owner is not None and not was_there and path.exists():
                os.chown(path, owner.st_uid, owner.st_gid)


def _sqlite_backup(src: Path, dst: Path) -> None:
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(dst)
        try:
            # A scratch copy: no journal and no fsync of its own (half the copy's time); the snapshot is made
            # durable as a whole before it gets its name, and a failed copy is thrown away.
            target.execute("PRAGMA journal_mode=OFF")
            target.execute("PRAGMA synchronous=OFF")
            source.backup(target)
        finally:
            target.close()
    except sqlite3.Error as exc:
        raise BackupError(f"sqlite backup of {src}: {exc}") from exc
    finally:
        source.close()


def sqlite_summary(path: Path) -> dict[str, Any]:
    """integrity_check, and the dashboard set (uid, or title where there is no uid) or every table's row count."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        tables = sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        if "dashboard" in tables:
            columns = {r[1] for r in db.execute("PRAGMA table_info(dashboard)")}
            key = "uid" if "uid" in columns else "title"
            return {
                "integrity": integrity,
                "dashboards": sorted(str(r[0]) for r in db.execute(f"SELECT {key} FROM dashboard")),
            }  # key: one of two literal names
        return {
            "integrity": integrity,
            "rows": {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables},
        }
    finally:
        db.close()
