"""The history beside the status files: every run's and drill's status, one JSON line each (records.HistoryEntry),
the newest last, for the weekly report to read a week of.

The file is bounded (HISTORY_LIMIT lines, the oldest dropped) and replaced whole through a temporary file, so a
reader sees the old or the new history, never a part of one; mov-backup's lock keeps two writers apart.
"""

from __future__ import annotations

import json
from pathlib import Path

from mov_host.backup.records import HistoryEntry

# A year of nightly backups and weekly drills (417 lines), with room for runs by hand.
HISTORY_LIMIT = 500


def append_history(path: Path, entry: HistoryEntry, limit: int = HISTORY_LIMIT) -> None:
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        lines = []
    lines.append(json.dumps(entry, separators=(",", ":")))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines[-limit:]) + "\n", encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(path)
