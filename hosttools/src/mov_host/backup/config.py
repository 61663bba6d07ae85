"""mov-backup's configuration file (JSON, written by the backup role): what to back up, where, how long to keep it,
and where a failure is reported."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mov_host.backup.errors import BackupError

DEFAULT_CONFIG = "/etc/mov-backup/config.json"


@dataclass(frozen=True)
class Source:
    name: str
    kind: str  # tree | file | sqlite | latest_dir
    path: str
    data: bool


@dataclass(frozen=True)
class Retention:
    daily: int
    weekly: int
    monthly: int
    last: int = 1


@dataclass(frozen=True)
class Email:
    """Where a failure's alert is e-mailed (no recipients or no host: not e-mailed)."""

    to: tuple[str, ...] = ()
    host: str = ""
    port: int = 587
    user: str = ""
    sender: str = ""
    # Plain SMTP only to a relay on this host (a test's, or a local MTA): the password never crosses a network
    # in the clear.
    starttls: bool = True
    password_file: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.to and self.host)


@dataclass(frozen=True)
class Config:
    backup_dir: Path
    status_file: Path
    sources: tuple[Source, ...]
    retention: Retention
    zstd_level: int
    stack_dir: str
    stack_project: str
    stack_services: tuple[str, ...]
    influxdb_service: str
    influxdb_bucket: str
    # Where each run's and drill's result is recorded as a point (influx.record_result); empty: not recorded.
    metrics_bucket: str
    remote: str  # rclone "name:path" of the crypt remote; empty: no off-site copy
    remote_retention: Retention
    rclone_config: str
    webhook_url: str
    env: str
    email: Email = Email()
    # Free space a run leaves on the backup filesystem beyond what it estimates it writes.
    min_free_bytes: int = 0
    # The drill reads back a slice of the off-site objects, so that every object is read within this many drills.
    drill_readback_weeks: int = 4
    # The long-term history's bucket (its downsampling task's): the drill compares it too, up to
    # influxdb_history_settle_s before the snapshot (the windows the task may still rewrite after it); empty: none.
    influxdb_history_bucket: str = ""
    influxdb_history_settle_s: int = 0


SOURCE_KINDS = ("tree", "file", "sqlite", "latest_dir")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _retention(raw: Any, where: str) -> Retention:
    if not isinstance(raw, dict):
        raise BackupError(f"{where}: expected {{daily, weekly, monthly}}")
    values = {k: raw.get(k) for k in ("daily", "weekly", "monthly")} | {"last": raw.get("last", 1)}
    for key, value in values.items():
        if not isinstance(value, int) or value < 0:
            raise BackupError(f"{where}.{key}: expected an integer >= 0, got {value!r}")
    return Retention(int(raw["daily"]), int(raw["weekly"]), int(raw["monthly"]), max(1, int(raw.get("last", 1))))


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise BackupError(f"{where}: expected true or false, got {value!r}")


def _email(raw: Any) -> Email:
    if not raw:
        return Email()
    if not isinstance(raw, dict) or not isinstance(raw.get("to", []), list):
        raise BackupError("config email: expected {to: [addresses], host, port, user, from, starttls, password_file}")
    mail = Email(
        to=tuple(str(a) for a in raw.get("to", []) if a),
        host=str(raw.get("host", "")),
        port=int(raw.get("port", 587)),
        user=str(raw.get("user", "")),
        sender=str(raw.get("from", "")),
        starttls=_flag(raw.get("starttls", True), "email.starttls"),
        password_file=str(raw.get("password_file", "")),
    )
    if mail.enabled and not mail.sender:
        raise BackupError("config email.from: needed to e-mail alerts")
    if mail.enabled and not mail.starttls and mail.host not in LOOPBACK_HOSTS:
        raise BackupError(f"config email.starttls: false is for a relay on this host only, not {mail.host}")
    return mail


def load_config(path: str) -> Config:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"config {path}: {exc}") from exc
    sources = []
    for index, item in enumerate(raw.get("sources", [])):
        absolute = str(item.get("path", "")).startswith("/")
        if item.get("kind") not in SOURCE_KINDS or not item.get("name") or not absolute:
            raise BackupError(f"config sources[{index}]: needs name, an absolute path and kind in {SOURCE_KINDS}")
        sources.append(Source(str(item["name"]), str(item["kind"]), str(item["path"]), bool(item.get("data", False))))
    names = [s.name for s in sources]
    if len(set(names)) != len(names) or "influxdb" in names:
        raise BackupError("config sources: names must be unique (and 'influxdb' is the InfluxDB part's)")
    stack = raw.get("stack", {})
    remote = raw.get("remote", {})
    return Config(
        backup_dir=Path(raw["backup_dir"]),
        status_file=Path(raw["status_file"]),
        sources=tuple(sources),
        retention=_retention(raw.get("retention"), "retention"),
        zstd_level=int(raw.get("zstd_level", 1)),
        stack_dir=str(stack.get("dir", "")),
        stack_project=str(stack.get("project", "mov")),
        stack_services=tuple(stack.get("services", [])),
        influxdb_service=str(stack.get("influxdb_service", "influxdb")),
        influxdb_bucket=str(stack.get("influxdb_bucket", "mov_dados")),
        metrics_bucket=str(stack.get("metrics_bucket", "")),
        remote=str(remote.get("target", "")),
        remote_retention=_retention(remote.get("retention", raw.get("retention")), "remote.retention"),
        rclone_config=str(remote.get("rclone_config", "")),
        webhook_url=str(raw.get("webhook_url", "")),
        env=str(raw.get("env", "")),
        email=_email(raw.get("email")),
        min_free_bytes=int(raw.get("min_free_bytes", 0)),
        drill_readback_weeks=_weeks(raw.get("drill_readback_weeks", 4)),
        influxdb_history_bucket=str(stack.get("influxdb_history_bucket", "")),
        influxdb_history_settle_s=int(stack.get("influxdb_history_settle_s", 0)),
    )


def _weeks(value: Any) -> int:
    if isinstance(value, bool) or not str(value).isdigit() or int(value) < 1:
        raise BackupError(f"config drill_readback_weeks: expected an integer >= 1, got {value!r}")
    return int(value)


def drill_status_file(cfg: Config) -> Path:
    """The restore drill's status file (records.DrillStatus), next to the backup's."""
    return cfg.status_file.with_name("drill.json")


def readback_cursor_file(cfg: Config) -> Path:
    """The read-back's cursor (the slice the next drill reads), next to the status file."""
    return cfg.status_file.with_name("drill-readback.json")


def history_file(cfg: Config) -> Path:
    """Every run's and drill's result, one JSON line each (records.HistoryEntry), next to the status file."""
    return cfg.status_file.with_name("history.jsonl")
