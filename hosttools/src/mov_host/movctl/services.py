"""The compose services' state (what status, start, stop and restart show) and the lifecycle commands."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from mov_host.movctl.config import EXIT_OK, Config, MovctlError
from mov_host.movctl.docker import check_services, compose, parse_docker_time, parse_ps, require_stack, run
from mov_host.movctl.records import ServiceRow
from mov_host.movctl.render import emit_json, render_table


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

    def row(self) -> ServiceRow:
        return ServiceRow(
            service=self.service,
            state=self.state,
            health=self.health,
            uptime_s=self.uptime_s,
            container=self.container,
            image=self.image,
        )


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
    doc = {"ok": True, "command": args.command, "services": [s.row() for s in states]}
    if args.json:
        emit_json(doc)
    else:
        verb = {"start": "started", "stop": "stopped", "restart": "restarted"}[args.command]
        print(f"{verb}: {', '.join(targets)}")
        print(render_table(["SERVICE", "STATE", "HEALTH"], [[s.service, s.state, s.health or "-"] for s in states]))
    return EXIT_OK
