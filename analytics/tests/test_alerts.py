"""Alerts: de-duplication per device and kind, retries with a bounded backoff, failures counted by reason and an
outage logged once, never blocking the caller; the relay's failures against real servers on loopback."""

from __future__ import annotations

import dataclasses
import logging
import smtplib
import socket
import threading
import time
import urllib.error
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mosquitto_runner import free_port
from smtp_relay import Relay, make_certificate, silent_listener

from mov_analytics.alerts import (
    FAILURE_REASONS,
    Alert,
    Alerter,
    EmailSender,
    Sender,
    WebhookSender,
    failure_reason,
)
from mov_analytics.config import AlertsConfig, EmailConfig, WebhookConfig
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
    assert metrics.alerts_dropped.labels("test")._value.get() == 3


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[bytes]]]:
    """An HTTP endpoint on loopback that answers 200 and keeps every POSTed body: (its URL, the bodies)."""
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
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_posts_json(webhook: tuple[str, list[bytes]]) -> None:
    url, received = webhook
    metrics = Metrics()
    alerter = Alerter(AlertsConfig(), metrics, [WebhookSender(WebhookConfig(url=url))])
    alerter.start()
    alerter.submit(Alert("critico", "abc/s1", "hot", {"value": 36.5}))
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.02)
    alerter.stop(1.0)
    assert len(received) == 1
    assert b'"kind": "critico"' in received[0] and b'"value": 36.5' in received[0]


# --- a relay that refuses, defers, hangs or is not there (real servers on loopback) ----------------------------


def _email(port: int, **changes: object) -> EmailConfig:
    base = EmailConfig(
        host="127.0.0.1",
        port=port,
        starttls=False,
        sender="mov@example.com",
        recipients=("ops@example.com",),
        timeout_s=0.5,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _failures(metrics: Metrics, channel: str = "email") -> dict[str, float]:
    return {
        reason: metrics.alert_send_failures.labels(channel, reason)._value.get()
        for reason in FAILURE_REASONS
        if metrics.alert_send_failures.labels(channel, reason)._value.get()
    }


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("relay"))


def test_each_way_a_relay_fails_is_counted_by_its_reason(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    with (
        Relay(answer="554 5.7.1 message refused") as refusing,
        Relay(answer="451 4.3.0 try again later") as deferring,
        Relay(cert, key) as untrusted,
        Relay(cert, key, users={"mov": "right"}) as guarded,
        silent_listener() as hanging,
    ):
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trusted from here on: the login is what fails
        cases = [
            (_email(refusing.port), "refused"),
            (_email(deferring.port), "deferred"),
            (_email(free_port()), "refused"),  # nothing listens: connection refused
            (_email(hanging), "timeout"),  # accepts, never sends its greeting
            (_email(guarded.port, starttls=True, username="mov", password="wrong"), "refused"),  # 535
        ]
        for cfg, reason in cases:
            metrics = Metrics()
            Alerter(AlertsConfig(max_attempts=1), metrics, [EmailSender(cfg)]).deliver(
                Alert("critico", "abc/s1", "hot")
            )
            assert _failures(metrics) == {reason: 1}, (cfg.port, reason)
            assert metrics.alerts_failed.labels("email")._value.get() == 1
        monkeypatch.delenv("SSL_CERT_FILE")
        metrics = Metrics()
        sender = EmailSender(_email(untrusted.port, starttls=True))
        Alerter(AlertsConfig(max_attempts=1), metrics, [sender]).deliver(Alert("critico", "abc/s1", "hot"))
        assert _failures(metrics) == {"tls": 1}  # a certificate nobody vouches for
    assert [r.message for r in refusing.received + deferring.received + guarded.received] == []


def test_an_outage_is_logged_once_retried_with_a_bounded_backoff_and_its_end_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    sleeps: list[float] = []
    cfg = AlertsConfig(max_attempts=3, retry_initial_s=0.5, retry_max_s=2.0)
    with Relay(answer="554 5.7.1 message refused") as relay, caplog.at_level(logging.DEBUG, "mov_analytics"):
        alerter = Alerter(cfg, metrics, [EmailSender(_email(relay.port))], sleep=sleeps.append)
        for device in ("s1", "s2", "s3"):
            alerter.deliver(Alert("critico", f"abc/{device}", "hot"))
        assert metrics.alert_channel_failing.labels("email")._value.get() == 1
        relay.answer = None  # the relay takes mail again
        alerter.deliver(Alert("critico", "abc/s4", "hot"))
    # Three alerts of three attempts each, every wait doubling from 0.5 s and none longer than retry_max_s; the
    # alert after the outage waits out the channel's last delay once, then goes through.
    assert sleeps == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    assert _failures(metrics) == {"refused": 9}
    assert metrics.alerts_failed.labels("email")._value.get() == 3
    assert metrics.alerts_sent.labels("email")._value.get() == 1
    assert metrics.alert_channel_failing.labels("email")._value.get() == 0
    assert [m.message["Subject"] for m in relay.received] == ["[MOV critico] abc/s4"]
    records = [r for r in caplog.records if r.levelno >= logging.INFO and r.name == "mov_analytics.alerts"]
    assert [r.getMessage() for r in records] == [
        "alert channel failing: retrying with backoff; logged again when it delivers",
        "alert channel delivers again",
        "alert sent",
    ]
    failing, back = records[0].__dict__, records[1].__dict__
    assert (failing["channel"], failing["reason"], failing["subject"]) == ("email", "refused", "abc/s1")
    assert "554" in failing["error"]
    assert (back["failed_attempts"], back["alerts_given_up"]) == (9, 3)


def test_a_hanging_relay_holds_neither_the_caller_nor_the_webhook(webhook: tuple[str, list[bytes]]) -> None:
    """The worker's thread only queues; each channel delivers from a thread of its own."""
    url, hooks = webhook
    metrics = Metrics()
    with silent_listener() as hanging:
        cfg = AlertsConfig(max_attempts=2, retry_initial_s=0.1, retry_max_s=0.2, dedup_s=0.0)
        senders: list[Sender] = [WebhookSender(WebhookConfig(url=url)), EmailSender(_email(hanging, timeout_s=1.0))]
        alerter = Alerter(cfg, metrics, senders)
        alerter.start()
        started = time.monotonic()
        for i in range(50):
            assert alerter.submit(Alert("critico", f"abc/s{i}", "hot"))
        assert time.monotonic() - started < 0.2
        deadline = time.monotonic() + 5
        while len(hooks) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        webhook_done = time.monotonic() - started
        while not _failures(metrics) and time.monotonic() < deadline:
            time.sleep(0.02)
        alerter.stop(0.5)
    assert len(hooks) == 50 and webhook_done < 1.0, webhook_done  # before the relay's first timeout (1 s)
    assert _failures(metrics)["timeout"] >= 1
    assert _failures(metrics, "webhook") == {}


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (urllib.error.HTTPError("http://hook", 404, "Not Found", Message(), None), "refused"),
        (urllib.error.HTTPError("http://hook", 503, "Unavailable", Message(), None), "deferred"),
        (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), "refused"),
        (urllib.error.URLError(TimeoutError("timed out")), "timeout"),
        (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), "network"),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), "network"),
        (ValueError("a bug"), "error"),
    ],
)
def test_the_webhook_s_and_other_failures_have_a_reason(exc: Exception, reason: str) -> None:
    assert failure_reason(exc) == reason
