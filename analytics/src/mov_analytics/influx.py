"""InfluxDB sink: line protocol, a bounded buffer and a writer thread with retry/backoff.

Why not influxdb-client's batching WriteApi: its buffer is not bounded in points, it gives up on a batch after
``max_retries`` instead of holding it through an outage, and it drops without a per-point count; the platform
needs "bounded buffer, drop the oldest, count and alert, never silently" and "every point accepted during an
outage is written after it, none twice". So this module keeps the buffer and the retry policy, and uses
influxdb-client's *synchronous* write API (no retries of its own) for each batch request.

Points are built as line protocol strings here rather than with ``influxdb_client.Point``: the hot path writes
one point per reading and ``Point`` costs several times more per point (see bench/results.md).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Protocol

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from .config import InfluxConfig
from .metrics import Metrics

log = logging.getLogger(__name__)

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key (no trailing backslash can survive: it would eat a separator)."""
    return text.replace("\\", "\\\\").translate(_TAG_ESCAPES)


def escape_measurement(text: str) -> str:
    return text.replace("\\", "\\\\").translate(_MEASUREMENT_ESCAPES)


def string_field(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def line(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, float | int | bool | str], time_ns: int
) -> str:
    """One line of line protocol; tags sorted (InfluxDB's preferred order), floats as floats, ints with ``i``."""
    tag_part = "".join(f",{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags.items()) if v != "")
    rendered = []
    for key, value in fields.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = f"{value}i"
        elif isinstance(value, float):
            text = repr(value)
        else:
            text = string_field(value)
        rendered.append(f"{escape_key(key)}={text}")
    return f"{escape_measurement(measurement)}{tag_part} {','.join(rendered)} {time_ns}"


class WriteError(Exception):
    """A failed write request. ``kind``: retryable (5xx, 429, network), auth (401/403), rejected (other 4xx)."""

    def __init__(self, kind: str, status: int | None, message: str) -> None:
        super().__init__(f"{kind} ({status}): {message}")
        self.kind = kind
        self.status = status


class Transport(Protocol):
    def send(self, body: bytes) -> None: ...

    def close(self) -> None: ...


class DiscardTransport:
    """Where no InfluxDB is deployed (``influxdb.enabled: false``): every batch is accepted and dropped, so the
    writer's buffer never fills and its health stays good; the worker logs status changes itself."""

    def __init__(self) -> None:
        self.discarded_batches = 0

    def send(self, body: bytes) -> None:
        self.discarded_batches += 1

    def close(self) -> None:
        return None


def classify_status(status: int | None) -> str:
    if status in (401, 403):
        return "auth"
    if status is None or status >= 500 or status in (408, 429):
        return "retryable"
    return "rejected"


class InfluxClientTransport:
    """One batch per request through influxdb-client's synchronous write API (retries disabled there)."""

    def __init__(self, cfg: InfluxConfig) -> None:
        self._cfg = cfg
        self._precision: WritePrecision = WritePrecision.NS  # type: ignore[assignment]  # a str constant there
        self._client = InfluxDBClient(
            url=cfg.url,
            token=cfg.token,
            org=cfg.org,
            timeout=cfg.timeout_ms,
            enable_gzip=cfg.gzip,
            ssl_ca_cert=cfg.ca_file or None,
            retries=False,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def send(self, body: bytes) -> None:
        try:
            self._write_api.write(
                bucket=self._cfg.bucket, org=self._cfg.org, record=body, write_precision=self._precision
            )
        except ApiException as exc:
            status = int(exc.status) if exc.status is not None else None
            body_text = exc.body.decode("utf-8", "replace")[:200] if isinstance(exc.body, bytes) else ""
            raise WriteError(classify_status(status), status, f"{exc.reason} {body_text}".strip()) from None
        except Exception as exc:
            raise WriteError("retryable", None, f"{type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


class InfluxWriter:
    """Bounded FIFO of line-protocol points, written in batches by one thread.

    ``add`` never blocks: when the buffer (queued + in flight) is full the oldest queued point is dropped,
    counted under ``points_dropped{reason="buffer_full"}`` and reported through ``on_overflow``. A batch in
    flight is retried (exponential backoff with jitter, capped) until it is written, so nothing accepted is
    written twice by this process; 401/403 stop the retrying for ``auth_retry_interval_s`` at a time.
    """

    def __init__(
        self,
        cfg: InfluxConfig,
        metrics: Metrics,
        transport: Transport,
        on_overflow: Callable[[int], None] | None = None,
        on_auth_failure: Callable[[str], None] | None = None,
    ) -> None:
        self._cfg = cfg
        self._metrics = metrics
        self._transport = transport
        self._on_overflow = on_overflow
        self._on_auth_failure = on_auth_failure
        self._queue: deque[str] = deque()
        self._inflight: list[str] = []
        self._cond = threading.Condition()
        self._oldest_at = 0.0
        self._stopping = False
        self._deadline = float("inf")
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)
        self.last_write_ok = True
        self.auth_failed = False
        self.last_error = ""
        self.requests = 0
        self.written = 0
        # Read at scrape time, so it also grows while a batch is being retried during an outage.
        metrics.buffer_depth.set_function(self.pending)
        metrics.buffer_capacity.set(cfg.buffer_max_points)

    def start(self) -> None:
        self._thread.start()

    def add(self, point: str) -> None:
        dropped = 0
        with self._cond:
            queue = self._queue
            if not queue:
                self._oldest_at = time.monotonic()
                self._cond.notify()  # the writer sleeps without a timeout while there is nothing to write
            queue.append(point)
            # buffer_max_points > batch_size (checked in config), so the queue holds something to drop.
            while len(queue) + len(self._inflight) > self._cfg.buffer_max_points:
                queue.popleft()
                dropped += 1
            if len(queue) >= self._cfg.batch_size:
                self._cond.notify()
        if dropped:
            self._metrics.points_dropped.labels("buffer_full").inc(dropped)
            if self._on_overflow is not None:
                self._on_overflow(dropped)

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._inflight)

    def _next_batch(self) -> list[str] | None:
        """Wait for a full batch, the flush interval, or shutdown; None when stopped and drained."""
        interval = self._cfg.flush_interval_ms / 1000.0
        with self._cond:
            while True:
                queue = self._queue
                if queue and (
                    len(queue) >= self._cfg.batch_size
                    or self._stopping
                    or time.monotonic() - self._oldest_at >= interval
                ):
                    break
                if self._stopping and not queue:
                    return None
                if not queue:
                    self._cond.wait()  # until add() brings a first point, or stop()
                    continue
                self._cond.wait(timeout=max(interval - (time.monotonic() - self._oldest_at), 0.001))
            size = min(len(queue), self._cfg.batch_size)
            self._inflight = [queue.popleft() for _ in range(size)]
            self._oldest_at = time.monotonic() if queue else 0.0
            return self._inflight

    def _sleep(self, seconds: float) -> None:
        """Back off, but wake early for shutdown; never past the shutdown deadline."""
        end = min(time.monotonic() + seconds, self._deadline)
        while not self._wake.is_set():
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(remaining)
        self._wake.clear()

    def _run(self) -> None:
        backoff = self._cfg.retry_initial_ms / 1000.0
        max_backoff = self._cfg.retry_max_ms / 1000.0
        while True:
            batch = self._inflight or self._next_batch()
            if batch is None:
                return
            if time.monotonic() >= self._deadline:
                return
            body = "\n".join(batch).encode("utf-8")
            started = time.perf_counter()
            self.requests += 1
            try:
                self._transport.send(body)
            except WriteError as exc:
                self._metrics.write_latency.observe(time.perf_counter() - started)
                self._metrics.write_failures.labels(exc.kind).inc()
                self.last_error = str(exc)
                if exc.kind == "rejected":
                    # The server refused the data itself; resending the same bytes cannot succeed.
                    log.error("influxdb rejected a batch, dropping it", extra={"points": len(batch), "error": str(exc)})
                    self._metrics.points_dropped.labels("rejected_by_server").inc(len(batch))
                    self._finish_batch()
                    continue
                self._set_ok(False)
                if exc.kind == "auth":
                    if not self.auth_failed:
                        log.error(
                            "influxdb refused the token; holding points and retrying rarely",
                            extra={"error": str(exc), "retry_in_s": self._cfg.auth_retry_interval_s},
                        )
                        if self._on_auth_failure is not None:
                            self._on_auth_failure(str(exc))
                    self.auth_failed = True
                    self._metrics.auth_failed.set(1)
                    self._sleep(self._cfg.auth_retry_interval_s)
                else:
                    log.warning(
                        "influxdb write failed, retrying",
                        extra={"error": str(exc), "retry_in_s": round(backoff, 3), "pending": self.pending()},
                    )
                    self._sleep(backoff * random.uniform(0.8, 1.0))  # noqa: S311 - jitter, not crypto
                    backoff = min(backoff * 2, max_backoff)
                continue
            self._metrics.write_latency.observe(time.perf_counter() - started)
            self._metrics.points_written.inc(len(batch))
            self.written += len(batch)
            if self.auth_failed:
                log.info("influxdb accepts the token again")
            self.auth_failed = False
            self._metrics.auth_failed.set(0)
            backoff = self._cfg.retry_initial_ms / 1000.0
            self._set_ok(True)
            self._finish_batch()

    def _finish_batch(self) -> None:
        with self._cond:
            self._inflight = []

    def _set_ok(self, ok: bool) -> None:
        if ok != self.last_write_ok:
            self.last_write_ok = ok
            self._metrics.write_ok.set(1 if ok else 0)

    def stop(self, timeout_s: float) -> int:
        """Flush what is buffered (retrying until ``timeout_s``), stop, and return how many points were lost."""
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic() + timeout_s
            self._cond.notify_all()
        self._wake.set()  # cut a running back-off short: one more try now, then back-offs end at the deadline
        self._thread.join(timeout_s + 0.5)
        lost = self.pending()
        if lost:
            self._metrics.points_dropped.labels("shutdown").inc(lost)
            log.error("points not written before shutdown", extra={"points": lost})
        self._transport.close()
        return lost
