"""The page's inputs from the host: movctl's status (in-process), the backup tool's status and drill files and its
history's last successful backup, and InfluxDB's readings and drop count. Each input that cannot be read says why,
in words the page knows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict, cast

from mov_host.backup.records import BackupStatus, DrillStatus
from mov_host.movctl import status as movctl_status
from mov_host.movctl.config import EXIT_FAILED, EXIT_NOT_INSTALLED, MovctlError, default_config_path, load_config
from mov_host.movctl.records import StatusDocument
from mov_host.status_page.config import Config
from mov_host.status_page.influx import Dropped, Gateways, Readings, read_dropped, read_gateways, read_readings


class MovctlUnavailable(TypedDict):
    """In movctl's status document's place: why there is none (one of the page's fixed reasons)."""

    error: str


class UnreadableFile(TypedDict):
    """In a status file's place when it is there but not a JSON object."""

    result: str  # unreadable


class Inputs(TypedDict):
    """What the page is built from; --from-json reads the same keys from a file (tests, or a page of another host)."""

    now: str
    movctl: StatusDocument | MovctlUnavailable
    backup: BackupStatus | UnreadableFile | None
    drill: DrillStatus | UnreadableFile | None
    # The time of the newest successful backup in mov-backup's history (None: none there, or no history).
    backup_last_ok: str | None
    readings: Readings
    dropped: Dropped
    gateways: Gateways


def movctl_failed(code: int) -> MovctlUnavailable:
    # The exit code movctl's command gives for the same failure: the reason the page shows stays what it was when
    # the page ran `movctl status --json`.
    return {"error": f"movctl status failed (exit {code})"}


def read_movctl(cfg: Config) -> StatusDocument | MovctlUnavailable:
    """movctl's status document, or {"error": ...} when movctl is not installed or cannot tell."""
    try:
        movctl_cfg = load_config(cfg.movctl_config or default_config_path())
    except MovctlError as exc:
        # The role movctl writes its configuration: without it, movctl is not installed on this host.
        return {"error": "movctl is not installed"} if exc.code == EXIT_NOT_INSTALLED else movctl_failed(exc.code)
    try:
        return movctl_status.collect_status(movctl_cfg)
    except MovctlError as exc:
        return movctl_failed(exc.code)
    except Exception:
        return movctl_failed(EXIT_FAILED)


def read_json_file(path: str) -> dict[str, object] | UnreadableFile | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"result": "unreadable"}
    return cast(dict[str, object], data) if isinstance(data, dict) else {"result": "unreadable"}


def last_successful_backup(path: str) -> str | None:
    """The time of the newest successful backup among mov-backup's history lines (records.HistoryEntry, the newest
    last); a line that is not such an entry is skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError):
        return None
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        status = entry.get("status") if isinstance(entry, dict) and entry.get("kind") == "backup" else None
        if isinstance(status, dict) and status.get("result") == "ok" and isinstance(status.get("time"), str):
            return str(status["time"])
    return None


def gather(cfg: Config) -> Inputs:
    return {
        "now": datetime.now(UTC).isoformat(timespec="seconds"),
        "movctl": read_movctl(cfg),
        # Typed as mov-backup writes them; the page still reads every field defensively (sections.result_section).
        "backup": cast(BackupStatus | UnreadableFile | None, read_json_file(cfg.backup_status_file)),
        "drill": cast(DrillStatus | UnreadableFile | None, read_json_file(cfg.drill_status_file)),
        "backup_last_ok": last_successful_backup(cfg.backup_history_file),
        "readings": read_readings(cfg),
        "dropped": read_dropped(cfg),
        "gateways": read_gateways(cfg),
    }
