"""A plant's device, for the scenarios: JSON readings published over MQTT/TLS from a throwaway container, or over
MQTT on websockets through nginx with a real MQTT client (paho's websockets transport) in this process.

The broker's certificate is checked against the platform's name (mapped to the box's address with --add-host, or
by this process's resolver for websockets), and the device's password goes in mosquitto_pub's options file
($XDG_CONFIG_HOME/mosquitto_pub), never on a command line.
"""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO_IMAGE = "mov/mosquitto:2.0.21"


def reading(
    device: str, temperature: float, site_name: str = "sala_servidores", at: datetime | None = None
) -> dict[str, object]:
    """One reading of <client>/<name>, as the platform's payload format has it."""
    client, name = device.split("/", 1)
    return {
        "timestamp": (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tags": {"dispositivo": name, "cliente": client, "localizacao": site_name, "tipo": "temperatura"},
        "fields": {"temperatura_c": temperature},
    }


def publish(
    address: str,
    domain: str,
    ca_pem: str,
    device: str,
    password: str,
    payloads: Sequence[dict[str, object]],
    topic: str = "",
    network: str | None = None,
) -> list[subprocess.CompletedProcess[str]]:
    """Each payload with QoS 1 over MQTT 5 to domain:8883 at address, as the device; each mosquitto_pub's result."""
    results = []
    with tempfile.TemporaryDirectory(prefix="mov-device-") as tmp:
        (Path(tmp) / "ca.pem").write_text(ca_pem)
        (Path(tmp) / "mosquitto_pub").write_text(f"-u {device}\n-P {password}\n")
        # Read by the image's mosquitto user; the directory is this call's own and goes with it.
        Path(tmp).chmod(0o755)
        for name in ("ca.pem", "mosquitto_pub"):
            (Path(tmp) / name).chmod(0o644)
        run = ["docker", "run", "--rm", *(["--network", network] if network else [])]
        container = ["--add-host", f"{domain}:{address}", "-v", f"{tmp}:/cfg:ro", "-e", "XDG_CONFIG_HOME=/cfg"]
        client = ["--entrypoint", "mosquitto_pub", MOSQUITTO_IMAGE, "-h", domain, "-p", "8883", "--cafile"]
        client += ["/cfg/ca.pem", "-q", "1", "-V", "mqttv5", "-t", topic or f"mov/dados/{device}"]
        for payload in payloads:
            results.append(
                subprocess.run(
                    [*run, *container, *client, "-m", json.dumps(payload)],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
            )
    return results


@contextmanager
def resolving(name: str, address: str) -> Iterator[None]:
    """`name` resolves to `address` in this process (the websockets client's /etc/hosts line), restored after."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real(address if host == name else host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = real


def publish_websockets(
    address: str,
    domain: str,
    ca_pem: str,
    path: str,
    payloads: Sequence[dict[str, object]],
    topic: str,
    username: str | None = None,
    password: str = "",
) -> str:
    """Connect to wss://domain:443<path> at address (nginx in front of Mosquitto's websockets listener) with MQTT 5,
    the certificate checked by name, as `username` (anonymous when None), and publish each payload on `topic` with
    QoS 1. "ok" when every PUBACK came back, else the broker's CONNACK reason or what went wrong."""
    outcome: dict[str, str] = {}
    connected = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"ws-{username or 'anonymous'}",
        transport="websockets",
        protocol=mqtt.MQTTv5,
    )

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        outcome["connack"] = "ok" if not reason.is_failure else str(reason)
        connected.set()

    def on_disconnect(_c: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        outcome.setdefault("connack", f"disconnected: {reason}")
        connected.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.ws_set_options(path=path)
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as ca:
        ca.write(ca_pem)
        ca.flush()
        client.tls_set(ca_certs=ca.name)
        if username is not None:
            client.username_pw_set(username, password)
        with resolving(domain, address):
            try:
                client.connect(domain, 443, keepalive=30)
            except OSError as error:
                return f"connect: {error}"
            client.loop_start()
            try:
                if not connected.wait(20):
                    return "no CONNACK within 20 s"
                if outcome["connack"] != "ok":
                    return outcome["connack"]
                for payload in payloads:
                    info = client.publish(topic, json.dumps(payload), qos=1)
                    info.wait_for_publish(timeout=20)
                    if not info.is_published():
                        return f"no PUBACK for a reading on {topic}"
                return "ok"
            finally:
                client.disconnect()
                client.loop_stop()
