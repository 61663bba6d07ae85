"""README's first command, as a newcomer runs it on a machine without an image registry: `python3 scripts/dev.py up`.

It must say up front which services run, bring them up on the local box, and print URLs that answer. Without
InfluxDB the worker logs status changes instead of storing them and stays healthy after readings; nginx serves no
Grafana location. (The registry mode, all five services, is the GitHub workflow's e2e job.)

The developer loop runs on that box too: the worker serves an edit of its source within RELOAD_WITHIN_S, in the same
container, and debugpy answers a debugger's first request on the box's loopback only. The box mounts a temporary copy
of analytics/src (MOV_DEV_ANALYTICS_SRC), so the test never edits the checkout.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
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
WORKER = "mov-analytics-1"
# The developer loop: an edited source file serves within this many seconds (watchfiles notices it in well under a
# second; the worker's shutdown, debugpy's start and the broker's reconnect make the rest).
RELOAD_WITHIN_S = 15
DEBUG_PORT = 5678  # mov_dev_loop_debug_port's default (group_vars/all/stack.yml)

# Run inside the box: GET the worker's /healthz (the dev override publishes it on the box's loopback) until its body
# is argv[1] or argv[2] seconds have passed; prints the last body (or error).
POLL_HEALTHZ = """
import sys, time, urllib.request
want, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
body = ""
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen("http://127.0.0.1:9108/healthz", timeout=2) as response:
            body = response.read().decode().strip()
    except OSError as exc:
        body = repr(exc)
    if body == want:
        break
    time.sleep(0.1)
print(body)
"""
# Run inside the box: a debugger's first request to 127.0.0.1:argv[1], framed as the Debug Adapter Protocol says
# (a Content-Length header, then the JSON body); prints the adapter's response to it.
DAP_INITIALIZE = r"""
import json, socket, sys
body = json.dumps({"seq": 1, "type": "request", "command": "initialize",
                   "arguments": {"clientID": "mov-up-test", "adapterID": "debugpy", "pathFormat": "path"}}).encode()
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as sock:
    sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                sys.exit("the debug adapter closed the connection")
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        length = int(dict(line.split(": ", 1) for line in head.decode().split("\r\n"))["Content-Length"])
        while len(buffer) < length:
            buffer += sock.recv(65536)
        message, buffer = json.loads(buffer[:length]), buffer[length:]
        if message.get("type") == "response" and message.get("request_seq") == 1:
            print(json.dumps(message))
            break
"""


@pytest.fixture(scope="module")
def analytics_src() -> Iterator[Path]:
    """A copy of analytics/src for the box to mount (the worker, uid 9108, must read it); kept with MOV_UP_KEEP=1."""
    copy = Path(tempfile.mkdtemp(prefix="mov-up-analytics-")) / "src"
    shutil.copytree(REPO / "analytics" / "src", copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for path in [copy.parent, copy, *copy.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield copy
    if os.environ.get("MOV_UP_KEEP") != "1":
        shutil.rmtree(copy.parent)


@pytest.fixture(scope="module")
def up(analytics_src: Path) -> Iterator[str]:
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
            env=dict(os.environ, MOV_IMAGE_SOURCE="bundle", MOV_DEV_ANALYTICS_SRC=str(analytics_src)),
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


def dap_initialize(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """The adapter's response to DAP_INITIALIZE, which must be a successful one with the adapter's capabilities."""
    assert result.returncode == 0, result.stdout + result.stderr
    response: dict[str, object] = json.loads(result.stdout)
    assert response["command"] == "initialize" and response["success"] is True, response
    body = response["body"]
    assert isinstance(body, dict) and body.get("supportsConfigurationDoneRequest") is True, response
    return response


@contextlib.contextmanager
def forwarded(port: int) -> Iterator[int]:
    """scripts/box.py forward, as the docs tell a developer to run it: this machine's free port -> the box's port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        local = int(probe.getsockname()[1])
    relay = subprocess.Popen(
        [sys.executable, "scripts/box.py", "forward", str(port), "--local-port", str(local)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.stdout is not None and "->" in relay.stdout.readline()
        yield local
    finally:
        relay.terminate()
        relay.wait(10)


def worker_state() -> list[str]:
    """The worker container's start time, restart count and health."""
    result = in_box(
        "docker", "inspect", "-f", "{{.State.StartedAt}} {{.RestartCount}} {{.State.Health.Status}}", WORKER
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_the_developer_loop_serves_an_edit_within_seconds_and_takes_a_debugger(up: str, analytics_src: Path) -> None:
    before = worker_state()
    assert before[2] == "healthy", before
    healthz = in_box("python3", "-c", POLL_HEALTHZ, "ok", "30")
    assert healthz.stdout.strip() == "ok", healthz.stdout + healthz.stderr
    dap_initialize(in_box("python3", "-c", DAP_INITIALIZE, str(DEBUG_PORT)))

    # An edit of the copy the box mounts: /healthz's answer changes once the new code runs.
    app = analytics_src / "mov_analytics" / "app.py"
    source = app.read_text()
    assert source.count('return True, "ok"') == 1, "the worker's healthy answer moved: update this test"
    token = f"ok (reloaded {time.time_ns()})"
    started = time.monotonic()
    app.write_text(source.replace('return True, "ok"', f'return True, "{token}"'))
    served = in_box("python3", "-c", POLL_HEALTHZ, token, str(RELOAD_WITHIN_S + 15))
    took = time.monotonic() - started
    print(f"developer loop: the edit served after {took:.1f}s")
    assert served.stdout.strip() == token, served.stdout + served.stderr
    assert took < RELOAD_WITHIN_S, f"the edit served after {took:.1f}s, more than {RELOAD_WITHIN_S}s"

    # Reloaded inside the same container, which stayed healthy. Its new debugpy answers on the box's loopback, which
    # a debugger on this machine reaches through box.py forward, and nowhere else.
    after = worker_state()
    assert after[:2] == before[:2] and after[2] == "healthy", (before, after)
    with forwarded(DEBUG_PORT) as local:
        dap_initialize(
            subprocess.run(
                [sys.executable, "-c", DAP_INITIALIZE, str(local)], capture_output=True, text=True, timeout=60
            )
        )
    with pytest.raises(OSError), socket.create_connection((address(up), DEBUG_PORT), timeout=3):
        pass
    logs = in_box("sh", "-c", f"docker logs {WORKER} 2>&1").stdout
    assert "change detected" in logs and logs.count('"worker started"') >= 2, logs[-3000:]
