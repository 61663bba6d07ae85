"""mov-cleanup: the MOV platform's nightly cleanup on its host (the cron job `cleanup`, roles/cleanup).

    mov-cleanup [--config /etc/mov/cleanup.json] [--dry-run]
    mov-cleanup --config FILE --check-config   # parse the configuration only (the role's validate:)

1. movctl's cleanup (`movctl cleanup`, run in-process): the platform's images that none of the last N releases nor
   the current one uses, and the compose project's stopped one-off containers and those of services the compose
   file no longer has (a current service an operator stopped stays). movctl never removes a volume nor the current
   release's images.
2. Files older than their rule's age: each rule is a directory, a file name pattern and a number of days (the
   weekly reports: report-* older than a year). Only regular files matching the pattern are removed; directories
   and symbolic links never are, and a link is never followed.

Every step runs whatever the others did; the exit code is 1 when any failed, 2 on a usage or configuration error.
Local snapshots beyond retention and the cron jobs' logs are not this tool's: each nightly `mov-backup run` prunes
the snapshots, logrotate ages the logs (roles/cron).
Standard library only: the host has Debian's python3 and nothing else.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import stat
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mov_host import paths
from mov_host.movctl import cleanup as movctl_cleanup
from mov_host.movctl.config import EXIT_FAILED as MOVCTL_FAILED
from mov_host.movctl.config import MovctlError, default_config_path
from mov_host.movctl.config import load_config as load_movctl_config
from mov_host.movctl.records import CleanupDocument

DEFAULT_CONFIG = "/etc/mov/cleanup.json"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
DAY_S = 86400


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class AgeRule:
    path: str
    pattern: str
    max_age_days: int


@dataclass(frozen=True)
class Config:
    # Where movctl was run from when cleanup ran it as a command; still checked and shown, no longer run: movctl's
    # cleanup runs in-process now, with movctl's own configuration.
    movctl: str
    old_files: tuple[AgeRule, ...]
    # movctl's configuration; empty: movctl's default (MOVCTL_CONFIG in the environment, else its role's file).
    movctl_config: str = ""


def config_from_dict(raw: Any) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError("expected a JSON object")
    rules = []
    for index, item in enumerate(raw.get("old_files", [])):
        where = f"old_files[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected an object with path, pattern and max_age_days")
        try:
            rule = AgeRule(str(item["path"]), str(item["pattern"]), int(item["max_age_days"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: missing or invalid value: {exc}") from exc
        if not rule.path.startswith("/") or rule.path.rstrip("/") == "":
            raise ConfigError(f"{where}: path {rule.path!r} must be an absolute directory other than /")
        if not rule.pattern or "/" in rule.pattern:
            raise ConfigError(f"{where}: pattern {rule.pattern!r} must be a file name pattern (no /)")
        if rule.max_age_days < 1:
            raise ConfigError(f"{where}: max_age_days must be at least 1")
        rules.append(rule)
    movctl = raw.get("movctl", paths.MOVCTL)
    if not isinstance(movctl, str) or not movctl:
        raise ConfigError("movctl must be the path of movctl")
    movctl_config = raw.get("movctl_config", "")
    if not isinstance(movctl_config, str):
        raise ConfigError("movctl_config must be the path of movctl's configuration")
    return Config(movctl=movctl, old_files=tuple(rules), movctl_config=movctl_config)


def load_config(path: str) -> Config:
    try:
        return config_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc


def log(message: str) -> None:
    print(message, flush=True)


# --- 1. images and containers: movctl's ------------------------------------------------------------


def movctl_cleanup_document(cfg: Config, dry_run: bool) -> tuple[CleanupDocument | None, int, str]:
    """movctl's cleanup document, the exit code `movctl cleanup` gives for it, and when there is no document, why."""
    try:
        doc = movctl_cleanup.run_cleanup(load_movctl_config(cfg.movctl_config or default_config_path()), dry_run)
    except MovctlError as exc:
        return None, exc.code, str(exc)
    except Exception as exc:
        return None, MOVCTL_FAILED, f"{type(exc).__name__}: {exc}"
    return doc, 0 if doc["ok"] else MOVCTL_FAILED, ""


def movctl_cleanup_step(cfg: Config, dry_run: bool) -> bool:
    doc, code, error = movctl_cleanup_document(cfg, dry_run)
    if doc is None:
        log(f"images and containers: FAILED: movctl cleanup exited {code}: {error}")
        return False
    verb = "would remove" if dry_run else "removed"
    containers = doc["containers"] if dry_run else doc["removed_containers"]
    images = doc["images"] if dry_run else doc["removed_images"]
    log(
        f"images and containers: releases kept {', '.join(doc['kept_releases']) or 'none recorded'} "
        f"(current {doc['current_release'] or '-'})"
    )
    log(f"images and containers: containers {verb}: {', '.join(containers) or 'none'}")
    log(f"images and containers: images {verb}: {', '.join(images) or 'none'}")
    for failure in doc["failures"]:
        log(f"images and containers: FAILED: {failure}")
    return code == 0


# --- 2. files past their age ---------------------------------------------------------------------


def old_files(rule: AgeRule, now: float) -> Iterator[Path]:
    """The regular files under the rule's directory whose name matches and whose mtime is older than the rule's
    age. Symbolic links are neither followed nor returned."""
    limit = now - rule.max_age_days * DAY_S
    for directory, _dirs, names in os.walk(rule.path, followlinks=False):
        for name in sorted(names):
            if not fnmatch.fnmatchcase(name, rule.pattern):
                continue
            path = Path(directory, name)
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mtime < limit:
                yield path


def remove_old_files(rule: AgeRule, now: float, dry_run: bool) -> bool:
    what = f"files {rule.path}/**/{rule.pattern} older than {rule.max_age_days} days"
    if not Path(rule.path).is_dir():
        log(f"{what}: skipped, no such directory")
        return True
    removed: list[str] = []
    failures: list[str] = []
    for path in old_files(rule, now):
        if not dry_run:
            try:
                path.unlink()
            except OSError as exc:
                failures.append(f"{path}: {exc.strerror or exc}")
                continue
        removed.append(str(path.relative_to(rule.path)))
    log(
        f"{what}: {'would remove' if dry_run else 'removed'} {len(removed)}"
        f"{': ' + ', '.join(removed) if removed else ''}"
    )
    for failure in failures:
        log(f"{what}: FAILED: {failure}")
    return not failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mov-cleanup", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    parser.add_argument("--check-config", action="store_true", help="parse the configuration and exit")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"mov-cleanup: config {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.check_config:
        log(f"config ok: movctl {cfg.movctl}, {len(cfg.old_files)} rule(s) for old files")
        return EXIT_OK
    now = time.time()
    results = [movctl_cleanup_step(cfg, args.dry_run)]
    results += [remove_old_files(rule, now, args.dry_run) for rule in cfg.old_files]
    if all(results):
        log("cleanup ok")
        return EXIT_OK
    print(f"mov-cleanup: {results.count(False)} step(s) failed (see above)", file=sys.stderr)
    return EXIT_FAILED
