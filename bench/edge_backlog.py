"""How an edge gateway's backlog drains after a WAN outage: the edge_gateway role's broker against Mosquitto's own
bridge with default settings, both real mosquitto in network namespaces this bench creates (tests/edge_plants.py).

Each run: a central broker on this namespace's end of a gateway's WAN link, the gateway's broker in its namespace,
and a consumer on the central broker (persistent session, QoS 1). The WAN link is set down, one device publishes
--readings QoS 1 readings to the gateway over the plant LAN (every one acknowledged), and the link comes back up.
Then: reconnect_s from the link's return to the first reading at the central broker, drain rate = readings
delivered / (last arrival - first arrival), lost = acknowledged - distinct readings delivered within --timeout,
duplicates = deliveries - distinct readings.

* edge_gateway: the rendered configs of both roles (central: mosquitto, TLS on 8883; gateway: edge_gateway).
* reference: two plain brokers, anonymous, no TLS, and a bridge of Mosquitto's defaults but for the topic's QoS 1
  (at QoS 0, the default, a bridge queues nothing while disconnected: src/database.c, db__message_insert), so
  max_queued_messages 1000, no persistence, keepalive 60.

Target (issue 17): lost 0 and drain rate >= 0.8 x the reference's. Needs root (ip netns); renders the configs first
(about a minute).

    .venv/bin/python bench/edge_backlog.py --readings 20000 --json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import edge_plants  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "analytics" / "tests"))
from mosquitto_runner import free_port  # noqa: E402

GATEWAY = edge_plants.GATEWAYS[0]
CLIENT, DEVICE = GATEWAY.devices[0]
CONSUMER = "telegraf"


@dataclass
class Run:
    setup: str
    readings: int
    acknowledged: int
    outage_s: float
    reconnect_s: float
    drain_s: float
    drain_per_s: float
    delivered: int
    lost: int
    duplicates: int


class Consumer:
    """A persistent QoS 1 session on the central broker that records each reading's sequence number and time."""

    def __init__(self, address: str, port: int, topic: str, auth: tuple[str, str] | None, cafile: Path | None) -> None:
        self.arrivals: list[tuple[float, int]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edge-bench-consumer", clean_session=False)
        if auth:
            self.client.username_pw_set(*auth)
        if cafile:
            self.client.tls_set(ca_certs=str(cafile))
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(address, port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("the consumer could not subscribe")

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        seq = int(json.loads(message.payload)["fields"]["seq"])
        with self._lock:
            self.arrivals.append((time.monotonic(), seq))

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(address: str, readings: int, auth: tuple[str, str] | None, first: int = 0) -> int:
    """One device's QoS 1 readings to its gateway; returns how many were acknowledged."""
    acked = 0
    done = threading.Event()

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1
        if acked >= readings:
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{DEVICE}-bench", clean_session=True)
    c.max_queued_messages_set(0)
    c.max_inflight_messages_set(100)
    if auth:
        c.username_pw_set(*auth)
    c.on_publish = on_publish
    c.connect(address, edge_plants.GATEWAY_PORT)
    c.loop_start()
    try:
        topic = f"mov/dados/{CLIENT}/{DEVICE}"
        for seq in range(first, first + readings):
            c.publish(topic, edge_plants.reading(CLIENT, DEVICE, seq), qos=1)
        done.wait(120)
    finally:
        c.disconnect()
        c.loop_stop()
    return acked


def wait_until(predicate: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.05)
    return False


def measure(
    setup: str,
    plant: edge_plants.Plant,
    central: edge_plants.Broker,
    gateway: edge_plants.Broker,
    consumer_args: tuple[str, tuple[str, str] | None, Path | None],
    device_auth: tuple[str, str] | None,
    readings: int,
    timeout: float,
) -> Run:
    central.start()
    topic, consumer_auth, cafile = consumer_args
    consumer = Consumer("127.0.0.1", central.port, topic, consumer_auth, cafile)
    try:
        gateway.start()
        # One reading through the bridge before the outage: it is up (seq -1, not counted).
        publish(plant.lan_address, 1, device_auth, first=-1)
        if not wait_until(lambda: consumer.count() == 1, 30):
            raise RuntimeError(f"{setup}: nothing came through the bridge:\n{gateway.log_text()[-2000:]}")
        consumer.arrivals.clear()
        plant.cut()
        cut_at = time.monotonic()
        acknowledged = publish(plant.lan_address, readings, device_auth)
        time.sleep(1)  # the gateway has queued what it acknowledged
        plant.restore()
        restored_at = time.monotonic()
        wait_until(lambda: consumer.count() >= acknowledged, timeout)
        time.sleep(1)  # late duplicates show up here
        arrivals = sorted(consumer.arrivals)
    finally:
        consumer.close()
        gateway.stop()
        central.stop()
    distinct = {seq for _, seq in arrivals}
    after = [t for t, _ in arrivals if t >= restored_at]
    first, last = (after[0], after[-1]) if after else (restored_at, restored_at)
    drain_s = max(last - first, 1e-6)
    return Run(
        setup=setup,
        readings=readings,
        acknowledged=acknowledged,
        outage_s=round(restored_at - cut_at, 2),
        reconnect_s=round(first - restored_at, 2),
        drain_s=round(drain_s, 3),
        drain_per_s=round(len(after) / drain_s, 1),
        delivered=len(distinct),
        lost=acknowledged - len(distinct),
        duplicates=len(arrivals) - len(distinct),
    )


def run_edge_gateway(host_dirs: Path, passwords: dict[str, str], readings: int, timeout: float, work: Path) -> Run:
    plant = edge_plants.Plant(0, *edge_plants.free_subnets(2))
    try:
        cert, key = edge_plants.make_ca_and_cert(work, plant.central_address)
        port = free_port()
        central = edge_plants.Broker(
            edge_plants.central_conf(host_dirs / "mov-box", work / "central", plant.central_address, port, cert, key),
            work / "central.log",
            port,
            plant.central_address,
        )
        gateway = edge_plants.Broker(
            edge_plants.gateway_conf(host_dirs / GATEWAY.host, work / "gateway", plant.central_address, port, cert),
            work / "gateway.log",
            edge_plants.GATEWAY_PORT,
            plant.lan_address,
            netns=plant.name,
        )
        topic = f"mov/plantas/{GATEWAY.site}/mov/dados/#"
        return measure(
            "edge_gateway",
            plant,
            central,
            gateway,
            (topic, (CONSUMER, passwords[CONSUMER]), cert),
            (f"{CLIENT}/{DEVICE}", passwords[f"{CLIENT}/{DEVICE}"]),
            readings,
            timeout,
        )
    finally:
        plant.close()


def run_reference(readings: int, timeout: float, work: Path) -> Run:
    plant = edge_plants.Plant(1, *edge_plants.free_subnets(2))
    try:
        port = free_port()
        (work / "central.conf").write_text(
            f"user root\nallow_anonymous true\nlistener {port} {plant.central_address}\nlistener {port} 127.0.0.1\n"
        )
        (work / "gateway.conf").write_text(
            f"user root\nallow_anonymous true\nlistener {edge_plants.GATEWAY_PORT}\n"
            f"connection reference\naddress {plant.central_address}:{port}\n"
            "topic mov/dados/# out 1\n"
        )
        central = edge_plants.Broker(work / "central.conf", work / "central.log", port, plant.central_address)
        gateway = edge_plants.Broker(
            work / "gateway.conf", work / "gateway.log", edge_plants.GATEWAY_PORT, plant.lan_address, netns=plant.name
        )
        return measure(
            "reference", plant, central, gateway, ("mov/dados/#", None, None), None, readings, timeout
        )
    finally:
        plant.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=20000, help="readings published during the outage")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the backlog to drain")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--workspace", type=Path, help="a workspace edge_plants.render() made (skips the render)")
    args = parser.parse_args(argv)
    if args.workspace:
        ws, dest = edge_plants.Workspace(args.workspace), args.workspace / "render" / "local"
    else:
        ws, dest = edge_plants.render()
        print(f"rendered in {ws.root}", file=sys.stderr)
    passwords = edge_plants.passwords(ws)
    with tempfile.TemporaryDirectory(prefix="edge-backlog-") as tmp:
        work = Path(tmp)
        for name in ("edge", "reference"):
            (work / name / "central").mkdir(parents=True)
            (work / name / "gateway").mkdir(parents=True)
        ours = run_edge_gateway(dest, passwords, args.readings, args.timeout, work / "edge")
        reference = run_reference(args.readings, args.timeout, work / "reference")
    version = subprocess.run([edge_plants.MOSQUITTO, "-h"], capture_output=True, text=True).stdout.splitlines()[0]
    ratio = ours.drain_per_s / reference.drain_per_s if reference.drain_per_s else 0.0
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "mosquitto": version,
        "cpus": len(__import__("os").sched_getaffinity(0)),
        "machine": platform.machine(),
        "runs": [asdict(ours), asdict(reference)],
        "drain_over_reference": round(ratio, 2),
        "target_met": ours.lost == 0 and ratio >= 0.8,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for run in result["runs"]:
            print(run)
        print(f"drain over reference {result['drain_over_reference']}, target met: {result['target_met']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
