"""The off-site copy through an rclone crypt remote: listing, retention, download (the upload: upload.py).

Off-site layout, inside the crypt remote: objects/<sha[:2]>/<sha> holds each stored file once (named by the
sha256 of its stored bytes), snapshots/<id>.json is a snapshot's manifest, uploaded after its objects were
uploaded and checked. A snapshot without its manifest does not exist; an unchanged file is never uploaded twice.

What a run proves of the off-site copy, and what it costs (rclone 1.60.1, Debian 12's and 13's):
- the upload checks itself: rclone/rclone backend/crypt/crypt.go (v1.60.1, `put`) hashes the ciphertext as it
  sends it and compares it with the backend's hash of the stored object, removing the object and failing the copy
  ("corrupted on transfer") when they differ; it ignores --ignore-checksum before v1.62 and checks nothing on a
  backend without hashes;
- `rclone cryptcheck --one-way` then checks the objects of this run only (the staged ones): it re-encrypts each
  local file with its object's nonce and compares that hash with the backend's (cmd/cryptcheck/cryptcheck.go), so
  on a network backend nothing is downloaded. `rclone check --download` (read each object back through crypt) was
  measured at 0.6 times its CPU on the `local` backend, whose hash reads the object anyway
  (backend/local/local.go, `Hash`), but it downloads everything a run sends: not taken, for the egress it costs
  on a provider's backend (bench/results.md);
- the weekly drill reads back (downloads and decrypts) every manifest and a rotating slice of the objects
  (readback.py).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mov_host.backup.config import Config
from mov_host.backup.errors import BackupError, log
from mov_host.backup.files import MANIFEST, is_id, read_manifest, read_manifest_file
from mov_host.backup.process import Started, run_command
from mov_host.backup.records import Manifest, ManifestFile
from mov_host.backup.retention import keep_set

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


def object_name(entry: ManifestFile) -> str:
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
    return sorted(n.removesuffix(".json") for n in names if n.endswith(".json") and is_id(n.removesuffix(".json")))


@dataclass
class RemoteState:
    """What the remote holds: complete snapshots (ids, oldest first), object names (<sha[:2]>/<sha>) and the
    manifests left pending by interrupted uploads."""

    ids: list[str]
    objects: set[str]
    pending: list[str]
    # Manifests read so far (load_manifests), by snapshot id.
    manifests: dict[str, Manifest] = field(default_factory=dict)


class RemoteListing:
    """One `rclone lsf -R` of the whole remote, started at once and read when needed.

    `run` starts it before taking the snapshot, so the listing (an rclone start, a crypt key derivation and a
    walk of the remote) happens while the snapshot is being written.
    """

    def __init__(self, cfg: Config) -> None:
        self._started = Started(
            rclone(cfg, "lsf", "-R", "--files-only", remote_path(cfg)), "rclone lsf (off-site list)"
        )

    def result(self) -> RemoteState:
        code, out, err = self._started.result()
        if code != 0 and "directory not found" not in err:
            raise BackupError(f"rclone lsf (off-site list) failed (exit {code}): {err.strip()}")
        names = out.split()
        manifests = [
            n.removeprefix(f"{SNAPSHOTS}/").removesuffix(".json")
            for n in names
            if n.startswith(f"{SNAPSHOTS}/") and n.endswith(".json")
        ]
        objects = {n.removeprefix(f"{OBJECTS}/") for n in names if n.startswith(f"{OBJECTS}/")}
        pending = [
            n.removeprefix(f"{SNAPSHOTS}/") for n in names if n.startswith(f"{SNAPSHOTS}/") and n.endswith(PENDING)
        ]
        return RemoteState(sorted(i for i in manifests if is_id(i)), objects, pending)

    def close(self) -> None:
        self._started.close()


def stage_objects(snapshot: Path, entries: Sequence[ManifestFile], into: Path) -> None:
    """Hard links named like the off-site objects, so rclone copies and checks them by those names."""
    for entry in entries:
        link = into / object_name(entry)
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(snapshot / entry["stored"], link)


def checked_objects(cfg: Config, remote: RemoteState) -> set[str]:
    """The objects off-site that a complete snapshot refers to: uploaded and checked by the run that completed it.

    An object no complete manifest refers to may be what an interrupted or failed run left: local and sftp
    backends write an object in place under its final name (rclone/rclone backend/local/local.go, `Update`,
    v1.60.1), so a killed upload leaves it cut short, and a failed read-back leaves its object behind. Such an
    object is uploaded and checked again by the next run that needs it, never trusted because it is there.
    A manifest that cannot be read here only costs that: its objects count as unchecked.
    """
    load_manifests(cfg, remote, remote.ids, strict=False)
    referenced = {object_name(e) for i in remote.ids if i in remote.manifests for e in remote.manifests[i]["files"]}
    return remote.objects & referenced


def remote_manifest(cfg: Config, snapshot_id: str, into: Path) -> Manifest:
    into.mkdir(parents=True, exist_ok=True)
    run_command(
        rclone(cfg, "copyto", remote_path(cfg, SNAPSHOTS, f"{snapshot_id}.json"), str(into / MANIFEST)),
        f"rclone copyto (manifest of {snapshot_id})",
    )
    return read_manifest(into)


def fetch_manifests(cfg: Config, ids: Sequence[str], into: Path, strict: bool = True) -> dict[str, Manifest]:
    """The off-site manifests of ids, downloaded and decrypted in one rclone call. strict: one that cannot be
    downloaded or read fails; otherwise it is left out."""
    if not ids:
        return {}
    into.parent.mkdir(parents=True, exist_ok=True)
    wanted = into.parent / f"{into.name}.list"
    wanted.write_text("".join(f"{i}.json\n" for i in ids), encoding="utf-8")
    try:
        run_command(
            rclone(cfg, "copy", "--files-from", str(wanted), "--no-traverse", remote_path(cfg, SNAPSHOTS), str(into)),
            "rclone copy (off-site manifests)",
        )
    except BackupError as exc:
        if strict:
            raise
        log(f"off-site manifests: {exc}")
    manifests: dict[str, Manifest] = {}
    for snapshot_id in ids:
        try:
            manifests[snapshot_id] = read_manifest_file(into / f"{snapshot_id}.json", snapshot_id)
        except BackupError:
            if strict:
                raise
    return manifests


def load_manifests(cfg: Config, remote: RemoteState, ids: Sequence[str], strict: bool) -> None:
    """remote.manifests filled for ids: a local snapshot's manifest when it is readable (the same file was
    uploaded), the others downloaded, all in one rclone call."""
    for snapshot_id in ids:
        if snapshot_id not in remote.manifests:
            # Not here, or unreadable here: the off-site one is read below.
            with contextlib.suppress(BackupError):
                remote.manifests[snapshot_id] = read_manifest(cfg.backup_dir / snapshot_id)
    absent = sorted(set(ids) - remote.manifests.keys())
    if absent:
        with tempfile.TemporaryDirectory(prefix="mov-manifests-") as scratch:
            remote.manifests |= fetch_manifests(cfg, absent, Path(scratch) / "manifests", strict)


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
        # Objects are deleted by what the kept manifests say: each one must be read.
        load_manifests(cfg, remote, sorted(keep), strict=True)
        referenced = {object_name(e) for i in keep for e in remote.manifests[i].get("files", [])}
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


def failed_copies(err: str) -> list[str]:
    """The paths an `rclone copy` names as not copied: "ERROR : <path>: Failed to copy: <why>"."""
    return sorted(
        {
            line.split("ERROR : ", 1)[1].split(": Failed to copy", 1)[0]
            for line in err.splitlines()
            if "ERROR : " in line and ": Failed to copy" in line
        }
    )


def describe_objects(cfg: Config, names: Sequence[str], holds: dict[str, str]) -> str:
    """Objects (<sha[:2]>/<sha>) for the operator: each with what it holds and its encrypted name on the backend."""
    return ", ".join(
        f"{OBJECTS}/{n} ({holds.get(n, '?')}, stored as {encrypted_name(cfg, f'{OBJECTS}/{n}')})" for n in names
    )


def download(cfg: Config, snapshot_id: str, into: Path) -> Manifest:
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
        files = {object_name(e): e["stored"] for e in manifest["files"]}
        names = describe_objects(cfg, failed_copies(err), files) or "(see rclone's output)"
        raise BackupError(
            f"off-site snapshot {snapshot_id}: download failed; damaged or unreadable object(s): {names}\n{err.strip()}"
        )
    for entry in manifest["files"]:
        target = into / entry["stored"]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(objects / object_name(entry), target)
    return manifest
