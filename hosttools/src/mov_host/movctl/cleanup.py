"""`movctl cleanup`: the images no kept release uses and the project's stopped one-off containers and those of
services the compose file no longer has. run_cleanup is what mov-cleanup calls in-process."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from mov_host.movctl.config import EXIT_FAILED, EXIT_OK, Config, MovctlError
from mov_host.movctl.docker import compose, require_stack, run
from mov_host.movctl.records import CleanupDocument, ReleaseRecord
from mov_host.movctl.render import emit_json


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
    releases: Sequence[ReleaseRecord],
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
        for named in (record.get("images") or {}).values():
            repositories.add(repository_of(str(named.get("ref", ""))))
    for record in kept:
        for named in (record.get("images") or {}).values():
            keep_ids.add(str(named.get("id", "")))
            keep_refs.add(str(named.get("ref", "")))
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


def read_releases(cfg: Config) -> list[ReleaseRecord]:
    records = []
    root = Path(cfg.releases_dir)
    for path in sorted(root.glob("*/release.json")) if root.is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MovctlError(f"unreadable release record {path}: {exc}") from exc
        if isinstance(record, dict):
            record.setdefault("id", path.parent.name)
            records.append(cast(ReleaseRecord, record))
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


def run_cleanup(cfg: Config, dry_run: bool) -> CleanupDocument:
    """Plan, and unless dry_run remove; a removal that fails is listed in `failures` (ok false), the rest go on.
    Raises MovctlError when the platform is not installed or Docker cannot be read."""
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
    if not dry_run:
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
    return {
        "ok": not failures,
        "dry_run": dry_run,
        "kept_releases": plan.kept_releases,
        "current_release": plan.current_release,
        "containers": [c.name for c in plan.containers],
        "images": [i.ref for i in plan.images],
        "kept_images": plan.kept_images,
        "removed_containers": removed_containers,
        "removed_images": removed_images,
        "failures": failures,
    }


def cmd_cleanup(cfg: Config, args: argparse.Namespace) -> int:
    doc = run_cleanup(cfg, args.dry_run)
    if args.json:
        emit_json(doc)
    else:
        verb = "would remove" if args.dry_run else "removed"
        containers = doc["containers"] if args.dry_run else doc["removed_containers"]
        images = doc["images"] if args.dry_run else doc["removed_images"]
        print(
            f"releases kept: {', '.join(doc['kept_releases']) or 'none recorded'} "
            f"(current {doc['current_release'] or '-'})"
        )
        print(f"containers {verb}: {', '.join(containers) or 'none'}")
        print(f"images {verb}: {', '.join(images) or 'none'}")
        for failure in doc["failures"]:
            print(f"failed: {failure}", file=sys.stderr)
    return EXIT_OK if doc["ok"] else EXIT_FAILED
