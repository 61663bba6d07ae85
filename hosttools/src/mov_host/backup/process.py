"""The commands mov-backup runs (docker compose, rclone, ...): run one, or fail naming it and its error output."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence

from mov_host.backup.config import Config
from mov_host.backup.errors import BackupError


def run_command(argv: Sequence[str], what: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(list(argv), input=stdin, capture_output=True, check=False)
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace").strip()
        raise BackupError(f"{what} failed (exit {result.returncode}): {err}")
    return result.stdout.decode(errors="replace")


def compose(cfg: Config, *args: str) -> list[str]:
    return ["docker", "compose", "--project-directory", cfg.stack_dir, "-p", cfg.stack_project, *args]


def service_owner(cfg: Config, service: str) -> tuple[int, int] | None:
    """The numeric uid:gid the compose file runs the service as, or None (the image's own user)."""
    raw = run_command(compose(cfg, "config", "--format", "json"), "docker compose config")
    user = str(json.loads(raw)["services"][service].get("user", ""))
    uid, _, gid = user.partition(":")
    if not uid.isdigit():
        return None
    return int(uid), int(gid) if gid.isdigit() else int(uid)
