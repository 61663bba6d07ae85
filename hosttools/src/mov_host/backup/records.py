"""The JSON documents mov-backup writes and other tools read, as typed records (the JSON on disk is these dicts).

- the backup status file (`status_file`, BackupStatus): movctl status and mov-status-page read it;
- the restore drill's status file (drill.json next to it, DrillStatus): mov-status-page reads it;
- the history (history.jsonl next to them, one HistoryEntry a line): every run's and drill's status, which the
  weekly report (analytics/src/mov_analytics/report/backups.py) reads a week of;
- a snapshot's manifest (`<backup_dir>/<id>/manifest.json`, off-site `snapshots/<id>.json`, Manifest).

The writers build these dicts in the key order the files have always had (it differs between kinds of entry);
readers must rely neither on the order nor on a NotRequired key being there.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

# What a run or a drill came to.
Result = Literal["ok", "failed"]


class SqliteSignature(TypedDict):
    """What says an SQLite database did not change since a snapshot looked: [dev, ino, size, mtime_ns, ctime_ns] of
    the database and of its WAL (None: no such file), and when the snapshot looked (time.time_ns())."""

    source_files: list[list[int] | None]
    source_seen_ns: int


class FileMeta(TypedDict):
    """What a stored file's source is: a manifest entry's first keys (ManifestFile without where it is stored)."""

    source: str
    rel: str  # the path under its source (a file's own name for kinds file and sqlite)
    size: int
    mtime_ns: int
    mode: int
    uid: int
    gid: int
    # SQLite sources only: the database's signature when it was copied.
    source_files: NotRequired[list[list[int] | None]]
    source_seen_ns: NotRequired[int]


class ManifestFile(FileMeta):
    """One stored file of a snapshot."""

    stored: str  # the path in the snapshot: data/<source>/<rel>[.zst]
    zstd: bool
    sha256: str  # of the content
    stored_sha256: str  # of the stored bytes (the off-site object's name)


class ManifestSource(TypedDict):
    name: str
    kind: str  # tree | file | sqlite | latest_dir | influxdb
    path: str  # "" for influxdb
    data: bool  # a restore refuses to replace it when it is not empty


class Manifest(TypedDict):
    id: str
    created: str
    host: str
    sources: list[ManifestSource]
    skipped: list[str]
    files: list[ManifestFile]


class SpaceReport(TypedDict):
    """The space check before a run (make_room)."""

    needed_bytes: int
    free_bytes: int
    min_free_bytes: int
    pruned_before: list[str]


class BackupStatus(TypedDict):
    """The backup status file: the last `mov-backup run`."""

    time: str
    result: Result
    snapshot: str | None
    size_bytes: int
    new_bytes: int
    offsite: Literal["ok", "failed", "disabled"]
    space: NotRequired[SpaceReport]
    uploaded_objects: NotRequired[int]
    error: NotRequired[str]
    # Always written; NotRequired only because they are known at the end of the run.
    duration_s: NotRequired[float]
    local_snapshots: NotRequired[int]


class DrillCheck(TypedDict):
    """One part of the restored copy against production. restored/production: point counts per measurement
    (influxdb), an SQLite summary (sqlite) or, for files, restored is a count that `snapshot` is compared with."""

    part: str
    ok: bool
    restored: object
    production: NotRequired[object]
    snapshot: NotRequired[int]
    detail: str


class ReadbackStatus(TypedDict):
    """A drill's read-back of the off-site copy (readback.py): every manifest, and the objects of one slice."""

    slice: int  # this drill's slice, 0 .. of - 1
    of: int  # the number of slices: drill_readback_weeks
    manifests: int
    objects: int  # read back in this slice (besides the drilled snapshot's, read by its download)
    bytes: int
    ok: bool
    damaged: list[str]  # each object that is missing, does not decrypt or whose sha256 differs, and why


class DrillStatus(TypedDict):
    """The restore drill's status file (drill.json): the last `mov-backup drill`."""

    time: str
    result: Result
    origin: str  # local | remote
    snapshot: str | None
    checks: list[DrillCheck]
    readback: NotRequired[ReadbackStatus]  # a drill from the off-site copy only
    error: NotRequired[str]
    duration_s: NotRequired[float]


# What a history line records.
RunKind = Literal["backup", "drill"]


class HistoryEntry(TypedDict):
    """One line of the history file: a run's or a drill's status, as its status file got it."""

    kind: RunKind
    status: BackupStatus | DrillStatus
