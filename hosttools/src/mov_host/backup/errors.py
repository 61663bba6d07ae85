"""What the operator sees: a failure that names what failed, and the timestamped log lines."""

from __future__ import annotations

from datetime import UTC, datetime


class BackupError(Exception):
    """A failure the operator must see; the message names what failed."""


def log(message: str) -> None:
    print(f"{datetime.now(UTC).isoformat(timespec='seconds')} {message}", flush=True)
