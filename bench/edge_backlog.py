"""How an edge gateway's backlog drains after a WAN outage: the edge_gateway role's broker against Mosquitto's own
bridge with default settings, both real mosquitto in network namespaces this bench creates (tests/edge_plants.py).

Each run: a central broker on this namespace's end of a gateway's WAN link, the gateway's broker in its namespace,
and a consumer on the central broker (persistent session, QoS 1). The WAN link is set down, one device publishes
--readings QoS 1 readings to the gateway over the plant LAN (every one acknowledged), and the link comes back up.
Then: reconnect_s from the link's return to the first reading at the central broker; drain_per_s = readings
delivered after the link returned / (last arrival - the link's return), the rate the target is about ("how fast it
drains after the link returns"); burst_per_s = the same readings / (last arrival - first arrival), without the
reconnect; lost = acknowledged - distinct readings delivered within --timeout (or once nothing more arrived for
10 s); duplicates = deliveries - distinct readings. The reference's defaults hold 1,000 readings, which it sends in
a few milliseconds: its burst_per_s measures a burst, not a drain, so both rates are reported.

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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import edge_plants
from edge_plants import free_port

GATEWAY = edge_plants.GATEWAYS[0]
CLIENT, DEVICE = GATEWAY.devices[0]
CONSUMER = "telegraf"
DROPPING = "Outgoing messages are being dropped"


@dataclass
class Run:
    setup: str
    readings: int
    acknowledged: int
    outage_s: float
    reconnect_s: float
    drain_s: float
    drain_per_s: float
    burst_per_s: float
    delivered: int
    lost: int
    duplicates: int
    # Which broker logged "Outgoing messages are being dropped" (a full queue): where a loss happened.
    dropped_at: list[str]


class Consumer:
    """mosquitto_sub on the central broker (persistent session, QoS 1; C, so it is not what limits the drain): the
    arrival time and sequence number of each reading, read from its output."""

    def __init__(self, address: str, port: int, topic: str, auth: tuple[str, str] | None, cafile: Path | None) -> None:
        self.arrivals: list[tuple[float, int]] = []
        self._lock = threading.Lock()
        command = ["mosquitto_sub", "-h", address, "-p", str(port), "-i", "edge-bench-consumer", "-c", "-q", "1"]
        command += ["-t", topic, "-F", "%p"]
        if auth:
            command += ["-u", auth[0], "-P", auth[1]]
        if cafile:
            command += ["--cafile", str(cafile)]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            seq = int(json.loads(line)["fields"]["seq"])
            with self._lock:
                self.arrivals.append((time.monotonic(), seq))

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def clear(self) -> None:
        with self._lock:
            self.arrivals.clear()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def publish(address: str, readings: int, auth: tuple[str, str] | None, first: int = 0) -> int:
    """One device's QoS 1 readings to its gateway; returns how many were acknowledged."""
    return edge_plants.publish_readings(address, (CLIENT, DEVICE), auth, range(first, first + readings))


def wait_until(predicate: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.05)
    return False


def drained(consumer: Consumer, expected: int, timeout: float, quiet_s: float = 10.0) -> None:
    """Until every reading arrived, or none arrived for quiet_s once some did (a lossy setup), or timeout."""
    deadline = time.monotonic() + timeout
    last_count, last_change = 0, time.monotonic()
    while time.monotonic() < deadline and consumer.count() < expected:
        count = consumer.count()
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif count and time.monotonic() - last_change > quiet_s:
            return
        time.sleep(0.05)


def measure(
    setup: str,
    plant: edge_plants.Plant,
    central: edge_plants.Broker,
    gateway: edge_plants.Broker,
    consumer_args: tuple[str, tuple[str, str] | None, Path | None],
    device_auth: tuple[str, str] | None,
    readings: int,
    outage_s: float,
    timeout: float,
) -> Run:
    central.start()
    topic, consumer_auth, cafile = consumer_args
    consumer = Consumer("127.0.0.1", central.port, topic, consumer_auth, cafile)
    try:
        gateway.start()
        # One reading through the bridge before the outage: it is up (seq -1, not counted).
        deadline = time.monotonic() + 30
        while consumer.count() == 0 and time.monotonic() < deadline:
            publish(plant.lan_address, 1, device_auth, first=-1)
            wait_until(lambda: consumer.count() > 0, 1)
        if consumer.count() == 0:
            raise RuntimeError(f"{setup}: nothing came through the bridge:\n{gateway.log_text()[-2000:]}")
        consumer.clear()
        plant.cut()
        cut_at = time.monotonic()
        acknowledged = publish(plant.lan_address, readings, device_auth)
        time.sleep(max(1.0, outage_s - (time.monotonic() - cut_at)))
        plant.restore()
        restored_at = time.monotonic()
        drained(consumer, acknowledged, timeout)
        time.sleep(1)  # late duplicates show up here
        arrivals = sorted(consumer.arrivals)
    finally:
        consumer.close()
        gateway.stop()
        central.stop()
    readings_arrived = [(t, seq) for t, seq in arrivals if seq >= 0]  # not the probes (seq -1)
    distinct = {seq for _, seq in readings_arrived}
    after = [t for t, _ in readings_arrived if t >= restored_at]
    first, last = (after[0], after[-1]) if after else (restored_at, restored_at)
    burst_s = max(last - first, 1e-6)
    drain_s = max(last - restored_at, 1e-6)
    return Run(
        setup=setup,
        readings=readings,
        acknowledged=acknowledged,
        outage_s=round(restored_at - cut_at, 2),
        reconnect_s=round(first - restored_at, 2),
        drain_s=round(drain_s, 3),
        drain_per_s=round(len(after) / drain_s, 1),
        burst_per_s=round(len(after) / burst_s, 1),
        delivered=len(distinct),
        lost=acknowledged - len(distinct),
        duplicates=len(readings_arrived) - len(distinct),
        dropped_at=[name for name, b in (("gateway", gateway), ("central", central)) if DROPPING in b.log_text()],
    )


def run_edge_gateway(
    setup: str, host_dirs: Path, passwords: dict[str, str], args: argparse.Namespace, work: Path, central_timed: bool
) -> Run:
    plant = edge_plants.Plant(0, *edge_plants.free_subnets(2))
    try:
        cert, key = edge_plants.make_ca_and_cert(work, plant.central_address)
        port = free_port()
        central = edge_plants.Broker(
            edge_plants.central_conf(
                host_dirs / "mov-box",
                work / "central",
                plant.central_address,
                port,
                (cert, key),
                {"autosave_on_changes": "false"} if central_timed else {},
            ),
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
            setup,
            plant,
            central,
            gateway,
            (topic, (CONSUMER, passwords[CONSUMER]), cert),
            (f"{CLIENT}/{DEVICE}", passwords[f"{CLIENT}/{DEVICE}"]),
            args.readings,
            args.outage_s,
            args.timeout,
        )
    finally:
        plant.close()


def run_reference(args: argparse.Namespace, work: Path) -> Run:
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
        consumer = ("mov/dados/#", None, None)
        return measure("reference", plant, central, gateway, consumer, None, args.readings, args.outage_s, args.timeout)
    finally:
        plant.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=20000, help="readings published during the outage")
    parser.add_argument("--outage-s", type=float, default=30, help="how long the WAN link stays down (at least)")
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
        for name in ("edge", "edge_timed", "reference"):
            (work / name / "central").mkdir(parents=True)
            (work / name / "gateway").mkdir(parents=True)
        ours = run_edge_gateway("edge_gateway", dest, passwords, args, work / "edge", central_timed=False)
        timed = run_edge_gateway(
            "edge_gateway, central saving on time", dest, passwords, args, work / "edge_timed", central_timed=True
        )
        reference = run_reference(args, work / "reference")
    version = subprocess.run([edge_plants.MOSQUITTO, "-h"], capture_output=True, text=True).stdout.splitlines()[0]

    def over_reference(run: Run, rate: str) -> float:
        return round(getattr(run, rate) / getattr(reference, rate), 2) if getattr(reference, rate) else 0.0

    ratio = over_reference(ours, "drain_per_s")
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "mosquitto": version,
        "cpus": len(__import__("os").sched_getaffinity(0)),
        "machine": platform.machine(),
        "readings": args.readings,
        "outage_s": args.outage_s,
        "runs": [asdict(ours), asdict(timed), asdict(reference)],
        "drain_over_reference": ratio,
        "burst_over_reference": over_reference(ours, "burst_per_s"),
        "timed_drain_over_reference": over_reference(timed, "drain_per_s"),
        "timed_burst_over_reference": over_reference(timed, "burst_per_s"),
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
