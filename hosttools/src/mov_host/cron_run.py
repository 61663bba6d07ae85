"""Run one scheduled job of the MOV platform.

Appends the job's output to <log-dir>/<name>.log between start/end lines, records
the last result in <state-dir>/<name>.json (a typed JobResult, for the operator and monitoring),
reports failures to syslog, and skips a run while the previous one still holds
the job's lock, so runs never overlap.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import subprocess
import sys
import syslog
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypedDict

LOCK_DIR = "/run/lock"


class JobResult(TypedDict):
    """A job's last result, <state-dir>/<name>.json: written after every run that was not skipped."""

    name: str
    started_at: str  # ISO 8601, UTC, in seconds
    finished_at: str
    duration_s: float
    exit_code: int  # the shell command's; negative: killed by that signal
    result: Literal["ok", "failed"]


def job_result_path(state_dir: str, name: str) -> Path:
    return Path(state_dir) / f"{name}.json"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    # prog: the installed command's name, not the zipapp's path that runs it.
    parser = argparse.ArgumentParser(prog="mov-cron-run", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--no-lock", action="store_true", help="allow overlapping runs")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the shell command")
    args = parser.parse_args(list(argv))
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command given after --")
    return args


def write_state(path: str, state: JobResult) -> None:
    with open(path, "w", encoding="utf-8") as out:
        json.dump(state, out, indent=2)
        out.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    syslog.openlog(f"mov-cron[{args.name}]", syslog.LOG_PID, syslog.LOG_CRON)
    log_path = str(Path(args.log_dir) / f"{args.name}.log")
    state_path = str(job_result_path(args.state_dir, args.name))

    lock = None
    if not args.no_lock:
        lock = open(Path(LOCK_DIR) / f"mov-cron-{args.name}.lock", "a")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = "skipped: the previous run still holds the lock"
            syslog.syslog(syslog.LOG_WARNING, message)
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"=== {now()} {message}\n")
            return 0

    started = time.monotonic()
    started_at = now()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"=== {started_at} start\n")
        log.flush()
        code = subprocess.run(
            ["/bin/sh", "-c", " ".join(args.command)], stdout=log, stderr=subprocess.STDOUT, check=False
        ).returncode
        log.write(f"=== {now()} end, exit code {code}\n")
    duration = round(time.monotonic() - started, 3)
    write_state(
        state_path,
        {
            "name": args.name,
            "started_at": started_at,
            "finished_at": now(),
            "duration_s": duration,
            "exit_code": code,
            "result": "ok" if code == 0 else "failed",
        },
    )
    if code == 0:
        syslog.syslog(syslog.LOG_INFO, f"ok in {duration}s")
    else:
        syslog.syslog(syslog.LOG_ERR, f"failed with exit code {code} after {duration}s; output in {log_path}")
    if lock is not None:
        lock.close()
    return code
