"""What `movctl bench` measures from the host while the load runs: each container's CPU and memory (docker stats),
InfluxDB's write latency and Grafana's /api/health time (timed HTTP requests), and the removal of its points."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mov_host.movctl.config import BenchInflux, MovctlError
from mov_host.movctl.docker import run

UNITS = {"B": 1, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "KB": 10**3, "MB": 10**6, "GB": 10**9}
SIZE = re.compile(r"^\s*([\d.]+)\s*([A-Za-z]+)\s*$")
HTTP_TIMEOUT_S = 10.0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None when there are no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def size_bytes(text: str) -> float | None:
    """docker stats' sizes ("45.3MiB", "1.2GB", "0B") in bytes."""
    match = SIZE.match(text)
    if not match or match.group(2).upper() not in UNITS:
        return None
    return float(match.group(1)) * UNITS[match.group(2).upper()]


@dataclass
class Usage:
    cpu: list[float] = field(default_factory=list)
    mem: list[float] = field(default_factory=list)


def parse_stats(lines: str, prefix: str) -> dict[str, tuple[float, float]]:
    """`docker stats --no-stream --format '{{json .}}'` rows of the project's containers: service -> (cpu %, bytes)."""
    rows: dict[str, tuple[float, float]] = {}
    for line in lines.splitlines():
        try:
            row = json.loads(line)
            name = str(row["Name"])
            cpu = float(str(row["CPUPerc"]).rstrip("%"))
            mem = size_bytes(str(row["MemUsage"]).split("/")[0])
        except (ValueError, KeyError, TypeError):
            continue
        if name.startswith(prefix) and mem is not None:
            rows[re.sub(r"-\d+$", "", name[len(prefix) :])] = (cpu, mem)
    return rows


class StatsSampler(threading.Thread):
    """Samples docker stats until stopped; each sample takes about a second (docker reads two CPU readings)."""

    def __init__(self, project: str) -> None:
        super().__init__(name="docker-stats", daemon=True)
        self.prefix = f"{project}-"
        self.usage: dict[str, Usage] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            out = run(["docker", "stats", "--no-stream", "--format", "{{json .}}"], timeout=30)
            for service, (cpu, mem) in parse_stats(out.stdout, self.prefix).items():
                usage = self.usage.setdefault(service, Usage())
                usage.cpu.append(cpu)
                usage.mem.append(mem)

    def stop(self) -> None:
        self.stopping.set()
        self.join(60)


def timed(request: Callable[[], int], count: int, spacing_s: float, stop: threading.Event) -> dict[str, object]:
    """`count` calls of `request` (returns an HTTP status), `spacing_s` apart: p50/p99 in ms of those that
    answered 2xx, and the failures."""
    took: list[float] = []
    failures: list[str] = []
    for _ in range(count):
        if stop.is_set():
            break
        started = time.monotonic()
        try:
            status = request()
        except (urllib.error.URLError, OSError) as exc:
            failures.append(str(getattr(exc, "reason", exc))[:200])
        else:
            if 200 <= status < 300:
                took.append(time.monotonic() - started)
            else:
                failures.append(f"HTTP {status}")
        stop.wait(spacing_s)
    return {
        "p50_ms": _ms(percentile(took, 50)),
        "p99_ms": _ms(percentile(took, 99)),
        "samples": len(took),
        "failed": len(failures),
        "errors": sorted(set(failures))[:3],
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def influx_writer(influx: BenchInflux, token: str, client: str, points: int = 10) -> Callable[[], int]:
    """A write of `points` marked points (tag cliente=<bench client>) to the readings bucket, as one request."""
    query = urllib.parse.urlencode({"org": influx.org, "bucket": influx.readings_bucket, "precision": "ns"})
    url = f"{influx.url}/api/v2/write?{query}"
    headers = {"Authorization": f"Token {token}", "Content-Type": "text/plain; charset=utf-8"}

    def write() -> int:
        now = time.time_ns()
        body = "\n".join(f"movbench,cliente={client},probe=write value={i}i {now + i}" for i in range(points))
        return _http(url, body.encode(), headers)

    return write


def grafana_health(url: str) -> Callable[[], int]:
    return lambda: _http(url)


def delete_points(influx: BenchInflux, token: str, client: str, start: datetime, stop: datetime) -> list[str]:
    """InfluxDB's delete API for every point tagged cliente=<bench client> in both buckets; the buckets done."""
    done = []
    body = json.dumps(
        {
            "start": start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "stop": stop.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "predicate": f'cliente="{client}"',
        }
    ).encode()
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    for bucket in dict.fromkeys((influx.readings_bucket, influx.status_bucket)):
        query = urllib.parse.urlencode({"org": influx.org, "bucket": bucket})
        try:
            status = _http(f"{influx.url}/api/v2/delete?{query}", body, headers)
        except (urllib.error.URLError, OSError) as exc:
            raise MovctlError(f"deleting the bench's points from {bucket} failed: {exc}") from exc
        if status != 204:
            raise MovctlError(f"deleting the bench's points from {bucket} failed: HTTP {status}")
        done.append(bucket)
    return done
