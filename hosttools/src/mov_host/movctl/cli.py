"""movctl: operate the MOV platform on its host.

    movctl status                              services, last backup, certificate, disk
    movctl start|stop|restart [SERVICE...]     the compose services (all when none is named)
    movctl logs [SERVICE...] [-f] [--tail N]   their logs
    movctl backup                              a snapshot now (mov-backup run)
    movctl restore [SNAPSHOT] [--force]        put a snapshot back (latest by default)
    movctl cleanup [--dry-run]                 images no kept release uses, one-off and old services' containers
    movctl test                                the checks that can run on the host
    movctl bench [--devices K] [--rate R] [--duration S]
                                               the platform under a capped load of temporary devices, measured
    movctl update                              says how: updates are applied from the controller

Every command takes --json (one JSON document on stdout; `logs --json` prints one object a line) and --help.
Exit codes: 0 ok, 1 a check or an operation failed, 2 usage error or not supported here, 3 the platform is not
installed (no configuration, compose file, Docker or backup tool), 4 refused (a restore over data that is not
empty without --force, a bench while a backup or a deploy runs).

The configuration (/etc/mov/movctl.json) is written by the Ansible role `movctl` from the platform's config tree.
Standard library only: the host has Debian's python3 and nothing else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict

from mov_host.movctl.backup_cmds import cmd_backup, cmd_restore
from mov_host.movctl.bench import cmd_bench
from mov_host.movctl.checks import cmd_test
from mov_host.movctl.cleanup import cmd_cleanup
from mov_host.movctl.config import (
    DEFAULT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Config,
    MovctlError,
    default_config_path,
    load_config,
)
from mov_host.movctl.logs import cmd_logs
from mov_host.movctl.render import emit_json
from mov_host.movctl.services import cmd_lifecycle
from mov_host.movctl.status import cmd_status


def cmd_update(cfg: Config | None, args: argparse.Namespace) -> int:
    env = cfg.env if cfg and cfg.env else "<env>"
    message = (
        f"updates are applied from the controller, where the pinned versions table (mov_images) lives: "
        f"in the repository, run `scripts/movctl -i inventories/{env} update` "
        f"(ansible-playbook playbooks/update.yml -i inventories/{env}): it backs up, deploys the new images, "
        "verifies and rolls back on failure"
    )
    raise MovctlError(message, EXIT_USAGE)


def cmd_check_config(cfg: Config, args: argparse.Namespace) -> int:
    if args.json:
        emit_json({"ok": True, "config": asdict(cfg)})
    else:
        print(f"config ok: {len(cfg.services)} services ({', '.join(cfg.services)}), project {cfg.project}")
    return EXIT_OK


EPILOG = (
    "exit codes: 0 ok, 1 a check or an operation failed, 2 usage error or not supported here, "
    "3 the platform is not installed, 4 refused (restore over data without --force, "
    "bench while a backup or deploy runs)"
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
            default=default_config_path() if top else argparse.SUPPRESS,
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
    p_bench = command(
        "bench",
        "measure the platform under a load of temporary devices (QoS 1 over TLS, each with its own account): "
        "throughput, publish-to-status latency, InfluxDB writes, Grafana's health, each container's CPU and "
        "memory; capped by the configuration, refused while a backup or a deploy runs; the devices and their "
        "points are removed afterwards; exit 1 when a reading was not acknowledged",
    )
    p_bench.add_argument("--devices", type=int, help="simulated devices (default and cap: the configuration's)")
    p_bench.add_argument("--rate", type=float, help="readings a second, all devices together")
    p_bench.add_argument("--duration", type=float, help="seconds of load")
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
    "bench": cmd_bench,
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
