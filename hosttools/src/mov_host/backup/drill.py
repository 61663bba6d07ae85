"""The restore drill: the latest snapshot restored into a scratch copy (InfluxDB: a scratch instance of its own),
compared with production part by part; from the off-site copy, also a read-back of every manifest and of a
rotating slice of the objects (readback.py). The result goes to drill.json, a failure is alerted."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mov_host.backup.config import Config
from mov_host.backup.errors import BackupError, log
from mov_host.backup.files import walk_files
from mov_host.backup.influx import influx_query
from mov_host.backup.process import compose, run_command, service_owner
from mov_host.backup.readback import read_back
from mov_host.backup.records import DrillCheck, DrillStatus, Manifest
from mov_host.backup.remote import download, object_name
from mov_host.backup.restore import check_snapshot, choose_snapshot, restore_snapshot
from mov_host.backup.sqlite import sqlite_copy, sqlite_summary
from mov_host.backup.status import alert, write_status

DRILL_WINDOW_S = 24 * 3600  # InfluxDB points compared: the day before the snapshot (older ones may have expired)
# Points stamped this close to the snapshot may be written after the backup; a backlog written later still (a
# device or gateway catching up after an outage) can make the comparison differ: docs/operations/restore-drill.md.
DRILL_SETTLE_S = 600


def influx_counts(cfg: Config, bucket: str, stop: datetime) -> dict[str, int]:
    """Field values per measurement in the bucket over the drill's window before stop."""
    start = datetime.fromtimestamp(stop.timestamp() - DRILL_WINDOW_S, UTC)
    query = (
        f'from(bucket: "{bucket}") |> range(start: {start.strftime("%Y-%m-%dT%H:%M:%SZ")}, '
        f'stop: {stop.strftime("%Y-%m-%dT%H:%M:%SZ")}) |> group(columns: ["_measurement"]) |> count()'
    )
    out = influx_query(cfg, query, f"influx query ({cfg.stack_project})")
    counts: dict[str, int] = {}
    header: list[str] = []
    for row in csv.reader(io.StringIO(out)):
        if not row or row[0].startswith("#"):
            header = []
            continue
        if not header:
            header = row
            continue
        record = dict(zip(header, row, strict=False))
        if "_measurement" in record and record.get("_value", "").isdigit():
            counts[record["_measurement"]] = counts.get(record["_measurement"], 0) + int(record["_value"])
    return counts


def start_drill_influxdb(cfg: Config, drill: Config) -> None:
    """A scratch InfluxDB: production's image, env file, secrets and user, no published port, and directories of its
    own for its data and config, owned by that user (a named volume would take the image's directory and its owner,
    the image's uid, which the service does not run as)."""
    raw = run_command(compose(cfg, "config", "--format", "json"), "docker compose config (production)")
    config = json.loads(raw)
    service = config["services"][cfg.influxdb_service]
    scratch = {key: service[key] for key in ("image", "env_file", "environment", "user", "secrets") if key in service}
    sources = {str(s["source"] if isinstance(s, dict) else s) for s in service.get("secrets", [])}
    secrets = {
        name: {k: v for k, v in spec.items() if k != "name"}
        for name, spec in config.get("secrets", {}).items()
        if name in sources
    }
    stack_dir = Path(drill.stack_dir)
    owner = service_owner(cfg, cfg.influxdb_service)
    mounts = {"data": "/var/lib/influxdb2", "config": "/etc/influxdb2"}
    for name in mounts:
        (stack_dir / name).mkdir(parents=True, mode=0o700)
        if owner is not None:
            os.chown(stack_dir / name, *owner)
    scratch |= {
        "volumes": [f"{stack_dir / name}:{target}" for name, target in mounts.items()],
        "healthcheck": service.get("healthcheck", {}),
    }
    compose_file = stack_dir / "compose.yaml"
    document: dict[str, Any] = {"name": drill.stack_project, "services": {cfg.influxdb_service: scratch}}
    if secrets:
        document["secrets"] = secrets
    compose_file.write_text(json.dumps(document, indent=2), encoding="utf-8")
    compose_file.chmod(0o600)
    run_command(compose(drill, "up", "-d", "--wait", cfg.influxdb_service), "start the drill's InfluxDB")


def drill_checks(cfg: Config, drill: Config, manifest: Manifest, root: Path) -> list[DrillCheck]:
    """Each part of the restored copy against production; one entry per part, ok or not with the reason."""
    checks: list[DrillCheck] = []
    taken = datetime.strptime(manifest["id"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    per_source: dict[str, int] = {}
    for entry in manifest["files"]:
        per_source[entry["source"]] = per_source.get(entry["source"], 0) + 1
    for source in manifest["sources"]:
        name, kind = source["name"], source["kind"]
        if kind == "influxdb":
            if cfg.influxdb_service not in cfg.stack_services:
                continue
            # A reading carries its device's time and reaches InfluxDB later (Telegraf's flush, a broker queue): the
            # window ends DRILL_SETTLE_S before the snapshot, so points written after the backup do not count.
            checks.append(influx_check(cfg, drill, name, cfg.influxdb_bucket, taken, DRILL_SETTLE_S))
            if cfg.influxdb_history_bucket:
                # The history's task re-aggregates its look-back on every run, after the snapshot too: those windows
                # are left out. A young platform's history may be empty on both sides; equal is what a restore owes.
                history, settle_s = cfg.influxdb_history_bucket, cfg.influxdb_history_settle_s
                checks.append(influx_check(cfg, drill, f"{name}-history", history, taken, settle_s, need_points=False))
            continue
        target = root / source["path"].lstrip("/")
        if kind == "sqlite":
            # Production's database read through a consistent copy (sqlite_copy), never opened in place.
            live_copy = root.parent / "live" / f"{name}.sqlite"
            live_copy.parent.mkdir(parents=True, exist_ok=True)
            sqlite_copy(Path(source["path"]), live_copy)
            restored_db, live_db = sqlite_summary(target), sqlite_summary(live_copy)
            ok = restored_db["integrity"] == "ok" and {k: v for k, v in restored_db.items() if k != "integrity"} == {
                k: v for k, v in live_db.items() if k != "integrity"
            }
            checks.append(
                {
                    "part": name,
                    "ok": ok,
                    "detail": "integrity_check and the dashboard set (or row counts)",
                    "restored": _brief(restored_db),
                    "production": _brief(live_db),
                }
            )
        else:
            found = sum(1 for _ in walk_files(target)) if target.is_dir() else int(target.is_file())
            # Live files move on after the snapshot: the restored copy answers to the manifest (every file back,
            # each write checked against its sha256).
            checks.append(
                {
                    "part": name,
                    "ok": found == per_source.get(name, 0),
                    "restored": found,
                    "snapshot": per_source.get(name, 0),
                    "detail": "files restored with their sha256",
                }
            )
    return checks


def influx_check(
    cfg: Config, drill: Config, part: str, bucket: str, taken: datetime, settle_s: int, *, need_points: bool = True
) -> DrillCheck:
    """The bucket's point counts per measurement, restored against production, over the day before the snapshot less
    settle_s; need_points: production must hold some there."""
    settled = taken - timedelta(seconds=settle_s)
    restored, live = influx_counts(drill, bucket, settled), influx_counts(cfg, bucket, settled)
    return {
        "part": part,
        "ok": restored == live and (sum(live.values()) > 0 or not need_points),
        "restored": restored,
        "production": live,
        "detail": f"{bucket}: point counts per measurement, the day before the snapshot less {settle_s} s",
    }


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    if "dashboards" in summary:
        return {"integrity": summary["integrity"], "dashboards": len(summary["dashboards"])}
    return summary


def cmd_drill(cfg: Config, args: argparse.Namespace) -> int:
    started = time.monotonic()
    origin = args.origin or ("remote" if cfg.remote else "local")
    status: DrillStatus = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "result": "failed",
        "origin": origin,
        "snapshot": None,
        "checks": [],
    }
    cfg.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = Path(tempfile.mkdtemp(prefix="mov-drill-", dir=cfg.backup_dir))
    with_influx = cfg.influxdb_service in cfg.stack_services
    drill = replace(
        cfg,
        stack_dir=str(scratch / "stack"),
        stack_project=f"{cfg.stack_project}-drill",
        stack_services=(cfg.influxdb_service,) if with_influx else (),
    )
    try:
        chosen = status["snapshot"] = choose_snapshot(cfg, origin, args.snapshot)
        snapshot = cfg.backup_dir / chosen
        if origin == "remote":
            snapshot = scratch / "download" / chosen
            download(cfg, chosen, snapshot)
            log(f"off-site snapshot {chosen} downloaded and decrypted")
        manifest = check_snapshot(snapshot)
        errors = []
        if origin == "remote":
            # The snapshot's objects were just downloaded and checked against its manifest.
            readback = status["readback"] = read_back(
                cfg, {object_name(e) for e in manifest["files"]}, scratch / "readback"
            )
            if not readback["ok"]:
                errors.append("off-site read-back: damaged object(s): " + "; ".join(readback["damaged"]))
        if with_influx:
            start_drill_influxdb(cfg, drill)
        root = scratch / "root"
        restore_snapshot(drill, snapshot, force=True, dry_run=False, root=root)
        status["checks"] = drill_checks(cfg, drill, manifest, root)
        bad = [c["part"] for c in status["checks"] if not c["ok"]]
        if bad:
            errors.append("restored copy differs from production: " + ", ".join(bad))
        if errors:
            status["error"] = "; ".join(errors)
        else:
            status["result"] = "ok"
    except (BackupError, OSError, KeyError, ValueError, sqlite3.Error) as exc:
        status["error"] = str(exc)
    finally:
        if with_influx and (Path(drill.stack_dir) / "compose.yaml").is_file():
            subprocess.run(compose(drill, "down", "--volumes", "--remove-orphans"), capture_output=True, check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    status["duration_s"] = round(time.monotonic() - started, 3)
    write_status(cfg, status, "drill")
    if status["result"] != "ok":
        log(f"restore drill FAILED: {status['error']}")
        alert(cfg, f"restore drill on {socket.gethostname()} failed: {status['error']}", kind="restore_drill_failed")
        return 1
    log(f"restore drill ok: {status['snapshot']} ({origin}) restored and matches production, {status['duration_s']}s")
    return 0
