"""Alerts: de-duplication per device and kind, retries, failures counted, never blocking the caller."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mov_analytics.alerts import Alert, Alerter, WebhookSender
from mov_analytics.config import AlertsConfig, WebhookConfig
from mov_analytics.metrics import Metrics


class FlakySender:
    channel = "test"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.delivered: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError("down")
        self.delivered.append(alert)


def value(metric_family: object) -> float:
    return float(metric_family._value.get())  # type: ignore[attr-defined]


def test_dedup_per_device_and_kind_within_period() -> None:
    now = [1000.0]
    metrics = Metrics()
    sender = FlakySender(0)
    alerter = Alerter(AlertsConfig(dedup_s=60.0), metrics, [sender], clock=lambda: now[0])
    assert alerter.submit(Alert("critico", "abc/s1", "hot"))
    assert not alerter.submit(Alert("critico", "abc/s1", "hot again"))
    assert alerter.submit(Alert("critico", "abc/s2", "other device"))
    assert alerter.submit(Alert("recovery", "abc/s1", "other kind"))
    now[0] += 61.0
    assert alerter.submit(Alert("critico", "abc/s1", "after the period"))
    assert value(metrics.alerts_suppressed) == 1


def test_retries_then_succeeds() -> None:
    metrics = Metrics()
    sender = FlakySender(2)
    sleeps: list[float] = []
    alerter = Alerter(AlertsConfig(max_attempts=5, retry_initial_s=0.5), metrics, [sender], sleep=sleeps.append)
    alerter.deliver(Alert("critico", "abc/s1", "hot"))
    assert sender.calls == 3 and len(sender.delivered) == 1
    assert sleeps == [0.5, 1.0]
    assert metrics.alerts_sent.labels("test")._value.get() == 1
    assert metrics.alerts_failed.labels("test")._value.get() == 0


def test_gives_up_after_max_attempts_and_counts() -> None:
    metrics = Metrics()
    sender = FlakySender(100)
    alerter = Alerter(AlertsConfig(max_attempts=3, retry_initial_s=0.0), metrics, [sender], sleep=lambda s: None)
    alerter.deliver(Alert("critico", "abc/s1", "hot"))
    assert sender.calls == 3
    assert metrics.alerts_failed.labels("test")._value.get() == 1


def test_submit_never_blocks_and_counts_a_full_queue() -> None:
    metrics = Metrics()
    alerter = Alerter(AlertsConfig(queue_size=2, dedup_s=0.0), metrics, [FlakySender(0)])
    started = time.monotonic()
    results = [alerter.submit(Alert("critico", f"abc/s{i}", "hot")) for i in range(5)]  # thread not started
    assert time.monotonic() - started < 0.5
    assert results == [True, True, False, False, False]
    assert value(metrics.alerts_dropped) == 3


def test_webhook_posts_json() -> None:
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        metrics = Metrics()
        alerter = Alerter(AlertsConfig(), metrics, [WebhookSender(WebhookConfig(url=url))])
        alerter.start()
        alerter.submit(Alert("critico", "abc/s1", "hot", {"value": 36.5}))
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.02)
        alerter.stop(1.0)
    finally:
        server.shutdown()
        server.server_close()
    assert len(received) == 1
    assert b'"kind": "critico"' in received[0] and b'"value": 36.5' in received[0]
