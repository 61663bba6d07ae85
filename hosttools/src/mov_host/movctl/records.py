"""The JSON documents movctl reads and writes that other tools share: the status document (`movctl status --json`,
read in-process by the status page), the cleanup document (`movctl cleanup --json`, read by mov-cleanup) and the
release records the stack role writes. The backup tool's status files are its own records (mov_host.backup.records).

Documents read from disk are typed as what their writer puts there; readers still check what they use, as a file
from an older or newer writer may hold less.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict


class ServiceRow(TypedDict):
    """One service in `movctl status`/`start`/`stop`/`restart` (ServiceState as JSON)."""

    service: str
    state: str  # running, exited, ..., or missing (no container)
    health: str  # healthy, unhealthy, starting, or "" (no healthcheck)
    uptime_s: int | None
    container: str
    image: str


class UnreadableStatus(TypedDict):
    """What a reader of mov-backup's status file (mov_host.backup.records.BackupStatus) or drill result (DrillStatus)
    puts in its place when the file is there but cannot be parsed: shown as a result of its own, never as ok."""

    result: Literal["unreadable"]
    error: str


class BackupSummary(TypedDict, total=False):
    installed: bool
    result: str | None
    time: str | None
    age_s: int | None
    snapshot: str | None
    offsite: str | None
    problem: str  # set when the backup needs attention


class CertificateSummary(TypedDict):
    file: str
    domains: list[str]
    not_after: NotRequired[str]
    days_left: NotRequired[int]
    problem: NotRequired[str]


class DiskRow(TypedDict):
    path: str
    free_bytes: int
    total_bytes: int
    free_percent: float
    problem: NotRequired[str]


class StatusDocument(TypedDict):
    """`movctl status --json`: ok is false when `attention` lists anything."""

    env: str
    ok: bool
    services: list[ServiceRow]
    backup: BackupSummary
    certificate: CertificateSummary
    disk: list[DiskRow]
    attention: list[str]


class ReleaseImage(TypedDict, total=False):
    ref: str
    id: str
    repo_digests: list[str]


class ReleaseRecord(TypedDict, total=False):
    """<releases dir>/<id>/release.json, written by the stack role at each deploy (roles/stack/tasks/release.yml);
    only the fields cleanup reads. The id is the directory's name when the record has none."""

    id: str
    compose_sha256: str
    images: dict[str, ReleaseImage]


class CleanupDocument(TypedDict):
    """`movctl cleanup --json`: what a dry run would remove (containers, images) and what a run removed."""

    ok: bool
    dry_run: bool
    kept_releases: list[str]
    current_release: str
    containers: list[str]
    images: list[str]
    kept_images: list[str]
    removed_containers: list[str]
    removed_images: list[str]
    failures: list[str]
