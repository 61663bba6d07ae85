#!/usr/bin/env python3
"""Back up and restore the MOV platform: dated, incremental, checksummed snapshots, encrypted off-site copies.

    mov-backup run                      # a snapshot now, retention, off-site copy (cron runs this daily)
    mov-backup list [--remote]          # the complete snapshots, oldest first
    mov-backup verify [--remote] [ID]   # checksums (local) or rclone cryptcheck (off-site) of a snapshot
    mov-backup restore [--snapshot ID] [--from local|remote] [--force] [--dry-run]
    mov-backup prune [--remote]         # retention only
    mov-backup drill [--from local|remote]  # restore the latest snapshot into a scratch copy, compare it
                                        # with production, record the result (drill.json) and alert on failure

A snapshot is <backup_dir>/<YYYYmmddTHHMMSSZ>/ with data/<part>/... and manifest.json (sha256 of every file).
It is built as <backup_dir>/.partial-<id> and renamed only when complete, so a failed run never leaves a
snapshot that looks good. Unchanged files are hard links to the previous snapshot (rsync --link-dest style);
files that shrink under zstd are stored compressed (<name>.zst, compressed in-process, each file read once).
Off-site, through an rclone crypt remote, each stored file is one object named by its sha256 (uploaded once,
whatever the number of snapshots holding it) and each snapshot one manifest, which gets its name only after its
new objects passed `rclone cryptcheck`; retention drops expired manifests, then the objects no manifest refers to.
A run starts few rclone processes (each costs a start and a crypt key derivation): one listing of the remote,
running while the snapshot is taken, one copy, one cryptcheck and, with new objects, one rename.

Needs python3-zstandard (compression in-process) and rclone (off-site) on the host.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import fcntl
import hashlib
import io
import json
import os
import shutil
import smtplib
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import zstandard

DEFAULT_CONFIG = "/etc/mov-backup/config.json"
LOCK_FILE = "/run/lock/mov-backup.lock"
ID_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST = "manifest.json"
CHUNK = 1 << 20
# Already compressed: zstd would only spend time on these.
INCOMPRESSIBLE = (".gz", ".zst", ".zip", ".xz", ".bz2", ".png", ".jpg", ".jpeg", ".tgz")
COMPRESS_MIN_BYTES = 1024
# Kept compressed only when zstd saves at least this share of the size; a file whose first CHUNK does not shrink
# that much is stored as it is without compressing the rest (random or already compressed data of any name).
COMPRESS_MIN_GAIN = 0.10
# Files stored at once (each thread reads, hashes, compresses and writes one file).
STORE_WORKERS = 2
# What a file linked to the previous snapshot takes over from that snapshot's entry.
LINKED_KEYS = ("stored", "zstd", "stored_sha256")
# A source file's ctime must be this much older than the check that saw it before the check can vouch that
# the file did not change since (filesystem timestamps are coarse; git's "racily clean" rule).
RACY_NS = 2_000_000_000


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
class Email:
    """Where a failure's alert is e-mailed (no recipients or no host: not e-mailed)."""

    to: tuple[str, ...] = ()
    host: str = ""
    port: int = 587
    user: str = ""
    sender: str = ""
    # Plain SMTP only to a relay on this host (a test's, or a local MTA): the password never crosses a network
    # in the clear.
    starttls: bool = True
    password_file: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.to and self.host)


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
    email: Email = Email()
    # Free space a run leaves on the backup filesystem beyond what it estimates it writes.
    min_free_bytes: int = 0


SOURCE_KINDS = ("tree", "file", "sqlite", "latest_dir")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _retention(raw: Any, where: str) -> Retention:
    if not isinstance(raw, dict):
        raise BackupError(f"{where}: expected {{daily, weekly, monthly}}")
    values = {k: raw.get(k) for k in ("daily", "weekly", "monthly")} | {"last": raw.get("last", 1)}
    for key, value in values.items():
        if not isinstance(value, int) or value < 0:
            raise BackupError(f"{where}.{key}: expected an integer >= 0, got {value!r}")
    return Retention(int(raw["daily"]), int(raw["weekly"]), int(raw["monthly"]), max(1, int(raw.get("last", 1))))


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise BackupError(f"{where}: expected true or false, got {value!r}")


def _email(raw: Any) -> Email:
    if not raw:
        return Email()
    if not isinstance(raw, dict) or not isinstance(raw.get("to", []), list):
        raise BackupError("config email: expected {to: [addresses], host, port, user, from, starttls, password_file}")
    mail = Email(
        to=tuple(str(a) for a in raw.get("to", []) if a),
        host=str(raw.get("host", "")),
        port=int(raw.get("port", 587)),
        user=str(raw.get("user", "")),
        sender=str(raw.get("from", "")),
        starttls=_flag(raw.get("starttls", True), "email.starttls"),
        password_file=str(raw.get("password_file", "")),
    )
    if mail.enabled and not mail.sender:
        raise BackupError("config email.from: needed to e-mail alerts")
    if mail.enabled and not mail.starttls and mail.host not in LOOPBACK_HOSTS:
        raise BackupError(f"config email.starttls: false is for a relay on this host only, not {mail.host}")
    return mail


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
        zstd_level=int(raw.get("zstd_level", 1)),
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
        email=_email(raw.get("email")),
        min_free_bytes=int(raw.get("min_free_bytes", 0)),
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
    return read_manifest_file(snapshot / MANIFEST, snapshot.name)


def read_manifest_file(path: Path, snapshot_id: str) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"snapshot {snapshot_id}: unreadable manifest: {exc}") from exc
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


# --- snapshot --------------------------------------------------------------------------------------


class SnapshotWriter:
    """Fills a partial snapshot directory; links files unchanged since the previous snapshot.

    New files are stored by a small thread pool: each is read once, and hashed, compressed (in-process zstd),
    hashed again and written in that one pass (hashlib, zstd and file I/O release the GIL, so two files
    go at once). `finish()` collects the entries in the order the files were added.
    """

    def __init__(self, root: Path, previous: Path | None, zstd_level: int) -> None:
        self.root = root
        self.previous = previous
        self.zstd_level = zstd_level
        self.entries: list[dict[str, Any]] = []
        self.new_bytes = 0
        self._pending: list[Future[tuple[dict[str, Any], int]] | tuple[dict[str, Any], int]] = []
        self._pool = ThreadPoolExecutor(max_workers=STORE_WORKERS, thread_name_prefix="mov-backup-store")
        # Directories made so far, relative to root (plain strings: pathlib costs more than the links themselves).
        self._dirs: set[str] = {""}
        self._root = str(root)
        self._previous_root = str(previous)
        self._previous_entries: dict[tuple[str, str], dict[str, Any]] = {}
        if previous is not None:
            for entry in read_manifest(previous).get("files", []):
                self._previous_entries[(entry["source"], entry["rel"])] = entry

    def add(
        self,
        source: str,
        rel: str,
        path: Path,
        st: os.stat_result | None = None,
        quick_check: bool = True,
        extra: dict[str, Any] | None = None,
        owned: bool = False,
    ) -> None:
        """Store one file; quick_check: size and mtime equal to the previous snapshot's mean unchanged.

        owned: the file is this run's own copy in the snapshot's scratch (SQLite copy, `influx backup` output),
        so when it is stored as it is, it is moved into place rather than copied.
        """
        st = st or path.stat()
        prev = self._previous_entries.get((source, rel))
        meta = {
            "source": source,
            "rel": rel,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "mode": st.st_mode & 0o7777,
            "uid": st.st_uid,
            "gid": st.st_gid,
            **(extra or {}),
        }
        unchanged = (
            quick_check and prev is not None and (prev["size"], prev["mtime_ns"]) == (st.st_size, st.st_mtime_ns)
        )
        if prev is not None and unchanged and self._link(prev):
            self._pending.append(({**meta, **{k: prev[k] for k in LINKED_KEYS}, "sha256": prev["sha256"]}, 0))
            return
        self._pending.append(self._pool.submit(self._store_new, meta, path, prev, owned))

    def previous_entry(self, source: str, rel: str) -> dict[str, Any] | None:
        return self._previous_entries.get((source, rel))

    def reuse(self, prev: dict[str, Any], extra: dict[str, Any]) -> bool:
        """Take the previous snapshot's file as it is (the caller knows its source did not change)."""
        if not self._link(prev):
            return False
        self._pending.append(({**prev, **extra}, 0))
        return True

    def finish(self) -> None:
        """Wait for the stores in flight; raises the first failure."""
        try:
            for pending in self._pending:
                entry, new_bytes = pending if isinstance(pending, tuple) else pending.result()
                self.entries.append(entry)
                self.new_bytes += new_bytes
        finally:
            self.abort()

    def abort(self) -> None:
        """Stop: the stores not started are dropped, the running ones finish (the caller removes the files)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()

    def _store_new(
        self, meta: dict[str, Any], path: Path, prev: dict[str, Any] | None, owned: bool
    ) -> tuple[dict[str, Any], int]:
        if prev is not None and prev["size"] == meta["size"]:
            # Same size under a new mtime (or a fresh SQLite copy): hashing first is cheaper than storing it again.
            content_sha = sha256_file(path)
            if prev["sha256"] == content_sha and self._link(prev):
                return {**meta, **{k: prev[k] for k in LINKED_KEYS}, "sha256": content_sha}, 0
        stored, compressed, content_sha, stored_sha, stored_size = self._store(
            meta["source"], meta["rel"], path, meta["size"], owned
        )
        entry = {**meta, "stored": stored, "zstd": compressed, "sha256": content_sha, "stored_sha256": stored_sha}
        return entry, stored_size

    def _mkdir_for(self, stored: str) -> None:
        """The directory of a stored file (a path relative to root), made once."""
        directory = stored.rpartition("/")[0]
        if directory not in self._dirs:
            (self.root / directory).mkdir(parents=True, exist_ok=True)
            while directory not in self._dirs:  # thread-safe enough: a set add per name
                self._dirs.add(directory)
                directory = directory.rpartition("/")[0]

    def _link(self, prev: dict[str, Any]) -> bool:
        assert self.previous is not None
        stored = prev["stored"]
        self._mkdir_for(stored)
        try:
            os.link(f"{self._previous_root}/{stored}", f"{self._root}/{stored}")
        except OSError:
            return False
        return True

    def _store(self, source: str, rel: str, path: Path, size: int, owned: bool) -> tuple[str, bool, str, str, int]:
        """(stored name, compressed, sha256 of the content, sha256 of the stored bytes, stored size), one read.

        Durability comes later, from one sync of the backup filesystem before the snapshot gets its name
        (write_manifest), not from an fsync per file.
        """
        plain = f"data/{source}/{rel}"
        dst = self.root / plain
        self._mkdir_for(plain)
        with path.open("rb") as src:
            first = src.read(CHUNK)
            if size >= COMPRESS_MIN_BYTES and not path.name.lower().endswith(INCOMPRESSIBLE):
                stored = self._store_compressed(path, src, first, dst.with_name(dst.name + ".zst"))
                if stored is not None:
                    content_sha, stored_sha, written = stored
                    return plain + ".zst", True, content_sha, stored_sha, written
                src.seek(0)
                first = src.read(CHUNK)
            digest = hashlib.sha256(first)
            if owned:
                # This run's own copy (SQLite, influx backup): hashed, then moved into place, not copied.
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                path.replace(dst)
                return plain, False, digest.hexdigest(), digest.hexdigest(), size
            written = len(first)
            with dst.open("wb") as out:
                out.write(first)
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    written += len(chunk)
        return plain, False, digest.hexdigest(), digest.hexdigest(), written

    def _store_compressed(self, path: Path, src: Any, first: bytes, packed: Path) -> tuple[str, str, int] | None:
        """(sha256 of the content, sha256 of the stored bytes, stored size) of the file written zstd-compressed
        to packed, or None, with nothing written, when the first chunk or the whole file shrinks too little."""
        content, stored = hashlib.sha256(first), hashlib.sha256()
        compressor = zstandard.ZstdCompressor(level=self.zstd_level).compressobj()
        try:
            # The first chunk as a complete zstd block: its size says whether compressing the rest pays.
            head = compressor.compress(first) + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            if len(head) > len(first) * (1 - COMPRESS_MIN_GAIN):
                return None
            read, written = len(first), len(head)
            stored.update(head)
            with packed.open("wb") as out:
                out.write(head)
                while chunk := src.read(CHUNK):
                    content.update(chunk)
                    read += len(chunk)
                    if block := compressor.compress(chunk):
                        stored.update(block)
                        out.write(block)
                        written += len(block)
                block = compressor.flush()
                stored.update(block)
                out.write(block)
                written += len(block)
        except zstandard.ZstdError as exc:
            raise BackupError(f"zstd {path}: {exc}") from exc
        if written > read * (1 - COMPRESS_MIN_GAIN):
            packed.unlink()
            return None
        return content.hexdigest(), stored.hexdigest(), written

    def write_manifest(self, snapshot_id: str, sources: list[dict[str, Any]], skipped: list[str]) -> None:
        """The manifest (the caller makes the snapshot durable)."""
        manifest = {
            "id": snapshot_id,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "sources": sources,
            "skipped": skipped,
            "files": self.entries,
        }
        # Compact: json's C encoder (indent= takes the pure-Python one, ten times slower on big manifests).
        (self.root / MANIFEST).write_text(json.dumps(manifest, separators=(",", ":")) + "\n", encoding="utf-8")


def sqlite_signature(path: Path) -> dict[str, Any]:
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


def sqlite_unchanged(prev: dict[str, Any], seen: dict[str, Any]) -> bool:
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


def compose(cfg: Config, *args: str) -> list[str]:
    return ["docker", "compose", "--project-directory", cfg.stack_dir, "-p", cfg.stack_project, *args]


# Where the one-off containers of influxdb_backup and restore_influxdb see their staging directory (bind-mounted
# from the backup dir).
INFLUX_STAGE = "/mov-backup"
# The influx CLI reads its token from INFLUX_TOKEN (influxdata/influx-cli v2.7.5 cmd/influx/global.go: the --token
# flag's EnvVar), so the admin token never stands on a process's command line, where `ps` shows it. Inside the
# service's containers the token is the compose secret the image's *_FILE variable names (roles/influxdb).
INFLUX_ADMIN_TOKEN = 'INFLUX_TOKEN="$(cat "$DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE")"'


def service_owner(cfg: Config, service: str) -> tuple[int, int] | None:
    """The numeric uid:gid the compose file runs the service as, or None (the image's own user)."""
    raw = run_command(compose(cfg, "config", "--format", "json"), "docker compose config")
    user = str(json.loads(raw)["services"][service].get("user", ""))
    uid, _, gid = user.partition(":")
    if not uid.isdigit():
        return None
    return int(uid), int(gid) if gid.isdigit() else int(uid)


def influxdb_backup(cfg: Config, staging: Path) -> None:
    """`influx backup` written straight into staging, a directory of the snapshot being built.

    A one-off container of the service (`docker compose run`: its image, env file and user, on the project's
    network, no published port) gets staging bind-mounted and talks to the running InfluxDB over the network
    (influx backup's --host; the CLI makes the target directory: influx-cli v2.7.5 clients/backup/backup.go,
    os.MkdirAll). The backup never lands in a container's filesystem, on the disk the live services write to,
    and the space check counted it on the backup filesystem.
    """
    service = cfg.influxdb_service
    staging.mkdir(mode=0o700)
    owner = service_owner(cfg, service)
    if owner is not None:
        os.chown(staging, *owner)
    # The admin token stays in the container (its compose secret); it never passes through this process.
    backup = f"{INFLUX_ADMIN_TOKEN} influx backup --host http://{service}:8086 {INFLUX_STAGE}"
    run_command(
        compose(
            cfg,
            "run",
            "--rm",
            "--no-deps",
            "-T",
            "--entrypoint",
            "sh",
            "--volume",
            f"{staging}:{INFLUX_STAGE}",
            service,
            "-c",
            backup,
        ),
        "influx backup",
    )


def remove_partials(cfg: Config) -> None:
    for stale in cfg.backup_dir.glob(".partial-*"):
        log(f"removing {stale.name}, left by an interrupted run")
        shutil.rmtree(stale)


def take_snapshot(cfg: Config) -> tuple[str, int, int]:
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
        return _fill_snapshot(cfg, snapshot_id, partial, previous)
    except BaseException:
        # Never leave a partial snapshot behind: only a renamed directory with its manifest counts.
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _fill_snapshot(cfg: Config, snapshot_id: str, partial: Path, previous: Path | None) -> tuple[str, int, int]:
    # Durability: one syncfs of the backup filesystem (a journal commit and the new data's write-back) before the
    # snapshot gets its name, instead of an fsync per file and directory. Opened before the first file is
    # written, so that syncfs reports any write-back error of the snapshot's files.
    sync_fd = os.open(partial, os.O_RDONLY | os.O_DIRECTORY)
    try:
        writer = SnapshotWriter(partial, previous, cfg.zstd_level)
        sources, skipped = _add_sources(cfg, writer)
        writer.write_manifest(snapshot_id, sources, skipped)
        sync_filesystem(sync_fd, partial)
    finally:
        os.close(sync_fd)
    partial.rename(cfg.backup_dir / snapshot_id)
    fsync_dir(cfg.backup_dir)
    size = sum(e["size"] for e in writer.entries)
    log(f"snapshot {snapshot_id}: {len(writer.entries)} files, {size} bytes, {writer.new_bytes} bytes new on disk")
    return snapshot_id, size, writer.new_bytes


def _add_sources(cfg: Config, writer: SnapshotWriter) -> tuple[list[dict[str, Any]], list[str]]:
    sources: list[dict[str, Any]] = []
    skipped: list[str] = []
    # Copies (SQLite, influx backup) stay in scratch until the writer stored them; it works in the background.
    scratch = Path(tempfile.mkdtemp(prefix="mov-backup-", dir=writer.root))
    try:
        for source in cfg.sources:
            path = Path(source.path)
            entry = {"name": source.name, "kind": source.kind, "path": source.path, "data": source.data}
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


# --- retention -------------------------------------------------------------------------------------


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


# --- space -------------------------------------------------------------------------------------------

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
    entries: dict[tuple[str, str], dict[str, Any]] = {}
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


def influxdb_included(cfg: Config) -> bool:
    return cfg.influxdb_service in cfg.stack_services and (Path(cfg.stack_dir) / "compose.yaml").is_file()


def influxdb_live_bytes(cfg: Config) -> int:
    """The size of InfluxDB's data directory: more than its backup (gzipped shards), for the first run's estimate."""
    try:
        out = run_command(
            compose(cfg, "exec", "-T", cfg.influxdb_service, "du", "-sk", "/var/lib/influxdb2"), "du (InfluxDB's data)"
        )
        return int(out.split()[0]) * 1024
    except (BackupError, IndexError, ValueError) as exc:
        log(f"space: InfluxDB's size unknown ({exc}); the estimate leaves it out")
        return 0


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


def make_room(cfg: Config) -> dict[str, Any]:
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


# --- off-site (rclone crypt) -----------------------------------------------------------------------
# Off-site layout, inside the crypt remote: objects/<sha[:2]>/<sha> holds each stored file once (named by the
# sha256 of its stored bytes), snapshots/<id>.json is a snapshot's manifest, uploaded after its objects were
# uploaded and checked. A snapshot without its manifest does not exist; an unchanged file is never uploaded twice.

OBJECTS = "objects"
SNAPSHOTS = "snapshots"
PENDING = ".pending"


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
    result = subprocess.run(
        rclone(cfg, "lsf", "--files-only", remote_path(cfg, SNAPSHOTS)), capture_output=True, check=False
    )
    err = result.stderr.decode(errors="replace")
    if result.returncode != 0 and "directory not found" not in err:
        raise BackupError(f"rclone lsf (off-site list) failed (exit {result.returncode}): {err.strip()}")
    names = result.stdout.decode(errors="replace").split()
    return sorted(n.removesuffix(".json") for n in names if n.endswith(".json") and _is_id(n.removesuffix(".json")))


@dataclass
class RemoteState:
    """What the remote holds: complete snapshots (ids, oldest first), object names (<sha[:2]>/<sha>) and the
    manifests left pending by interrupted uploads."""

    ids: list[str]
    objects: set[str]
    pending: list[str]


class RemoteListing:
    """One `rclone lsf -R` of the whole remote, started at once and read when needed.

    `run` starts it before taking the snapshot, so the listing (an rclone start, a crypt key derivation and a
    walk of the remote) happens while the snapshot is being written.
    """

    def __init__(self, cfg: Config) -> None:
        # Files, not pipes: nobody reads while the snapshot is taken. Both are closed by close().
        self._out = tempfile.TemporaryFile()  # noqa: SIM115
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(
            rclone(cfg, "lsf", "-R", "--files-only", remote_path(cfg)), stdout=self._out, stderr=self._err
        )

    def result(self) -> RemoteState:
        try:
            code = self._proc.wait()
            self._out.seek(0)
            self._err.seek(0)
            names = self._out.read().decode(errors="replace").split()
            err = self._err.read().decode(errors="replace")
        finally:
            self.close()
        if code != 0 and "directory not found" not in err:
            raise BackupError(f"rclone lsf (off-site list) failed (exit {code}): {err.strip()}")
        manifests = [
            n.removeprefix(f"{SNAPSHOTS}/").removesuffix(".json")
            for n in names
            if n.startswith(f"{SNAPSHOTS}/") and n.endswith(".json")
        ]
        objects = {n.removeprefix(f"{OBJECTS}/") for n in names if n.startswith(f"{OBJECTS}/")}
        pending = [
            n.removeprefix(f"{SNAPSHOTS}/") for n in names if n.startswith(f"{SNAPSHOTS}/") and n.endswith(PENDING)
        ]
        return RemoteState(sorted(i for i in manifests if _is_id(i)), objects, pending)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._out.close()
        self._err.close()


def _stage_objects(snapshot: Path, entries: Sequence[dict[str, Any]], into: Path) -> None:
    """Hard links named like the off-site objects, so rclone copies and checks them by those names."""
    for entry in entries:
        link = into / object_name(entry)
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(snapshot / entry["stored"], link)


def upload(cfg: Config, snapshot_id: str, remote: RemoteState) -> int:
    """Upload the objects the remote lacks and the manifest, check them; returns the objects uploaded.

    The manifest makes the snapshot exist off-site, so it gets its final name only once its objects passed
    `rclone cryptcheck`: with new objects, one `rclone copy` sends them and the manifest under a pending name,
    one `rclone cryptcheck` checks them all, then the manifest is renamed (a server-side move of the checked
    bytes). With no new objects, the manifest goes straight to its name and is checked there.
    `remote` is updated to hold the new snapshot and its objects.
    """
    snapshot = cfg.backup_dir / snapshot_id
    manifest = read_manifest(snapshot)
    missing = [e for e in manifest["files"] if object_name(e) not in remote.objects]
    new_objects = {object_name(e) for e in missing}
    final = f"{snapshot_id}.json"
    name = f"{final}{PENDING}" if missing else final
    with tempfile.TemporaryDirectory(prefix="mov-upload-", dir=cfg.backup_dir) as scratch:
        staged = Path(scratch)
        _stage_objects(snapshot, missing, staged / OBJECTS)
        (staged / SNAPSHOTS).mkdir()
        os.link(snapshot / MANIFEST, staged / SNAPSHOTS / name)
        try:
            run_command(
                rclone(cfg, "copy", "--no-traverse", str(staged), remote_path(cfg)), "rclone copy (off-site upload)"
            )
            run_command(
                rclone(cfg, "cryptcheck", "--one-way", str(staged), remote_path(cfg)),
                "rclone cryptcheck (off-site upload)",
            )
            if missing:
                run_command(
                    rclone(cfg, "moveto", remote_path(cfg, SNAPSHOTS, name), remote_path(cfg, SNAPSHOTS, final)),
                    "rclone moveto (off-site manifest)",
                )
        except BackupError:
            # Never leave an off-site snapshot that looks complete when its upload or check failed.
            subprocess.run(
                rclone(cfg, "deletefile", remote_path(cfg, SNAPSHOTS, name)), capture_output=True, check=False
            )
            raise
    remote.ids = sorted({*remote.ids, snapshot_id})
    remote.objects |= new_objects
    log(
        f"off-site: {snapshot_id} in {cfg.remote}: {len(new_objects)} new objects, {len(manifest['files'])} files, "
        "checked (rclone cryptcheck)"
    )
    return len(new_objects)


def remote_manifest(cfg: Config, snapshot_id: str, into: Path) -> dict[str, Any]:
    into.mkdir(parents=True, exist_ok=True)
    run_command(
        rclone(cfg, "copyto", remote_path(cfg, SNAPSHOTS, f"{snapshot_id}.json"), str(into / MANIFEST)),
        f"rclone copyto (manifest of {snapshot_id})",
    )
    return read_manifest(into)


def prune_remote(cfg: Config, remote: RemoteState | None = None) -> list[str]:
    """Off-site retention: drop the expired manifests, then the objects no kept manifest refers to.

    A kept snapshot's manifest is read from its local snapshot when there is one (the same file was uploaded);
    the others are downloaded, all in one rclone call.
    """
    if remote is None:
        remote = RemoteListing(cfg).result()
    keep = keep_set(remote.ids, cfg.remote_retention)
    dropped = [i for i in remote.ids if i not in keep]
    unused: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mov-prune-") as scratch:
        if dropped or remote.pending:
            # Expired manifests, and those an interrupted upload left pending (never a snapshot).
            listing = Path(scratch) / "dropped"
            listing.write_text(
                "".join(f"{n}\n" for n in [*(f"{i}.json" for i in dropped), *remote.pending]), encoding="utf-8"
            )
            run_command(
                rclone(cfg, "delete", "--files-from", str(listing), remote_path(cfg, SNAPSHOTS)),
                "rclone delete (expired off-site snapshots)",
            )
            for snapshot_id in dropped:
                log(f"retention: removed off-site snapshot {snapshot_id}")
            remote.pending = []
        manifests: dict[str, dict[str, Any]] = {}
        for snapshot_id in keep:
            # Not here, or unreadable here: the off-site one is read below.
            with contextlib.suppress(BackupError):
                manifests[snapshot_id] = read_manifest(cfg.backup_dir / snapshot_id)
        absent = sorted(keep - manifests.keys())
        if absent:
            wanted = Path(scratch) / "wanted"
            wanted.write_text("".join(f"{i}.json\n" for i in absent), encoding="utf-8")
            fetched = Path(scratch) / "manifests"
            run_command(
                rclone(
                    cfg, "copy", "--files-from", str(wanted), "--no-traverse", remote_path(cfg, SNAPSHOTS), str(fetched)
                ),
                "rclone copy (off-site manifests)",
            )
            for snapshot_id in absent:
                manifests[snapshot_id] = read_manifest_file(fetched / f"{snapshot_id}.json", snapshot_id)
        referenced = {object_name(e) for manifest in manifests.values() for e in manifest.get("files", [])}
        unused = sorted(remote.objects - referenced)
        if unused:
            listing = Path(scratch) / "unused"
            listing.write_text("\n".join(unused) + "\n", encoding="utf-8")
            run_command(
                rclone(cfg, "delete", "--files-from", str(listing), remote_path(cfg, OBJECTS)),
                "rclone delete (unused objects)",
            )
            log(f"retention: removed {len(unused)} off-site objects no snapshot refers to")
    remote.ids = sorted(keep)
    remote.objects -= set(unused)
    return dropped


def encrypted_name(cfg: Config, path: str) -> str:
    """Where an object lies on the backend (its encrypted path), for the operator to look at."""
    remote, _, base = cfg.remote.partition(":")
    full = "/".join(p for p in (base.strip("/"), path) if p)
    result = subprocess.run(
        rclone(cfg, "cryptdecode", "--reverse", f"{remote}:", full), capture_output=True, check=False
    )
    fields = result.stdout.decode(errors="replace").strip().split("\t")
    return fields[-1].strip() if result.returncode == 0 and len(fields) > 1 else "?"


def download(cfg: Config, snapshot_id: str, into: Path) -> dict[str, Any]:
    """The snapshot rebuilt in `into` from its manifest and objects; raises naming every damaged object."""
    manifest = remote_manifest(cfg, snapshot_id, into)
    objects = into.parent / f"{into.name}.objects"
    listing = into.parent / f"{into.name}.list"
    listing.write_text("".join(sorted({object_name(e) + "\n" for e in manifest["files"]})), encoding="utf-8")
    result = subprocess.run(
        rclone(cfg, "copy", "--files-from", str(listing), "--no-traverse", remote_path(cfg, OBJECTS), str(objects)),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace")
        # rclone names each object it could not copy: "ERROR : <path>: Failed to copy: <why>".
        damaged = sorted(
            {
                line.split("ERROR : ", 1)[1].split(": Failed to copy", 1)[0]
                for line in err.splitlines()
                if "ERROR : " in line and ": Failed to copy" in line
            }
        )
        files = {object_name(e): e["stored"] for e in manifest["files"]}
        names = (
            ", ".join(
                f"{OBJECTS}/{d} ({files.get(d, '?')}, stored as {encrypted_name(cfg, f'{OBJECTS}/{d}')})"
                for d in damaged
            )
            or "(see rclone's output)"
        )
        raise BackupError(
            f"off-site snapshot {snapshot_id}: download failed; damaged or unreadable object(s): {names}\n{err.strip()}"
        )
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
    out = run_command(
        compose(
            cfg,
            "exec",
            "-T",
            cfg.influxdb_service,
            "sh",
            "-c",
            f"{INFLUX_ADMIN_TOKEN} influx query --raw '{query}'",
        ),
        "influx query (is InfluxDB empty?)",
    )
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
        raise BackupError(
            "refusing to overwrite data that is not empty: "
            + ", ".join(occupied)
            + ". Run again with restore_force=true (mov-backup restore --force) to replace it."
        )
    if occupied:
        log("restore_force: replacing " + ", ".join(occupied))


def write_restored(entry: dict[str, Any], stored: Path, target: Path) -> None:
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


def relocate(manifest: dict[str, Any], root: Path) -> dict[str, Any]:
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


def restore_influxdb(cfg: Config, snapshot: Path, entries: list[dict[str, Any]]) -> None:
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
        restore = f"{INFLUX_ADMIN_TOKEN} influx restore --full --host http://{service}:8086 {INFLUX_STAGE}"
        run_command(
            compose(
                cfg,
                "run",
                "--rm",
                "--no-deps",
                "-T",
                "--entrypoint",
                "sh",
                "--volume",
                f"{staging}:{INFLUX_STAGE}:ro",
                service,
                "-c",
                restore,
            ),
            "influx restore",
        )
    log("influxdb: restored (influx restore --full)")


# --- status, alerts, locking -----------------------------------------------------------------------


def write_status(cfg: Config, status: dict[str, Any]) -> None:
    cfg.status_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cfg.status_file.with_name(cfg.status_file.name + ".tmp")
    tmp.write_text(json.dumps(status, indent=2) + "\n", encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(cfg.status_file)


def alert(cfg: Config, message: str, kind: str = "backup_failed") -> None:
    """The failure, by webhook and by e-mail (each where configured); a channel that fails is logged."""
    if not cfg.webhook_url and not cfg.email.enabled:
        log("no alert webhook or e-mail configured; failure only logged")
        return
    if cfg.webhook_url:
        post_webhook(cfg, message, kind)
    if cfg.email.enabled:
        send_email(cfg, message, kind)


def post_webhook(cfg: Config, message: str, kind: str) -> None:
    body = json.dumps(
        {"kind": kind, "subject": f"mov/{cfg.env}", "host": socket.gethostname(), "message": message}
    ).encode()
    request = urllib.request.Request(
        cfg.webhook_url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            log(f"alert posted to the webhook (HTTP {response.status})")
    except OSError as exc:
        log(f"alert webhook failed: {exc}")


def alert_email(cfg: Config, message: str, kind: str) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = f"[mov/{cfg.env}] {kind.replace('_', ' ')} on {socket.gethostname()}"
    mail["From"] = cfg.email.sender
    mail["To"] = ", ".join(cfg.email.to)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=socket.gethostname())
    mail.set_content(
        f"{message}\n\nStatus: {cfg.status_file} (backup), {drill_status_file(cfg)} (restore drill)."
        "\nLog: the cron runner's log of the job (mov-cron-run).\n"
    )
    return mail


def smtp_password(cfg: Config) -> str:
    """The relay's password from its 0600 file (never the command line or the environment)."""
    if not cfg.email.password_file:
        return ""
    try:
        return Path(cfg.email.password_file).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""


def send_email(cfg: Config, message: str, kind: str) -> None:
    mail = cfg.email
    try:
        with smtplib.SMTP(mail.host, mail.port, timeout=30) as smtp:
            if mail.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if mail.user:
                smtp.login(mail.user, smtp_password(cfg))
            smtp.send_message(alert_email(cfg, message, kind))
        log(f"alert e-mailed to {', '.join(mail.to)} through {mail.host}:{mail.port}")
    except OSError as exc:  # smtplib.SMTPException is an OSError
        log(f"alert e-mail through {mail.host}:{mail.port} failed: {exc}")


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


# --- restore drill -----------------------------------------------------------------------------------

DRILL_WINDOW_S = 24 * 3600  # InfluxDB points compared: the day before the snapshot (older ones may have expired)
# Points stamped this close to the snapshot may be written after the backup; a backlog written later still (a
# device or gateway catching up after an outage) can make the comparison differ: docs/operations/restore-drill.md.
DRILL_SETTLE_S = 600


def drill_status_file(cfg: Config) -> Path:
    return cfg.status_file.with_name("drill.json")


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


def influx_counts(cfg: Config, stop: datetime) -> dict[str, int]:
    """Field values per measurement in the bucket over the drill's window before stop."""
    start = datetime.fromtimestamp(stop.timestamp() - DRILL_WINDOW_S, UTC)
    query = (
        f'from(bucket: "{cfg.influxdb_bucket}") |> range(start: {start.strftime("%Y-%m-%dT%H:%M:%SZ")}, '
        f'stop: {stop.strftime("%Y-%m-%dT%H:%M:%SZ")}) |> group(columns: ["_measurement"]) |> count()'
    )
    out = run_command(
        compose(
            cfg,
            "exec",
            "-T",
            cfg.influxdb_service,
            "sh",
            "-c",
            f"{INFLUX_ADMIN_TOKEN} influx query --raw '{query}'",
        ),
        f"influx query ({cfg.stack_project})",
    )
    counts: dict[str, int] = {}
    header: list[str] = []
    for row in csv.reader(io.StringIO(out)):
        if not row or row[0].startswith("#"):
            header = []
            continue
        if not header:
            header = row
            continue
        record = dict(zip(header, row, strict=False))
        if "_measurement" in record and record.get("_value", "").isdigit():
            counts[record["_measurement"]] = counts.get(record["_measurement"], 0) + int(record["_value"])
    return counts


def start_drill_influxdb(cfg: Config, drill: Config) -> None:
    """A scratch InfluxDB: production's image, env file, secrets and user, no published port, and directories of its
    own for its data and config, owned by that user (a named volume would take the image's directory and its owner,
    the image's uid, which the service does not run as)."""
    raw = run_command(compose(cfg, "config", "--format", "json"), "docker compose config (production)")
    config = json.loads(raw)
    service = config["services"][cfg.influxdb_service]
    scratch = {key: service[key] for key in ("image", "env_file", "environment", "user", "secrets") if key in service}
    sources = {str(s["source"] if isinstance(s, dict) else s) for s in service.get("secrets", [])}
    secrets = {
        name: {k: v for k, v in spec.items() if k != "name"}
        for name, spec in config.get("secrets", {}).items()
        if name in sources
    }
    stack_dir = Path(drill.stack_dir)
    owner = service_owner(cfg, cfg.influxdb_service)
    mounts = {"data": "/var/lib/influxdb2", "config": "/etc/influxdb2"}
    for name in mounts:
        (stack_dir / name).mkdir(parents=True, mode=0o700)
        if owner is not None:
            os.chown(stack_dir / name, *owner)
    scratch |= {
        "volumes": [f"{stack_dir / name}:{target}" for name, target in mounts.items()],
        "healthcheck": service.get("healthcheck", {}),
    }
    compose_file = stack_dir / "compose.yaml"
    document: dict[str, Any] = {"name": drill.stack_project, "services": {cfg.influxdb_service: scratch}}
    if secrets:
        document["secrets"] = secrets
    compose_file.write_text(json.dumps(document, indent=2), encoding="utf-8")
    compose_file.chmod(0o600)
    run_command(compose(drill, "up", "-d", "--wait", cfg.influxdb_service), "start the drill's InfluxDB")


def drill_checks(cfg: Config, drill: Config, manifest: dict[str, Any], root: Path) -> list[dict[str, Any]]:
    """Each part of the restored copy against production; one entry per part, ok or not with the reason."""
    checks = []
    taken = datetime.strptime(manifest["id"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    per_source: dict[str, int] = {}
    for entry in manifest["files"]:
        per_source[entry["source"]] = per_source.get(entry["source"], 0) + 1
    for source in manifest["sources"]:
        name, kind = source["name"], source["kind"]
        if kind == "influxdb":
            if cfg.influxdb_service not in cfg.stack_services:
                continue
            # A reading carries its device's time and reaches InfluxDB later (Telegraf's flush, a broker queue): the
            # window ends DRILL_SETTLE_S before the snapshot, so points written after the backup do not count.
            settled = taken - timedelta(seconds=DRILL_SETTLE_S)
            restored, live = influx_counts(drill, settled), influx_counts(cfg, settled)
            ok = restored == live and sum(live.values()) > 0
            checks.append(
                {
                    "part": name,
                    "ok": ok,
                    "restored": restored,
                    "production": live,
                    "detail": f"point counts per measurement, the day before the snapshot less {DRILL_SETTLE_S} s",
                }
            )
            continue
        target = root / source["path"].lstrip("/")
        if kind == "sqlite":
            # Production's database read through a consistent copy (sqlite_copy), never opened in place.
            live_copy = root.parent / "live" / f"{name}.sqlite"
            live_copy.parent.mkdir(parents=True, exist_ok=True)
            sqlite_copy(Path(source["path"]), live_copy)
            restored_db, live_db = sqlite_summary(target), sqlite_summary(live_copy)
            ok = restored_db["integrity"] == "ok" and {k: v for k, v in restored_db.items() if k != "integrity"} == {
                k: v for k, v in live_db.items() if k != "integrity"
            }
            checks.append(
                {
                    "part": name,
                    "ok": ok,
                    "detail": "integrity_check and the dashboard set (or row counts)",
                    "restored": _brief(restored_db),
                    "production": _brief(live_db),
                }
            )
        else:
            found = sum(1 for _ in walk_files(target)) if target.is_dir() else int(target.is_file())
            # Live files move on after the snapshot: the restored copy answers to the manifest (every file back,
            # each write checked against its sha256).
            checks.append(
                {
                    "part": name,
                    "ok": found == per_source.get(name, 0),
                    "restored": found,
                    "snapshot": per_source.get(name, 0),
                    "detail": "files restored with their sha256",
                }
            )
    return checks


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    if "dashboards" in summary:
        return {"integrity": summary["integrity"], "dashboards": len(summary["dashboards"])}
    return summary


def cmd_drill(cfg: Config, args: argparse.Namespace) -> int:
    started = time.monotonic()
    origin = args.origin or ("remote" if cfg.remote else "local")
    status: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "result": "failed",
        "origin": origin,
        "snapshot": None,
        "checks": [],
    }
    cfg.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = Path(tempfile.mkdtemp(prefix="mov-drill-", dir=cfg.backup_dir))
    with_influx = cfg.influxdb_service in cfg.stack_services
    drill = replace(
        cfg,
        stack_dir=str(scratch / "stack"),
        stack_project=f"{cfg.stack_project}-drill",
        stack_services=(cfg.influxdb_service,) if with_influx else (),
    )
    try:
        chosen = status["snapshot"] = choose_snapshot(cfg, origin, args.snapshot)
        snapshot = cfg.backup_dir / chosen
        if origin == "remote":
            snapshot = scratch / "download" / chosen
            download(cfg, chosen, snapshot)
            log(f"off-site snapshot {chosen} downloaded and decrypted")
        manifest = check_snapshot(snapshot)
        if with_influx:
            start_drill_influxdb(cfg, drill)
        root = scratch / "root"
        restore_snapshot(drill, snapshot, force=True, dry_run=False, root=root)
        status["checks"] = drill_checks(cfg, drill, manifest, root)
        bad = [c["part"] for c in status["checks"] if not c["ok"]]
        if bad:
            status["error"] = "restored copy differs from production: " + ", ".join(bad)
        else:
            status["result"] = "ok"
    except (BackupError, OSError, KeyError, ValueError, sqlite3.Error) as exc:
        status["error"] = str(exc)
    finally:
        if with_influx and (Path(drill.stack_dir) / "compose.yaml").is_file():
            subprocess.run(compose(drill, "down", "--volumes", "--remove-orphans"), capture_output=True, check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    status["duration_s"] = round(time.monotonic() - started, 3)
    write_status(replace(cfg, status_file=drill_status_file(cfg)), status)
    if status["result"] != "ok":
        log(f"restore drill FAILED: {status['error']}")
        alert(cfg, f"restore drill on {socket.gethostname()} failed: {status['error']}", kind="restore_drill_failed")
        return 1
    log(f"restore drill ok: {status['snapshot']} ({origin}) restored and matches production, {status['duration_s']}s")
    return 0


# --- commands --------------------------------------------------------------------------------------


def cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    started = time.monotonic()
    status: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "result": "failed",
        "snapshot": None,
        "size_bytes": 0,
        "new_bytes": 0,
        "offsite": "disabled" if not cfg.remote else "failed",
    }
    listing: RemoteListing | None = None
    try:
        cfg.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        remove_partials(cfg)
        status["space"] = make_room(cfg)
        if cfg.remote:
            listing = RemoteListing(cfg)  # runs while the snapshot is taken
        snapshot_id, size, new = take_snapshot(cfg)
        status.update(snapshot=snapshot_id, size_bytes=size, new_bytes=new)
        prune_local(cfg)
        if listing is not None:
            remote = listing.result()
            status["uploaded_objects"] = upload(cfg, snapshot_id, remote)
            status["offsite"] = "ok"
            prune_remote(cfg, remote)
        else:
            log("off-site: no remote configured; local snapshot only")
        status["result"] = "ok"
    except (BackupError, OSError, KeyError, ValueError) as exc:
        status["error"] = str(exc)
        log(f"backup FAILED: {exc}")
    finally:
        if listing is not None:
            listing.close()
    status["duration_s"] = round(time.monotonic() - started, 3)
    status["local_snapshots"] = len(snapshot_ids(cfg.backup_dir))
    write_status(cfg, status)
    if status["result"] != "ok":
        alert(cfg, f"backup on {socket.gethostname()} failed: {status['error']}")
        return 1
    log(f"backup ok in {status['duration_s']}s")
    return 0


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


def cmd_restore(cfg: Config, args: argparse.Namespace) -> int:
    chosen = choose_snapshot(cfg, args.origin, args.snapshot)
    if args.origin == "local":
        restore_snapshot(cfg, cfg.backup_dir / chosen, args.force, args.dry_run)
    else:
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
    for snapshot_id in remote_ids(cfg) if args.remote else snapshot_ids(cfg.backup_dir):
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
            run_command(
                rclone(cfg, "cryptcheck", "--one-way", scratch, remote_path(cfg, OBJECTS)),
                f"rclone cryptcheck {chosen}",
            )
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
    p_drill = sub.add_parser("drill", help="restore a snapshot into a scratch copy and compare it with production")
    p_drill.add_argument("--snapshot", default="latest")
    p_drill.add_argument(
        "--from",
        dest="origin",
        choices=["local", "remote"],
        help="where the snapshot comes from (default: off-site when a remote is configured)",
    )
    sub.add_parser("check-config", help="parse the configuration file")
    return parser.parse_args(list(argv))


COMMANDS = {
    "run": cmd_run,
    "restore": cmd_restore,
    "list": cmd_list,
    "verify": cmd_verify,
    "prune": cmd_prune,
    "check-config": cmd_check_config,
    "drill": cmd_drill,
}


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    # rclone links tcell, whose init builds a Unicode width table unless told not to: a third of the CPU an rclone
    # start costs before its crypt key derivation (perf), paid by every rclone process of a run.
    os.environ.setdefault("TCELL_MINIMIZE", "1")
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
