"""Publish-to-status-point latency: a probe device publishes one reading a second, and each reading's status point
is looked for in InfluxDB (the worker writes it at the reading's own time) until it is there.

The figure is the time from the publish call to the first query that returns the point, so it includes the
broker, the worker's rules and its write batching, InfluxDB's write, and at most one poll interval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from influxdb_client.client.influxdb_client import InfluxDBClient

from ..report.query import flux_string
from .load import Sender
from .plan import Plan, Probe

POLL_S = 0.02
PUBACK_TIMEOUT_S = 10.0


def rfc3339_ns(time_ns: int) -> str:
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def status_point_flux(probe: Probe, client: str, device: str, time_ns: int) -> str:
    """The status point of one device at exactly one time: range's start is inclusive and its stop exclusive."""
    return (
        f"from(bucket: {flux_string(probe.bucket)})"
        f" |> range(start: {rfc3339_ns(time_ns)}, stop: {rfc3339_ns(time_ns + 1)})"
        f" |> filter(fn: (r) => r._measurement == {flux_string(probe.measurement)}"
        f' and r._field == "status" and r.cliente == {flux_string(client)}'
        f" and r.dispositivo == {flux_string(device)})"
    )


@dataclass
class ProbeResult:
    latencies_s: list[float] = field(default_factory=list)
    missing: int = 0
    error: str = ""


def _found(query: Callable[[str], int], flux: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if query(flux) > 0:
            return True
        time.sleep(POLL_S)
    return False


def run_probes(sender: Sender, plan: Plan, probe: Probe, stop: threading.Event) -> ProbeResult:
    """One probe a second for the plan's duration; a query error ends the probes and is reported."""
    result = ProbeResult()
    client = InfluxDBClient(url=probe.url, token=probe.token, org=probe.org, timeout=int(probe.timeout_s * 1000))
    api = client.query_api()

    def rows(flux: str) -> int:
        return sum(len(table.records) for table in api.query(flux, org=probe.org))

    started = time.monotonic()
    try:
        while time.monotonic() - started < plan.duration_s and not stop.is_set():
            tick = time.monotonic()
            info = sender.publish(plan)
            if info is None:
                result.missing += 1
            else:
                info.wait_for_publish(PUBACK_TIMEOUT_S)
                published_ns = sender.stamps.get(info.mid)
                device = sender.device
                if published_ns is not None and _found(
                    rows, status_point_flux(probe, device.client, device.name, published_ns), probe.timeout_s
                ):
                    result.latencies_s.append(time.monotonic() - tick)
                else:
                    result.missing += 1
            stop.wait(max(0.0, 1.0 - (time.monotonic() - tick)))
    except Exception as exc:  # the client raises ApiException, urllib3 and socket errors alike
        result.error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        client.close()  # type: ignore[no-untyped-call]
    return result
