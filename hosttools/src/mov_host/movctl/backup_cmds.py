"""`movctl backup` and `movctl restore`: mov-backup run, and a restore that stops the writers around it."""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mov_host.movctl.config import (
    EXIT_FAILED,
    EXIT_NOT_INSTALLED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    Config,
    MovctlError,
)
from mov_host.movctl.docker import compose, run
from mov_host.movctl.render import emit_json
from mov_host.movctl.services import ServiceState, wait_healthy
from mov_host.movctl.status import read_backup_status

SNAPSHOT_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z$")


def backup_argv(cfg: Config, *args: str) -> list[str]:
    return [cfg.backup_tool, *(["--config", cfg.backup_config] if cfg.backup_config else []), *args]


def require_backup_tool(cfg: Config) -> None:
    if not Path(cfg.backup_tool).exists():
        raise MovctlError(
            f"the backup tool is not installed: no {cfg.backup_tool} (the Ansible role backup installs it)",
            EXIT_NOT_INSTALLED,
        )


def cmd_backup(cfg: Config, args: argparse.Namespace) -> int:
    require_backup_tool(cfg)
    result = run(backup_argv(cfg, "run"), timeout=None, capture=args.json)
    status = read_backup_status(cfg)
    shown: Mapping[str, Any] = status or {}
    ok = result.returncode == 0
    if args.json:
        emit_json(
            {
                "ok": ok,
                "exit_code": result.returncode,
                "status": status,
                "output": (result.stdout + result.stderr).splitlines(),
            }
        )
    elif ok:
        print(f"backup ok: snapshot {shown.get('snapshot', '?')}")
    else:
        print(
            f"movctl backup: FAILED (mov-backup exit {result.returncode}); status in {cfg.backup_status_file}",
            file=sys.stderr,
        )
    return EXIT_OK if ok else EXIT_FAILED


def cmd_restore(cfg: Config, args: argparse.Namespace) -> int:
    if args.snapshot != "latest" and not SNAPSHOT_ID.match(args.snapshot):
        raise MovctlError(
            f"snapshot {args.snapshot!r}: expected latest or an id like 20250101T023000Z (mov-backup list)", EXIT_USAGE
        )
    require_backup_tool(cfg)
    managed = Path(cfg.compose_file).is_file() and shutil.which("docker") is not None
    restore = backup_argv(
        cfg, "restore", "--snapshot", args.snapshot, "--from", args.origin, *(["--force"] if args.force else [])
    )
    steps: list[str] = []
    output: list[str] = []

    def say(line: str) -> None:
        steps.append(line)
        if not args.json:
            print(line, flush=True)

    # influx restore talks to a running InfluxDB: it is started first and keeps running.
    if managed and "influxdb" in cfg.services:
        compose(cfg, "up", "--detach", "--no-recreate", "--no-build", "influxdb", timeout=cfg.wait_timeout_s + 60)
        wait_healthy(cfg, ["influxdb"], cfg.wait_timeout_s)
        say("influxdb: running for its restore")
    check = run([*restore, "--dry-run"], timeout=None)
    output += (check.stdout + check.stderr).splitlines()
    if check.returncode != 0:
        message = (check.stderr or check.stdout).strip()
        if "refusing to overwrite" in message:
            raise MovctlError(
                f"refused: the snapshot would replace data that is not empty "
                f"({message.split('not empty:', 1)[-1].split('. Run again', 1)[0].strip()}); "
                "nothing was changed. Run movctl restore --force to replace it.",
                EXIT_REFUSED,
                details={"output": output},
            )
        raise MovctlError(f"the snapshot cannot be restored: {message[-800:]}", details={"output": output})
    say(f"snapshot {args.snapshot} ({args.origin}): checked")
    writers = [s for s in cfg.services if s != "influxdb"]
    if managed:
        compose(cfg, "stop", *writers, timeout=cfg.wait_timeout_s + 60)
        say(f"stopped: {', '.join(writers)}")
    result = run(restore, timeout=None, capture=True)
    output += (result.stdout + result.stderr).splitlines()
    if not args.json:
        print(result.stdout, end="", flush=True)
    if result.returncode != 0:
        raise MovctlError(
            "the restore failed"
            + (", the writers are left stopped rather than run on half-restored data" if managed else "")
            + f": {result.stderr.strip()[-800:]} Fix the cause and run movctl restore again "
            "(with --force where data was written).",
            details={"output": output},
        )
    states: list[ServiceState] = []
    if managed:
        compose(cfg, "up", "--detach", "--no-recreate", "--no-build", timeout=cfg.wait_timeout_s + 60)
        states = wait_healthy(cfg, list(cfg.services), cfg.wait_timeout_s)
        say(f"started: {', '.join(cfg.services)}")
    if args.json:
        emit_json(
            {
                "ok": True,
                "snapshot": args.snapshot,
                "from": args.origin,
                "steps": steps,
                "output": output,
                "services": [asdict(s) for s in states],
            }
        )
    else:
        print("restore done")
    return EXIT_OK
