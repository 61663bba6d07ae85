"""Running Docker and its compose plugin for movctl: commands, the compose project's arguments, parsing their
output."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from mov_host.movctl.config import EXIT_NOT_INSTALLED, EXIT_USAGE, Config, MovctlError


def run(argv: Sequence[str], timeout: float | None = 120, capture: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), capture_output=capture, text=True, check=False, timeout=timeout)
    except FileNotFoundError as exc:
        raise MovctlError(f"{argv[0]} is not installed", EXIT_NOT_INSTALLED) from exc
    except subprocess.TimeoutExpired as exc:
        raise MovctlError(f"{' '.join(argv[:4])} did not finish within {timeout:.0f}s") from exc


def compose_argv(cfg: Config, *args: str) -> list[str]:
    return ["docker", "compose", "--project-directory", cfg.stack_dir, "-f", cfg.compose_file, "-p", cfg.project, *args]


def require_stack(cfg: Config) -> None:
    if shutil.which("docker") is None:
        raise MovctlError("the platform is not installed here: docker is missing", EXIT_NOT_INSTALLED)
    if not Path(cfg.compose_file).is_file():
        raise MovctlError(
            f"the platform is not installed here: no compose file at {cfg.compose_file} (deploy it: "
            f"ansible-playbook site.yml -i inventories/{cfg.env or '<env>'})",
            EXIT_NOT_INSTALLED,
        )


def compose(cfg: Config, *args: str, timeout: float | None = 120, what: str = "") -> str:
    result = run(compose_argv(cfg, *args), timeout=timeout)
    if result.returncode != 0:
        raise MovctlError(
            f"{what or 'docker compose ' + args[0]} failed (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-800:]}"
        )
    return result.stdout


def check_services(cfg: Config, names: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(names))
    unknown = [n for n in chosen if n not in cfg.services]
    if unknown:
        raise MovctlError(
            f"unknown service {', '.join(repr(n) for n in unknown)}; the services of this platform: "
            f"{', '.join(cfg.services)}",
            EXIT_USAGE,
        )
    return chosen


def parse_ps(output: str) -> list[dict[str, Any]]:
    """Rows of `docker compose ps --format json`: one JSON array (compose < 2.21) or one object a line."""
    text = output.strip()
    if not text:
        return []
    if text.startswith("["):
        rows = json.loads(text)
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [row for row in rows if isinstance(row, dict)]


def parse_docker_time(value: str) -> datetime | None:
    """Docker's RFC 3339 times with nanoseconds (2026-11-26T16:00:00.123456789Z); None for the zero time."""
    if not value or value.startswith("0001-"):
        return None
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", value)
    if not match:
        return None
    base, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{base}.{micro}{'+00:00' if zone == 'Z' else zone}")
