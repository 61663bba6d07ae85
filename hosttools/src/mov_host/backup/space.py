"""The space check before a run: an upper bound of what it writes, against what the backup filesystem has free."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mov_host.backup.config import Config, Source
from mov_host.backup.errors import BackupError, log
from mov_host.backup.files import ID_FORMAT, MANIFEST, read_manifest, snapshot_ids, walk_tree
from mov_host.backup.influx import influxdb_included, influxdb_live_bytes
from mov_host.backup.records import ManifestFile, SpaceReport
from mov_host.backup.retention import expired_once_taken, remove_local
from mov_host.backup.sqlite import sqlite_signature, sqlite_unchanged

# What a new file or directory may take beyond its bytes: one filesystem block.
BLOCK = 4096
# Manifest bytes per file when there is no previous manifest to measure.
MANIFEST_BYTES_PER_FILE = 512


@dataclass(frozen=True)
class SpaceNeed:
    """What a run may write on the backup filesystem (an upper bound from sizes, nothing read)."""

    bytes: int
    inodes: int


def estimate_need(cfg: Config, previous: Path | None) -> SpaceNeed:
    """Each source file the previous snapshot does not hold unchanged (its quick check: size and mtime) at its
    full size (zstd only ever shrinks it); SQLite databases twice (the scratch copy and the stored file) unless
    untouched; InfluxDB's backup at its size in the previous snapshot (all of it: `influx backup` is a full backup
    with new file names, staged before it is stored); a block per new file and directory; the manifest."""
    entries: dict[tuple[str, str], ManifestFile] = {}
    manifest_bytes = 0
    if previous is not None:
        entries = {(e["source"], e["rel"]): e for e in read_manifest(previous).get("files", [])}
        manifest_bytes = (previous / MANIFEST).stat().st_size
    new_bytes, new_files, dirs = 0, 0, set()
    for source in cfg.sources:
        for rel, path, st in source_files(source):
            dirs.add(f"{source.name}/{rel.rpartition('/')[0]}")
            prev = entries.get((source.name, rel))
            if source.kind == "sqlite":
                if prev is None or not sqlite_unchanged(prev, sqlite_signature(path)):
                    wal = Path(f"{path}-wal")
                    new_bytes += 2 * (st.st_size + (wal.stat().st_size if wal.exists() else 0))
                    new_files += 2
            elif prev is None or (prev["size"], prev["mtime_ns"]) != (st.st_size, st.st_mtime_ns):
                new_bytes += st.st_size
                new_files += 1
    if influxdb_included(cfg):
        influx = [e for (name, _), e in entries.items() if name == "influxdb"]
        new_bytes += sum(e["size"] for e in influx) if influx else influxdb_live_bytes(cfg)
        new_files += len(influx) or 16
        dirs.add("influxdb/")
    manifest_bytes = manifest_bytes or MANIFEST_BYTES_PER_FILE * max(len(entries), new_files)
    inodes = new_files + len(dirs) + 4  # the snapshot's, data/ and scratch directories, the manifest
    return SpaceNeed(bytes=new_bytes + manifest_bytes + BLOCK * inodes, inodes=inodes)


def source_files(source: Source) -> Iterator[tuple[str, Path, os.stat_result]]:
    """The files a source contributes, as the snapshot names them (a missing path: none)."""
    path = Path(source.path)
    if not path.exists():
        return
    if source.kind == "tree":
        yield from walk_tree(path)
    elif source.kind in ("file", "sqlite"):
        yield path.name, path, path.stat()
    elif source.kind == "latest_dir":
        dirs = sorted(p for p in path.iterdir() if p.is_dir())
        if dirs:
            yield from walk_tree(dirs[-1], f"{dirs[-1].name}/")


def free_space(path: Path) -> tuple[int, int | None]:
    """Bytes and inodes free for root's use on path's filesystem (inodes None where it does not count them)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, (st.f_favail if st.f_files else None)


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def shortfall(cfg: Config, need: SpaceNeed) -> str:
    """Why the run does not fit on the backup filesystem now, or "" when it does."""
    free, inodes = free_space(cfg.backup_dir)
    if free < need.bytes + cfg.min_free_bytes:
        return (
            f"this run needs up to {_mib(need.bytes)} and {_mib(cfg.min_free_bytes)} must stay free "
            f"(min_free_bytes), {_mib(free)} free"
        )
    if inodes is not None and inodes < need.inodes:
        return f"this run needs up to {need.inodes} inodes, {inodes} free"
    return ""


def make_room(cfg: Config) -> SpaceReport:
    """Check the run fits before it starts, removing first the snapshots retention drops once it exists; raises,
    naming the sizes, when it still does not fit."""
    ids = snapshot_ids(cfg.backup_dir)
    need = estimate_need(cfg, cfg.backup_dir / ids[-1] if ids else None)
    short = shortfall(cfg, need)
    pruned: list[str] = []
    if short:
        expired = expired_once_taken(ids, cfg.retention, datetime.now(UTC).strftime(ID_FORMAT))
        if expired:
            log(f"space: {short}; removing the {len(expired)} snapshot(s) retention drops once this run's exists")
            pruned = remove_local(cfg, expired)
            short = shortfall(cfg, need)
    if short:
        gone = f" after removing {len(pruned)} expired snapshot(s)" if pruned else " (no snapshot has expired)"
        raise BackupError(
            f"not enough space on {cfg.backup_dir}: {short}{gone}. Nothing was written; free space "
            "there (or give backup_dir a bigger disk) and the next run goes ahead."
        )
    free, _ = free_space(cfg.backup_dir)
    log(f"space: this run needs up to {_mib(need.bytes)}, {_mib(free)} free")
    return {
        "needed_bytes": need.bytes,
        "free_bytes": free,
        "min_free_bytes": cfg.min_free_bytes,
        "pruned_before": pruned,
    }
