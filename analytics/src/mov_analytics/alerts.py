"""Alerts (webhook JSON POST, e-mail over SMTP with STARTTLS), off the message path.

``Alerter.submit`` only de-duplicates and enqueues (never blocks): the MQTT thread calls it. Each channel has a
bounded queue and a delivery thread of its own, so a relay that hangs holds back the e-mails and nothing else.
A failed attempt is counted by channel and reason (``alert_send_failures_total``) and retried after a delay that
doubles from ``alerts.retry_initial_s`` up to ``alerts.retry_max_s``; an alert is given up after
``alerts.max_attempts``. While a channel fails, the next alert waits out that delay too, and the outage is logged
once when it starts and once when it ends, never per alert. The same (kind, subject) is sent at most once per
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
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol

from .config import AlertsConfig, EmailConfig, WebhookConfig
from .metrics import Metrics

log = logging.getLogger(__name__)

# Why an attempt failed: the other side said no (an SMTP 5xx, refused recipients, an HTTP error status, a closed
# port) or not now (SMTP 4xx, HTTP 429/503); no answer within the timeout; STARTTLS or the certificate failed;
# the network failed (no route, unknown name, a connection dropped midway); anything else.
FAILURE_REASONS = ("refused", "deferred", "timeout", "tls", "network", "error")


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


class WebhookRefused(OSError):
    """The webhook answered with a status that is not a success (urllib raises HTTPError for 4xx/5xx only)."""


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
                raise WebhookRefused(f"webhook answered {response.status}")


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
    """Send one message through the configured relay (STARTTLS unless turned off, login when a user is set).

    ``timeout_s`` bounds the connection and every reply, so a relay that accepts and then says nothing fails
    with a timeout instead of holding the sender.
    """
    with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
        if cfg.starttls:
            smtp.starttls(context=tls_context or ssl.create_default_context())
        if cfg.username:
            smtp.login(cfg.username, cfg.password)
        smtp.send_message(msg)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it wraps: urllib's URLError.reason, and what was raised while handling another
    (smtplib turns a reply that timed out into SMTPServerDisconnected, raised in the socket error's handler)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return
        yield seen
        if isinstance(seen, urllib.error.URLError) and isinstance(seen.reason, BaseException):
            seen = seen.reason
        else:
            seen = seen.__cause__ or seen.__context__


def failure_reason(exc: BaseException) -> str:
    """One of FAILURE_REASONS for an exception a sender raised."""
    if any(isinstance(e, TimeoutError) for e in _causes(exc)):
        return "timeout"
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason  # urllib wraps the socket's error at connect time (HTTPError's reason is a str)
    # Order matters: smtplib's errors and ssl's are OSErrors too.
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, smtplib.SMTPResponseException):
        return "deferred" if 400 <= exc.smtp_code < 500 else "refused"
    if isinstance(exc, (smtplib.SMTPRecipientsRefused, smtplib.SMTPNotSupportedError, WebhookRefused)):
        return "refused"
    if isinstance(exc, urllib.error.HTTPError):
        return "deferred" if exc.code in (429, 503) else "refused"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, OSError):
        return "network"
    return "error"


def senders_from_config(cfg: AlertsConfig) -> list[Sender]:
    senders: list[Sender] = []
    if cfg.webhook.url:
        senders.append(WebhookSender(cfg.webhook))
    if cfg.email.host:
        senders.append(EmailSender(cfg.email))
    return senders


class _Channel:
    """One sender's queue, delivery thread and backoff, and whether it is in an outage."""

    def __init__(
        self,
        sender: Sender,
        *,
        cfg: AlertsConfig,
        metrics: Metrics,
        stop: threading.Event,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        self.sender = sender
        self.name = sender.channel
        self.queue: queue.Queue[Alert | None] = queue.Queue(maxsize=cfg.queue_size)
        self.thread = threading.Thread(target=self._run, name=f"alerts-{self.name}", daemon=True)
        self._cfg = cfg
        self._metrics = metrics
        self._stop = stop
        self._sleep = sleep
        self._clock = clock
        self._delay = 0.0  # the wait before the next attempt: 0 while the channel delivers
        self._down_since: float | None = None
        self._failed_attempts = 0
        self._given_up = 0
        self._dropping = False
        for reason in FAILURE_REASONS:
            metrics.alert_send_failures.labels(self.name, reason)
        for counter in (metrics.alerts_sent, metrics.alerts_failed, metrics.alerts_dropped):
            counter.labels(self.name)
        metrics.alert_channel_failing.labels(self.name).set(0)

    def offer(self, alert: Alert) -> bool:
        """Queue without waiting; a full queue drops the alert (counted, logged once until there is room)."""
        try:
            self.queue.put_nowait(alert)
        except queue.Full:
            self._metrics.alerts_dropped.labels(self.name).inc()
            if not self._dropping:
                self._dropping = True
                log.error(
                    "alert queue full, alerts dropped until it has room again",
                    extra={"channel": self.name, "kind": alert.kind, "subject": alert.subject},
                )
            return False
        self._dropping = False
        return True

    def deliver(self, alert: Alert) -> bool:
        for _ in range(self._cfg.max_attempts):
            if self._delay > 0:
                self._sleep(self._delay)
            if self._stop.is_set() and self._delay > 0:
                break
            try:
                self.sender.send(alert)
            except Exception as exc:
                self._failed(alert, exc)
            else:
                self._delivered(alert)
                return True
        self._metrics.alerts_failed.labels(self.name).inc()
        self._given_up += 1
        log.debug("alert given up", extra={"channel": self.name, "kind": alert.kind, "subject": alert.subject})
        return False

    def _failed(self, alert: Alert, exc: Exception) -> None:
        reason = failure_reason(exc)
        self._metrics.alert_send_failures.labels(self.name, reason).inc()
        self._failed_attempts += 1
        self._delay = min(max(self._delay * 2, self._cfg.retry_initial_s), self._cfg.retry_max_s)
        if self._down_since is None:
            self._down_since = self._clock()
            self._metrics.alert_channel_failing.labels(self.name).set(1)
            log.warning(
                "alert channel failing: retrying with backoff; logged again when it delivers",
                extra={
                    "channel": self.name,
                    "reason": reason,
                    "error": str(exc) or type(exc).__name__,
                    "kind": alert.kind,
                    "subject": alert.subject,
                    "retry_max_s": self._cfg.retry_max_s,
                },
            )

    def _delivered(self, alert: Alert) -> None:
        self._metrics.alerts_sent.labels(self.name).inc()
        if self._down_since is not None:
            log.info(
                "alert channel delivers again",
                extra={
                    "channel": self.name,
                    "down_s": round(self._clock() - self._down_since, 1),
                    "failed_attempts": self._failed_attempts,
                    "alerts_given_up": self._given_up,
                },
            )
            self._metrics.alert_channel_failing.labels(self.name).set(0)
        self._down_since, self._failed_attempts, self._given_up, self._delay = None, 0, 0, 0.0
        log.info("alert sent", extra={"channel": self.name, "kind": alert.kind, "subject": alert.subject})

    def _run(self) -> None:
        while True:
            alert = self.queue.get()
            if alert is None:
                return
            self.deliver(alert)


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
        self._clock = clock
        self._last_sent: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        wait = sleep or self._interruptible_sleep
        self._channels = [
            _Channel(s, cfg=cfg, metrics=metrics, stop=self._stop, sleep=wait, clock=clock) for s in senders
        ]

    def _interruptible_sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def start(self) -> None:
        for channel in self._channels:
            channel.thread.start()

    def submit(self, alert: Alert) -> bool:
        """Queue an alert on every channel unless the same kind for the same subject went out within dedup_s."""
        if not self._channels:
            return False
        key = (alert.kind, alert.subject)
        now = self._clock()
        with self._lock:
            last = self._last_sent.get(key)
            if last is not None and now - last < self._cfg.dedup_s:
                self._metrics.alerts_suppressed.inc()
                return False
            self._last_sent[key] = now
        queued = [channel.offer(alert) for channel in self._channels]
        return any(queued)

    def deliver(self, alert: Alert) -> None:
        """Deliver on every channel in the caller's thread (what each channel's thread does with its queue)."""
        for channel in self._channels:
            channel.deliver(alert)

    def stop(self, timeout_s: float) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for channel in self._channels:
            with contextlib.suppress(queue.Full):
                channel.queue.put_nowait(None)
        for channel in self._channels:
            if channel.thread.is_alive():
                channel.thread.join(max(0.0, deadline - time.monotonic()))
