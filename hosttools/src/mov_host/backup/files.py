"""Files on the backup disk: snapshot ids and manifests, checksums, walks of the sources, syncs to disk."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import cast

from mov_host.backup.errors import BackupError
from mov_host.backup.records import Manifest

ID_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST = "manifest.json"
CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def snapshot_ids(backup_dir: Path) -> list[str]:
    """Complete local snapshots (a manifest present), oldest first."""
    if not backup_dir.is_dir():
        return []
    return sorted(p.name for p in backup_dir.iterdir() if is_id(p.name) and (p / MANIFEST).is_file())


def is_id(name: str) -> bool:
    try:
        datetime.strptime(name, ID_FORMAT)
    except ValueError:
        return False
    return True


def read_manifest(snapshot: Path) -> Manifest:
    return read_manifest_file(snapshot / MANIFEST, snapshot.name)


def read_manifest_file(path: Path, snapshot_id: str) -> Manifest:
    try:
        # Trusted as written by write_manifest (a missing key fails later as a KeyError, as before).
        return cast(Manifest, json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise BackupError(f"snapshot {snapshot_id}: unreadable manifest: {exc}") from exc


def walk_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path


def walk_tree(root: Path, prefix: str = "") -> Iterator[tuple[str, Path, os.stat_result]]:
    """(prefix + path relative to root, path, lstat) of each regular file under root, in name order."""

    def walk(directory: Path, prefix: str) -> Iterator[tuple[str, Path, os.stat_result]]:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda e: e.name)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from walk(Path(entry.path), f"{prefix}{entry.name}/")
            elif entry.is_file(follow_symlinks=False):
                yield f"{prefix}{entry.name}", Path(entry.path), entry.stat(follow_symlinks=False)

    yield from walk(root, prefix)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_LIBC = ctypes.CDLL(None, use_errno=True)


def sync_filesystem(fd: int, path: Path) -> None:
    """Everything written so far to the filesystem of fd (a directory, path) on disk: syncfs(2), or os.sync()
    where libc lacks it.

    syncfs reports a write-back error of any file of that filesystem that happened since fd was opened, so fd must
    be opened before the first write it answers for.
    """
    syncfs = getattr(_LIBC, "syncfs", None)
    if syncfs is None:
        os.sync()
        return
    if syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise BackupError(f"syncfs {path}: {os.strerror(err)}")
