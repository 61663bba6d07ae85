"""movctl's configuration (written by the Ansible role `movctl` from the platform's config tree), its exit codes
and the error every command raises for the operator to see."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from mov_host import paths

DEFAULT_CONFIG = paths.MOVCTL_CONFIG

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_INSTALLED = 3
EXIT_REFUSED = 4


class MovctlError(Exception):
    """A failure the operator must see; the message names what failed and, where there is one, the fix."""

    def __init__(self, message: str, code: int = EXIT_FAILED, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details or {}


@dataclass(frozen=True)
class BenchInflux:
    """Where `movctl bench` writes, reads back and deletes its points (only when InfluxDB runs)."""

    url: str
    org: str
    readings_bucket: str
    status_bucket: str
    status_measurement: str
    admin_token_file: str  # writes and deletes the bench's points (root reads it)
    read_token_file: str  # the load generator reads status points with it


@dataclass(frozen=True)
class BenchConfig:
    """`movctl bench`: its temporary devices' client, the caps an operator cannot exceed, and what it measures."""

    client: str
    devices: int
    rate: float
    duration_s: float
    max_devices: int
    max_rate: float
    max_duration_s: float
    topic: str
    field: str
    values: tuple[float, float]  # below the first status threshold, and between it and the alert threshold
    tipo: str
    passwd_file: str
    ca_file: str  # the broker's CA on the host; empty: the system's CAs
    results_dir: str
    influxdb: BenchInflux | None
    grafana_health_url: str
    backup_lock_file: str
    deploy_marker: str
    deploy_marker_max_age_s: float


@dataclass(frozen=True)
class Config:
    env: str
    stack_dir: str
    project: str
    compose_file: str
    services: tuple[str, ...]
    wait_timeout_s: int
    releases_dir: str
    cleanup_keep_releases: int
    backup_tool: str
    backup_config: str
    backup_status_file: str
    backup_max_age_h: float
    cert_file: str
    domains: tuple[str, ...]
    cert_warn_days: int
    mqtt_tls_port: int
    mqtt_tls_name: str
    nginx_http_port: int
    nginx_https_port: int
    disk_paths: tuple[str, ...]
    disk_min_free_gb: float
    bench: BenchConfig | None = None


def default_config_path() -> str:
    """The configuration movctl reads when not given one: the environment's MOVCTL_CONFIG, else the role's file."""
    return os.environ.get(paths.MOVCTL_CONFIG_ENV, DEFAULT_CONFIG)


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise MovctlError(f"config: {name} must be a mapping, got {value!r}")
    return value


def config_from_dict(raw: Any) -> Config:
    if not isinstance(raw, dict):
        raise MovctlError("config: expected a JSON object")
    stack, releases, backup = _section(raw, "stack"), _section(raw, "releases"), _section(raw, "backup")
    cert, mqtt, nginx, disk = (_section(raw, n) for n in ("certificate", "mqtt", "nginx", "disk"))
    try:
        stack_dir = str(stack["dir"])
        cfg = Config(
            env=str(raw.get("env", "")),
            stack_dir=stack_dir,
            project=str(stack.get("project", "mov")),
            compose_file=str(stack.get("compose_file", f"{stack_dir}/compose.yaml")),
            services=tuple(str(s) for s in stack["services"]),
            wait_timeout_s=int(stack.get("wait_timeout_s", 180)),
            releases_dir=str(releases.get("dir", f"{stack_dir}/releases")),
            cleanup_keep_releases=int(releases.get("cleanup_keep", 5)),
            backup_tool=str(backup.get("tool", paths.BACKUP_TOOL)),
            backup_config=str(backup.get("config", "")),
            backup_status_file=str(backup.get("status_file", paths.BACKUP_STATUS_FILE)),
            backup_max_age_h=float(backup.get("max_age_hours", 26)),
            cert_file=str(cert.get("file", "")),
            domains=tuple(str(d) for d in cert.get("domains", [])),
            cert_warn_days=int(cert.get("warn_days", 14)),
            mqtt_tls_port=int(mqtt.get("tls_port", 8883)),
            mqtt_tls_name=str(mqtt.get("tls_name", "localhost")),
            nginx_http_port=int(nginx.get("http_port", 80)),
            nginx_https_port=int(nginx.get("https_port", 443)),
            disk_paths=tuple(str(p) for p in disk.get("paths", [stack_dir])),
            disk_min_free_gb=float(disk.get("min_free_gb", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MovctlError(f"config: missing or invalid value: {exc}") from exc
    if "bench" in raw:
        cfg = replace(cfg, bench=bench_from_dict(_section(raw, "bench"), stack_dir))
    if not cfg.services:
        raise MovctlError("config: stack.services is empty")
    if cfg.cleanup_keep_releases < 1:
        raise MovctlError("config: releases.cleanup_keep must be at least 1 (the current release is always kept)")
    return cfg


def bench_from_dict(raw: dict[str, Any], stack_dir: str) -> BenchConfig:
    influx = raw.get("influxdb")
    try:
        values = [float(v) for v in raw["values"]]
        bench = BenchConfig(
            client=str(raw.get("client", "movbench")),
            devices=int(raw.get("devices", 5)),
            rate=float(raw.get("rate", 50)),
            duration_s=float(raw.get("duration_s", 10)),
            max_devices=int(raw.get("max_devices", 20)),
            max_rate=float(raw.get("max_rate", 200)),
            max_duration_s=float(raw.get("max_duration_s", 60)),
            topic=str(raw.get("topic", "mov/dados")),
            field=str(raw["field"]),
            values=(values[0], values[1]),
            tipo=str(raw.get("tipo", "bench")),
            passwd_file=str(raw.get("passwd_file", f"{stack_dir}/mosquitto/config/passwd")),
            ca_file=str(raw.get("ca_file", "")),
            results_dir=str(raw.get("results_dir", "/var/lib/mov/bench")),
            influxdb=None if not influx else BenchInflux(**{f.name: str(influx[f.name]) for f in fields(BenchInflux)}),
            grafana_health_url=str(raw.get("grafana_health_url", "")),
            backup_lock_file=str(raw.get("backup_lock_file", paths.BACKUP_LOCK_FILE)),
            deploy_marker=str(raw.get("deploy_marker", paths.DEPLOY_MARKER)),
            deploy_marker_max_age_s=float(raw.get("deploy_marker_max_age_s", 7200)),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise MovctlError(f"config: bench: missing or invalid value: {exc!r}") from exc
    if not bench.client or "/" in bench.client or "+" in bench.client or "#" in bench.client:
        raise MovctlError(f"config: bench.client must be a plain name, got {bench.client!r}")
    if not 1 <= bench.devices <= bench.max_devices or not 0 < bench.rate <= bench.max_rate:
        raise MovctlError("config: bench.devices and bench.rate must be within bench.max_devices and bench.max_rate")
    if not 0 < bench.duration_s <= bench.max_duration_s:
        raise MovctlError("config: bench.duration_s must be within bench.max_duration_s")
    return bench


def load_config(path: str) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise MovctlError(
            f"the platform is not installed here: no configuration at {path} (the Ansible role "
            "movctl writes it: ansible-playbook site.yml -i inventories/<env>)",
            EXIT_NOT_INSTALLED,
        ) from exc
    except OSError as exc:
        raise MovctlError(f"config {path}: {exc}") from exc
    try:
        return config_from_dict(json.loads(text))
    except ValueError as exc:
        raise MovctlError(f"config {path}: not valid JSON: {exc}") from exc
