"""The worker's e-mail alerts, as a process with a real Mosquitto: a critical reading arrives at a real SMTP server
(aiosmtpd) over STARTTLS with a login, the way a submission relay takes it; a relay that hangs is counted and
logged once while the readings keep being processed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Publisher, WorkerProcess, reading
from influx_write_double import InfluxWriteDouble
from mosquitto_runner import Mosquitto
from smtp_relay import Relay, make_certificate, silent_listener

RELAY_USER, RELAY_PASSWORD = "mov", "test-only-relay-pw"


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[Relay, Path]]:
    cert, key = make_certificate(tmp_path)
    with Relay(cert, key, users={RELAY_USER: RELAY_PASSWORD}) as server:
        yield server, cert


def _email(tmp_path: Path, port: int, **changes: Any) -> dict[str, Any]:
    (tmp_path / "smtp_password").write_text(RELAY_PASSWORD + "\n")
    return {
        "host": "127.0.0.1",
        "port": port,
        "starttls": True,
        "username": RELAY_USER,
        "password_file": str(tmp_path / "smtp_password"),
        "sender": "mov@example.com",
        "recipients": ["ops@example.com", "oncall@example.com"],
    } | changes


def test_a_critical_reading_is_mailed_through_the_relay(
    tmp_path: Path,
    broker: Mosquitto,
    double: InfluxWriteDouble,
    relay: tuple[Relay, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, cert = relay
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the worker trusts the relay's certificate as a system CA
    w = WorkerProcess(tmp_path, broker, double, alerts={"email": _email(tmp_path, server.port)})
    w.start()
    publisher = Publisher(broker.port)
    try:
        publisher.publish(reading(36.5, time.time() - 5))
        received = server.wait(1, 15)
        deadline = time.monotonic() + 5  # counted once the relay's 250 is back
        while (sent := w.metric("mov_analytics_alerts_sent_total", 'channel="email"')) < 1:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        publisher.close()
        w.stop()
    assert len(received) == 1, w.log.read_text()[-2000:]
    (got,) = received
    assert (got.sender, got.recipients, got.tls, got.login) == (
        "mov@example.com",
        ["ops@example.com", "oncall@example.com"],
        True,
        RELAY_USER,
    )
    assert got.message["Subject"] == "[MOV critico] industria_abc/sensor_001"
    assert got.message["To"] == "ops@example.com, oncall@example.com"
    body = got.message.get_content()
    assert body.splitlines()[0] == "industria_abc/sensor_001 (sala_servidores) is critico: temperatura_c=36.5"
    assert '"kind": "critico"' in body and '"value": 36.5' in body
    assert sent == 1


def test_a_hanging_relay_is_counted_and_logged_once_while_readings_keep_being_processed(
    tmp_path: Path, broker: Mosquitto, double: InfluxWriteDouble
) -> None:
    with silent_listener() as port:
        alerts = {
            "dedup_s": 0,
            "max_attempts": 2,
            "retry_initial_s": 0.2,
            "retry_max_s": 0.4,
            "email": _email(tmp_path, port, timeout_s=2),
        }
        w = WorkerProcess(tmp_path, broker, double, alerts=alerts)
        w.start()
        publisher = Publisher(broker.port)
        try:
            now, started = time.time(), time.monotonic()
            # Ten devices go critico: ten alerts, each waiting on a relay that accepts and never answers.
            for i in range(10):
                publisher.publish(reading(36.5, now - 5, device=f"sensor_{i:03d}"))
            for seq in range(200):
                publisher.publish(reading(22.0, now - 4 + seq / 1000, device="sensor_100", seq=seq))
            deadline = started + 10
            while w.metric("mov_analytics_readings_processed_total") < 210 and time.monotonic() < deadline:
                time.sleep(0.05)
            processed_after = time.monotonic() - started
            processed = w.metric("mov_analytics_readings_processed_total")
            while w.metric("mov_analytics_alerts_failed_total", 'channel="email"') < 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            timeouts = w.metric("mov_analytics_alert_send_failures_total", 'channel="email",reason="timeout"')
            failing = w.metric("mov_analytics_alert_channel_failing", 'channel="email"')
            given_up = w.metric("mov_analytics_alerts_failed_total", 'channel="email"')
        finally:
            publisher.close()
            w.stop()
    log = w.log.read_text()
    assert processed == 210, log[-2000:]
    # Every reading published and evaluated before the relay's first timeout (2 s) could end: none waited on it.
    assert processed_after < 2.0, processed_after
    assert timeouts >= 2 and given_up >= 1 and failing == 1
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    outage = [line for line in lines if line["msg"].startswith("alert channel failing")]
    assert len(outage) == 1, outage
    assert (outage[0]["channel"], outage[0]["reason"], outage[0]["level"]) == ("email", "timeout", "warning")
    assert not [line for line in lines if line["level"] == "error" and line.get("channel") == "email"]
