"""mov-status-page's configuration (written by the Ansible role `status_page`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mov_host import paths

DEFAULT_CONFIG = "/etc/mov/status-page.json"


@dataclass(frozen=True)
class Config:
    out_dir: str = "/opt/mov/status-page"
    title: str = "MOV platform"
    # Where movctl was run from when the page ran it as a command; still accepted, no longer used: movctl's status
    # is read in-process now, with movctl's own configuration.
    movctl: str = paths.MOVCTL
    # movctl's configuration; empty: movctl's default (MOVCTL_CONFIG in the environment, else its role's file).
    movctl_config: str = ""
    backup_status_file: str = paths.BACKUP_STATUS_FILE
    drill_status_file: str = paths.DRILL_STATUS_FILE
    backup_history_file: str = paths.BACKUP_HISTORY_FILE
    backup_max_age_hours: float = 26.0
    drill_max_age_days: float = 8.0
    cert_warn_days: int = 14
    readings_max_age_minutes: float = 15.0
    influxdb_url: str = ""  # empty: InfluxDB is not among this host's services
    influxdb_org: str = ""
    influxdb_bucket: str = ""
    influxdb_token_file: str = ""
    influxdb_site_tag: str = "localizacao"
    influxdb_lookback_hours: int = 168
    # The infrastructure bucket, where Telegraf writes the broker's drop counter; empty: not collected here.
    influxdb_infra_bucket: str = ""
    dropped_window_hours: int = 24
    # The edge gateways' plants (docs/plants.md), from the inventory: each one's last heartbeat (Telegraf's
    # gateway_measurement in the infrastructure bucket, field uptime, tag planta), older than gateway_offline_minutes
    # or none in influxdb_lookback_hours is a warning. None: no such section.
    gateways: list[str] = field(default_factory=list)
    gateway_offline_minutes: float = 5.0
    gateway_measurement: str = "mov_gateway"
    public_page: bool = False  # also write public.html and public.json (counts only)


def load_config(path: str | None) -> Config:
    if path is None:
        return Config()
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a JSON object")
    known = set(Config.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {', '.join(unknown)}")
    return Config(**raw)
