"""The report's backup section: the week's backups and restore drills, from mov-backup's history.

The history (history.jsonl beside mov-backup's status file; written by hosttools/src/mov_host/backup/history.py) is
one JSON document a line, ``{"kind": "backup" | "drill", "status": ...}``, the status as its status file got it
(``HistoryEntry``, ``BackupStatus`` and ``DrillStatus`` in hosttools/src/mov_host/backup/records.py). A line that is
not one is counted as unreadable and skipped. The week needs attention when a day (UTC) had no successful backup,
a drill failed, or none ran.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class BackupRun:
    time_s: float
    result: str  # ok | failed
    snapshot: str | None
    size_bytes: int | None
    new_bytes: int | None
    uploaded_objects: int | None  # off-site objects uploaded; None when not recorded (no off-site copy)
    offsite: str  # ok | failed | disabled
    error: str


@dataclass(frozen=True, slots=True)
class DrillRun:
    time_s: float
    result: str
    origin: str  # local | remote
    snapshot: str | None
    error: str


@dataclass(frozen=True, slots=True)
class History:
    backups: tuple[BackupRun, ...]
    drills: tuple[DrillRun, ...]
    unreadable: int  # lines that were not a history entry


@dataclass(frozen=True, slots=True)
class BackupSection:
    note: str = ""  # why there is no record to show; empty when there is
    backups: tuple[BackupRun, ...] = ()
    drills: tuple[DrillRun, ...] = ()
    unreadable: int = 0
    attention: tuple[str, ...] = ()  # why the week needs attention; empty: every day backed up, drills passed


def _time_s(text: object) -> float:
    if not isinstance(text, str):
        raise ValueError("no time")
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _count(status: dict[str, Any], key: str) -> int | None:
    value = status.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(status: dict[str, Any], key: str, default: str = "") -> str:
    value = status.get(key)
    return value if isinstance(value, str) else default


def _entry(line: str) -> BackupRun | DrillRun:
    """One history line; ValueError (json's included) when it is not an entry."""
    entry = json.loads(line)
    status = entry.get("status") if isinstance(entry, dict) else None
    if not isinstance(status, dict) or status.get("result") not in ("ok", "failed"):
        raise ValueError("not a history entry")
    snapshot = status.get("snapshot") if isinstance(status.get("snapshot"), str) else None
    if entry.get("kind") == "backup":
        return BackupRun(
            time_s=_time_s(status.get("time")),
            result=status["result"],
            snapshot=snapshot,
            size_bytes=_count(status, "size_bytes"),
            new_bytes=_count(status, "new_bytes"),
            uploaded_objects=_count(status, "uploaded_objects"),
            offsite=_text(status, "offsite", "-"),
            error=_text(status, "error"),
        )
    if entry.get("kind") == "drill":
        return DrillRun(
            time_s=_time_s(status.get("time")),
            result=status["result"],
            origin=_text(status, "origin", "-"),
            snapshot=snapshot,
            error=_text(status, "error"),
        )
    raise ValueError("unknown kind")


def parse_history(lines: Iterable[str]) -> History:
    backups: list[BackupRun] = []
    drills: list[DrillRun] = []
    unreadable = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            run = _entry(line)
        except ValueError:
            unreadable += 1
            continue
        if isinstance(run, BackupRun):
            backups.append(run)
        else:
            drills.append(run)
    return History(tuple(backups), tuple(drills), unreadable)


def days(start_s: float, end_s: float) -> list[str]:
    """The UTC days (YYYY-MM-DD) that start in [start_s, end_s)."""
    day = datetime.fromtimestamp(start_s, UTC).date()
    if datetime.combine(day, datetime.min.time(), UTC).timestamp() < start_s:
        day += timedelta(days=1)
    out = []
    while datetime.combine(day, datetime.min.time(), UTC).timestamp() < end_s:
        out.append(day.isoformat())
        day += timedelta(days=1)
    return out


def _day(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).date().isoformat()


def backup_section(history: History, *, start_s: float, end_s: float) -> BackupSection:
    """The runs and drills in [start_s, end_s), oldest first, and why the week needs attention."""
    backups = tuple(sorted((b for b in history.backups if start_s <= b.time_s < end_s), key=lambda b: b.time_s))
    drills = tuple(sorted((d for d in history.drills if start_s <= d.time_s < end_s), key=lambda d: d.time_s))
    backed_up = {_day(b.time_s) for b in backups if b.result == "ok"}
    attention = [f"no successful backup on {day}" for day in days(start_s, end_s) if day not in backed_up]
    attention.extend(f"the restore drill failed on {_day(d.time_s)}" for d in drills if d.result != "ok")
    if not drills:
        attention.append("no restore drill ran")
    return BackupSection(backups=backups, drills=drills, unreadable=history.unreadable, attention=tuple(attention))


def read_backup_section(path: str, *, start_s: float, end_s: float) -> BackupSection:
    """The section from the history file at ``path``; a missing or unreadable file is said, not raised."""
    if not path:
        return BackupSection(note="Backups are not part of this report (no report.backup_history_file).")
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return BackupSection(
            note=f"No backup record: {path} does not exist (mov-backup has not run since it keeps a history).",
            attention=("no backup record",),
        )
    except OSError as exc:
        return BackupSection(note=f"No backup record: {path}: {exc.strerror}.", attention=("no backup record",))
    return backup_section(parse_history(text.splitlines()), start_s=start_s, end_s=end_s)
