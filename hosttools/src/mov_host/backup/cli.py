"""mov-backup's command line: the commands, their arguments, the lock that keeps two runs apart."""

from __future__ import annotations

import argparse
import fcntl
import os
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mov_host import paths
from mov_host.backup.config import DEFAULT_CONFIG, Config, load_config
from mov_host.backup.drill import cmd_drill
from mov_host.backup.errors import BackupError, log
from mov_host.backup.files import snapshot_ids
from mov_host.backup.process import run_command
from mov_host.backup.records import BackupStatus
from mov_host.backup.remote import (
    OBJECTS,
    download,
    prune_remote,
    rclone,
    remote_ids,
    remote_manifest,
    remote_path,
    stage_objects,
)
from mov_host.backup.restore import check_snapshot, choose_snapshot, refuse_non_empty, restore_snapshot
from mov_host.backup.retention import prune_local
from mov_host.backup.snapshot import remove_partials, take_snapshot
from mov_host.backup.space import make_room
from mov_host.backup.status import alert, write_status
from mov_host.backup.upload import OffsiteRun

LOCK_FILE = paths.BACKUP_LOCK_FILE


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


def cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    started = time.monotonic()
    status: BackupStatus = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "result": "failed",
        "snapshot": None,
        "size_bytes": 0,
        "new_bytes": 0,
        "offsite": "disabled" if not cfg.remote else "failed",
    }
    offsite: OffsiteRun | None = None
    try:
        cfg.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        remove_partials(cfg)
        status["space"] = make_room(cfg)
        if cfg.remote:
            offsite = OffsiteRun(cfg)  # lists the remote while the snapshot is taken, uploads while it is synced
        snapshot_id, size, new = take_snapshot(cfg, offsite.start if offsite is not None else None)
        status.update({"snapshot": snapshot_id, "size_bytes": size, "new_bytes": new})
        prune_local(cfg)
        if offsite is not None:
            status["uploaded_objects"], remote = offsite.finish()
            status["offsite"] = "ok"
            prune_remote(cfg, remote)
        else:
            log("off-site: no remote configured; local snapshot only")
        status["result"] = "ok"
    except (BackupError, OSError, KeyError, ValueError) as exc:
        status["error"] = str(exc)
        log(f"backup FAILED: {exc}")
    finally:
        if offsite is not None:
            offsite.close()
    status["duration_s"] = round(time.monotonic() - started, 3)
    status["local_snapshots"] = len(snapshot_ids(cfg.backup_dir))
    write_status(cfg, status, "backup")
    if status["result"] != "ok":
        alert(cfg, f"backup on {socket.gethostname()} failed: {status['error']}")
        return 1
    log(f"backup ok in {status['duration_s']}s")
    return 0


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
            stage_objects(snapshot, check_snapshot(snapshot)["files"], Path(scratch))
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
