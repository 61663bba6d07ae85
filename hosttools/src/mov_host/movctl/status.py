"""`movctl status`: the services, the last backup, the certificate's expiry and the free disk, as one document.

collect_status is what the status page calls in-process; cmd_status prints the same document.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from mov_host.backup.records import BackupStatus
from mov_host.movctl.config import EXIT_FAILED, EXIT_OK, Config
from mov_host.movctl.docker import require_stack, run
from mov_host.movctl.records import (
    BackupSummary,
    CertificateSummary,
    DiskRow,
    StatusDocument,
    UnreadableStatus,
)
from mov_host.movctl.render import emit_json, format_duration, render_status
from mov_host.movctl.services import ServiceState, read_states


def backup_summary(
    cfg: Config, status: BackupStatus | UnreadableStatus | None, tool_present: bool, now: datetime
) -> BackupSummary:
    """The last backup as status shows it, with `problem` set when it needs attention."""
    if not tool_present:
        return {"installed": False, "problem": f"the backup tool {cfg.backup_tool} is not installed"}
    if status is None:
        return {"installed": True, "result": None, "problem": "no backup has run yet (movctl backup)"}
    # Read key by key: a file from an older or newer mov-backup, or an unreadable one, may lack any of them.
    fields: Mapping[str, Any] = status
    when = None
    with contextlib.suppress(ValueError):
        when = datetime.fromisoformat(str(fields.get("time", "")))
    age = int((now - when).total_seconds()) if when else None
    summary: BackupSummary = {
        "installed": True,
        "result": fields.get("result"),
        "time": fields.get("time"),
        "age_s": age,
        "snapshot": fields.get("snapshot"),
        "offsite": fields.get("offsite"),
    }
    if fields.get("result") != "ok":
        summary["problem"] = f"the last backup failed: {fields.get('error', 'no error recorded')}"
    elif age is None:
        summary["problem"] = "the last backup's time is unreadable"
    elif age > cfg.backup_max_age_h * 3600:
        summary["problem"] = (
            f"the last backup is {format_duration(age)} old (more than "
            f"{cfg.backup_max_age_h:g} h): is the nightly job running?"
        )
    return summary


def read_backup_status(cfg: Config) -> BackupStatus | UnreadableStatus | None:
    try:
        data = json.loads(Path(cfg.backup_status_file).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"result": "unreadable", "error": f"{cfg.backup_status_file}: {exc}"}
    if not isinstance(data, dict):
        return {"result": "unreadable", "error": "not a JSON object"}
    return cast(BackupStatus, data)


def certificate_summary(cfg: Config, not_after: datetime | None, error: str, now: datetime) -> CertificateSummary:
    summary: CertificateSummary = {"file": cfg.cert_file, "domains": list(cfg.domains)}
    if not_after is None:
        summary["problem"] = error or f"no certificate at {cfg.cert_file}"
        return summary
    days = int((not_after - now).total_seconds() // 86400)
    summary["not_after"] = not_after.isoformat()
    summary["days_left"] = days
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


def disk_summary(cfg: Config, usage: Callable[[str], tuple[int, int, int]] = shutil.disk_usage) -> list[DiskRow]:
    rows = []
    for path in cfg.disk_paths:
        if not Path(path).exists():
            continue
        total, _, free = usage(path)
        row: DiskRow = {
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
    cfg: Config, states: list[ServiceState], backup: BackupSummary, cert: CertificateSummary, disk: list[DiskRow]
) -> StatusDocument:
    attention = [
        f"{s.service} is {s.state}{', ' + s.health if s.health and s.health != 'healthy' else ''}"
        for s in states
        if not s.ok
    ]
    problems = [backup.get("problem"), cert.get("problem"), *(row.get("problem") for row in disk)]
    attention += [problem for problem in problems if problem]
    return {
        "env": cfg.env,
        "ok": not attention,
        "services": [s.row() for s in states],
        "backup": backup,
        "certificate": cert,
        "disk": disk,
        "attention": attention,
    }


def collect_status(cfg: Config) -> StatusDocument:
    """The status document; raises MovctlError when the platform is not installed or Docker cannot be asked."""
    require_stack(cfg)
    now = datetime.now(UTC)
    states = read_states(cfg)
    backup = backup_summary(cfg, read_backup_status(cfg), Path(cfg.backup_tool).exists(), now)
    cert = certificate_summary(cfg, *read_certificate_end(cfg.cert_file), now)
    return status_document(cfg, states, backup, cert, disk_summary(cfg))


def cmd_status(cfg: Config, args: argparse.Namespace) -> int:
    doc = collect_status(cfg)
    if args.json:
        emit_json(doc)
    else:
        print(render_status(doc))
    return EXIT_OK if doc["ok"] else EXIT_FAILED
