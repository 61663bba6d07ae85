"""The off-site half of `mov-backup run`: the listing, the upload of what no complete off-site snapshot holds, its
cryptcheck, and the manifest's rename (remote.py says what each step proves).

The steps overlap the snapshot: the listing runs while the snapshot is written, and the upload starts once its
files and manifest are written, while the snapshot is made durable (syncfs), renamed and the local retention
applied. The manifest still gets its final name off-site only after the cryptcheck of everything this run sent,
and a snapshot that fails locally after its upload started has its copy stopped and its manifest removed
off-site (the objects sent stay unreferenced, so the next run that needs them sends and checks them again).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from mov_host.backup.config import Config
from mov_host.backup.errors import BackupError, log
from mov_host.backup.files import MANIFEST, read_manifest
from mov_host.backup.process import Started, run_command
from mov_host.backup.records import Manifest
from mov_host.backup.remote import (
    OBJECTS,
    PENDING,
    SNAPSHOTS,
    RemoteListing,
    RemoteState,
    checked_objects,
    object_name,
    rclone,
    remote_path,
    stage_objects,
)


class Upload:
    """One snapshot's upload: the objects no complete off-site snapshot holds and the manifest, sent by one
    `rclone copy` started here (the manifest under a pending name when there are new objects), then, in finish(),
    checked by one `rclone cryptcheck` (what this run sent, nothing else) and the manifest renamed (a server-side
    move of the checked bytes). With no new objects the manifest goes straight to its name and is checked there.
    """

    def __init__(self, cfg: Config, snapshot_id: str, snapshot: Path, remote: RemoteState) -> None:
        """snapshot: the snapshot's directory, its files and manifest written (it may not be renamed yet)."""
        self.cfg = cfg
        self.snapshot_id = snapshot_id
        self.remote = remote
        self.manifest: Manifest = read_manifest(snapshot)
        checked = checked_objects(cfg, remote) if remote.objects else set()
        self.missing = [e for e in self.manifest["files"] if object_name(e) not in checked]
        self.new_objects = {object_name(e) for e in self.missing}
        self.final = f"{snapshot_id}.json"
        self.name = f"{self.final}{PENDING}" if self.missing else self.final
        self._scratch = tempfile.TemporaryDirectory(prefix="mov-upload-", dir=cfg.backup_dir)
        self._copy: Started | None = None
        self._done = False
        try:
            # Hard links: they stay valid when the snapshot's directory is renamed.
            self.staged = Path(self._scratch.name)
            stage_objects(snapshot, self.missing, self.staged / OBJECTS)
            (self.staged / SNAPSHOTS).mkdir()
            os.link(snapshot / MANIFEST, self.staged / SNAPSHOTS / self.name)
            # --ignore-times: an unchecked object already there is sent again even when its size and time match
            # (rclone would skip it as unchanged); every other staged name is new off-site.
            self._copy = Started(
                rclone(cfg, "copy", "--no-traverse", "--ignore-times", str(self.staged), remote_path(cfg)),
                "rclone copy (off-site upload)",
            )
        except BaseException:
            self._scratch.cleanup()
            raise

    def finish(self) -> int:
        """Wait for the copy, cryptcheck what it sent, name the manifest; returns the objects uploaded. `remote` is
        updated to hold the new snapshot and its objects."""
        assert self._copy is not None
        try:
            self._copy.wait()
            run_command(
                rclone(self.cfg, "cryptcheck", "--one-way", str(self.staged), remote_path(self.cfg)),
                "rclone cryptcheck (off-site upload)",
            )
            if self.missing:
                run_command(
                    rclone(
                        self.cfg,
                        "moveto",
                        remote_path(self.cfg, SNAPSHOTS, self.name),
                        remote_path(self.cfg, SNAPSHOTS, self.final),
                    ),
                    "rclone moveto (off-site manifest)",
                )
            self._done = True
        finally:
            self.close()
        again = self.new_objects & self.remote.objects
        self.remote.ids = sorted({*self.remote.ids, self.snapshot_id})
        self.remote.objects |= self.new_objects
        self.remote.manifests[self.snapshot_id] = self.manifest
        if again:
            log(f"off-site: {len(again)} objects no complete snapshot refers to (a failed run's) were uploaded again")
        log(
            f"off-site: {self.snapshot_id} in {self.cfg.remote}: {len(self.new_objects)} new objects, "
            f"{len(self.manifest['files'])} files, checked (rclone cryptcheck)"
        )
        return len(self.new_objects)

    def close(self) -> None:
        """The copy stopped if it still runs and the staging removed; unless finish() succeeded, the manifest is
        removed off-site: never an off-site snapshot that looks complete when its upload, its check or the local
        snapshot failed."""
        if self._copy is not None:
            self._copy.close()
        if not self._done:
            self._done = True  # once
            subprocess.run(
                rclone(self.cfg, "deletefile", remote_path(self.cfg, SNAPSHOTS, self.name)),
                capture_output=True,
                check=False,
            )
        self._scratch.cleanup()


class OffsiteRun:
    """The off-site steps of one run around its snapshot: `start` is take_snapshot's hook (its files and manifest
    are written), `finish` comes after the snapshot got its name. A failure in `start` (the listing, the staging)
    is raised by `finish`, so the local snapshot is kept whatever happens off-site."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._listing = RemoteListing(cfg)  # runs while the snapshot is taken
        self._upload: Upload | None = None
        self._error: Exception | None = None

    def start(self, snapshot_id: str, snapshot: Path) -> None:
        try:
            self._upload = Upload(self.cfg, snapshot_id, snapshot, self._listing.result())
        except Exception as exc:  # whatever fails off-site, raised by finish(): the local snapshot is kept
            self._error = exc

    def finish(self) -> tuple[int, RemoteState]:
        """(objects uploaded, the remote as it is now) once the upload was cryptchecked and its manifest named."""
        if self._error is not None:
            raise self._error
        if self._upload is None:
            raise BackupError("off-site upload never started")
        return self._upload.finish(), self._upload.remote

    def close(self) -> None:
        self._listing.close()
        if self._upload is not None:
            self._upload.close()
