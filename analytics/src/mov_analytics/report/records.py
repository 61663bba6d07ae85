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
