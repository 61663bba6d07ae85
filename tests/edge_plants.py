"""A central broker and edge gateways with the roles' rendered configs, each gateway in a network namespace whose WAN
link can be cut (tests/test_edge_gateway.py and bench/edge_backlog.py).

The configs come from playbooks/render.yml on a throwaway copy of the repository (tests/mov_render.py) whose local
inventory gets gateways in the group `edge`. Only what ties a config to a host is changed: addresses, file paths,
the central broker's one TLS listener (a test certificate) and the user to run as; every queue, persistence and
bridge line is the rendered one. Each gateway's broker runs in its own namespace with two veth links to this
namespace: the WAN (to the central broker) and the plant LAN (where the devices, i.e. the test, publish). Cutting
the WAN sets its link down, so the central broker keeps running and the bridge sees a dead network.
Needs root (ip netns) and the `mosquitto` binary.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from mov_render import REPO, Workspace, new_workspace
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(REPO / "analytics" / "tests"))
from mosquitto_runner import free_port

__all__ = ["Workspace", "free_port"]

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
GATEWAY_PORT = 1883
# The analytics worker's own reading shape, about 220 bytes, with a sequence number as a field.
READING_TAGS = {"localizacao": "sala", "tipo": "temperatura"}


@dataclass(frozen=True)
class Gateway:
    host: str
    site: str
    devices: tuple[tuple[str, str], ...]  # (client, name)


GATEWAYS = (
    Gateway("gw-sul", "fabrica_sul", (("industria_abc", "caldeira_01"), ("industria_abc", "caldeira_02"))),
    Gateway("gw-norte", "fabrica_norte", (("industria_xyz", "forno_01"),)),
)


def reading(client: str, name: str, seq: int) -> bytes:
    return json.dumps(
        {
            "timestamp": time.time_ns(),
            "tags": {"dispositivo": name, "cliente": client, **READING_TAGS},
            "fields": {"temperatura_c": 20.0 + seq % 10, "seq": seq},
        }
    ).encode()


def publish_readings(
    address: str,
    device: tuple[str, str],
    auth: tuple[str, str] | None,
    seqs: range,
    topic: str = "",
    seconds: float = 120,
) -> int:
    """A device's QoS 1 readings (`seqs`) to its gateway over the plant LAN, on its own topic unless `topic`;
    returns how many the gateway acknowledged within `seconds`."""
    client, name = device
    acked = 0
    done = threading.Event()

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1
        if acked >= len(seqs):
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-publisher", clean_session=True)
    c.max_queued_messages_set(0)
    c.max_inflight_messages_set(100)
    if auth:
        c.username_pw_set(*auth)
    c.on_publish = on_publish
    c.connect(address, GATEWAY_PORT)
    c.loop_start()
    try:
        for seq in seqs:
            c.publish(topic or f"mov/dados/{client}/{name}", reading(client, name, seq), qos=1)
        done.wait(seconds)
    finally:
        c.disconnect()
        c.loop_stop()
    return acked


def render(gateways: Sequence[Gateway] = GATEWAYS) -> tuple[Workspace, Path]:
    """A workspace whose local inventory has these gateways, rendered: (workspace, render directory)."""
    ws = new_workspace()
    hosts = ws.inventory("local") / "hosts.yml"
    inventory = yaml.safe_load(hosts.read_text())
    inventory["edge"] = {
        "hosts": {
            g.host: {
                "mov_edge_site": g.site,
                "mov_edge_devices": [
                    {"name": name, "client": client, "site": "linha_1", "type": "temperatura"}
                    for client, name in g.devices
                ],
            }
            for g in gateways
        }
    }
    hosts.write_text(yaml.safe_dump(inventory))
    dest = ws.root / "render" / "local"
    # The central host's broker is all this needs of it (render.yml's render_roles, as an extra var).
    ws.render("local", dest, "-e", json.dumps({"render_roles": ["mosquitto"]}))
    return ws, dest


def passwords(ws: Workspace) -> dict[str, str]:
    store = ws.secret_store("local")["mqtt"]
    assert isinstance(store, dict)
    return {str(k): str(v) for k, v in store.items()}


def make_ca_and_cert(directory: Path, ip: str, extra: Sequence[str] = ()) -> tuple[Path, Path]:
    """A self-signed certificate for `ip`, `extra` and 127.0.0.1 (openssl, EC), its own trust anchor: (cert, key)."""
    cert, key = directory / "central.crt", directory / "central.key"
    names = ",".join(f"IP:{a}" for a in (ip, *extra, "127.0.0.1"))
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-days", "1", "-subj", f"/CN={ip}", "-addext", f"subjectAltName={names}"),
            *("-addext", "keyUsage=critical,digitalSignature,keyCertSign", "-addext", "extendedKeyUsage=serverAuth"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _setting(line: str) -> str:
    return line.split(" ", 1)[0]


def _rewrite(lines: list[str], replace: dict[str, str]) -> list[str]:
    return [f"{_setting(line)} {replace[_setting(line)]}" if _setting(line) in replace else line for line in lines]


def central_conf(
    host_dir: Path,
    workdir: Path,
    address: str,
    port: int,
    tls: tuple[Path, Path],
    overrides: dict[str, str] | None = None,
    listen: Sequence[str] = (),
) -> Path:
    """The central role's mosquitto.conf with its global lines verbatim (but for `overrides`) and its TLS listener
    on `address` and `listen` (the gateways' side) and on 127.0.0.1 (the consumers': up while a WAN link is down).
    The password file and ACL are copied into `workdir`, which a test may change."""
    rendered = host_dir / "opt/mov/mosquitto/config"
    config = workdir / "config"
    config.mkdir(exist_ok=True)
    for name in ("passwd", "acl"):
        shutil.copy(rendered / name, config / name)
    text = (rendered / "mosquitto.conf").read_text()
    lines = text.split("\n# Plain MQTT", 1)[0].splitlines()
    lines = _rewrite(
        lines,
        {
            "password_file": str(config / "passwd"),
            "acl_file": str(config / "acl"),
            "persistence_location": f"{workdir}/",
            **(overrides or {}),
        },
    )
    cert, key = tls
    tls_version = [line for line in text.split("# MQTT over TLS", 1)[1].splitlines() if _setting(line) == "tls_version"]
    lines.append("user root")
    for where in (address, *listen, "127.0.0.1"):
        lines += [f"listener {port} {where}", f"certfile {cert}", f"keyfile {key}", *tls_version]
    conf = workdir / "central.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def gateway_conf(host_dir: Path, workdir: Path, central: str, port: int, cafile: Path) -> Path:
    """The edge_gateway role's mosquitto.conf, verbatim but for paths, the central address and the user."""
    etc = host_dir / "etc/mosquitto"
    lines = (etc / "mosquitto.conf").read_text().splitlines()
    lines = _rewrite(
        lines,
        {
            "password_file": str(etc / "mov/config/passwd"),
            "acl_file": str(etc / "mov/config/acl"),
            "persistence_location": f"{workdir}/",
            "address": f"{central}:{port}",
            "bridge_cafile": str(cafile),
        },
    )
    conf = workdir / "gateway.conf"
    conf.write_text("\n".join(["user root", *lines]) + "\n")
    return conf


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Plant:
    """A network namespace with a WAN link (to the central address) and a LAN link (to the devices)."""

    index: int
    wan_net: ipaddress.IPv4Network
    lan_net: ipaddress.IPv4Network
    name: str = field(default="", init=False)
    up: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        self.name = f"movedge{os.getpid()}n{self.index}"
        _ip("netns", "add", self.name)
        for link, net in (("w", self.wan_net), ("l", self.lan_net)):
            outside, inside = f"{self.name[-9:]}{link}o", f"{self.name[-9:]}{link}i"
            here, there = list(net.hosts())[:2]
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", self.name)
            _ip("addr", "add", f"{here}/{net.prefixlen}", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("-n", self.name, "addr", "add", f"{there}/{net.prefixlen}", "dev", inside)
            _ip("-n", self.name, "link", "set", inside, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    @property
    def wan_link(self) -> str:
        return f"{self.name[-9:]}wo"

    @property
    def central_address(self) -> str:
        return str(next(iter(self.wan_net.hosts())))

    @property
    def lan_address(self) -> str:
        return str(list(self.lan_net.hosts())[1])

    def cut(self) -> None:
        _ip("link", "set", self.wan_link, "down")
        self.up = False

    def restore(self) -> None:
        _ip("link", "set", self.wan_link, "up")
        self.up = True

    def close(self) -> None:
        for link in ("wo", "lo"):
            subprocess.run(["ip", "link", "del", f"{self.name[-9:]}{link}"], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)


def free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """`count` /30 networks in 10.231.0.0/16 that no route of this machine touches."""
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    used = [ipaddress.ip_network(w.split()[0], strict=False) for w in routes.splitlines() if w[:1].isdigit()]
    base = (os.getpid() % 200) * 256
    pool = ipaddress.ip_network("10.231.0.0/16")
    found: list[ipaddress.IPv4Network] = []
    for offset in range(0, 65536, 4):
        candidate = ipaddress.IPv4Network(f"{pool[(base + offset) % 65536]}/30")
        if not any(candidate.overlaps(u) for u in used):
            found.append(candidate)
            if len(found) == count:
                return found
    raise RuntimeError("no free /30 in 10.231.0.0/16")


@dataclass
class Broker:
    """One mosquitto process, in a namespace or not, listening on address:port; start, stop (SIGTERM saves)."""

    conf: Path
    log: Path
    port: int
    address: str
    netns: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([*prefix, MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.address, self.port), timeout=0.2).close()
                return
            except OSError:
                assert self.proc.poll() is None, self.log_text()[-2000:]
                time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise AssertionError(f"mosquitto did not listen within 10 s:\n{self.log_text()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")
