"""README's first command, as a newcomer runs it on a machine without an image registry: `python3 scripts/dev.py up`.

It must say up front which services run, bring them up on the local box, and print URLs that answer. Without
InfluxDB the worker logs status changes instead of storing them and stays healthy after readings; nginx serves no
Grafana location. (The registry mode, all five services, is the GitHub workflow's e2e job.)
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "scenarios"))
import box  # noqa: E402
from device import publish as device_publish  # noqa: E402
from device import reading  # noqa: E402

DOMAIN = "mov.localhost"
DEVICE = "industria_abc/sensor_001"


@pytest.fixture(scope="module")
def up() -> Iterator[str]:
    """dev.py up's output; the box goes when the module ends (MOV_UP_KEEP=1 keeps it)."""
    if box.container_running():
        pytest.fail(f"{box.CONTAINER} already runs: this test brings up a fresh one (python3 scripts/box.py destroy)")
    try:
        out = subprocess.run(
            [sys.executable, "scripts/dev.py", "up"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1800,
            env=dict(os.environ, MOV_IMAGE_SOURCE="bundle"),
        )
        assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]
        yield out.stdout
    finally:
        if os.environ.get("MOV_UP_KEEP") != "1":
            box.destroy()


def in_box(*cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", "-i", box.CONTAINER, *cmd], input=stdin, capture_output=True, text=True, timeout=120
    )


def address(output: str) -> str:
    m = re.search(r"MQTT over TLS: ([\d.]+):8883", output)
    assert m, output[-3000:]
    return m.group(1)


def tls_get(addr: str, ca: Path, path: str) -> tuple[int, str]:
    """GET https://mov.localhost<path> from addr, the certificate checked against the platform's name."""
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection((addr, 443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=DOMAIN) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    return int(head.split()[1]), body


def test_up_says_which_services_run_before_deploying(up: str) -> None:
    deploying = up.index("deploying: mosquitto, analytics")
    assert "left out: telegraf, influxdb, grafana" in up[deploying : deploying + 300]
    assert deploying < up.index("PLAY [")


def test_every_printed_url_answers_and_the_worker_stays_healthy_after_readings(up: str) -> None:
    addr = address(up)
    ca_pem = in_box("cat", "/opt/mov/tls/ca.pem")
    assert ca_pem.returncode == 0, ca_pem.stderr
    secrets = yaml.safe_load((REPO / "inventories/local/group_vars/mov/secrets.yml").read_text())
    password = secrets["vault_mov_secrets"]["mqtt"][DEVICE]
    # The MQTT URL: a device's readings over TLS, the certificate checked against the platform's name.
    now = datetime.now(UTC)
    published = device_publish(
        addr,
        DOMAIN,
        ca_pem.stdout,
        DEVICE,
        password,
        [reading(DEVICE, value, at=now - timedelta(seconds=10 - i)) for i, value in enumerate((25.0, 31.0, 36.0))],
    )
    for pub in published:
        assert pub.returncode == 0, pub.stdout + pub.stderr
    # The HTTPS URL nginx serves: no Grafana location; the root says so instead of a 502.
    with tempfile.TemporaryDirectory(prefix="mov-up-") as tmp:
        ca = Path(tmp) / "ca.pem"
        ca.write_text(ca_pem.stdout)
        status, body = tls_get(addr, ca, "/")
    assert status == 200 and "Grafana is not deployed" in body, (status, body)
    deadline = time.monotonic() + 30
    log = ""
    while time.monotonic() < deadline:
        log = in_box("sh", "-c", "docker logs mov-analytics-1 2>&1").stdout
        if log.count('"status change"') >= 3:
            break
        time.sleep(1)
    assert log.count('"status change"') >= 3, log[-3000:]
    assert "no InfluxDB (influxdb.enabled is false)" in log
    health = in_box(
        "python3",
        "-c",
        "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9108/healthz', timeout=5).status)",
    )
    assert health.stdout.strip() == "200", health.stdout + health.stderr
