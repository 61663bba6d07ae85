"""`movctl logs`: the services' logs, to a terminal as compose prints them, to a pipe as plain lines or JSON."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

from mov_host.movctl.config import EXIT_OK, Config, MovctlError
from mov_host.movctl.docker import check_services, compose_argv, require_stack

# compose logs writes an erase-line escape before each line, --no-color or not.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# "mosquitto-1  | 2026-11-26T16:00:00.123456789Z message" (compose logs --timestamps); older composes prefix the
# container name (mov-mosquitto-1).
LOG_LINE = re.compile(r"^(?P<name>\S+?)\s*\|\s?(?:(?P<time>\d{4}-\d\d-\d\dT\S+)\s)?(?P<message>.*)$")


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
