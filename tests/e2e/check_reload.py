#!/usr/bin/env python3
"""Hot reload with the real images (the e2e job of .github/workflows/ci.yml): a change Telegraf and Grafana reload
while they run reaches them without recreating or restarting their containers.

    check_reload.py started --out started.json                          # each container's id and start time
    ansible-playbook site.yml ... -e grafana_dashboard_title=T -e mov_telegraf_interval_s=10
    check_reload.py reloaded --started started.json --title T --interval 10s

Telegraf reloads on SIGHUP (it logs "Reloading Telegraf config", then its agent's config again); Grafana reloads its
provisioned dashboards through the admin API, so its search API finds the dashboard under the new title.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from check_platform import SECRETS, Box, Report, _basic, load_secrets, wait_until

SERVICES = ("telegraf", "grafana")


def telegraf_reloaded(log: str, interval: str) -> bool:
    """Telegraf's log shows a reload after which the agent started with the given interval."""
    _, reloading, after = log.rpartition("Reloading Telegraf config")
    return bool(reloading) and re.search(rf"\[agent\] Config: Interval:{re.escape(interval)},", after) is not None


def containers(box: Box) -> dict[str, dict[str, str]]:
    """Service -> its container's id and State.StartedAt."""
    found: dict[str, dict[str, str]] = {}
    for service in SERVICES:
        cid = box.compose("ps", "-q", service).stdout.strip()
        started = box.run("docker", "inspect", "-f", "{{.State.StartedAt}}", cid).stdout.strip() if cid else ""
        found[service] = {"id": cid, "started_at": started}
    return found


def started(args: argparse.Namespace) -> int:
    now = containers(Box(args.box))
    args.out.write_text(json.dumps(now))
    print(f"started: {now}")
    return 0 if all(c["id"] and c["started_at"] for c in now.values()) else 1


def reloaded(args: argparse.Namespace) -> int:
    report = Report()
    box = Box(args.box)
    before = json.loads(args.started.read_text())
    now = containers(box)
    for service in SERVICES:
        report.check(
            f"{service}'s container was neither recreated nor restarted",
            now[service] == before[service],
            f"before {before[service]}, now {now[service]}",
        )

    conf = box.compose("exec", "-T", "telegraf", "cat", "/etc/telegraf/telegraf.conf")
    report.check(
        "the running Telegraf sees the new telegraf.conf",
        f'interval = "{args.interval}"' in conf.stdout,
        (conf.stderr or conf.stdout).strip()[-300:],
    )

    def telegraf_log() -> tuple[bool, str]:
        logs = box.compose("logs", "--no-color", "telegraf")
        return telegraf_reloaded(logs.stdout + logs.stderr, args.interval), (logs.stdout + logs.stderr)[-400:]

    report.check(f"Telegraf reloaded on SIGHUP and runs with interval {args.interval}", *wait_until(telegraf_log, 60))

    secrets = load_secrets(args.secrets)
    auth = {"Authorization": "Basic " + _basic("admin", secrets["grafana_admin_password"])}

    def dashboard() -> tuple[bool, str]:
        status, body = box.http("GET", f"{args.grafana}/api/search?query={urllib.parse.quote(args.title)}", auth)
        hits = json.loads(body) if status == 200 else []
        return any(h.get("uid") == args.uid and h.get("title") == args.title for h in hits), f"{status} {body[:300]}"

    report.check(f"Grafana's search finds {args.uid} under its new title", *wait_until(dashboard, 60))
    return report.summary()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--box", default="mov-box")
    sub = parser.add_subparsers(dest="command", required=True)
    p_started = sub.add_parser("started", help="record the containers' ids and start times")
    p_started.add_argument("--out", type=Path, required=True)
    p_reloaded = sub.add_parser("reloaded", help="after the change: same containers, the change visible")
    p_reloaded.add_argument("--started", type=Path, required=True)
    p_reloaded.add_argument("--title", required=True)
    p_reloaded.add_argument("--interval", required=True)
    p_reloaded.add_argument("--uid", default="mov-overview")
    p_reloaded.add_argument("--grafana", default="http://127.0.0.1:3000")
    p_reloaded.add_argument("--secrets", type=Path, default=SECRETS)
    args = parser.parse_args(argv)
    return int(started(args) if args.command == "started" else reloaded(args))


if __name__ == "__main__":
    sys.exit(main())
