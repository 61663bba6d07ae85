"""Alerts (webhook JSON POST, e-mail over SMTP with STARTTLS), off the message path.

``Alerter.submit`` only de-duplicates and enqueues (never blocks); one thread delivers, retrying each channel
with exponential backoff up to ``alerts.max_attempts``. The same (kind, device) is sent at most once per
``alerts.dedup_s``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import smtplib
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol

from .config import AlertsConfig, EmailConfig, WebhookConfig
from .metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str  # critico | recovery | buffer_overflow | influx_auth
    subject: str  # "<cliente>/<dispositivo>" or "worker"
    message: str
    details: dict[str, object] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind, "subject": self.subject, "message": self.message, **self.details}


class Sender(Protocol):
    channel: str

    def send(self, alert: Alert) -> None: ...


class WebhookSender:
    channel = "webhook"

    def __init__(self, cfg: WebhookConfig) -> None:
        self._cfg = cfg

    def send(self, alert: Alert) -> None:
        body = json.dumps(alert.as_json()).encode()
        headers = {"Content-Type": "application/json", **self._cfg.headers}
        request = urllib.request.Request(self._cfg.url, data=body, headers=headers, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=self._cfg.timeout_s) as response:  # noqa: S310
            if response.status >= 300:
                raise OSError(f"webhook answered {response.status}")


class EmailSender:
    channel = "email"

    def __init__(self, cfg: EmailConfig) -> None:
        self._cfg = cfg

    def send(self, alert: Alert) -> None:
        msg = EmailMessage()
        msg["Subject"] = f"[MOV {alert.kind}] {alert.subject}"
        msg["From"] = self._cfg.sender
        msg["To"] = ", ".join(self._cfg.recipients)
        msg.set_content(alert.message + "\n\n" + json.dumps(alert.as_json(), indent=2))
        smtp_send(self._cfg, msg)


def smtp_send(cfg: EmailConfig, msg: EmailMessage, tls_context: ssl.SSLContext | None = None) -> None:
    """Send one message through the configured relay (STARTTLS unless turned off, login when a user is set)."""
    with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
        if cfg.starttls:
            smtp.starttls(context=tls_context or ssl.create_default_context())
        if cfg.username:
            smtp.login(cfg.username, cfg.password)
        smtp.send_message(msg)


def senders_from_config(cfg: AlertsConfig) -> list[Sender]:
    senders: list[Sender] = []
    if cfg.webhook.url:
        senders.append(WebhookSender(cfg.webhook))
    if cfg.email.host:
        senders.append(EmailSender(cfg.email))
    return senders


class Alerter:
    def __init__(
        self,
        cfg: AlertsConfig,
        metrics: Metrics,
        senders: Sequence[Sender],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._cfg = cfg
        self._metrics = metrics
        self._senders = list(senders)
        self._clock = clock
        self._last_sent: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=cfg.queue_size)
        self._stop = threading.Event()
        self._sleep = sleep or self._interruptible_sleep
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)

    def _interruptible_sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def start(self) -> None:
        self._thread.start()

    def submit(self, alert: Alert) -> bool:
        """Queue an alert unless the same kind for the same subject went out within dedup_s."""
        if not self._senders:
            return False
        key = (alert.kind, alert.subject)
        now = self._clock()
        with self._lock:
            last = self._last_sent.get(key)
            if last is not None and now - last < self._cfg.dedup_s:
                self._metrics.alerts_suppressed.inc()
                return False
            self._last_sent[key] = now
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self._metrics.alerts_dropped.inc()
            log.error("alert queue full, alert dropped", extra={"kind": alert.kind, "subject": alert.subject})
            return False
        return True

    def deliver(self, alert: Alert) -> None:
        for sender in self._senders:
            delay = self._cfg.retry_initial_s
            for attempt in range(1, self._cfg.max_attempts + 1):
                try:
                    sender.send(alert)
                except Exception as exc:
                    if attempt == self._cfg.max_attempts or self._stop.is_set():
                        self._metrics.alerts_failed.labels(sender.channel).inc()
                        log.error(
                            "alert not delivered",
                            extra={
                                "channel": sender.channel,
                                "kind": alert.kind,
                                "subject": alert.subject,
                                "error": str(exc),
                            },
                        )
                        break
                    self._sleep(delay)
                    delay *= 2
                else:
                    self._metrics.alerts_sent.labels(sender.channel).inc()
                    log.info(
                        "alert sent", extra={"channel": sender.channel, "kind": alert.kind, "subject": alert.subject}
                    )
                    break

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            self.deliver(alert)

    def stop(self, timeout_s: float) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout_s)
