"""Taking a snapshot: every source into a partial directory, made durable, then renamed to its id."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from mov_host.backup.config import Config
from mov_host.backup.errors import log
from mov_host.backup.files import ID_FORMAT, fsync_dir, snapshot_ids, sync_filesystem, walk_tree
from mov_host.backup.influx import influxdb_backup, influxdb_included
from mov_host.backup.records import ManifestSource
from mov_host.backup.sqlite import sqlite_copy, sqlite_signature, sqlite_unchanged
from mov_host.backup.writer import SnapshotWriter


def remove_partials(cfg: Config) -> None:
    for stale in cfg.backup_dir.glob(".partial-*"):
        log(f"removing {stale.name}, left by an interrupted run")
        shutil.rmtree(stale)


# Called with the snapshot's id and directory once its files and manifest are written, before it is made durable
# and named (the off-site upload starts there).
Written = Callable[[str, Path], None]


def take_snapshot(cfg: Config, written: Written | None = None) -> tuple[str, int, int]:
    """Write a complete snapshot; returns its id, apparent size and the bytes not linked to the previous one."""
    cfg.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    remove_partials(cfg)
    snapshot_id = datetime.now(UTC).strftime(ID_FORMAT)
    if (cfg.backup_dir / snapshot_id).exists():
        time.sleep(1)
        snapshot_id = datetime.now(UTC).strftime(ID_FORMAT)
    existing = snapshot_ids(cfg.backup_dir)
    previous = cfg.backup_dir / existing[-1] if existing else None
    partial = cfg.backup_dir / f".partial-{snapshot_id}"
    partial.mkdir(mode=0o700)
    try:
        return _fill_snapshot(cfg, snapshot_id, partial, previous, written)
    except BaseException:
        # Never leave a partial snapshot behind: only a renamed directory with its manifest counts.
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _fill_snapshot(
    cfg: Config, snapshot_id: str, partial: Path, previous: Path | None, written: Written | None
) -> tuple[str, int, int]:
    # Durability: one syncfs of the backup filesystem (a journal commit and the new data's write-back) before the
    # snapshot gets its name, instead of an fsync per file and directory. Opened before the first file is
    # written, so that syncfs reports any write-back error of the snapshot's files.
    sync_fd = os.open(partial, os.O_RDONLY | os.O_DIRECTORY)
    try:
        writer = SnapshotWriter(partial, previous, cfg.zstd_level)
        sources, skipped = _add_sources(cfg, writer)
        writer.write_manifest(snapshot_id, sources, skipped)
        if written is not None:
            written(snapshot_id, partial)
        sync_filesystem(sync_fd, partial)
    finally:
        os.close(sync_fd)
    partial.rename(cfg.backup_dir / snapshot_id)
    fsync_dir(cfg.backup_dir)
    size = sum(e["size"] for e in writer.entries)
    log(f"snapshot {snapshot_id}: {len(writer.entries)} files, {size} bytes, {writer.new_bytes} bytes new on disk")
    return snapshot_id, size, writer.new_bytes


def _add_sources(cfg: Config, writer: SnapshotWriter) -> tuple[list[ManifestSource], list[str]]:
    sources: list[ManifestSource] = []
    skipped: list[str] = []
    # Copies (SQLite, influx backup) stay in scratch until the writer stored them; it works in the background.
    scratch = Path(tempfile.mkdtemp(prefix="mov-backup-", dir=writer.root))
    try:
        for source in cfg.sources:
            path = Path(source.path)
            entry: ManifestSource = {"name": source.name, "kind": source.kind, "path": source.path, "data": source.data}
            if not path.exists():
                log(f"{source.name}: {path} does not exist; skipped")
                skipped.append(source.name)
                continue
            if source.kind == "tree":
                for rel, file, st in walk_tree(path):
                    writer.add(source.name, rel, file, st)
            elif source.kind == "file":
                writer.add(source.name, path.name, path)
            elif source.kind == "sqlite":
                seen = sqlite_signature(path)
                prev = writer.previous_entry(source.name, path.name)
                if prev is not None and sqlite_unchanged(prev, seen) and writer.reuse(prev, seen):
                    log(f"{source.name}: unchanged since the previous snapshot (database and WAL files)")
                else:
                    copy = scratch / f"{source.name}.sqlite"
                    sqlite_copy(path, copy)
                    writer.add(source.name, path.name, copy, quick_check=False, extra=seen, owned=True)
            elif source.kind == "latest_dir":
                dirs = sorted(p for p in path.iterdir() if p.is_dir())
                if not dirs:
                    log(f"{source.name}: nothing in {path}; skipped")
                    skipped.append(source.name)
                    continue
                for rel, file, st in walk_tree(dirs[-1], f"{dirs[-1].name}/"):
                    writer.add(source.name, rel, file, st)
            sources.append(entry)
            log(f"{source.name}: {path}")
        compose_file = Path(cfg.stack_dir) / "compose.yaml"
        if cfg.influxdb_service in cfg.stack_services and not influxdb_included(cfg):
            log(f"influxdb: in the stack's services but {compose_file} does not exist (not deployed yet); skipped")
            skipped.append("influxdb")
        elif influxdb_included(cfg):
            staging = scratch / "influxdb"
            influxdb_backup(cfg, staging)
            for rel, file, st in walk_tree(staging):
                writer.add("influxdb", rel, file, st, quick_check=False, owned=True)
            sources.append({"name": "influxdb", "kind": "influxdb", "path": "", "data": True})
            log("influxdb: influx backup, staged in the backup directory")
        else:
            log(f"influxdb: not in the stack's services ({', '.join(cfg.stack_services) or 'none'}); skipped")
            skipped.append("influxdb")
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return sources, skipped
