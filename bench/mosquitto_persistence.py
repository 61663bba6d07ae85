"""Throughput against durability of Mosquitto's persistence settings, with the real broker on loopback.

For each setting: a broker on a free 127.0.0.1 port with its own persistence directory, a consumer that
subscribes at QoS 1 with a persistent session and goes away, then one publisher sends --readings QoS 1 readings
(a ~230-byte JSON payload like a device's) and waits for every PUBACK: msgs/s is acknowledged readings per
second of that run. Then the broker is killed with SIGKILL right after the last PUBACK, restarted on the same
directory, and the consumer reconnects: lost = acknowledged - delivered within --timeout, drain_s how long that
took. Each run stops by itself (--timeout).

    .venv/bin/python bench/mosquitto_persistence.py --readings 5000 --json
    MOSQUITTO=/path/to/mosquitto .venv/bin/python bench/mosquitto_persistence.py   # another broker binary
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

# The analytics tests' broker helpers (free port, wait for the listener), as bench/analytics_throughput.py uses them.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "analytics" / "tests"))
from mosquitto_runner import free_port, wait_for_port

PAYLOAD = json.dumps(
    {
        "timestamp": "2024-01-15T10:30:00Z",
        "tags": {
            "dispositivo": "sensor_001",
            "localizacao": "sala_servidores",
            "tipo": "temperatura",
            "cliente": "industria_abc",
        },
        "fields": {"temperatura_c": 23.5, "umidade": 45.2, "pressao": 1013.25},
    }
).encode()
TOPIC = "mov/dados/industria_abc/sensor_001"
# (autosave_on_changes, autosave_interval): the old setting first.
SETTINGS = [(False, 300), (False, 1), (True, 1000), (True, 100), (True, 10), (True, 1)]


@dataclass
class Result:
    setting: str
    acknowledged: int
    seconds: float
    msgs_per_s: float
    delivered_after_kill: int
    drain_s: float
    lost: int
    rss_kib: int


class Broker:
    def __init__(self, command: list[str], workdir: Path, settings: str) -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nmax_queued_messages 0\nlog_dest none\n{settings}\n"
            # Started as root, mosquitto switches to the user "mosquitto", which could not write here.
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
        )
        self.command = command
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*self.command, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)

    def rss_kib(self) -> int:
        assert self.proc
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


def client(client_id: str, clean: bool) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    c.max_inflight_messages_set(20)
    return c


def consume(port: int, seconds: float, expected: int = 0) -> int:
    """Connect the persistent consumer, count what arrives until `expected` or `seconds`, disconnect."""
    got = 0
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal got
        got += 1
        if expected and got >= expected:
            done.set()

    def on_connect(c: mqtt.Client, _u: object, _f: object, _rc: object, _p: object) -> None:
        c.subscribe(TOPIC.rsplit("/", 2)[0] + "/#", qos=1)

    c = client("bench-consumer", clean=False)
    c.on_message = on_message
    c.on_connect = on_connect
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(seconds)
    time.sleep(0.2 if expected == 0 else 0)
    c.disconnect()
    c.loop_stop()
    return got


def publish(port: int, readings: int, timeout: float) -> tuple[int, float]:
    acked = 0
    all_acked = threading.Event()

    def on_publish(_c: mqtt.Client, _u: object, _mid: int, _rc: object, _p: object) -> None:
        nonlocal acked
        acked += 1
        if acked >= readings:
            all_acked.set()

    c = client("bench-device", clean=True)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    start = time.monotonic()
    for _ in range(readings):
        c.publish(TOPIC, PAYLOAD, qos=1)
        if time.monotonic() - start > timeout:
            break
    all_acked.wait(max(0.0, timeout - (time.monotonic() - start)))
    seconds = time.monotonic() - start
    count = acked
    c.loop_stop()
    return count, seconds


def run(command: list[str], on_changes: bool, interval: int, readings: int, timeout: float) -> Result:
    setting = f"autosave_on_changes {str(on_changes).lower()}\nautosave_interval {interval}"
    with tempfile.TemporaryDirectory(prefix="mov-bench-mosquitto-") as tmp:
        broker = Broker(command, Path(tmp), setting)
        broker.start()
        try:
            consume(broker.port, 0.5)  # the session and its subscription exist, then the consumer is away
            acknowledged, seconds = publish(broker.port, readings, timeout)
            rss = broker.rss_kib()
            broker.kill()
            broker.start()
            drain_start = time.monotonic()
            delivered = consume(broker.port, timeout, expected=acknowledged)
            drain_s = time.monotonic() - drain_start
        finally:
            broker.kill()
    return Result(
        setting.replace("\n", ", "),
        acknowledged,
        round(seconds, 3),
        round(acknowledged / seconds, 1),
        delivered,
        round(drain_s, 3),
        acknowledged - delivered,
        rss,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--readings", type=int, default=5000)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per publishing run")
    parser.add_argument("--settings", default="", help="e.g. changes:100,seconds:1 (default: every setting)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    command = shlex.split(os.environ.get("MOSQUITTO", "mosquitto"))
    version = subprocess.run([*command, "-h"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    print(f"# {version}")
    settings = (
        [(kind == "changes", int(n)) for kind, n in (item.split(":") for item in args.settings.split(","))]
        if args.settings
        else SETTINGS
    )
    for on_changes, interval in settings:
        result = run(command, on_changes, interval, args.readings, args.timeout)
        print(json.dumps(asdict(result)) if args.json else result)


if __name__ == "__main__":
    main()
