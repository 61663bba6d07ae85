#!/usr/bin/env python3
"""Back up and restore the MOV platform: dated, incremental, checksummed snapshots, encrypted off-site copies.

    mov-backup run                      # a snapshot now, retention, off-site copy (cron runs this daily)
    mov-backup list [--remote]          # the complete snapshots, oldest first
    mov-backup verify [--remote] [ID]   # checksums (local) or rclone cryptcheck (off-site) of a snapshot
    mov-backup restore [--snapshot ID] [--from local|remote] [--force] [--dry-run]
    mov-backup prune [--remote]         # retention only

A snapshot is <backup_dir>/<YYYYmmddTHHMMSSZ>/ with data/<part>/... and manifest.json (sha256 of every file).
It is built as <backup_dir>/.partial-<id> and renamed only when complete, so a failed run never leaves a
snapshot that looks good. Unchanged files are hard links to the previous snapshot (rsync --link-dest style);
files that shrink under zstd are stored compressed (<name>.zst). Off-site, through an rclone crypt remote, each
stored file is one object named by its sha256 (uploaded once, whatever the number of snapshots holding it) and
each snapshot one manifest, uploaded after its new objects passed `rclone cryptcheck`; retention drops expired
manifests, then the objects no manifest refers to.

Standard library only; needs rclone (off-site) and zstd on the host.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "/etc/mov-backup/config.json"
LOCK_FILE = "/run/lock/mov-backup.lock"
ID_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST = "manifest.json"
CHUNK = 1 << 20
# Already compressed: zstd would only spend time on these.
INCOMPRESSIBLE = (".gz", ".zst", ".zip", ".xz", ".bz2", ".png", ".jpg", ".jpeg", ".tgz")
COMPRESS_MIN_BYTES = 1024
# Kept compressed only when zstd saves at least this share of the size.
COMPRESS_MIN_GAIN = 0.10


class BackupError(Exception):
    """A failure the operator must see; the message names what failed."""


def log(message: str) -> None:
    print(f"{datetime.now(UTC).isoformat(timespec='seconds')} {message}", flush=True)


# --- configuration ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    name: str
    kind: str  # tree | file | sqlite | latest_dir
    path: str
    data: bool


@dataclass(frozen=True)
class Retention:
    daily: int
    weekly: int
    monthly: int
    last: int = 1


@dataclass(frozen=True)
class Config:
    backup_dir: Path
    status_file: Path
    sources: tuple[Source, ...]
    retention: Retention
    zstd_level: int
    stack_dir: str
    stack_project: str
    stack_services: tuple[str, ...]
    influxdb_service: str
    influxdb_bucket: str
    remote: str  # rclone "name:path" of the crypt remote; empty: no off-site copy
    remote_retention: Retention
    rclone_config: str
    webhook_url: str
    env: str


SOURCE_KINDS = ("tree", "file", "sqlite", "latest_dir")


def _retention(raw: Any, where: str) -> Retention:
    if not isinstance(raw, dict):
        raise BackupError(f"{where}: expected {{daily, weekly, monthly}}")
    values = {k: raw.get(k) for k in ("daily", "weekly", "monthly")} | {"last": raw.get("last", 1)}
    for key, value in values.items():
        if not isinstance(value, int) or value < 0:
            raise BackupError(f"{where}.{key}: expected an integer >= 0, got {value!r}")
    return Retention(int(raw["daily"]), int(raw["weekly"]), int(raw["monthly"]), max(1, int(raw.get("last", 1))))


def load_config(path: str) -> Config:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"config {path}: {exc}") from exc
    sources = []
    for index, item in enumerate(raw.get("sources", [])):
        absolute = str(item.get("path", "")).startswith("/")
        if item.get("kind") not in SOURCE_KINDS or not item.get("name") or not absolute:
            raise BackupError(f"config sources[{index}]: needs name, an absolute path and kind in {SOURCE_KINDS}")
        sources.append(Source(str(item["name"]), str(item["kind"]), str(item["path"]), bool(item.get("data", False))))
    names = [s.name for s in sources]
    if len(set(names)) != len(names) or "influxdb" in names:
        raise BackupError("config sources: names must be unique (and 'influxdb' is the InfluxDB part's)")
    stack = raw.get("stack", {})
    remote = raw.get("remote", {})
    return Config(
        backup_dir=Path(raw["backup_dir"]),
        status_file=Path(raw["status_file"]),
        sources=tuple(sources),
        retention=_retention(raw.get("retention"), "retention"),
        zstd_level=int(raw.get("zstd_level", 3)),
        stack_dir=str(stack.get("dir", "")),
        stack_project=str(stack.get("project", "mov")),
        stack_services=tuple(stack.get("services", [])),
        influxdb_service=str(stack.get("influxdb_service", "influxdb")),
        influxdb_bucket=str(stack.get("influxdb_bucket", "mov_dados")),
        remote=str(remote.get("target", "")),
        remote_retention=_retention(remote.get("retention", raw.get("retention")), "remote.retention"),
        rclone_config=str(remote.get("rclone_config", "")),
        webhook_url=str(raw.get("webhook_url", "")),
        env=str(raw.get("env", "")),
    )


# --- small helpers ---------------------------------------------------------------------------------

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
    return sorted(p.name for p in backup_dir.iterdir() if _is_id(p.name) and (p / MANIFEST).is_file())


def _is_id(name: str) -> bool:
    try:
        datetime.strptime(name, ID_FORMAT)
    except ValueError:
        return False
    return True


def read_manifest(snapshot: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((snapshot / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"snapshot {snapshot.name}: unreadable manifest: {exc}") from exc
    return manifest


def run_command(argv: Sequence[str], what: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(list(argv), input=stdin, capture_output=True, check=False)
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace").strip()
        raise BackupError(f"{what} failed (exit {result.returncode}): {err}")
    return result.stdout.decode(errors="replace")


def walk_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path


# --- snapshot --------------------------------------------------------------------------------------

class SnapshotWriter:
    """Fills a partial snapshot directory; links files unchanged since the previous snapshot."""

    def __init__(self, root: Path, previous: Path | None, zstd_level: int) -> None:
        self.root = root
        self.previous = previous
        self.zstd_level = zstd_level
        self.entries: list[dict[str, Any]] = []
        self.new_bytes = 0
        self._previous_entries: dict[tuple[str, str], dict[str, Any]] = {}
        if previous is not None:
            for entry in read_manifest(previous).get("files", []):
                self._previous_entries[(entry["source"], entry["rel"])] = entry

    def add(self, source: str, rel: str, path: Path, quick_check: bool = True) -> None:
        """Store one file; quick_check: size and mtime equal to the previous snapshot's mean unchanged."""
        st = path.stat()
        prev = self._previous_entries.get((source, rel))
        meta = {"source": source, "rel": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "mode": st.st_mode & 0o7777, "uid": st.st_uid, "gid": st.st_gid}
        unchanged = (quick_check and prev is not None
            and (prev["size"], prev["mtime_ns"]) == (st.st_size, st.st_mtime_ns))
        if prev is not None and unchanged and self._link(prev):
            self.entries.append({**meta, **{k: prev[k] for k in ("stored", "zstd", "sha256", "stored_sha256")}})
            return
        content_sha = sha256_file(path)
        if prev is not None and prev["sha256"] == content_sha and self._link(prev):
            self.entries.append({**meta, **{k: prev[k] for k in ("stored", "zstd", "stored_sha256")},
                                 "sha256": content_sha})
            return
        stored, compressed = self._store(source, rel, path, st.st_size)
        stored_path = self.root / stored
        stored_sha = sha256_file(stored_path) if compressed else content_sha
        self.new_bytes += stored_path.stat().st_size
        self.entries.append({**meta, "stored": stored, "zstd": compressed, "sha256": content_sha,
                             "stored_sha256": stored_sha})

    def _link(self, prev: dict[str, Any]) -> bool:
        assert self.previous is not None
        src = self.previous / prev["stored"]
        dst = self.root / prev["stored"]
        if not src.is_file():
            return False
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            return False
        return True

    def _store(self, source: str, rel: str, path: Path, size: int) -> tuple[str, bool]:
        plain = f"data/{source}/{rel}"
        dst = self.root / plain
        dst.parent.mkdir(parents=True, exist_ok=True)
        if size >= COMPRESS_MIN_BYTES and not path.name.lower().endswith(INCOMPRESSIBLE):
            packed = dst.with_name(dst.name + ".zst")
            with path.open("rb") as src, packed.open("wb") as out:
                run = subprocess.run(["zstd", "-q", f"-{self.zstd_level}", "-c"], stdin=src, stdout=out,
                                     stderr=subprocess.PIPE, check=False)
            if run.returncode != 0:
                raise BackupError(f"zstd {path}: {run.stderr.decode(errors='replace').strip()}")
            if packed.stat().st_size <= size * (1 - COMPRESS_MIN_GAIN):
                return plain + ".zst", True
            packed.unlink()
        shutil.copyfile(path, dst)
        return plain, False

    def write_manifest(self, snapshot_id: str, sources: list[dict[str, Any]], skipped: list[str]) -> None:
        manifest = {"id": snapshot_id, "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "host": socket.gethostname(), "sources": sources, "skipped": skipped, "files": self.entries}
        path = self.root / MANIFEST
        path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


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
            source.backup(target)
        finally:
            target.close()
    except sqlite3.Error as exc:
        raise BackupError(f"sqlite backup of {src}: {exc}") from exc
    finally:
        source.close()


def compose(cfg: Config, *args: str) -> list[str]:
    return ["docker", "compose", "--project-directory", cfg.stack_dir, "-p", cfg.stack_project, *args]


INFLUX_TMP = "/tmp/mov-backup-influxdb"


def influxdb_backup(cfg: Config, staging: Path) -> None:
    service = cfg.influxdb_service
    # The admin token stays in the container's environment; it never passes through this process.
    backup = f'rm -rf {INFLUX_TMP} && influx backup --token "$DOCKER_INFLUXDB_INIT_ADMIN_TOKEN" {INFLUX_TMP}'
    run_command(compose(cfg, "exec", "-T", service, "sh", "-c", backup), "influx backup")
    try:
        run_command(compose(cfg, "cp", f"{service}:{INFLUX_TMP}", str(staging)), "docker compose cp (influxdb)")
    finally:
        subprocess.run(compose(cfg, "exec", "-T", service, "rm", "-rf", INFLUX_TMP), capture_output=True, check=False)


def take_snapshot(cfg: Config) -> tuple[str, int, int]:
    """Write a complete snapshot; returns its id, apparent size and the bytes not linked to the previous one."""
    cfg.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in cfg.backup_dir.glob(".partial-*"):
        log(f"removing {stale.name}, left by an interrupted run")
        shutil.rmtree(stale)
    snapshot_id = datetime.now(UTC).strftime(ID_FORMAT)
    if (cfg.backup_dir / snapshot_id).exists():
        time.sleep(1)
        snapshot_id = datetime.now(UTC).strftime(ID_FORMAT)
    existing = snapshot_ids(cfg.backup_dir)
    previous = cfg.backup_dir / existing[-1] if existing else None
    partial = cfg.backup_dir / f".partial-{snapshot_id}"
    partial.mkdir(mode=0o700)
    try:
        return _fill_snapshot(cfg, snapshot_id, partial, previous)
    except BaseException:
        # Never leave a partial snapshot behind: only a renamed directory with its manifest counts.
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _fill_snapshot(cfg: Config, snapshot_id: str, partial: Path, previous: Path | None) -> tuple[str, int, int]:
    writer = SnapshotWriter(partial, previous, cfg.zstd_level)
    sources: list[dict[str, Any]] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mov-backup-", dir=cfg.backup_dir) as scratch:
        for source in cfg.sources:
            path = Path(source.path)
            entry = {"name": source.name, "kind": source.kind, "path": source.path, "data": source.data}
            if not path.exists():
                log(f"{source.name}: {path} does not exist; skipped")
                skipped.append(source.name)
                continue
            if source.kind == "tree":
                for file in walk_files(path):
                    writer.add(source.name, str(file.relative_to(path)), file)
            elif source.kind == "file":
                writer.add(source.name, path.name, path)
            elif source.kind == "sqlite":
                copy = Path(scratch) / f"{source.name}.sqlite"
                sqlite_copy(path, copy)
                writer.add(source.name, path.name, copy, quick_check=False)
                copy.unlink()
            elif source.kind == "latest_dir":
                dirs = sorted(p for p in path.iterdir() if p.is_dir())
                if not dirs:
                    log(f"{source.name}: nothing in {path}; skipped")
                    skipped.append(source.name)
                    continue
                for file in walk_files(dirs[-1]):
                    writer.add(source.name, str(file.relative_to(path)), file)
            sources.append(entry)
            log(f"{source.name}: {path}")
        compose_file = Path(cfg.stack_dir) / "compose.yaml"
        if cfg.influxdb_service in cfg.stack_services and not compose_file.is_file():
            log(f"influxdb: in the stack's services but {compose_file} does not exist (not deployed yet); skipped")
            skipped.append("influxdb")
        elif cfg.influxdb_service in cfg.stack_services:
            staging = Path(scratch) / "influxdb"
            influxdb_backup(cfg, staging)
            for file in walk_files(staging):
                writer.add("influxdb", str(file.relative_to(staging)), file, quick_check=False)
            sources.append({"name": "influxdb", "kind": "influxdb", "path": "", "data": True})
            log("influxdb: influx backup in its container")
        else:
            log(f"influxdb: not in the stack's services ({', '.join(cfg.stack_services) or 'none'}); skipped")
            skipped.append("influxdb")
    writer.write_manifest(snapshot_id, sources, skipped)
    os.sync()
    partial.rename(cfg.backup_dir / snapshot_id)
    size = sum(e["size"] for e in writer.entries)
    log(f"snapshot {snapshot_id}: {len(writer.entries)} files, {size} bytes, {writer.new_bytes} bytes new on disk")
    return snapshot_id, size, writer.new_bytes


# --- retention -------------------------------------------------------------------------------------

def keep_set(ids: Sequence[str], retention: Retention) -> set[str]:
    """The newest snapshot of each of the last N days, ISO weeks and months that have one, and the `last` newest."""
    ordered = sorted(ids, reverse=True)
    keep: set[str] = set(ordered[:retention.last])
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
    dropped = [i for i in ids if i not in keep]
    for snapshot_id in dropped:
        shutil.rmtree(cfg.backup_dir / snapshot_id)
        log(f"retention: removed local snapshot {snapshot_id}")
    return dropped


# --- off-site (rclone crypt) -----------------------------------------------------------------------
# Off-site layout, inside the crypt remote: objects/<sha[:2]>/<sha> holds each stored file once (named by the
# sha256 of its stored bytes), snapshots/<id>.json is a snapshot's manifest, uploaded after its objects were
# uploaded and checked. A snapshot without its manifest does not exist; an unchanged file is never uploaded twice.

OBJECTS = "objects"
SNAPSHOTS = "snapshots"


def rclone(cfg: Config, *args: str) -> list[str]:
    return ["rclone", "--config", cfg.rclone_config, "--retries", "1", "--low-level-retries", "2", *args]


def remote_path(cfg: Config, *parts: str) -> str:
    base = cfg.remote.rstrip("/")
    suffix = "/".join(parts)
    if not suffix:
        return base
    return f"{base}{suffix}" if base.endswith(":") else f"{base}/{suffix}"


def object_name(entry: dict[str, Any]) -> str:
    digest = str(entry["stored_sha256"])
    return f"{digest[:2]}/{digest}"


def remote_ids(cfg: Config) -> list[str]:
    """Complete off-site snapshots (their manifest is there), oldest first."""
    result = subprocess.run(rclone(cfg, "lsf", "--files-only", remote_path(cfg, SNAPSHOTS)), capture_output=True,
                            check=False)
    err = result.stderr.decode(errors="replace")
    if result.returncode != 0 and "directory not found" not in err:
        raise BackupError(f"rclone lsf (off-site list) failed (exit {result.returncode}): {err.strip()}")
    names = result.stdout.decode(errors="replace").split()
    return sorted(n.removesuffix(".json") for n in names if n.endswith(".json") and _is_id(n.removesuffix(".json")))


def remote_objects(cfg: Config) -> set[str]:
    result = subprocess.run(rclone(cfg, "lsf", "-R", "--files-only", remote_path(cfg, OBJECTS)), capture_output=True,
                            check=False)
    err = result.stderr.decode(errors="replace")
    if result.returncode != 0 and "directory not found" not in err:
        raise BackupError(f"rclone lsf (off-site objects) failed (exit {result.returncode}): {err.strip()}")
    return set(result.stdout.decode(errors="replace").split())


def _stage_objects(snapshot: Path, entries: Sequence[dict[str, Any]], into: Path) -> None:
    """Hard links named like the off-site objects, so rclone copies and checks them by those names."""
    for entry in entries:
        link = into / object_name(entry)
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(snapshot / entry["stored"], link)


def upload(cfg: Config, snapshot_id: str) -> int:
    """Upload the objects the remote lacks, check them, then the manifest; returns the objects uploaded."""
    snapshot = cfg.backup_dir / snapshot_id
    manifest = read_manifest(snapshot)
    present = remote_objects(cfg)
    missing = [e for e in manifest["files"] if object_name(e) not in present]
    with tempfile.TemporaryDirectory(prefix="mov-upload-", dir=cfg.backup_dir) as scratch:
        staged = Path(scratch) / OBJECTS
        staged.mkdir()
        _stage_objects(snapshot, missing, staged)
        if missing:
            run_command(rclone(cfg, "copy", "--no-traverse", str(staged), remote_path(cfg, OBJECTS)),
                        "rclone copy (off-site upload)")
            run_command(rclone(cfg, "cryptcheck", "--one-way", str(staged), remote_path(cfg, OBJECTS)),
                        "rclone cryptcheck (objects)")
        index = Path(scratch) / SNAPSHOTS
        index.mkdir()
        shutil.copyfile(snapshot / MANIFEST, index / f"{snapshot_id}.json")
        run_command(rclone(cfg, "copy", str(index), remote_path(cfg, SNAPSHOTS)), "rclone copy (off-site manifest)")
        try:
            run_command(rclone(cfg, "cryptcheck", "--one-way", str(index), remote_path(cfg, SNAPSHOTS)),
                        "rclone cryptcheck (manifest)")
        except BackupError:
            # Never leave an off-site snapshot that looks complete when its check failed.
            subprocess.run(rclone(cfg, "deletefile", remote_path(cfg, SNAPSHOTS, f"{snapshot_id}.json")),
                           capture_output=True, check=False)
            raise
    log(f"off-site: {snapshot_id} in {cfg.remote}: {len(missing)} new objects of {len(manifest['files'])}, "
        "checked (rclone cryptcheck)")
    return len(missing)


def remote_manifest(cfg: Config, snapshot_id: str, into: Path) -> dict[str, Any]:
    into.mkdir(parents=True, exist_ok=True)
    run_command(rclone(cfg, "copyto", remote_path(cfg, SNAPSHOTS, f"{snapshot_id}.json"), str(into / MANIFEST)),
                f"rclone copyto (manifest of {snapshot_id})")
    return read_manifest(into)


def prune_remote(cfg: Config) -> list[str]:
    """Off-site retention: drop the expired manifests, then the objects no kept manifest refers to."""
    ids = remote_ids(cfg)
    keep = keep_set(ids, cfg.remote_retention)
    dropped = [i for i in ids if i not in keep]
    for snapshot_id in dropped:
        run_command(rclone(cfg, "deletefile", remote_path(cfg, SNAPSHOTS, f"{snapshot_id}.json")),
                    f"rclone deletefile {snapshot_id}")
        log(f"retention: removed off-site snapshot {snapshot_id}")
    with tempfile.TemporaryDirectory(prefix="mov-prune-") as scratch:
        referenced: set[str] = set()
        for snapshot_id in keep:
            manifest = remote_manifest(cfg, snapshot_id, Path(scratch) / snapshot_id)
            referenced |= {object_name(e) for e in manifest.get("files", [])}
        unused = sorted(remote_objects(cfg) - referenced)
        if unused:
            listing = Path(scratch) / "unused"
            listing.write_text("\n".join(unused) + "\n", encoding="utf-8")
            run_command(rclone(cfg, "delete", "--files-from", str(listing), remote_path(cfg, OBJECTS)),
                        "rclone delete (unused objects)")
            log(f"retention: removed {len(unused)} off-site objects no snapshot refers to")
    return dropped


def encrypted_name(cfg: Config, path: str) -> str:
    """Where an object lies on the backend (its encrypted path), for the operator to look at."""
    remote, _, base = cfg.remote.partition(":")
    full = "/".join(p for p in (base.strip("/"), path) if p)
    result = subprocess.run(rclone(cfg, "cryptdecode", "--reverse", f"{remote}:", full), capture_output=True,
                            check=False)
    fields = result.stdout.decode(errors="replace").strip().split("\t")
    return fields[-1].strip() if result.returncode == 0 and len(fields) > 1 else "?"


def download(cfg: Config, snapshot_id: str, into: Path) -> dict[str, Any]:
    """The snapshot rebuilt in `into` from its manifest and objects; raises naming every damaged object."""
    manifest = remote_manifest(cfg, snapshot_id, into)
    objects = into.parent / f"{into.name}.objects"
    listing = into.parent / f"{into.name}.list"
    listing.write_text("".join(sorted({object_name(e) + "\n" for e in manifest["files"]})), encoding="utf-8")
    result = subprocess.run(rclone(cfg, "copy", "--files-from", str(listing), "--no-traverse",
                                   remote_path(cfg, OBJECTS), str(objects)), capture_output=True, check=False)
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace")
        # rclone names each object it could not copy: "ERROR : <path>: Failed to copy: <why>".
        damaged = sorted({line.split("ERROR : ", 1)[1].split(": Failed to copy", 1)[0]
                          for line in err.splitlines() if "ERROR : " in line and ": Failed to copy" in line})
        files = {object_name(e): e["stored"] for e in manifest["files"]}
        names = ", ".join(f"{OBJECTS}/{d} ({files.get(d, '?')}, stored as {encrypted_name(cfg, f'{OBJECTS}/{d}')})"
                          for d in damaged) or "(see rclone's output)"
        raise BackupError(f"off-site snapshot {snapshot_id}: download failed; damaged or unreadable object(s): "
                          f"{names}\n{err.strip()}")
    for entry in manifest["files"]:
        target = into / entry["stored"]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(objects / object_name(entry), target)
    return manifest


# --- restore ---------------------------------------------------------------------------------------

def check_snapshot(snapshot: Path) -> dict[str, Any]:
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


def influxdb_has_data(cfg: Config) -> bool:
    """Whether the running InfluxDB holds any point in the platform's bucket."""
    query = f'from(bucket: "{cfg.influxdb_bucket}") |> range(start: 0) |> limit(n: 1)'
    out = run_command(compose(cfg, "exec", "-T", cfg.influxdb_service, "sh", "-c",
                              f'influx query --raw --token "$DOCKER_INFLUXDB_INIT_ADMIN_TOKEN" \'{query}\''),
                      "influx query (is InfluxDB empty?)")
    return any(line.startswith(",_result,") for line in out.splitlines())


def non_empty_targets(cfg: Config, manifest: dict[str, Any]) -> list[str]:
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


def refuse_non_empty(cfg: Config, manifest: dict[str, Any], force: bool) -> None:
    occupied = non_empty_targets(cfg, manifest)
    if occupied and not force:
        raise BackupError("refusing to overwrite data that is not empty: " + ", ".join(occupied)
                          + ". Run again with restore_force=true (mov-backup restore --force) to replace it.")
    if occupied:
        log("restore_force: replacing " + ", ".join(occupied))


def write_restored(entry: dict[str, Any], stored: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.mov-restore")
    with tmp.open("wb") as out:
        if entry["zstd"]:
            with stored.open("rb") as src:
                run = subprocess.run(["zstd", "-d", "-q", "-c"], stdin=src, stdout=out, stderr=subprocess.PIPE,
                                     check=False)
            if run.returncode != 0:
                raise BackupError(f"zstd -d {stored}: {run.stderr.decode(errors='replace').strip()}")
        else:
            with stored.open("rb") as src:
                shutil.copyfileobj(src, out, CHUNK)
        out.flush()
        os.fsync(out.fileno())
    if sha256_file(tmp) != entry["sha256"]:
        tmp.unlink()
        raise BackupError(f"{entry['stored']}: restored content differs from the manifest's sha256")
    os.chown(tmp, entry["uid"], entry["gid"])
    tmp.chmod(entry["mode"])
    os.utime(tmp, ns=(entry["mtime_ns"], entry["mtime_ns"]))
    tmp.replace(target)


def restore_snapshot(cfg: Config, snapshot: Path, force: bool, dry_run: bool) -> None:
    manifest = check_snapshot(snapshot)
    log(f"snapshot {manifest['id']}: {len(manifest['files'])} files, checksums match")
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


def restore_influxdb(cfg: Config, snapshot: Path, entries: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory(prefix="mov-restore-", dir=cfg.backup_dir) as scratch:
        staging = Path(scratch) / "influxdb"
        for entry in entries:
            write_restored(entry, snapshot / entry["stored"], staging / entry["rel"])
        service = cfg.influxdb_service
        run_command(compose(cfg, "exec", "-T", service, "rm", "-rf", INFLUX_TMP), "clear the restore directory")
        run_command(compose(cfg, "cp", str(staging), f"{service}:{INFLUX_TMP}"), "docker compose cp (influxdb)")
        run_command(compose(cfg, "exec", "-T", service, "sh", "-c",
                            f'influx restore --full --token "$DOCKER_INFLUXDB_INIT_ADMIN_TOKEN" {INFLUX_TMP}'
                            f' && rm -rf {INFLUX_TMP}'), "influx restore")
    log("influxdb: restored (influx restore --full)")


# --- status, alerts, locking -----------------------------------------------------------------------

def write_status(cfg: Config, status: dict[str, Any]) -> None:
    cfg.status_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cfg.status_file.with_name(cfg.status_file.name + ".tmp")
    tmp.write_text(json.dumps(status, indent=2) + "\n", encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(cfg.status_file)


def alert(cfg: Config, message: str) -> None:
    if not cfg.webhook_url:
        log("no alert webhook configured; failure only logged")
        return
    body = json.dumps({"kind": "backup_failed", "subject": f"mov/{cfg.env}", "host": socket.gethostname(),
                       "message": message}).encode()
    request = urllib.request.Request(cfg.webhook_url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            log(f"alert posted to the webhook (HTTP {response.status})")
    except OSError as exc:
        log(f"alert webhook failed: {exc}")


class Lock:
    def __init__(self, path: str = LOCK_FILE) -> None:
        self.path = path
        self.handle: Any = None

    def __enter__(self) -> Lock:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self.handle.close()
            raise BackupError(f"another mov-backup holds {self.path}; not running twice at once") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


# --- commands --------------------------------------------------------------------------------------

def cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    started = time.monotonic()
    status: dict[str, Any] = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "result": "failed",
                              "snapshot": None, "size_bytes": 0, "new_bytes": 0,
                              "offsite": "disabled" if not cfg.remote else "failed"}
    try:
        snapshot_id, size, new = take_snapshot(cfg)
        status.update(snapshot=snapshot_id, size_bytes=size, new_bytes=new)
        prune_local(cfg)
        if cfg.remote:
            status["uploaded_objects"] = upload(cfg, snapshot_id)
            status["offsite"] = "ok"
            prune_remote(cfg)
        else:
            log("off-site: no remote configured; local snapshot only")
        status["result"] = "ok"
    except (BackupError, OSError, KeyError, ValueError) as exc:
        status["error"] = str(exc)
        log(f"backup FAILED: {exc}")
    status["duration_s"] = round(time.monotonic() - started, 3)
    status["local_snapshots"] = len(snapshot_ids(cfg.backup_dir))
    write_status(cfg, status)
    if status["result"] != "ok":
        alert(cfg, f"backup on {socket.gethostname()} failed: {status['error']}")
        return 1
    log(f"backup ok in {status['duration_s']}s")
    return 0


def cmd_restore(cfg: Config, args: argparse.Namespace) -> int:
    if args.origin == "local":
        ids = snapshot_ids(cfg.backup_dir)
        chosen = ids[-1] if args.snapshot == "latest" and ids else args.snapshot
        if chosen not in ids:
            have = ", ".join(ids) or "none"
            raise BackupError(f"no complete local snapshot {chosen!r} in {cfg.backup_dir} (have: {have})")
        restore_snapshot(cfg, cfg.backup_dir / chosen, args.force, args.dry_run)
    else:
        if not cfg.remote:
            raise BackupError("no off-site remote configured")
        ids = remote_ids(cfg)
        chosen = ids[-1] if args.snapshot == "latest" and ids else args.snapshot
        if chosen not in ids:
            raise BackupError(f"no complete off-site snapshot {chosen!r} (have: {', '.join(ids) or 'none'})")
        cfg.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.TemporaryDirectory(prefix="mov-restore-", dir=cfg.backup_dir) as scratch:
            into = Path(scratch) / chosen
            if args.dry_run:
                # Whether the targets hold data is a question for the manifest alone.
                refuse_non_empty(cfg, remote_manifest(cfg, chosen, into), args.force)
                log(f"dry run: off-site snapshot {chosen} found; nothing written")
                return 0
            download(cfg, chosen, into)
            log(f"off-site snapshot {chosen} downloaded and decrypted")
            restore_snapshot(cfg, into, args.force, args.dry_run)
    log(f"restore of {chosen} ({args.origin}) done")
    return 0


def cmd_list(cfg: Config, args: argparse.Namespace) -> int:
    for snapshot_id in (remote_ids(cfg) if args.remote else snapshot_ids(cfg.backup_dir)):
        print(snapshot_id)
    return 0


def cmd_verify(cfg: Config, args: argparse.Namespace) -> int:
    ids = remote_ids(cfg) if args.remote else snapshot_ids(cfg.backup_dir)
    chosen = ids[-1] if args.snapshot == "latest" and ids else args.snapshot
    if chosen not in ids or (args.remote and chosen not in snapshot_ids(cfg.backup_dir)):
        raise BackupError(f"no complete snapshot {chosen!r}" + (" here and off-site" if args.remote else ""))
    if args.remote:
        # The local snapshot of that id against its off-site objects (cryptcheck: no download).
        snapshot = cfg.backup_dir / chosen
        with tempfile.TemporaryDirectory(prefix="mov-verify-", dir=cfg.backup_dir) as scratch:
            _stage_objects(snapshot, check_snapshot(snapshot)["files"], Path(scratch))
            run_command(rclone(cfg, "cryptcheck", "--one-way", scratch, remote_path(cfg, OBJECTS)),
                        f"rclone cryptcheck {chosen}")
    else:
        check_snapshot(cfg.backup_dir / chosen)
    log(f"snapshot {chosen}: ok")
    return 0


def cmd_prune(cfg: Config, args: argparse.Namespace) -> int:
    if args.remote:
        prune_remote(cfg)
    else:
        prune_local(cfg)
    return 0


def cmd_check_config(cfg: Config, args: argparse.Namespace) -> int:
    print(f"config ok: {len(cfg.sources)} sources, backup_dir {cfg.backup_dir}")
    return 0


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mov-backup", description="Back up and restore the MOV platform.")
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="take a snapshot, apply retention, copy it off-site")
    p_list = sub.add_parser("list", help="complete snapshots, oldest first")
    p_list.add_argument("--remote", action="store_true")
    p_verify = sub.add_parser("verify", help="check a snapshot's checksums (off-site: rclone cryptcheck)")
    p_verify.add_argument("--remote", action="store_true")
    p_verify.add_argument("snapshot", nargs="?", default="latest")
    p_restore = sub.add_parser("restore", help="put a snapshot's files back")
    p_restore.add_argument("--snapshot", default="latest")
    p_restore.add_argument("--from", dest="origin", choices=["local", "remote"], default="local")
    p_restore.add_argument("--force", action="store_true", help="replace data that is not empty")
    p_restore.add_argument("--dry-run", action="store_true", help="check the snapshot and the targets only")
    p_prune = sub.add_parser("prune", help="apply retention only")
    p_prune.add_argument("--remote", action="store_true")
    sub.add_parser("check-config", help="parse the configuration file")
    return parser.parse_args(list(argv))


COMMANDS = {"run": cmd_run, "restore": cmd_restore, "list": cmd_list, "verify": cmd_verify,
            "prune": cmd_prune, "check-config": cmd_check_config}


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    # Snapshots are root's alone; restored directories get ordinary modes (files get their recorded ones).
    os.umask(0o022 if args.command == "restore" else 0o077)
    try:
        cfg = load_config(args.config)
        if args.command in ("list", "check-config"):
            return COMMANDS[args.command](cfg, args)
        with Lock():
            return COMMANDS[args.command](cfg, args)
    except BackupError as exc:
        print(f"mov-backup {args.command}: FAILED: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
