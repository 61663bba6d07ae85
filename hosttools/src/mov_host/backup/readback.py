"""The drill's read-back of the off-site copy: what a run's checks leave unproven once the upload is over.

A run checks what it uploads (remote.py); after that, nothing reads the objects again until a restore. The weekly
drill downloads and decrypts through the crypt remote every manifest and one slice of the objects the manifests
refer to, and compares each object's sha256 with its name (the sha256 of the stored bytes, from the manifest).

With `drill_readback_weeks` N, slice k holds the objects whose sha256, read as a number, is k modulo N: a stable
partition, new objects fall into it too. The cursor (drill-readback.json beside the status file) names the slice
the next drill reads and moves on only when a read-back passes, so a weekly drill reads every object within N
weeks, and a failed one reads the same slice again. The drilled snapshot's own objects are read by its download
and checked against its manifest there; they are not downloaded twice.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from mov_host.backup.config import Config, readback_cursor_file
from mov_host.backup.errors import BackupError, log
from mov_host.backup.files import sha256_file
from mov_host.backup.records import ReadbackStatus
from mov_host.backup.remote import (
    OBJECTS,
    RemoteListing,
    describe_objects,
    failed_copies,
    fetch_manifests,
    object_name,
    rclone,
    remote_path,
)

# How many damaged objects the status names (with their encrypted names, one rclone call each); the count is whole.
NAMED = 20


def slice_of(name: str, slices: int) -> int:
    """The slice of an object (<sha[:2]>/<sha>): the first 64 bits of its sha256 modulo the number of slices."""
    return int(name.rsplit("/", 1)[-1][:16], 16) % slices


def next_slice(cfg: Config) -> int:
    try:
        cursor = json.loads(readback_cursor_file(cfg).read_text(encoding="utf-8"))
        return int(cursor["next_slice"]) % cfg.drill_readback_weeks
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def save_cursor(cfg: Config, next_slice: int) -> None:
    path = readback_cursor_file(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"next_slice": next_slice, "of": cfg.drill_readback_weeks}) + "\n", encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(path)


def read_back(cfg: Config, read: set[str], scratch: Path) -> ReadbackStatus:
    """Every off-site manifest and this drill's slice of the objects, less `read` (objects already downloaded and
    checked), downloaded, decrypted and checked; the cursor moves on when all of them pass."""
    weeks = cfg.drill_readback_weeks
    chosen = next_slice(cfg)
    remote = RemoteListing(cfg).result()
    manifests = fetch_manifests(cfg, remote.ids, scratch / "manifests")
    holds: dict[str, str] = {}  # object -> a snapshot and a stored file it holds, for the operator
    for snapshot_id, manifest in manifests.items():
        for entry in manifest["files"]:
            holds.setdefault(object_name(entry), f"{snapshot_id} {entry['stored']}")
    wanted = sorted(o for o in holds if slice_of(o, weeks) == chosen and o not in read)
    damaged = {o: "missing off-site" for o in wanted if o not in remote.objects}
    present = [o for o in wanted if o not in damaged]
    objects = scratch / "objects"
    size = 0
    if present:
        listing = scratch / "objects.list"
        listing.write_text("".join(f"{o}\n" for o in present), encoding="utf-8")
        result = subprocess.run(
            rclone(cfg, "copy", "--files-from", str(listing), "--no-traverse", remote_path(cfg, OBJECTS), str(objects)),
            capture_output=True,
            check=False,
        )
        err = result.stderr.decode(errors="replace")
        failed = failed_copies(err) if result.returncode != 0 else []
        if result.returncode != 0 and not failed:
            raise BackupError(f"rclone copy (off-site read-back) failed (exit {result.returncode}): {err.strip()}")
        damaged |= {o: "does not download or decrypt" for o in failed}
        for name in present:
            path = objects / name
            if name in damaged:
                continue
            if not path.is_file():
                damaged[name] = "not downloaded"
                continue
            size += path.stat().st_size
            if sha256_file(path) != name.rsplit("/", 1)[-1]:
                damaged[name] = "sha256 differs from its name (the manifest's)"
            path.unlink()
        shutil.rmtree(objects, ignore_errors=True)
    named = sorted(damaged)[:NAMED]
    status: ReadbackStatus = {
        "slice": chosen,
        "of": weeks,
        "manifests": len(manifests),
        "objects": len(wanted),
        "bytes": size,
        "ok": not damaged,
        "damaged": [f"{describe_objects(cfg, [o], holds)}: {damaged[o]}" for o in named]
        + ([f"... and {len(damaged) - len(named)} more"] if len(damaged) > len(named) else []),
    }
    if damaged:
        log(f"off-site read-back, slice {chosen} of {weeks}: {len(damaged)} damaged object(s)")
    else:
        save_cursor(cfg, (chosen + 1) % weeks)
        log(
            f"off-site read-back, slice {chosen} of {weeks}: {len(manifests)} manifests, {len(wanted)} objects, "
            f"{size} bytes downloaded, decrypted and matching their sha256"
        )
    return status
