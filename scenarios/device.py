"""A plant's device, for the scenarios: JSON readings published over MQTT/TLS from a throwaway container.

The broker's certificate is checked against the platform's name (mapped to the box's address with --add-host), and
the device's password goes in mosquitto_pub's options file ($XDG_CONFIG_HOME/mosquitto_pub), never on a command line.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

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
