"""What `movctl bench` asks of the load generator: one JSON document on stdin (the devices' passwords and the read
token travel there, never on a command line or in the environment), and the figures it answers with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class PlanError(ValueError):
    """The plan on stdin is not one this load generator can run."""


@dataclass(frozen=True)
class Device:
    username: str  # "<client>/<device>": the broker's ACL lets it publish under <topic>/<client>/<device>/ only
    password: str

    @property
    def client(self) -> str:
        return self.username.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.username.split("/", 1)[1]


@dataclass(frozen=True)
class Probe:
    """Where the worker's status points are read back: InfluxDB's query API with a read token."""

    url: str
    org: str
    bucket: str
    measurement: str
    token: str
    timeout_s: float


@dataclass(frozen=True)
class Plan:
    host: str  # the broker's TLS name (the certificate is checked against it)
    port: int
    ca_pem: str  # empty: the system's CAs
    topic: str  # the data topic's root (mov/dados)
    devices: tuple[Device, ...]
    field: str
    values: tuple[float, float]  # alternated, so every reading changes the device's status and stores a point
    tipo: str
    localizacao: str
    rate: float  # readings a second, all devices together
    duration_s: float
    probe: Probe | None


def _number(raw: dict[str, Any], key: str, low: float, high: float) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise PlanError(f"{key} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _text(raw: dict[str, Any], key: str, allow_empty: bool = False) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str) or (not value and not allow_empty):
        raise PlanError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _device(raw: Any) -> Device:
    if not isinstance(raw, dict):
        raise PlanError(f"a device must be an object, got {raw!r}")
    username = _text(raw, "username")
    if username.count("/") != 1 or "" in username.split("/"):
        raise PlanError(f"a device's username is <client>/<device>, got {username!r}")
    return Device(username, _text(raw, "password"))


def _probe(raw: Any) -> Probe | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise PlanError(f"probe must be an object or null, got {raw!r}")
    return Probe(
        url=_text(raw, "url"),
        org=_text(raw, "org"),
        bucket=_text(raw, "bucket"),
        measurement=_text(raw, "measurement"),
        token=_text(raw, "token"),
        timeout_s=_number(raw, "timeout_s", 0.1, 120),
    )


def plan_from_dict(raw: Any) -> Plan:
    if not isinstance(raw, dict):
        raise PlanError("the plan must be a JSON object")
    devices = raw.get("devices")
    if not isinstance(devices, list) or not devices:
        raise PlanError("devices must be a non-empty list")
    values = raw.get("values")
    if not isinstance(values, list) or len(values) != 2 or not all(isinstance(v, int | float) for v in values):
        raise PlanError(f"values must be two numbers (one below the status threshold, one above), got {values!r}")
    return Plan(
        host=_text(raw, "host"),
        port=int(_number(raw, "port", 1, 65535)),
        ca_pem=_text(raw, "ca_pem", allow_empty=True),
        topic=_text(raw, "topic").rstrip("/"),
        devices=tuple(_device(d) for d in devices),
        field=_text(raw, "field"),
        values=(float(values[0]), float(values[1])),
        tipo=_text(raw, "tipo"),
        localizacao=_text(raw, "localizacao"),
        rate=_number(raw, "rate", 0.1, 10_000),
        duration_s=_number(raw, "duration_s", 0.1, 3600),
        probe=_probe(raw.get("probe")),
    )
