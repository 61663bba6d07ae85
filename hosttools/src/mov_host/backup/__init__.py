"""mov-backup: back up and restore the MOV platform: dated, incremental, checksummed snapshots, encrypted off-site
copies.

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
new objects passed `rclone cryptcheck`; retention drops expired manifests, then the objects no
manifest refers to.
A run starts few rclone processes (each costs a start and a crypt key derivation): one listing of the remote,
running while the snapshot is taken, one copy, started once the snapshot's files are written (it runs while the
snapshot is made durable and named), one cryptcheck and, with new objects, one rename.

The weekly drill also reads back every off-site manifest and a rotating slice of the objects (download, decrypt,
sha256), so that every object is read within drill_readback_weeks drills.

Every run and drill also adds its status as a line of history.jsonl beside the status file (bounded, replaced
atomically): the weekly report reads a week of it.

Needs python3-zstandard (compression in-process) and rclone (off-site) on the host.

Modules, lowest first: errors, records (the JSON documents other tools read), config, files, process, sqlite,
influx, writer, retention, space, snapshot, remote, upload, readback, restore, history, status, drill, cli.
"""

from mov_host.backup.cli import main

__all__ = ["main"]
