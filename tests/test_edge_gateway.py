"""Edge gateways with the real mosquitto: the central broker and two gateways with the roles' rendered configs, each
gateway in a network namespace whose WAN link the test sets down (tests/edge_plants.py).

Asserted: every acknowledged reading reaches the central broker under its site after an outage (duplicates
counted), also across a restart of the gateway's broker during the outage; the other plant's readings flow
throughout; the bridge's state shows the outage and its heartbeat stops during it; a wrong gateway password is
refused; a gateway publishes nowhere but its own devices' topics under its own site and reads nothing; a device on a
gateway cannot write as another; a gateway whose account leaves the password file is disconnected on the broker's
reload.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from edge_plants import (
    GATEWAY_PORT,
    GATEWAYS,
    MOSQUITTO,
    Broker,
    Gateway,
    Plant,
    central_conf,
    free_port,
    free_subnets,
    gateway_conf,
    make_ca_and_cert,
    passwords,
    publish_readings,
    reading,
    render,
)
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which(MOSQUITTO) is None or shutil.which("ip") is None,
    reason="needs root (ip netns) and the mosquitto binary",
)

SUL, NORTE = GATEWAYS
# Longer than 1.5 keepalives of the rendered bridge (15 s): the central broker notices the dead link.
OUTAGE_S = 25.0


@dataclass
class Site:
    gateway: Gateway
    plant: Plant
    broker: Broker


@dataclass
class Platform:
    central: Broker
    sites: dict[str, Site]
    cafile: Path
    passwords: dict[str, str]

    def client(self, user: str, client_id: str, clean: bool = True) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        c.username_pw_set(user, self.passwords[user])
        c.tls_set(ca_certs=str(self.cafile))
        return c


@pytest.fixture(scope="module")
def rendered() -> tuple[Path, dict[str, str]]:
    ws, dest = render()
    return dest, passwords(ws)


@pytest.fixture
def platform(rendered: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[Platform]:
    dest, secrets = rendered
    nets = free_subnets(4)
    plants = [Plant(i, nets[2 * i], nets[2 * i + 1]) for i in range(2)]
    port = free_port()
    central_dir = tmp_path / "central"
    central_dir.mkdir()
    try:
        addresses = [p.central_address for p in plants]
        cert, key = make_ca_and_cert(tmp_path, addresses[0], extra=addresses[1:])
        conf = central_conf(dest / "mov-box", central_dir, addresses[0], port, (cert, key), listen=addresses[1:])
        central = Broker(conf, tmp_path / "central.log", port, "127.0.0.1")
        central.start()
        sites = {}
        for gateway, plant in zip(GATEWAYS, plants, strict=True):
            work = tmp_path / gateway.host
            work.mkdir()
            gconf = gateway_conf(dest / gateway.host, work, plant.central_address, port, cert)
            broker = Broker(gconf, tmp_path / f"{gateway.host}.log", GATEWAY_PORT, plant.lan_address, netns=plant.name)
            broker.start()
            sites[gateway.site] = Site(gateway, plant, broker)
        yield Platform(central, sites, cert, secrets)
    finally:
        for site in locals().get("sites", {}).values():
            site.broker.stop()
        if "central" in locals():
            central.stop()
        for plant in plants:
            plant.close()


class Watcher:
    """A central consumer (the telegraf account: persistent session, QoS 1): (topic, payload) of every message."""

    def __init__(self, platform: Platform, topics: list[str]) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.c = platform.client("telegraf", "edge-test-watcher", clean=False)
        self.c.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.c.on_subscribe = lambda *_: subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", platform.central.port)
        self.c.loop_start()
        assert subscribed.wait(10), "the watcher could not subscribe"

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for t, payload in self.messages if t == topic]

    def wait(self, topic: str, count: int, seconds: float) -> list[bytes]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(self.on(topic)) < count:
            time.sleep(0.05)
        return self.on(topic)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def publish(platform: Platform, site: Site, device: tuple[str, str], first: int, count: int, topic: str = "") -> int:
    """A device's QoS 1 readings to its gateway over the plant LAN; returns how many were acknowledged."""
    user = "/".join(device)
    auth = (user, platform.passwords[user])
    return publish_readings(site.plant.lan_address, device, auth, range(first, first + count), topic, seconds=30)


def central_topic(site: Site, device: tuple[str, str]) -> str:
    return f"mov/plantas/{site.gateway.site}/mov/dados/{device[0]}/{device[1]}"


def seqs(payloads: list[bytes]) -> list[int]:
    import json

    return [int(json.loads(p)["fields"]["seq"]) for p in payloads]


def test_outage_loses_nothing_and_leaves_the_other_plant_alone(platform: Platform) -> None:
    sul, norte = platform.sites[SUL.site], platform.sites[NORTE.site]
    sul_device, norte_device = SUL.devices[0], NORTE.devices[0]
    state = f"mov/plantas/{SUL.site}/gateway/estado"
    heartbeat = f"mov/plantas/{SUL.site}/gateway/uptime"
    watcher = Watcher(platform, ["mov/plantas/+/mov/dados/#", "mov/plantas/+/gateway/estado", heartbeat])
    try:
        assert watcher.wait(state, 1, 10)[-1:] == [b"1"], "the bridge's state is not published"
        # The heartbeat the offline alert watches: the gateway broker's uptime, every sys_interval (10 s).
        beats = watcher.wait(heartbeat, 1, 15)
        assert beats and all(b.endswith(b" seconds") for b in beats), beats
        sul.plant.cut()
        cut_at = time.monotonic()
        silent = len(watcher.on(heartbeat))
        acked = publish(platform, sul, sul_device, 0, 1000)
        assert acked == 1000, "the gateway acknowledges every reading while its WAN is down"
        # The other plant is untouched: its readings arrive during the outage.
        assert publish(platform, norte, norte_device, 0, 50) == 50
        assert len(watcher.wait(central_topic(norte, norte_device), 50, 10)) == 50
        assert watcher.wait(state, 2, OUTAGE_S + 15)[-1:] == [b"0"], "the central side never saw the gateway go"
        assert watcher.on(central_topic(sul, sul_device)) == [], "readings got through a link that is down"
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut_at)))
        assert len(watcher.on(heartbeat)) == silent, "a heartbeat arrived through a link that is down"
        sul.plant.restore()
        arrived = seqs(watcher.wait(central_topic(sul, sul_device), 1000, 60))
        assert set(arrived) == set(range(1000)), f"lost: {sorted(set(range(1000)) - set(arrived))[:20]}"
        print(f"outage {time.monotonic() - cut_at:.0f} s: 1000 acknowledged, 0 lost, {len(arrived) - 1000} duplicates")
        assert watcher.wait(state, 3, 30)[-1:] == [b"1"]
        assert len(watcher.wait(heartbeat, silent + 1, 30)) > silent, "the heartbeat did not come back"
    finally:
        watcher.close()


def test_restart_of_the_gateway_broker_during_the_outage_loses_nothing_acknowledged(platform: Platform) -> None:
    sul = platform.sites[SUL.site]
    device = SUL.devices[1]
    watcher = Watcher(platform, ["mov/plantas/+/mov/dados/#"])
    try:
        sul.plant.cut()
        assert publish(platform, sul, device, 0, 500) == 500
        # systemctl restart: SIGTERM saves the database, the new process loads it.
        sul.broker.stop(signal.SIGTERM)
        sul.broker.start()
        assert publish(platform, sul, device, 500, 500) == 500
        sul.plant.restore()
        arrived = seqs(watcher.wait(central_topic(sul, device), 1000, 90))
        assert set(arrived) == set(range(1000)), f"lost: {sorted(set(range(1000)) - set(arrived))[:20]}"
    finally:
        watcher.close()


def _connack(platform: Platform, user: str, password: str) -> ReasonCode | None:
    result: list[ReasonCode] = []
    done = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-probe")
    c.username_pw_set(user, password)
    c.tls_set(ca_certs=str(platform.cafile))

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        result.append(rc)
        done.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", platform.central.port)
    c.loop_start()
    done.wait(10)
    c.disconnect()
    c.loop_stop()
    return result[0] if result else None


def test_a_wrong_gateway_password_is_refused(platform: Platform) -> None:
    user = f"gw_{SUL.site}"
    refused = _connack(platform, user, platform.passwords[user] + "x")
    assert refused is not None and refused.is_failure
    accepted = _connack(platform, user, platform.passwords[user])
    assert accepted is not None and not accepted.is_failure


def test_a_gateway_publishes_only_its_own_devices_under_its_own_site_and_reads_nothing(platform: Platform) -> None:
    user = f"gw_{SUL.site}"
    own = f"mov/plantas/{SUL.site}/mov/dados/{SUL.devices[0][0]}/{SUL.devices[0][1]}"
    forbidden = [
        f"mov/plantas/{NORTE.site}/mov/dados/{NORTE.devices[0][0]}/{NORTE.devices[0][1]}",  # another site
        f"mov/plantas/{SUL.site}/mov/dados/{NORTE.devices[0][0]}/{NORTE.devices[0][1]}",  # not its device
        "mov/dados/industria_abc/sensor_001",  # a direct device
        f"mov/plantas/{NORTE.site}/gateway/estado",  # another gateway's state
    ]
    watcher = Watcher(platform, ["mov/#"])
    got: list[str] = []
    gateway = platform.client(user, "gw-probe")
    gateway.on_message = lambda _c, _u, m: got.append(m.topic)
    gateway.connect("127.0.0.1", platform.central.port)
    gateway.loop_start()
    try:
        gateway.subscribe("mov/#", qos=1)
        intruder = reading(*NORTE.devices[0], 1)
        for topic in forbidden:
            gateway.publish(topic, intruder, qos=1).wait_for_publish(5)
        gateway.publish(own, reading(*SUL.devices[0], 2), qos=1).wait_for_publish(5)
        assert len(watcher.wait(own, 1, 10)) == 1, "the gateway's own device's topic must pass"
        time.sleep(0.5)
        assert [t for t, payload in watcher.messages if payload == intruder] == []
        assert got == [], "a gateway reads nothing"
    finally:
        gateway.disconnect()
        gateway.loop_stop()
        watcher.close()


def test_a_device_on_a_gateway_cannot_write_as_another(platform: Platform) -> None:
    sul = platform.sites[SUL.site]
    first, second = SUL.devices
    watcher = Watcher(platform, ["mov/plantas/+/mov/dados/#"])
    try:
        assert publish(platform, sul, first, 0, 1, topic=f"mov/dados/{second[0]}/{second[1]}") == 1
        assert publish(platform, sul, first, 1, 1) == 1
        assert len(watcher.wait(central_topic(sul, first), 1, 10)) == 1
        assert watcher.on(central_topic(sul, second)) == []
    finally:
        watcher.close()


def test_a_gateway_gone_from_the_password_file_is_disconnected_on_reload(platform: Platform, tmp_path: Path) -> None:
    """What the next deploy does for a gateway removed from the inventory: its account leaves the password file
    (group_vars/all/gateways.yml derives the accounts from the group), and the broker's reload (SIGHUP) checks
    every connected client again (eclipse/mosquitto src/security_default.c, mosquitto_security_apply_default)."""
    norte = platform.sites[NORTE.site]
    device = NORTE.devices[0]
    watcher = Watcher(platform, ["mov/plantas/+/mov/dados/#"])
    passwd = Path(
        next(
            line.split(" ", 1)[1]
            for line in platform.central.conf.read_text().splitlines()
            if line.startswith("password_file ")
        )
    )
    original = passwd.read_text()
    try:
        assert publish(platform, norte, device, 0, 1) == 1
        assert len(watcher.wait(central_topic(norte, device), 1, 10)) == 1
        passwd.write_text(
            "".join(line for line in original.splitlines(keepends=True) if not line.startswith(f"gw_{NORTE.site}:"))
        )
        assert platform.central.proc is not None
        platform.central.proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert publish(platform, norte, device, 1, 5) == 5
        time.sleep(3)
        assert len(watcher.on(central_topic(norte, device))) == 1, "a removed gateway still gets readings through"
        refused = _connack(platform, f"gw_{NORTE.site}", platform.passwords[f"gw_{NORTE.site}"])
        assert refused is not None and refused.is_failure
    finally:
        passwd.write_text(original)
        watcher.close()
