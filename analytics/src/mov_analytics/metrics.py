"""Prometheus metrics and the HTTP endpoint serving ``/metrics`` and ``/healthz``."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from .parsing import REASONS

PREFIX = "mov_analytics"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.hot = HotCounters()
        r.register(self.hot)
        self.rejected = Counter(f"{PREFIX}_readings_rejected", "Readings skipped, by reason", ["reason"], registry=r)
        for reason in (*REASONS, "internal_error"):
            self.rejected.labels(reason)
        self.status_changes = Counter(
            f"{PREFIX}_status_changes", "Device status changes, by new status", ["status"], registry=r
        )
        self.points_written = Counter(f"{PREFIX}_points_written", "Points acknowledged by InfluxDB", registry=r)
        self.points_dropped = Counter(f"{PREFIX}_points_dropped", "Points given up, by reason", ["reason"], registry=r)
        for reason in ("buffer_full", "rejected_by_server", "shutdown"):
            self.points_dropped.labels(reason)
        self.write_failures = Counter(
            f"{PREFIX}_write_failures", "Failed write requests, by kind", ["kind"], registry=r
        )
        for kind in ("retryable", "auth", "rejected"):
            self.write_failures.labels(kind)
        self.write_latency = Histogram(
            f"{PREFIX}_write_latency_seconds",
            "Duration of one write request to InfluxDB",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.buffer_depth = Gauge(
            f"{PREFIX}_buffer_points", "Points waiting to be written (incl. in flight)", registry=r
        )
        self.buffer_capacity = Gauge(
            f"{PREFIX}_buffer_capacity_points", "Points the buffer holds before it drops the oldest", registry=r
        )
        self.mqtt_connected = Gauge(f"{PREFIX}_mqtt_connected", "1 while connected to the broker", registry=r)
        self.write_ok = Gauge(f"{PREFIX}_influx_last_write_ok", "1 if the last write request succeeded", registry=r)
        self.auth_failed = Gauge(f"{PREFIX}_influx_auth_failed", "1 while InfluxDB answers 401/403", registry=r)
        self.alerts_sent = Counter(f"{PREFIX}_alerts_sent", "Alerts delivered, by channel", ["channel"], registry=r)
        self.alerts_failed = Counter(
            f"{PREFIX}_alerts_failed", "Alerts given up after retries, by channel", ["channel"], registry=r
        )
        self.alerts_suppressed = Counter(f"{PREFIX}_alerts_suppressed", "Alerts de-duplicated away", registry=r)
        self.alerts_dropped = Counter(
            f"{PREFIX}_alerts_dropped", "Alerts dropped because the channel's queue was full", ["channel"], registry=r
        )
        self.alert_send_failures = Counter(
            f"{PREFIX}_alert_send_failures",
            "Failed delivery attempts, by channel and reason (alerts.FAILURE_REASONS)",
            ["channel", "reason"],
            registry=r,
        )
        self.alert_channel_failing = Gauge(
            f"{PREFIX}_alert_channel_failing",
            "1 from a channel's first failed attempt to its next delivery",
            ["channel"],
            registry=r,
        )
        self.rules_reloads = Counter(
            f"{PREFIX}_rules_reloads",
            "Rules reloads on SIGHUP, by result (applied, invalid: the old rules kept, no_rules_file)",
            ["result"],
            registry=r,
        )
        for result in ("applied", "invalid", "no_rules_file"):
            self.rules_reloads.labels(result)
        self.rules_info = Gauge(
            f"{PREFIX}_rules_info",
            "1 for the sha256 of the rules file the worker evaluates with",
            ["sha256"],
            registry=r,
        )
        self.write_ok.set(1)

    def rules_loaded(self, sha256: str) -> None:
        self.rules_info.clear()
        self.rules_info.labels(sha256).set(1)


class HotCounters(Collector):
    """Counters bumped once per message by the single MQTT thread, kept as plain ints.

    prometheus_client's Counter.inc takes a lock on every call; on the message path that was measurable
    (bench/results.md), so these are read at scrape time instead. Only the MQTT thread writes them.
    """

    def __init__(self) -> None:
        self.received = 0
        self.processed = 0
        self.unknown_keys = 0
        self.late = 0
        self.duplicate = 0
        self.stale = 0

    def collect(self) -> Iterator[Metric]:
        for name, doc, value in (
            ("readings_received", "MQTT messages received", self.received),
            ("readings_processed", "Readings parsed and run through the rules", self.processed),
            ("readings_unknown_keys", "Accepted readings whose unknown keys were ignored", self.unknown_keys),
            (
                "readings_late",
                "Readings out of order within late_window_s of the device's newest: evaluated",
                self.late,
            ),
            (
                "readings_duplicate",
                "Readings seen before (same device, time and values; QoS 1 redelivery): skipped",
                self.duplicate,
            ),
            (
                "readings_stale",
                "Readings more than late_window_s behind the device's newest: skipped by the rules",
                self.stale,
            ),
        ):
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


class HealthServer:
    """Serves /metrics and /healthz; /healthz is 200 only while ``is_healthy()`` says so, else 503. ``POST /-/reload``
    (as Prometheus names it) calls ``reload()`` and answers its result as JSON: 200 when it applied, else 409."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        is_healthy: Callable[[], tuple[bool, str]],
        reload: Callable[[], tuple[bool, dict[str, str]]] | None = None,
    ) -> None:
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path.split("?")[0] == "/-/reload" and reload is not None:
                    applied, result = reload()
                    self._send(200 if applied else 409, "application/json", json.dumps(result).encode() + b"\n")
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found\n")

            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                elif self.path.split("?")[0] == "/healthz":
                    ok, why = is_healthy()
                    self._send(200 if ok else 503, "text/plain; charset=utf-8", (why + "\n").encode())
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait forever for a loop that never ran
            self._server.shutdown()
        self._server.server_close()
