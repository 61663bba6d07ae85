"""The report's infrastructure section, from container states and resource totals (pure: no I/O, no clock).

* Status: each container's status at its latest point in the week, and when that was (a container removed during
  the week was last seen before the week's end).
* Restarts: Docker's restart count grows by one for each restart its restart policy makes. Per container id, over
  its points in time order, a rise counts its difference and a fall (a restart by hand sets the count back to 0)
  the new value; an id seen after the name's first one (the container was recreated in the week, its count
  starting at 0) adds the count it was first seen with. Recreations are counted apart.
* Compose's names: a one-off container (``docker compose run``: ``<project>-<service>-run-<12 hex>``) is counted,
  not listed; a container compose renamed ``<12 hex>_<name>`` while recreating it counts as ``<name>``
  (docker/compose pkg/compose/run.go ``prepareRun``, pkg/compose/convergence.go ``recreateContainer``).
* CPU and memory per container: the mean and maximum of its samples while running; the host's CPU and memory: mean
  and maximum; each disk: maximum and latest used percentage of its mount point.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from .records import ContainerPoint, UsageTotals

ONE_OFF = re.compile(r"-run-[0-9a-f]{12}$")
RENAMED = re.compile(r"^[0-9a-f]{12}_")


@dataclass(frozen=True, slots=True)
class Spread:
    mean: float
    maximum: float


@dataclass(frozen=True, slots=True)
class ContainerReport:
    name: str
    status: str  # at its latest point; "" when the week has no status of it
    last_seen_s: float | None
    restarts: int
    recreated: int
    cpu: Spread | None  # percent of one CPU (Docker's figure: 100 per busy CPU)
    memory: Spread | None  # bytes


@dataclass(frozen=True, slots=True)
class DiskUse:
    path: str
    maximum: float  # percent used
    latest: float


@dataclass(frozen=True, slots=True)
class InfraSection:
    note: str = ""  # why there is nothing to show; empty when there is
    containers: tuple[ContainerReport, ...] = ()
    one_off_containers: int = 0
    host_cpu: Spread | None = None  # percent
    host_memory: Spread | None = None  # percent
    disks: tuple[DiskUse, ...] = ()


def infra_off() -> InfraSection:
    return InfraSection(note="Infrastructure metrics are off (no report.infra_bucket): nothing to report.")


def infra_unreadable(bucket: str, detail: str) -> InfraSection:
    return InfraSection(
        note=f"The infrastructure bucket {bucket} could not be read ({detail}): metrics off, or not readable with"
        " the report's token."
    )


def container_name(name: str) -> str:
    return RENAMED.sub("", name)


def restarts(points: Iterable[ContainerPoint]) -> tuple[int, int]:
    """(restarts, recreations) of one container name: per container id in time order, plus the count each id
    after the first had when it was first seen (it was created in the week, at 0)."""
    by_id: dict[str, list[ContainerPoint]] = {}
    for point in sorted(points, key=lambda p: p.time_s):
        by_id.setdefault(point.container_id, []).append(point)
    total = 0
    for index, seen in enumerate(by_id.values()):
        if index:
            total += seen[0].restart_count
        for before, after in pairwise(seen):
            rose = after.restart_count >= before.restart_count
            total += after.restart_count - before.restart_count if rose else after.restart_count
    return total, max(0, len(by_id) - 1)


def _merge(totals: Iterable[UsageTotals]) -> dict[tuple[str, str], UsageTotals]:
    """One total per kind and subject (a renamed container's totals added to its name's)."""
    merged: dict[tuple[str, str], UsageTotals] = {}
    for t in totals:
        if t.samples <= 0:
            continue
        subject = container_name(t.subject) if t.kind.startswith("container_") else t.subject
        key = (t.kind, subject)
        old = merged.get(key)
        if old is None:
            merged[key] = t._replace(subject=subject)
        else:
            merged[key] = old._replace(
                samples=old.samples + t.samples, total=old.total + t.total, maximum=max(old.maximum, t.maximum)
            )
    return merged


def _spread(total: UsageTotals | None) -> Spread | None:
    return None if total is None else Spread(total.total / total.samples, total.maximum)


def infra_section(points: Iterable[ContainerPoint], usage: Iterable[UsageTotals], *, bucket: str) -> InfraSection:
    by_name: dict[str, list[ContainerPoint]] = {}
    one_offs: set[str] = set()
    for point in points:
        name = container_name(point.name)
        if ONE_OFF.search(name):
            one_offs.add(name)
        else:
            by_name.setdefault(name, []).append(point)
    totals = _merge(usage)
    for kind, subject in totals:
        if kind.startswith("container_"):
            if ONE_OFF.search(subject):
                one_offs.add(subject)
            else:
                by_name.setdefault(subject, [])
    if not by_name and not one_offs and not totals:
        return InfraSection(note=f"No infrastructure metrics in {bucket} for the week.")
    containers = []
    for name, seen in sorted(by_name.items()):
        ordered = sorted(seen, key=lambda p: p.time_s)
        count, recreated = restarts(ordered)
        containers.append(
            ContainerReport(
                name=name,
                status=ordered[-1].status if ordered else "",
                last_seen_s=ordered[-1].time_s if ordered else None,
                restarts=count,
                recreated=recreated,
                cpu=_spread(totals.get(("container_cpu", name))),
                memory=_spread(totals.get(("container_memory", name))),
            )
        )
    return InfraSection(
        containers=tuple(containers),
        one_off_containers=len(one_offs),
        host_cpu=_spread(totals.get(("host_cpu", ""))),
        host_memory=_spread(totals.get(("host_memory", ""))),
        disks=tuple(
            DiskUse(subject, t.maximum, t.latest) for (kind, subject), t in sorted(totals.items()) if kind == "disk"
        ),
    )
