"""Fixtures: a real Mosquitto with password file and ACL, the write-API double, and the worker as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from influx_write_double import InfluxWriteDouble
from mosquitto_runner import Mosquitto, free_port
from paho.mqtt.enums import CallbackAPIVersion

WORKER_USER, WORKER_PASSWORD = "mov_analytics", "worker-pw"
SENSOR_USER, SENSOR_PASSWORD = "sensor", "sensor-pw"
# An edge gateway's bridge account: it publishes its plant's readings under mov/plantas/<site>/ (docs/plants.md).
GATEWAY_USER, GATEWAY_PASSWORD, GATEWAY_SITE = "gw_fabrica_sul", "gateway-pw", "fabrica_sul"
ACL = f"""user {WORKER_USER}
topic read mov/dados/#
topic read mov/plantas/+/mov/dados/#

user {SENSOR_USER}
topic write mov/dados/#

user {GATEWAY_USER}
topic write mov/plantas/{GATEWAY_SITE}/mov/dados/#
"""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    users = {WORKER_USER: WORKER_PASSWORD, SENSOR_USER: SENSOR_PASSWORD, GATEWAY_USER: GATEWAY_PASSWORD}
    m = Mosquitto(tmp_path / "mosquitto", users=users, acl=ACL)
    m.start()
    yield m
    m.stop()


@pytest.fixture
def double() -> Iterator[InfluxWriteDouble]:
    d = InfluxWriteDouble(token="worker-token")
    yield d
    d.close()


class Publisher:
    def __init__(self, port: int, user: str = SENSOR_USER, password: str = SENSOR_PASSWORD) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{os.getpid()}-{time.time_ns()}")
        self.client.username_pw_set(user, password)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, doc: dict[str, Any] | bytes, topic: str | None = None) -> None:
        if isinstance(doc, bytes):
            payload, topic = doc, topic or "mov/dados/industria_abc/sensor_001"
        else:
            payload = json.dumps(doc).encode()
            topic = topic or f"mov/dados/{doc['tags']['cliente']}/{doc['tags']['dispositivo']}/telemetria"
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def reading(value: float, t: float, device: str = "sensor_001", seq: int | None = None) -> dict[str, Any]:
    fields: dict[str, float] = {"temperatura_c": value, "umidade": 45.2}
    if seq is not None:
        fields["seq"] = seq
    return {
        "timestamp": t,
        "tags": {
            "dispositivo": device,
            "localizacao": "sala_servidores",
            "tipo": "temperatura",
            "cliente": "industria_abc",
        },
        "fields": fields,
    }


class WorkerProcess:
    """The real console entry point (python -m mov_analytics) with a generated config file."""

    def __init__(self, tmp_path: Path, broker: Mosquitto, double: InfluxWriteDouble, **overrides: Any) -> None:
        self.metrics_port = free_port()
        cfg: dict[str, Any] = {
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "client_id": f"mov-analytics-test-{broker.port}",
                "username": WORKER_USER,
                "password_file": str(tmp_path / "mqtt_password"),
                "reconnect_min_delay_s": 1,
                "reconnect_max_delay_s": 2,
                "keepalive_s": 5,
            },
            "influxdb": {
                "url": double.url,
                "token_file": str(tmp_path / "influx_token"),
                "batch_size": 200,
                "flush_interval_ms": 50,
                "retry_initial_ms": 100,
                "retry_max_ms": 500,
                "write_readings": True,
            },
            "validation": {"max_past_s": 3600},
            "heartbeat_interval_s": 0,
            "http": {"host": "127.0.0.1", "port": self.metrics_port},
        }
        for section, values in overrides.items():
            if isinstance(values, dict):
                cfg.setdefault(section, {}).update(values)
            else:
                cfg[section] = values
        (tmp_path / "mqtt_password").write_text(WORKER_PASSWORD + "\n")
        (tmp_path / "influx_token").write_text(double.token + "\n")
        self.config = tmp_path / "worker.yaml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.log = tmp_path / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_healthy: bool = True) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mov_analytics", "--config", str(self.config)], stdout=log, stderr=log
            )
        if wait_healthy:
            assert self.wait_health(200, 20), f"worker never became healthy:\n{self.log.read_text()[-3000:]}"

    def health(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def wait_health(self, status: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.health() == status:
                return True
            time.sleep(0.1)
        return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
            return str(r.read().decode())

    def metric(self, name: str, labels: str = "") -> float:
        wanted = f"{name}{{{labels}}}" if labels else name
        for text_line in self.metrics().splitlines():
            if text_line.startswith(wanted + " "):
                return float(text_line.split()[-1])
        raise KeyError(wanted)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
