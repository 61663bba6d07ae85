#!/usr/bin/env python3
"""movctl: operate the MOV platform on its host.

    movctl status                              services, last backup, certificate, disk
    movctl start|stop|restart [SERVICE...]     the compose services (all when none is named)
    movctl logs [SERVICE...] [-f] [--tail N]   their logs
    movctl backup                              a snapshot now (mov-backup run)
    movctl restore [SNAPSHOT] [--force]        put a snapshot back (latest by default)
    movctl cleanup [--dry-run]                 images no kept release uses, one-off and old services' containers
    movctl test                                the checks that can run on the host
    movctl update                              says how: updates are applied from the controller

Every command takes --json (one JSON document on stdout; `logs --json` prints one object a line) and --help.
Exit codes: 0 ok, 1 a check or an operation failed, 2 usage error or not supported here, 3 the platform is not
installed (no configuration, compose file, Docker or backup tool), 4 refused (a restore over data that is not
empty without --force).

The configuration (/etc/mov/movctl.json) is written by the Ansible role `movctl` from the platform's config tree.
Standard library only: the host has Debian's python3 and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "/etc/mov/movctl.json"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_INSTALLED = 3
EXIT_REFUSED = 4

SNAPSHOT_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z$")
# "mosquitto-1  | 2026-11-26T16:00:00.123456789Z message" (compose logs --timestamps); older composes prefix the
# container name (mov-mosquitto-1).
# compose logs writes an erase-line escape before each line, --no-color or not.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LOG_LINE = re.compile(r"^(?P<name>\S+?)\s*\|\s?(?:(?P<time>\d{4}-\d\d-\d\dT\S+)\s)?(?P<message>.*)$")


class MovctlError(Exception):
    """A failure the operator must see; the message names what failed and, where there is one, the fix."""

    def __init__(self, message: str, code: int = EXIT_FAILED, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details or {}


# --- configuration ---------------------------------------------------------------------------------


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
            backup_tool=str(backup.get("tool", "/usr/local/bin/mov-backup")),
            backup_config=str(backup.get("config", "")),
            backup_status_file=str(backup.get("status_file", "/var/lib/mov-backup/status.json")),
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
    if not cfg.services:
        raise MovctlError("config: stack.services is empty")
    if cfg.cleanup_keep_releases < 1:
        raise MovctlError("config: releases.cleanup_keep must be at least 1 (the current release is always kept)")
    return cfg


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


# --- running commands ------------------------------------------------------------------------------


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


# --- service state ---------------------------------------------------------------------------------


@dataclass
class ServiceState:
    service: str
    state: str  # running, exited, ..., or missing (no container)
    health: str  # healthy, unhealthy, starting, or "" (no healthcheck)
    uptime_s: int | None = None
    container: str = ""
    image: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "running" and self.health in ("healthy", "")


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


def service_states(
    cfg: Config, rows: list[dict[str, Any]], started: dict[str, datetime | None], now: datetime
) -> list[ServiceState]:
    """One row per configured service (missing when it has no container), then any other service of the project."""
    by_service: dict[str, dict[str, Any]] = {}
    for item in rows:
        by_service.setdefault(str(item.get("Service", "")), item)
    states = []
    for name in [*cfg.services, *sorted(set(by_service) - set(cfg.services))]:
        row = by_service.get(name)
        if row is None:
            states.append(ServiceState(name, "missing", ""))
            continue
        state = str(row.get("State", "")).lower()
        since = started.get(str(row.get("ID", "")))
        uptime = int((now - since).total_seconds()) if since and state == "running" else None
        states.append(
            ServiceState(
                name,
                state,
                str(row.get("Health", "") or ""),
                uptime,
                str(row.get("Name", "")),
                str(row.get("Image", "")),
            )
        )
    return states


def read_states(cfg: Config) -> list[ServiceState]:
    rows = parse_ps(compose(cfg, "ps", "--all", "--format", "json", what="docker compose ps"))
    started: dict[str, datetime | None] = {}
    ids = [str(r["ID"]) for r in rows if r.get("ID")]
    if ids:
        result = run(["docker", "inspect", *ids])
        if result.returncode == 0:
            for item in json.loads(result.stdout or "[]"):
                since = parse_docker_time(str(item.get("State", {}).get("StartedAt", "")))
                started[str(item.get("Id", ""))] = since
                started[str(item.get("Id", ""))[:12]] = since
    return service_states(cfg, rows, started, datetime.now(UTC))


def wait_healthy(cfg: Config, names: Sequence[str], timeout: float) -> list[ServiceState]:
    deadline = time.monotonic() + timeout
    while True:
        states = [s for s in read_states(cfg) if s.service in names]
        if all(s.ok for s in states):
            return states
        if time.monotonic() >= deadline:
            bad = ", ".join(f"{s.service} {s.state}{' ' + s.health if s.health else ''}" for s in states if not s.ok)
            raise MovctlError(
                f"not healthy after {timeout:.0f}s: {bad}; look at: movctl logs "
                f"{' '.join(s.service for s in states if not s.ok)}",
                details={"services": [asdict(s) for s in states]},
            )
        time.sleep(2)


# --- rendering -------------------------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *rows]
    ]
    return "\n".join(lines)


def emit_json(document: Any) -> None:
    print(json.dumps(document, indent=2, sort_keys=False, default=str), flush=True)


# --- status: backup, certificate, disk -------------------------------------------------------------


def backup_summary(cfg: Config, status: dict[str, Any] | None, tool_present: bool, now: datetime) -> dict[str, Any]:
    """The last backup as status shows it, with `problem` set when it needs attention."""
    if not tool_present:
        return {"installed": False, "problem": f"the backup tool {cfg.backup_tool} is not installed"}
    if status is None:
        return {"installed": True, "result": None, "problem": "no backup has run yet (movctl backup)"}
    when = None
    with contextlib.suppress(ValueError):
        when = datetime.fromisoformat(str(status.get("time", "")))
    age = int((now - when).total_seconds()) if when else None
    summary: dict[str, Any] = {
        "installed": True,
        "result": status.get("result"),
        "time": status.get("time"),
        "age_s": age,
        "snapshot": status.get("snapshot"),
        "offsite": status.get("offsite"),
    }
    if status.get("result") != "ok":
        summary["problem"] = f"the last backup failed: {status.get('error', 'no error recorded')}"
    elif age is None:
        summary["problem"] = "the last backup's time is unreadable"
    elif age > cfg.backup_max_age_h * 3600:
        summary["problem"] = (
            f"the last backup is {format_duration(age)} old (more than "
            f"{cfg.backup_max_age_h:g} h): is the nightly job running?"
        )
    return summary


def read_backup_status(cfg: Config) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(cfg.backup_status_file).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"result": "unreadable", "error": f"{cfg.backup_status_file}: {exc}"}
    return data if isinstance(data, dict) else {"result": "unreadable", "error": "not a JSON object"}


def certificate_summary(cfg: Config, not_after: datetime | None, error: str, now: datetime) -> dict[str, Any]:
    summary: dict[str, Any] = {"file": cfg.cert_file, "domains": list(cfg.domains)}
    if not_after is None:
        summary["problem"] = error or f"no certificate at {cfg.cert_file}"
        return summary
    days = int((not_after - now).total_seconds() // 86400)
    summary.update(not_after=not_after.isoformat(), days_left=days)
    if days < 0:
        summary["problem"] = f"the certificate expired {-days} days ago"
    elif days < cfg.cert_warn_days:
        summary["problem"] = f"the certificate expires in {days} days (renewal: systemctl status certbot.timer)"
    return summary


def read_certificate_end(path: str) -> tuple[datetime | None, str]:
    """The first certificate's notAfter (the leaf of a fullchain.pem)."""
    if not path or not Path(path).is_file():
        return None, f"no certificate at {path or '(not configured)'}"
    if shutil.which("openssl"):
        result = run(["openssl", "x509", "-noout", "-enddate", "-in", path], timeout=15)
        if result.returncode != 0 or "=" not in result.stdout:
            return None, f"openssl cannot read {path}: {result.stderr.strip()}"
        not_after = result.stdout.strip().split("=", 1)[1]
    else:
        # No openssl binary: CPython's own decoder (what its test suite uses) reads the PEM file.
        try:
            decoded: dict[str, Any] = getattr(ssl, "_ssl")._test_decode_cert(path)  # noqa: B009
        except (AttributeError, OSError, ssl.SSLError) as exc:
            return None, f"cannot read {path}: {exc}"
        not_after = str(decoded.get("notAfter", ""))
    try:
        return datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC), ""
    except ValueError as exc:
        return None, f"{path}: unreadable expiry {not_after!r}: {exc}"


def disk_summary(cfg: Config, usage: Callable[[str], tuple[int, int, int]] = shutil.disk_usage) -> list[dict[str, Any]]:
    rows = []
    for path in cfg.disk_paths:
        if not Path(path).exists():
            continue
        total, _, free = usage(path)
        row: dict[str, Any] = {
            "path": path,
            "free_bytes": free,
            "total_bytes": total,
            "free_percent": round(100 * free / total, 1) if total else 0.0,
        }
        if free < cfg.disk_min_free_gb * 1024**3:
            row["problem"] = f"{path}: {free / 1024**3:.1f} GB free, below {cfg.disk_min_free_gb:g} GB"
        rows.append(row)
    return rows


def status_document(
    cfg: Config, states: list[ServiceState], backup: dict[str, Any], cert: dict[str, Any], disk: list[dict[str, Any]]
) -> dict[str, Any]:
    attention = [
        f"{s.service} is {s.state}{', ' + s.health if s.health and s.health != 'healthy' else ''}"
        for s in states
        if not s.ok
    ]
    attention += [item["problem"] for item in (backup, cert, *disk) if item.get("problem")]
    return {
        "env": cfg.env,
        "ok": not attention,
        "services": [asdict(s) for s in states],
        "backup": backup,
        "certificate": cert,
        "disk": disk,
        "attention": attention,
    }


def render_status(doc: dict[str, Any]) -> str:
    rows = [[s["service"], s["state"], s["health"] or "-", format_duration(s["uptime_s"])] for s in doc["services"]]
    lines = [
        f"MOV platform{' (' + doc['env'] + ')' if doc['env'] else ''}",
        "",
        render_table(["SERVICE", "STATE", "HEALTH", "UPTIME"], rows),
        "",
    ]
    backup = doc["backup"]
    if not backup.get("installed"):
        lines.append("backup       not installed")
    elif backup.get("result") is None:
        lines.append("backup       none yet")
    else:
        lines.append(
            f"backup       {backup['result']}, {format_duration(backup.get('age_s'))} ago"
            f" (snapshot {backup.get('snapshot') or '-'}, off-site {backup.get('offsite') or '-'})"
        )
    cert = doc["certificate"]
    names = ", ".join(cert["domains"]) or cert["file"]
    if "days_left" in cert:
        lines.append(f"certificate  {names}: expires in {cert['days_left']} days ({cert['not_after'][:10]})")
    else:
        lines.append(f"certificate  {names}: unknown")
    for row in doc["disk"]:
        free_gb = row["free_bytes"] / 1024**3
        lines.append(f"disk         {row['path']}: {free_gb:.1f} GB free ({row['free_percent']:g} %)")
    if doc["attention"]:
        lines += ["", "attention:"] + [f"  - {item}" for item in doc["attention"]]
    return "\n".join(lines)


# --- cleanup: what the kept releases do not use --------------------------------------------------


@dataclass(frozen=True)
class Image:
    id: str
    repository: str
    tag: str

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}" if self.repository != "<none>" and self.tag != "<none>" else self.id


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    state: str
    image_id: str
    project: str
    # Compose's labels: the service it belongs to, and whether it is a one-off (`compose run`) container.
    service: str = ""
    oneoff: bool = False


@dataclass
class CleanupPlan:
    kept_releases: list[str]
    current_release: str
    containers: list[Container] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    kept_images: list[str] = field(default_factory=list)


def repository_of(ref: str) -> str:
    """mov/analytics:0.1.0@sha256:... -> mov/analytics (a registry's port is not a tag)."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def plan_cleanup(
    releases: Sequence[dict[str, Any]],
    keep: int,
    compose_sha256: str,
    images: Sequence[Image],
    containers: Sequence[Container],
    project: str,
    services: Iterable[str],
) -> CleanupPlan:
    """Which images and containers cleanup removes.

    Containers: the project's stopped ones that are one-off (`compose run`) or belong to a service the current
    compose file (`services`) no longer has. A stopped container of a current service stays: an operator may have
    stopped it on purpose (`movctl stop mosquitto`), and `movctl start` brings it back as it was.
    Images kept: every image a record of the last `keep` releases names (by id or reference), the current release's
    (the one whose compose file is in place; the newest when none is), and every image a container still uses
    after the removed containers are gone. Removed: images of the platform's repositories (named by any release
    record) or dangling ones, that nothing above keeps. Volumes are never touched.
    """
    current_services = set(services)
    ordered = sorted(releases, key=lambda r: str(r.get("id", "")))
    current = next(
        (r for r in reversed(ordered) if r.get("compose_sha256") == compose_sha256), ordered[-1] if ordered else None
    )
    kept = ordered[-keep:] if keep > 0 else []
    if current is not None and current not in kept:
        kept = [current, *kept]
    keep_ids: set[str] = set()
    keep_refs: set[str] = set()
    repositories: set[str] = set()
    for record in ordered:
        for image in (record.get("images") or {}).values():
            repositories.add(repository_of(str(image.get("ref", ""))))
    for record in kept:
        for image in (record.get("images") or {}).values():
            keep_ids.add(str(image.get("id", "")))
            keep_refs.add(str(image.get("ref", "")))
    keep_ids.discard("")
    removable = [
        c
        for c in containers
        if c.project == project
        and c.state in ("exited", "created", "dead")
        and (c.oneoff or c.service not in current_services)
    ]
    in_use = {c.image_id for c in containers if c not in removable}
    plan = CleanupPlan([str(r.get("id")) for r in kept], str(current.get("id")) if current else "", removable)
    for image in images:
        dangling = image.repository == "<none>"
        if image.id in keep_ids or image.ref in keep_refs or image.id in in_use:
            plan.kept_images.append(image.ref)
        elif dangling or image.repository in repositories:
            plan.images.append(image)
    return plan


def read_releases(cfg: Config) -> list[dict[str, Any]]:
    records = []
    root = Path(cfg.releases_dir)
    for path in sorted(root.glob("*/release.json")) if root.is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MovctlError(f"unreadable release record {path}: {exc}") from exc
        if isinstance(record, dict):
            record.setdefault("id", path.parent.name)
            records.append(record)
    return records


def read_images() -> list[Image]:
    result = run(["docker", "image", "ls", "--no-trunc", "--format", "{{json .}}"])
    if result.returncode != 0:
        raise MovctlError(f"docker image ls failed: {result.stderr.strip()}")
    images = []
    for line in result.stdout.splitlines():
        if line.strip():
            row = json.loads(line)
            images.append(
                Image(str(row.get("ID", "")), str(row.get("Repository", "<none>")), str(row.get("Tag", "<none>")))
            )
    return images


def read_containers() -> list[Container]:
    ids = run(["docker", "ps", "--all", "--quiet", "--no-trunc"]).stdout.split()
    if not ids:
        return []
    result = run(["docker", "inspect", *ids])
    if result.returncode != 0:
        raise MovctlError(f"docker inspect failed: {result.stderr.strip()}")
    containers = []
    for item in json.loads(result.stdout or "[]"):
        labels = (item.get("Config") or {}).get("Labels") or {}
        containers.append(
            Container(
                str(item.get("Id", "")),
                str(item.get("Name", "")).lstrip("/"),
                str((item.get("State") or {}).get("Status", "")),
                str(item.get("Image", "")),
                str(labels.get("com.docker.compose.project", "")),
                str(labels.get("com.docker.compose.service", "")),
                str(labels.get("com.docker.compose.oneoff", "")).lower() == "true",
            )
        )
    return containers


def read_compose_services(cfg: Config) -> list[str]:
    """The services of the compose file in place (what a container's service label is checked against)."""
    services = compose(cfg, "config", "--services", what="read the compose file's services").split()
    if not services:
        raise MovctlError(f"{cfg.compose_file} names no service")
    return services


def sha256_of(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


# --- MQTT and nginx probes -------------------------------------------------------------------------

MQTT_CONNECT = bytes([0x10, 0x16, 0x00, 0x04]) + b"MQTT" + bytes([0x04, 0x02, 0x00, 0x0A, 0x00, 0x0A]) + b"movctl-tst"
CONNACK_CODES = {
    0: "accepted",
    1: "bad protocol",
    2: "client id refused",
    3: "unavailable",
    4: "bad credentials",
    5: "not authorised",
}


def _tls_context() -> ssl.SSLContext:
    # Whether it answers TLS is the question; the certificate's validity is status's (expiry) and verify's.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def probe_mqtt_tls(host: str, port: int, server_name: str, timeout: float = 5) -> tuple[bool, str]:
    """A TLS handshake, then an anonymous MQTT CONNECT: any CONNACK proves the broker behind the TLS answers."""
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            _tls_context().wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            version = tls.version()
            tls.sendall(MQTT_CONNECT)
            answer = tls.recv(4)
    except (OSError, ssl.SSLError) as exc:
        return False, f"{host}:{port}: {type(exc).__name__}: {exc}"
    if len(answer) >= 4 and answer[0] == 0x20:
        return True, f"{host}:{port}: {version}, MQTT CONNACK ({CONNACK_CODES.get(answer[3], answer[3])})"
    return False, f"{host}:{port}: {version}, but no MQTT CONNACK (got {answer!r})"


def probe_http(host: str, port: int, server_name: str, use_tls: bool, timeout: float = 5) -> tuple[bool, str]:
    request = f"HEAD / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            conn: socket.socket = _tls_context().wrap_socket(raw, server_hostname=server_name) if use_tls else raw
            conn.sendall(request)
            first = conn.recv(256).split(b"\r\n", 1)[0].decode(errors="replace")
    except (OSError, ssl.SSLError) as exc:
        return False, f"{host}:{port}: {type(exc).__name__}: {exc}"
    if first.startswith("HTTP/"):
        return True, f"{host}:{port}: {first}"
    return False, f"{host}:{port}: not an HTTP answer ({first!r})"


def nginx_present() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


# --- commands --------------------------------------------------------------------------------------


def cmd_status(cfg: Config, args: argparse.Namespace) -> int:
    require_stack(cfg)
    now = datetime.now(UTC)
    states = read_states(cfg)
    backup = backup_summary(cfg, read_backup_status(cfg), Path(cfg.backup_tool).exists(), now)
    cert = certificate_summary(cfg, *read_certificate_end(cfg.cert_file), now)
    doc = status_document(cfg, states, backup, cert, disk_summary(cfg))
    if args.json:
        emit_json(doc)
    else:
        print(render_status(doc))
    return EXIT_OK if doc["ok"] else EXIT_FAILED


def cmd_lifecycle(cfg: Config, args: argparse.Namespace) -> int:
    names = check_services(cfg, args.services)
    require_stack(cfg)
    targets = names or list(cfg.services)
    if args.command == "stop":
        compose(cfg, "stop", *names, timeout=cfg.wait_timeout_s + 60)
        states = [s for s in read_states(cfg) if s.service in targets]
        still = [s.service for s in states if s.state == "running"]
        if still:
            raise MovctlError(f"still running after stop: {', '.join(still)}")
    else:
        if args.command == "start":
            # Starts what is deployed (containers removed by cleanup are recreated as they were); a deploy
            # with a new configuration is Ansible's.
            compose(cfg, "up", "--detach", "--no-recreate", "--no-build", *names, timeout=cfg.wait_timeout_s + 60)
        else:
            compose(cfg, "restart", *names, timeout=cfg.wait_timeout_s + 60)
        states = wait_healthy(cfg, targets, cfg.wait_timeout_s)
    doc = {"ok": True, "command": args.command, "services": [asdict(s) for s in states]}
    if args.json:
        emit_json(doc)
    else:
        verb = {"start": "started", "stop": "stopped", "restart": "restarted"}[args.command]
        print(f"{verb}: {', '.join(targets)}")
        print(render_table(["SERVICE", "STATE", "HEALTH"], [[s.service, s.state, s.health or "-"] for s in states]))
    return EXIT_OK


def strip_ansi(text: str) -> str:
    return ANSI_ESCAPE.sub("", text)


def parse_log_line(line: str, project: str) -> dict[str, str]:
    line = strip_ansi(line).rstrip("\n")
    match = LOG_LINE.match(line)
    if not match:
        return {"service": "", "time": "", "message": line}
    name = match.group("name")
    name = name[len(project) + 1 :] if name.startswith(project + "-") else name
    name = re.sub(r"-\d+$", "", name)
    return {"service": name, "time": match.group("time") or "", "message": match.group("message")}


def cmd_logs(cfg: Config, args: argparse.Namespace) -> int:
    names = check_services(cfg, args.services)
    require_stack(cfg)
    options = ["--tail", str(args.tail)] + (["--follow"] if args.follow else [])
    if not args.json and sys.stdout.isatty():
        sys.stdout.flush()
        os.execvp("docker", compose_argv(cfg, "logs", *options, *names))
    # Into a pipe or a file: plain lines (no colours, no terminal escapes), or JSON.
    extra = ["--no-color", "--timestamps"] if args.json else ["--no-color"]
    argv = compose_argv(cfg, "logs", *extra, *options, *names)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                if args.json:
                    print(json.dumps(parse_log_line(line, cfg.project)), flush=True)
                else:
                    print(strip_ansi(line), end="", flush=True)
        except KeyboardInterrupt:
            proc.terminate()
            return EXIT_OK
        code = proc.wait()
        if code != 0:
            raise MovctlError(
                f"docker compose logs failed (exit {code}): {proc.stderr.read().strip()[-800:]}"
                if proc.stderr
                else f"docker compose logs failed (exit {code})"
            )
    return EXIT_OK


def backup_argv(cfg: Config, *args: str) -> list[str]:
    return [cfg.backup_tool, *(["--config", cfg.backup_config] if cfg.backup_config else []), *args]


def require_backup_tool(cfg: Config) -> None:
    if not Path(cfg.backup_tool).exists():
        raise MovctlError(
            f"the backup tool is not installed: no {cfg.backup_tool} (the Ansible role backup installs it)",
            EXIT_NOT_INSTALLED,
        )


def cmd_backup(cfg: Config, args: argparse.Namespace) -> int:
    require_backup_tool(cfg)
    result = run(backup_argv(cfg, "run"), timeout=None, capture=args.json)
    status = read_backup_status(cfg)
    ok = result.returncode == 0
    if args.json:
        emit_json(
            {
                "ok": ok,
                "exit_code": result.returncode,
                "status": status,
                "output": (result.stdout + result.stderr).splitlines(),
            }
        )
    elif ok:
        print(f"backup ok: snapshot {(status or {}).get('snapshot', '?')}")
    else:
        print(
            f"movctl backup: FAILED (mov-backup exit {result.returncode}); status in {cfg.backup_status_file}",
            file=sys.stderr,
        )
    return EXIT_OK if ok else EXIT_FAILED


def cmd_restore(cfg: Config, args: argparse.Namespace) -> int:
    if args.snapshot != "latest" and not SNAPSHOT_ID.match(args.snapshot):
        raise MovctlError(
            f"snapshot {args.snapshot!r}: expected latest or an id like 20250101T023000Z (mov-backup list)", EXIT_USAGE
        )
    require_backup_tool(cfg)
    managed = Path(cfg.compose_file).is_file() and shutil.which("docker") is not None
    restore = backup_argv(
        cfg, "restore", "--snapshot", args.snapshot, "--from", args.origin, *(["--force"] if args.force else [])
    )
    steps: list[str] = []
    output: list[str] = []

    def say(line: str) -> None:
        steps.append(line)
        if not args.json:
            print(line, flush=True)

    # influx restore talks to a running InfluxDB: it is started first and keeps running.
    if managed and "influxdb" in cfg.services:
        compose(cfg, "up", "--detach", "--no-recreate", "--no-build", "influxdb", timeout=cfg.wait_timeout_s + 60)
        wait_healthy(cfg, ["influxdb"], cfg.wait_timeout_s)
        say("influxdb: running for its restore")
    check = run([*restore, "--dry-run"], timeout=None)
    output += (check.stdout + check.stderr).splitlines()
    if check.returncode != 0:
        message = (check.stderr or check.stdout).strip()
        if "refusing to overwrite" in message:
            raise MovctlError(
                f"refused: the snapshot would replace data that is not empty "
                f"({message.split('not empty:', 1)[-1].split('. Run again', 1)[0].strip()}); "
                "nothing was changed. Run movctl restore --force to replace it.",
                EXIT_REFUSED,
                details={"output": output},
            )
        raise MovctlError(f"the snapshot cannot be restored: {message[-800:]}", details={"output": output})
    say(f"snapshot {args.snapshot} ({args.origin}): checked")
    writers = [s for s in cfg.services if s != "influxdb"]
    if managed:
        compose(cfg, "stop", *writers, timeout=cfg.wait_timeout_s + 60)
        say(f"stopped: {', '.join(writers)}")
    result = run(restore, timeout=None, capture=True)
    output += (result.stdout + result.stderr).splitlines()
    if not args.json:
        print(result.stdout, end="", flush=True)
    if result.returncode != 0:
        raise MovctlError(
            "the restore failed"
            + (", the writers are left stopped rather than run on half-restored data" if managed else "")
            + f": {result.stderr.strip()[-800:]} Fix the cause and run movctl restore again "
            "(with --force where data was written).",
            details={"output": output},
        )
    states: list[ServiceState] = []
    if managed:
        compose(cfg, "up", "--detach", "--no-recreate", "--no-build", timeout=cfg.wait_timeout_s + 60)
        states = wait_healthy(cfg, list(cfg.services), cfg.wait_timeout_s)
        say(f"started: {', '.join(cfg.services)}")
    if args.json:
        emit_json(
            {
                "ok": True,
                "snapshot": args.snapshot,
                "from": args.origin,
                "steps": steps,
                "output": output,
                "services": [asdict(s) for s in states],
            }
        )
    else:
        print("restore done")
    return EXIT_OK


def cmd_update(cfg: Config | None, args: argparse.Namespace) -> int:
    env = cfg.env if cfg and cfg.env else "<env>"
    message = (
        f"updates are applied from the controller, where the pinned versions table (mov_images) lives: "
        f"in the repository, run `scripts/movctl -i inventories/{env} update` "
        f"(ansible-playbook playbooks/update.yml -i inventories/{env}): it backs up, deploys the new images, "
        "verifies and rolls back on failure"
    )
    raise MovctlError(message, EXIT_USAGE)


def cmd_cleanup(cfg: Config, args: argparse.Namespace) -> int:
    require_stack(cfg)
    plan = plan_cleanup(
        read_releases(cfg),
        cfg.cleanup_keep_releases,
        sha256_of(cfg.compose_file),
        read_images(),
        read_containers(),
        cfg.project,
        read_compose_services(cfg),
    )
    failures: list[str] = []
    removed_containers: list[str] = []
    removed_images: list[str] = []
    if not args.dry_run:
        for container in plan.containers:
            result = run(["docker", "rm", container.id])
            (removed_containers if result.returncode == 0 else failures).append(
                container.name if result.returncode == 0 else f"container {container.name}: {result.stderr.strip()}"
            )
        for image in plan.images:
            result = run(["docker", "image", "rm", image.ref])
            (removed_images if result.returncode == 0 else failures).append(
                image.ref if result.returncode == 0 else f"image {image.ref}: {result.stderr.strip()}"
            )
    doc = {
        "ok": not failures,
        "dry_run": args.dry_run,
        "kept_releases": plan.kept_releases,
        "current_release": plan.current_release,
        "containers": [c.name for c in plan.containers],
        "images": [i.ref for i in plan.images],
        "kept_images": plan.kept_images,
        "removed_containers": removed_containers,
        "removed_images": removed_images,
        "failures": failures,
    }
    if args.json:
        emit_json(doc)
    else:
        verb = "would remove" if args.dry_run else "removed"
        print(
            f"releases kept: {', '.join(plan.kept_releases) or 'none recorded'} (current {plan.current_release or '-'})"
        )
        print(f"containers {verb}: {', '.join(doc['containers'] if args.dry_run else removed_containers) or 'none'}")
        print(f"images {verb}: {', '.join(doc['images'] if args.dry_run else removed_images) or 'none'}")
        for failure in failures:
            print(f"failed: {failure}", file=sys.stderr)
    return EXIT_OK if not failures else EXIT_FAILED


def run_checks(cfg: Config) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    for state in read_states(cfg):
        if state.service not in cfg.services:
            continue
        detail = f"{state.state}{', ' + state.health if state.health else ''}"
        checks.append({"name": state.service, "ok": state.ok, "detail": detail})
    if "mosquitto" in cfg.services:
        ok, detail = probe_mqtt_tls("127.0.0.1", cfg.mqtt_tls_port, cfg.mqtt_tls_name)
        checks.append({"name": "mqtt-tls", "ok": ok, "detail": detail})
    if nginx_present():
        server_name = cfg.domains[0] if cfg.domains else "localhost"
        for name, port, tls in (
            ("nginx-http", cfg.nginx_http_port, False),
            ("nginx-https", cfg.nginx_https_port, True),
        ):
            ok, detail = probe_http("127.0.0.1", port, server_name, tls)
            checks.append({"name": name, "ok": ok, "detail": detail})
    else:
        checks.append({"name": "nginx", "ok": True, "detail": "not installed on this host: skipped"})
    return checks


def cmd_test(cfg: Config, args: argparse.Namespace) -> int:
    require_stack(cfg)
    checks = run_checks(cfg)
    failed = [c["name"] for c in checks if not c["ok"]]
    if args.json:
        emit_json({"ok": not failed, "failed": failed, "checks": checks})
    else:
        print(
            render_table(
                ["CHECK", "RESULT", "DETAIL"], [[c["name"], "ok" if c["ok"] else "FAILED", c["detail"]] for c in checks]
            )
        )
        if failed:
            print(f"movctl test: FAILED: {', '.join(failed)}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_check_config(cfg: Config, args: argparse.Namespace) -> int:
    if args.json:
        emit_json({"ok": True, "config": asdict(cfg)})
    else:
        print(f"config ok: {len(cfg.services)} services ({', '.join(cfg.services)}), project {cfg.project}")
    return EXIT_OK


# --- arguments -------------------------------------------------------------------------------------

EPILOG = (
    "exit codes: 0 ok, 1 a check or an operation failed, 2 usage error or not supported here, "
    "3 the platform is not installed, 4 refused (restore over data without --force)"
)


def build_parser() -> argparse.ArgumentParser:
    # --json and --config are accepted before and after the command: the command's own copies default to
    # SUPPRESS, so they only override what was given before it when given themselves.
    def common(target: argparse.ArgumentParser, top: bool) -> None:
        target.add_argument(
            "--json",
            action="store_true",
            default=False if top else argparse.SUPPRESS,
            help="print one JSON document on stdout (logs: one object a line)",
        )
        target.add_argument(
            "--config",
            default=os.environ.get("MOVCTL_CONFIG", DEFAULT_CONFIG) if top else argparse.SUPPRESS,
            help=f"configuration file (default {DEFAULT_CONFIG})",
        )

    parser = argparse.ArgumentParser(prog="movctl", description="Operate the MOV platform on this host.", epilog=EPILOG)
    common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOG)
        common(p, top=False)
        return p

    command(
        "status",
        "services (state, health, uptime), last backup, certificate expiry, disk; "
        "exit 1 when something needs attention",
    )
    for name, text in (
        ("start", "start services (all when none is named) and wait until they are healthy"),
        ("stop", "stop services (all when none is named)"),
        ("restart", "restart services (all when none is named) and wait until they are healthy"),
    ):
        command(name, text).add_argument("services", nargs="*", metavar="SERVICE")
    p_logs = command("logs", "show the services' logs (all when none is named)")
    p_logs.add_argument("services", nargs="*", metavar="SERVICE")
    p_logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p_logs.add_argument(
        "--tail", default="100", type=_tail, help="lines from the end of each log, or all (default 100)"
    )
    command("backup", "take a snapshot now (mov-backup run: retention and the off-site copy included)")
    p_restore = command("restore", "restore a snapshot: checks it, stops the writers, restores, starts the stack")
    p_restore.add_argument("snapshot", nargs="?", default="latest", help="snapshot id (mov-backup list) or latest")
    p_restore.add_argument("--force", action="store_true", help="replace data that is not empty")
    p_restore.add_argument(
        "--from",
        dest="origin",
        choices=["local", "remote"],
        default="local",
        help="the local snapshots or the off-site copy (default local)",
    )
    command("update", "not on the host: prints how to update from the controller (exit 2)")
    p_cleanup = command(
        "cleanup",
        "remove images no kept release uses and the project's stopped one-off "
        "containers and those of services the compose file no longer has (a stopped "
        "current service stays; never a volume, never the current release's images)",
    )
    p_cleanup.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    command(
        "test",
        "the checks that run on the host: every service running and healthy, MQTT answers TLS, "
        "nginx answers (when installed); exit 1 naming what failed",
    )
    command("check-config", "parse the configuration file (the role validates it with this)")
    return parser


def _tail(value: str) -> str:
    if value == "all" or value.isdigit():
        return value
    raise argparse.ArgumentTypeError(f"expected a number of lines or all, got {value!r}")


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], int]] = {
    "status": cmd_status,
    "start": cmd_lifecycle,
    "stop": cmd_lifecycle,
    "restart": cmd_lifecycle,
    "logs": cmd_logs,
    "backup": cmd_backup,
    "restore": cmd_restore,
    "cleanup": cmd_cleanup,
    "test": cmd_test,
    "check-config": cmd_check_config,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "update":
            try:
                config: Config | None = load_config(args.config)
            except MovctlError:
                config = None
            return cmd_update(config, args)
        return COMMANDS[args.command](load_config(args.config), args)
    except MovctlError as exc:
        if args.json:
            emit_json({"ok": False, "error": str(exc), "exit_code": exc.code, **exc.details})
        print(f"movctl {args.command}: {'FAILED: ' if exc.code == EXIT_FAILED else ''}{exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
