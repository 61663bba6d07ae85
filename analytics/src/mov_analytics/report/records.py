"""The plain records the report is computed from (what the query layer returns, what tests generate)."""

from __future__ import annotations

from typing import NamedTuple


class Device(NamedTuple):
    """A device as its tags name it; the report groups by site (localizacao), then client and device."""

    localizacao: str
    cliente: str
    dispositivo: str
    tipo: str


class Sample(NamedTuple):
    """One field of one reading. ``time_s``: seconds since the epoch (UTC)."""

    time_s: float
    device: Device
    field: str
    value: float


class StatusPoint(NamedTuple):
    """A status change the worker wrote (``change=true`` points only; heartbeats are not read)."""

    time_s: float
    device: Device
    status: str
    previous: str | None


class ContainerPoint(NamedTuple):
    """A container as the infrastructure metrics saw it: one time it had this id, restart count and status (the
    query returns the first and the last of each such state in the week)."""

    time_s: float
    name: str
    container_id: str
    restart_count: int
    status: str  # created | running | restarting | paused | exited | removing | dead


class UsageTotals(NamedTuple):
    """Sample count, sum, maximum and latest value of one resource over the week."""

    kind: str  # container_cpu, container_memory (bytes), host_cpu, host_memory, disk (percentages otherwise)
    subject: str  # the container's name, the disk's mount point, "" for the host's CPU and memory
    samples: int
    total: float
    maximum: float
    latest: float
