"""Restore: a snapshot checked against its manifest, then every part put back in place (InfluxDB through
`influx restore`), refusing to replace data that is not empty unless forced."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import zstandard

from mov_host.backup.config import Config
from mov_host.backup.errors import BackupError, log
from mov_host.backup.files import CHUNK, read_manifest, sha256_file, snapshot_ids, walk_files
from mov_host.backup.influx import INFLUX_STAGE, influx_oneoff, influxdb_has_data
from mov_host.backup.process import service_owner
from mov_host.backup.records import Manifest, ManifestFile
from mov_host.backup.remote import remote_ids


def choose_snapshot(cfg: Config, origin: str, wanted: str) -> str:
    """The id of a complete snapshot (`latest`: the newest) here or off-site, or a clear error."""
    if origin == "local":
        ids = snapshot_ids(cfg.backup_dir)
        where = f"local snapshot {{}} in {cfg.backup_dir}"
    else:
        if not cfg.remote:
            raise BackupError("no off-site remote configured")
        ids = remote_ids(cfg)
        where = "off-site snapshot {}"
    chosen = ids[-1] if wanted == "latest" and ids else wanted
    if chosen not in ids:
        raise BackupError(f"no complete {where.format(repr(chosen))} (have: {', '.join(ids) or 'none'})")
    return chosen


def check_snapshot(snapshot: Path) -> Manifest:
    """The manifest, after every stored file's sha256 matched it; raises naming each file that does not."""
    manifest = read_manifest(snapshot)
    bad = []
    for entry in manifest["files"]:
        stored = snapshot / entry["stored"]
        if not stored.is_file():
            bad.append(f"{entry['stored']} (missing)")
        elif sha256_file(stored) != entry["stored_sha256"]:
            bad.append(f"{entry['stored']} (sha256 differs from the manifest)")
    if bad:
        raise BackupError(f"snapshot {snapshot.name} is damaged: " + "; ".join(bad))
    return manifest


def non_empty_targets(cfg: Config, manifest: Manifest) -> list[str]:
    found = []
    for source in manifest["sources"]:
        if not source.get("data"):
            continue
        if source["kind"] == "influxdb":
            if cfg.influxdb_service in cfg.stack_services and influxdb_has_data(cfg):
                found.append("influxdb (the running InfluxDB holds buckets)")
            continue
        path = Path(source["path"])
        if source["kind"] in ("tree", "latest_dir"):
            if path.is_dir() and any(True for _ in walk_files(path)):
                found.append(str(path))
        elif path.is_file() and path.stat().st_size > 0:
            found.append(str(path))
    return found


def refuse_non_empty(cfg: Config, manifest: Manifest, force: bool) -> None:
    occupied = non_empty_targets(cfg, manifest)
    if occupied and not force:
        raise BackupError(
            "refusing to overwrite data that is not empty: "
            + ", ".join(occupied)
            + ". Run again with restore_force=true (mov-backup restore --force) to replace it."
        )
    if occupied:
        log("restore_force: replacing " + ", ".join(occupied))


def write_restored(entry: ManifestFile, stored: Path, target: Path) -> None:
    """The file back in place (decompressed, hashed and written in one pass), or nothing if its sha256 differs."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.mov-restore")
    digest = hashlib.sha256()
    try:
        with stored.open("rb") as raw, tmp.open("wb") as out:
            src: Any = raw
            if entry["zstd"]:
                src = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except zstandard.ZstdError as exc:
        tmp.unlink(missing_ok=True)
        raise BackupError(f"zstd -d {stored}: {exc}") from exc
    if digest.hexdigest() != entry["sha256"]:
        tmp.unlink()
        raise BackupError(f"{entry['stored']}: restored content differs from the manifest's sha256")
    os.chown(tmp, entry["uid"], entry["gid"])
    tmp.chmod(entry["mode"])
    os.utime(tmp, ns=(entry["mtime_ns"], entry["mtime_ns"]))
    tmp.replace(target)


def relocate(manifest: Manifest, root: Path) -> Manifest:
    """The manifest with every file part's target moved under root (the restore drill's scratch copy)."""
    return manifest | {
        "sources": [
            s if s["kind"] == "influxdb" else s | {"path": str(root / s["path"].lstrip("/"))}
            for s in manifest["sources"]
        ]
    }


def restore_snapshot(cfg: Config, snapshot: Path, force: bool, dry_run: bool, root: Path | None = None) -> None:
    """Every part of the snapshot back in place (under root instead of / when given)."""
    manifest = check_snapshot(snapshot)
    log(f"snapshot {manifest['id']}: {len(manifest['files'])} files, checksums match")
    if root is not None:
        manifest = relocate(manifest, root)
    refuse_non_empty(cfg, manifest, force)
    if dry_run:
        log("dry run: nothing written")
        return
    sources = {s["name"]: s for s in manifest["sources"]}
    influx_files = []
    for source in sources.values():
        if source.get("data") and source["kind"] in ("tree", "latest_dir") and Path(source["path"]).is_dir():
            for old in walk_files(Path(source["path"])):
                old.unlink()
    for entry in manifest["files"]:
        source = sources[entry["source"]]
        stored = snapshot / entry["stored"]
        if source["kind"] == "influxdb":
            influx_files.append(entry)
            continue
        if source["kind"] in ("tree", "latest_dir"):
            target = Path(source["path"]) / entry["rel"]
        else:
            target = Path(source["path"])
        write_restored(entry, stored, target)
        if source["kind"] == "sqlite":
            for suffix in ("-wal", "-shm", "-journal"):
                Path(source["path"] + suffix).unlink(missing_ok=True)
    for name, source in sources.items():
        if source["kind"] != "influxdb":
            log(f"{name}: restored to {source['path']}")
    if influx_files:
        if cfg.influxdb_service not in cfg.stack_services:
            log("influxdb: in the snapshot but not in the stack's services; not restored")
        else:
            restore_influxdb(cfg, snapshot, influx_files)


def restore_influxdb(cfg: Config, snapshot: Path, entries: list[ManifestFile]) -> None:
    """`influx restore --full` from a directory of the backup filesystem, the way influxdb_backup writes one: a
    one-off container of the service (its image, env file and user) gets the staged files bind-mounted, owned by
    that user, and talks to the running InfluxDB over the network. Not `docker compose cp` into the container:
    that makes root-owned files the service's user can neither read (a 0700 staging) nor remove, and it would
    stage on the disk the live services write to."""
    with tempfile.TemporaryDirectory(prefix="mov-restore-", dir=cfg.backup_dir) as scratch:
        staging = Path(scratch) / "influxdb"
        for entry in entries:
            write_restored(entry, snapshot / entry["stored"], staging / entry["rel"])
        service = cfg.influxdb_service
        owner = service_owner(cfg, service)
        if owner is not None:
            for path in [staging, *staging.rglob("*")]:
                os.chown(path, *owner)
        command = f"influx restore --full --host http://{service}:8086 {INFLUX_STAGE}"
        influx_oneoff(cfg, staging, command, "influx restore", read_only=True)
    log("influxdb: restored (influx restore --full)")
