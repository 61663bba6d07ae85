"""InfluxDB, through the stack's compose project: `influx backup` into a snapshot, its size, whether it holds data,
and each run's result as a point."""

from __future__ import annotations

import os
import shlex
from datetime import datetime
from pathlib import Path

from mov_host.backup.config import Config
from mov_host.backup.errors import BackupError, log
from mov_host.backup.process import compose, run_command, service_owner
from mov_host.backup.records import BackupStatus, DrillStatus, RunKind

# Where the one-off containers of influxdb_backup and restore_influxdb see their staging directory (bind-mounted
# from the backup dir).
INFLUX_STAGE = "/mov-backup"
# The influx CLI reads its token from INFLUX_TOKEN (influxdata/influx-cli v2.7.5 cmd/influx/global.go: the --token
# flag's EnvVar), so the admin token never stands on a process's command line, where `ps` shows it. Inside the
# service's containers the token is the compose secret the image's *_FILE variable names (roles/influxdb).
INFLUX_ADMIN_TOKEN = 'INFLUX_TOKEN="$(cat "$DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE")"'


def influx_oneoff(cfg: Config, staging: Path, command: str, what: str, *, read_only: bool) -> None:
    """An `influx` command in a one-off container of the service (`docker compose run`: its image, env file,
    secrets and user, on the project's network, no published port) with staging bind-mounted at INFLUX_STAGE. The
    admin token stays in the container (its compose secret); it never passes through this process."""
    volume = f"{staging}:{INFLUX_STAGE}" + (":ro" if read_only else "")
    run_command(
        compose(
            cfg,
            "run",
            "--rm",
            "--no-deps",
            "-T",
            "--entrypoint",
            "sh",
            "--volume",
            volume,
            cfg.influxdb_service,
            "-c",
            f"{INFLUX_ADMIN_TOKEN} {command}",
        ),
        what,
    )


def influx_query(cfg: Config, query: str, what: str) -> str:
    """A Flux query's raw CSV, asked with the `influx` CLI inside the running service (the admin token stays there)."""
    return run_command(
        compose(
            cfg, "exec", "-T", cfg.influxdb_service, "sh", "-c", f"{INFLUX_ADMIN_TOKEN} influx query --raw '{query}'"
        ),
        what,
    )


def influxdb_backup(cfg: Config, staging: Path) -> None:
    """`influx backup` written straight into staging, a directory of the snapshot being built.

    A one-off container of the service (`docker compose run`: its image, env file and user, on the project's
    network, no published port) gets staging bind-mounted and talks to the running InfluxDB over the network
    (influx backup's --host; the CLI makes the target directory: influx-cli v2.7.5 clients/backup/backup.go,
    os.MkdirAll). The backup never lands in a container's filesystem, on the disk the live services write to,
    and the space check counted it on the backup filesystem.
    """
    service = cfg.influxdb_service
    staging.mkdir(mode=0o700)
    owner = service_owner(cfg, service)
    if owner is not None:
        os.chown(staging, *owner)
    influx_oneoff(
        cfg, staging, f"influx backup --host http://{service}:8086 {INFLUX_STAGE}", "influx backup", read_only=False
    )


def influxdb_included(cfg: Config) -> bool:
    return cfg.influxdb_service in cfg.stack_services and (Path(cfg.stack_dir) / "compose.yaml").is_file()


def influxdb_live_bytes(cfg: Config) -> int:
    """The size of InfluxDB's data directory: more than its backup (gzipped shards), for the first run's estimate."""
    try:
        out = run_command(
            compose(cfg, "exec", "-T", cfg.influxdb_service, "du", "-sk", "/var/lib/influxdb2"), "du (InfluxDB's data)"
        )
        return int(out.split()[0]) * 1024
    except (BackupError, IndexError, ValueError) as exc:
        log(f"space: InfluxDB's size unknown ({exc}); the estimate leaves it out")
        return 0


def influxdb_has_data(cfg: Config) -> bool:
    """Whether the running InfluxDB holds any point in the platform's bucket."""
    query = f'from(bucket: "{cfg.influxdb_bucket}") |> range(start: 0) |> limit(n: 1)'
    out = influx_query(cfg, query, "influx query (is InfluxDB empty?)")
    return any(line.startswith(",_result,") for line in out.splitlines())


# Each backup's and drill's result is a point of the metrics bucket, where Grafana's alerts read it (roles/grafana:
# no successful backup within the max age, a failed drill); the status files stay what the host's tools read. It is
# written with `influx write` inside InfluxDB's container, as every influx call here is: the admin token never leaves
# it. A write token of mov-backup's own would be one more secret on the host and take no power from a tool that runs
# `influx backup` and `influx restore --full` as the admin.
RESULT_MEASUREMENT = "mov_backup"


def result_point(kind: RunKind, status: BackupStatus | DrillStatus) -> str:
    """The result in line protocol, at the run's start in seconds: tag kind, field ok (1 or 0), duration_s if known."""
    when = datetime.fromisoformat(status["time"])
    fields = [f"ok={1 if status['result'] == 'ok' else 0}i"]
    duration = status.get("duration_s")
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        fields.append(f"duration_s={float(duration):.3f}")
    return f"{RESULT_MEASUREMENT},kind={kind} {','.join(fields)} {int(when.timestamp())}"


def record_result(cfg: Config, kind: RunKind, status: BackupStatus | DrillStatus) -> None:
    """The result as a point of cfg.metrics_bucket, where InfluxDB runs here; a failure is logged, never raised."""
    if not cfg.metrics_bucket or not influxdb_included(cfg):
        return
    line = shlex.quote(result_point(kind, status))
    write = f"influx write --bucket {shlex.quote(cfg.metrics_bucket)} --precision s {line}"
    try:
        run_command(
            compose(cfg, "exec", "-T", cfg.influxdb_service, "sh", "-c", f"{INFLUX_ADMIN_TOKEN} {write}"),
            f"influx write ({kind} result)",
        )
    except BackupError as exc:
        log(f"{kind} result not recorded in {cfg.metrics_bucket}: {exc}")
