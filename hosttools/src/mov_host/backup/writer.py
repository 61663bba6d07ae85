"""The snapshot writer: stores a snapshot's files (zstd where it pays, hard links to the previous snapshot where
unchanged) and writes its manifest."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zstandard

from mov_host.backup.errors import BackupError
from mov_host.backup.files import CHUNK, MANIFEST, read_manifest, sha256_file
from mov_host.backup.records import FileMeta, Manifest, ManifestFile, ManifestSource, SqliteSignature

# Already compressed: zstd would only spend time on these.
INCOMPRESSIBLE = (".gz", ".zst", ".zip", ".xz", ".bz2", ".png", ".jpg", ".jpeg", ".tgz")
COMPRESS_MIN_BYTES = 1024
# Kept compressed only when zstd saves at least this share of the size; a file whose first CHUNK does not shrink
# that much is stored as it is without compressing the rest (random or already compressed data of any name).
COMPRESS_MIN_GAIN = 0.10
# Files stored at once (each thread reads, hashes, compresses and writes one file).
STORE_WORKERS = 2


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
        self.entries: list[ManifestFile] = []
        self.new_bytes = 0
        self._pending: list[Future[tuple[ManifestFile, int]] | tuple[ManifestFile, int]] = []
        self._pool = ThreadPoolExecutor(max_workers=STORE_WORKERS, thread_name_prefix="mov-backup-store")
        # Directories made so far, relative to root (plain strings: pathlib costs more than the links themselves).
        self._dirs: set[str] = {""}
        self._root = str(root)
        self._previous_root = str(previous)
        self._previous_entries: dict[tuple[str, str], ManifestFile] = {}
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
        extra: SqliteSignature | None = None,
        owned: bool = False,
    ) -> None:
        """Store one file; quick_check: size and mtime equal to the previous snapshot's mean unchanged.

        owned: the file is this run's own copy in the snapshot's scratch (SQLite copy, `influx backup` output),
        so when it is stored as it is, it is moved into place rather than copied.
        """
        st = st or path.stat()
        prev = self._previous_entries.get((source, rel))
        meta: FileMeta = {
            "source": source,
            "rel": rel,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "mode": st.st_mode & 0o7777,
            "uid": st.st_uid,
            "gid": st.st_gid,
        }
        if extra is not None:  # after the others, as in the manifest
            meta["source_files"] = extra["source_files"]
            meta["source_seen_ns"] = extra["source_seen_ns"]
        unchanged = (
            quick_check and prev is not None and (prev["size"], prev["mtime_ns"]) == (st.st_size, st.st_mtime_ns)
        )
        if prev is not None and unchanged and self._link(prev):
            self._pending.append((_linked(meta, prev, prev["sha256"]), 0))
            return
        self._pending.append(self._pool.submit(self._store_new, meta, path, prev, owned))

    def previous_entry(self, source: str, rel: str) -> ManifestFile | None:
        return self._previous_entries.get((source, rel))

    def reuse(self, prev: ManifestFile, extra: SqliteSignature) -> bool:
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
        self, meta: FileMeta, path: Path, prev: ManifestFile | None, owned: bool
    ) -> tuple[ManifestFile, int]:
        if prev is not None and prev["size"] == meta["size"]:
            # Same size under a new mtime (or a fresh SQLite copy): hashing first is cheaper than storing it again.
            content_sha = sha256_file(path)
            if prev["sha256"] == content_sha and self._link(prev):
                return _linked(meta, prev, content_sha), 0
        stored, compressed, content_sha, stored_sha, stored_size = self._store(
            meta["source"], meta["rel"], path, meta["size"], owned
        )
        entry: ManifestFile = {
            **meta,
            "stored": stored,
            "zstd": compressed,
            "sha256": content_sha,
            "stored_sha256": stored_sha,
        }
        return entry, stored_size

    def _mkdir_for(self, stored: str) -> None:
        """The directory of a stored file (a path relative to root), made once."""
        directory = stored.rpartition("/")[0]
        if directory not in self._dirs:
            (self.root / directory).mkdir(parents=True, exist_ok=True)
            while directory not in self._dirs:  # thread-safe enough: a set add per name
                self._dirs.add(directory)
                directory = directory.rpartition("/")[0]

    def _link(self, prev: ManifestFile) -> bool:
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

    def write_manifest(self, snapshot_id: str, sources: list[ManifestSource], skipped: list[str]) -> None:
        """The manifest (the caller makes the snapshot durable)."""
        manifest: Manifest = {
            "id": snapshot_id,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "sources": sources,
            "skipped": skipped,
            "files": self.entries,
        }
        # Compact: json's C encoder (indent= takes the pure-Python one, ten times slower on big manifests).
        (self.root / MANIFEST).write_text(json.dumps(manifest, separators=(",", ":")) + "\n", encoding="utf-8")


def _linked(meta: FileMeta, prev: ManifestFile, sha256: str) -> ManifestFile:
    """The entry of a file linked to the previous snapshot: what it takes over from that snapshot's entry."""
    return {
        **meta,
        "stored": prev["stored"],
        "zstd": prev["zstd"],
        "stored_sha256": prev["stored_sha256"],
        "sha256": sha256,
    }
