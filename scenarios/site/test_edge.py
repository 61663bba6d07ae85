"""The plants' gateways (issue 17, docs/plants.md) on the site scenario's boxes: the same first `site.yml` deployed
the central VPS and both gateways (conftest.py); these steps run after test_site.py's, on the same boxes.

What the central side receives is read the way Telegraf reads it: its account on the central broker, subscribed to
mov/plantas/# over 8883 from the LAN (Telegraf's image cannot run here; the e2e job runs it). The analytics
worker's handling of the plants' topics and the Grafana alert on a gateway's state are asserted where they are
built; these steps give them the broker-side facts they stand on: every reading under its site's prefix, and the
bridge's state going 0 then 1.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from conftest import DOMAIN, LAN, NAME, Host, Site
from device import MOSQUITTO_IMAGE, reading
from device import publish as publish_tls
from test_site import points_of, wait_for

PLANTS = "mov/plantas"
SUBSCRIBER = f"mov-{NAME}-edge-telegraf"
# Readings a device publishes while its gateway's WAN is cut, half before the gateway's broker restarts, half after.
READINGS = 200
OUTAGE_S = 60


def password(site: Site, account: str) -> str:
    secrets = site.vault()["vault_mov_secrets"]
    assert isinstance(secrets, dict)
    return str(secrets["mqtt"][account])


def username(site: Site, account: str) -> str:
    """A service account's username on the central broker: its name until its password is first rotated
    (group_vars/all/services.yml, mov_mqtt_usernames)."""
    secrets = site.vault()["vault_mov_secrets"]
    assert isinstance(secrets, dict)
    return str((secrets.get("mqtt_usernames") or {}).get(account, account))


def options_dir(tmp: str, tool: str, username: str, secret: str, ca_pem: str = "") -> list[str]:
    """A mosquitto client's options file ($XDG_CONFIG_HOME/<tool>) holding the account, so no password is on a
    command line; the docker flags that mount it."""
    (Path(tmp) / tool).write_text(f"-u {username}\n-P {secret}\n")
    if ca_pem:
        (Path(tmp) / "ca.pem").write_text(ca_pem)
    Path(tmp).chmod(0o755)
    for path in Path(tmp).iterdir():
        path.chmod(0o644)
    return ["-v", f"{tmp}:/cfg:ro", "-e", "XDG_CONFIG_HOME=/cfg"]


def publish_to_gateway(site: Site, gateway: Host, device: str, payloads: list[dict[str, object]]) -> None:
    """A device on the plant's network publishes each payload with QoS 1 to its gateway's listener (1883); one
    mosquitto_pub, which exits 0 only once the gateway acknowledged the last one."""
    with tempfile.TemporaryDirectory(prefix="mov-plant-device-") as tmp:
        mount = options_dir(tmp, "mosquitto_pub", device, password(site, device))
        client = ["--entrypoint", "mosquitto_pub", MOSQUITTO_IMAGE, "-h", gateway.address, "-p", "1883", "-q", "1"]
        out = subprocess.run(
            ["docker", "run", "--rm", "-i", "--network", LAN, *mount, *client, "-t", f"mov/dados/{device}", "-l"],
            input="".join(json.dumps(p) + "\n" for p in payloads),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 0, out.stdout + out.stderr


def central_ca(site: Site) -> str:
    out = site.sudo(site.hosts[0], "cat /opt/mov/tls/ca.pem")
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def central(site: Site) -> Iterator[Host]:
    """Telegraf's account subscribed to every plant's topics on the central broker for the module's steps (QoS 1,
    its lines in `docker logs`)."""
    host = site.hosts[0]
    subprocess.run(["docker", "rm", "-f", SUBSCRIBER], capture_output=True)
    with tempfile.TemporaryDirectory(prefix="mov-edge-telegraf-") as tmp:
        mount = options_dir(
            tmp, "mosquitto_sub", username(site, "telegraf"), password(site, "telegraf"), central_ca(site)
        )
        box = ["--name", SUBSCRIBER, "--network", LAN, "--add-host", f"{DOMAIN}:{host.address}", *mount]
        client = [
            "--entrypoint",
            "mosquitto_sub",
            MOSQUITTO_IMAGE,
            "-h",
            DOMAIN,
            "-p",
            "8883",
            "--cafile",
            "/cfg/ca.pem",
        ]
        subscription = ["-q", "1", "-i", "mov-edge-scenario", "-t", f"{PLANTS}/#", "-v"]
        subprocess.run(
            ["docker", "run", "-d", *box, *client, *subscription],
            check=True,
            capture_output=True,
        )
        try:
            # The bridges' retained states: the subscription is live, and both gateways connected.
            wait_for("both gateways' state 1 at the central broker", states, site, "1", timeout=60)
            yield host
        finally:
            subprocess.run(["docker", "rm", "-f", SUBSCRIBER], capture_output=True)


def received() -> list[tuple[str, str]]:
    """(topic, payload) of every message the subscriber received so far, in order."""
    out = subprocess.run(["docker", "logs", SUBSCRIBER], capture_output=True, text=True, timeout=60)
    return [(t, p) for t, _, p in (line.partition(" ") for line in out.stdout.splitlines())]


def state_topic(gateway: Host) -> str:
    return f"{PLANTS}/{gateway.plant}/gateway/estado"


def states(site: Site, value: str) -> list[str]:
    """The gateways whose latest state message is `value`, when all are."""
    latest = {t: p for t, p in received() if t.endswith("/gateway/estado")}
    names = [g.name for g in site.gateways if latest.get(state_topic(g)) == value]
    return names if len(names) == len(site.gateways) else []


def readings_of(gateway: Host) -> list[str]:
    prefix = f"{PLANTS}/{gateway.plant}/mov/dados/"
    return [p for t, p in received() if t.startswith(prefix)]


def plant_readings(device: str, count: int, first: float) -> list[dict[str, object]]:
    """`count` readings of a device, each with its own value and second (one point each once stored)."""
    start = datetime.now(UTC) - timedelta(seconds=count)
    site_name = "planta"
    return [reading(device, round(first + i / 1000, 3), site_name, start + timedelta(seconds=i)) for i in range(count)]


def test_a_reading_through_each_gateway_reaches_the_central_broker_under_its_site(site: Site, central: Host) -> None:
    for gateway in site.gateways:
        [device] = gateway.devices
        payload = plant_readings(device, 1, 21.5)
        publish_to_gateway(site, gateway, device, payload)
        topic = f"{PLANTS}/{gateway.plant}/mov/dados/{device}"
        arrived = wait_for(
            f"{gateway.name}'s reading at the central broker",
            lambda t=topic: [p for tt, p in received() if tt == t],
        )
        assert json.loads(arrived[-1]) == payload[0]
        # The central analytics worker took it from the plants' topic: its status point carries the plant.
        [point] = wait_for(
            f"the worker's status point of {device} with its plant",
            points_of,
            site,
            central,
            f"planta={gateway.plant}",
        )
        assert f"dispositivo={device.split('/')[1]}" in point and 'status="normal"' in point, point


# How far the broker unit's LogFilterPatterns got: systemd (253 and later) puts them in the xattr
# user.journald_log_filter_patterns of the unit's cgroup, and journald reads them from there by the cgroup path it sees
# for the client (systemd src/journal/journald-client.c). Prints "<xattr set> <PID 1 at the cgroup root>": a box that
# shares the host's cgroup namespace (these boxes, where journald sees paths relative to its own root) has the xattr
# set but journald looks for it elsewhere.
FILTER_APPLIED = """
import os
def path(pid):
    return [l for l in open("/proc/%s/cgroup" % pid) if l.startswith("0::")][0].split(":", 2)[2].strip()
root = "/sys/fs/cgroup" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "/sys/fs/cgroup/unified"
unit = root + path(os.popen("systemctl show -p MainPID --value mosquitto").read().strip())
print(int("user.journald_log_filter_patterns" in os.listxattr(unit)), int(path(1) == "/"))
"""


def test_the_gateways_broker_saves_every_few_seconds_without_a_journal_line_each_time(site: Site) -> None:
    """The backlog is saved every mov_edge_autosave_s (5 s; the database file's time moves), and the line Mosquitto
    logs at each save is filtered (roles/edge_gateway, LogFilterPatterns) while the broker's other lines stay.
    systemd before 253 (Debian 12's 252) does not know the setting. Where systemd applied it, on a host at its cgroup
    root, journald drops the lines; in these boxes (the host's cgroup namespace) the step asserts what systemd did with
    the drop-in, and journald still logs the lines."""
    for gateway in site.gateways:
        db = "/var/lib/mosquitto/mosquitto.db"
        check = site.sudo(
            gateway,
            "systemctl --version | head -1 | cut -d' ' -f2;"
            f" python3 -c {shlex.quote(FILTER_APPLIED)};"
            f" a=$(stat -c %Y {db}); sleep 12; b=$(stat -c %Y {db}); echo $((b - a));"
            " journalctl -u mosquitto --since '-60s' -o cat | grep -c 'Saving in-memory database' || :;"
            " journalctl -u mosquitto -o cat | grep -c 'mosquitto version .* running' || :;"
            " systemctl show -p LogFilterPatterns --value mosquitto",
        )
        systemd, applied, at_root, moved, saves, starts, *patterns = check.stdout.split()
        assert int(moved) >= 5 and int(starts) >= 1, (gateway.name, check.stdout, check.stderr)
        if int(systemd) < 253:
            assert int(saves) > 0, (gateway.name, check.stdout)
            continue
        assert "Saving in-memory database to" in " ".join(patterns), (gateway.name, patterns)
        assert applied == "1", f"{gateway.name}: systemd {systemd} loaded the drop-in but set no xattr on the cgroup"
        assert (int(saves) == 0) if at_root == "1" else (int(saves) > 0), (gateway.name, check.stdout)


def test_a_gateway_cut_from_the_wan_keeps_every_reading_it_acknowledged(site: Site, central: Host) -> None:
    """One gateway's WAN cut inside its box for OUTAGE_S (every packet to and from the central VPS refused) while its
    device publishes READINGS with QoS 1, its broker restarted half way: once the link is back every reading arrives
    (duplicates counted and reported: QoS 1 may resend), the bridge's state went 0 then 1, and the other gateway's
    readings flowed throughout."""
    cut, other = site.gateways
    wan = site.hosts[0].address
    rules = [f"OUTPUT -d {wan} -j REJECT --reject-with icmp-host-unreachable", f"INPUT -s {wan} -j DROP"]
    first_seen = len(readings_of(cut))
    [device], [other_device] = cut.devices, other.devices
    batch = plant_readings(device, READINGS, 10.0)
    out = site.sudo(cut, " && ".join(f"iptables -I {r}" for r in rules))
    assert out.returncode == 0, out.stderr
    started = time.monotonic()
    try:
        publish_to_gateway(site, cut, device, batch[: READINGS // 2])
        # The central broker loses the bridge after 1.5 keepalives and publishes its will: the offline signal.
        wait_for("the cut gateway's state 0", lambda: [p for t, p in received() if t == state_topic(cut) and p == "0"])
        restart = site.sudo(cut, "systemctl restart mosquitto && systemctl is-active mosquitto")
        assert restart.returncode == 0, restart.stdout + restart.stderr
        publish_to_gateway(site, cut, device, batch[READINGS // 2 :])
        # The other plant during the outage: its reading arrives while the cut one's are held.
        flowing = plant_readings(other_device, 1, 42.25)
        publish_to_gateway(site, other, other_device, flowing)
        wait_for(
            "the other gateway's reading during the outage", lambda: [p for p in readings_of(other) if "42.25" in p]
        )
        assert len(readings_of(cut)) == first_seen, "readings of the cut gateway arrived during the outage"
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
    finally:
        site.sudo(cut, " && ".join(f"iptables -D {r}" for r in rules))
    restored = time.monotonic()
    sent = {json.dumps(p) for p in batch}
    wait_for(
        f"all {READINGS} readings of {cut.name} after the outage",
        lambda: [1] if sent <= {json.dumps(json.loads(p)) for p in readings_of(cut)} else [],
        timeout=120,
    )
    drained_s = time.monotonic() - restored
    arrived = Counter(json.dumps(json.loads(p)) for p in readings_of(cut)[first_seen:])
    duplicates = sum(n - 1 for n in arrived.values())
    print(f"edge outage: {READINGS} readings in {OUTAGE_S} s, all arrived {drained_s:.1f} s after the link's return;")
    print(f"edge outage: {duplicates} duplicate(s) (QoS 1 resends), {len(arrived)} distinct")
    assert set(arrived) == sent, "a reading arrived that the device did not publish"
    wait_for("the cut gateway's state 1 again", states, site, "1", timeout=60)
    other_states = [p for t, p in received() if t == state_topic(other)]
    assert "0" not in other_states, f"{other.name}'s bridge went down during the other's outage: {other_states}"


def test_a_gateway_with_a_wrong_password_is_refused_and_none_publishes_under_another_site(
    site: Site, central: Host
) -> None:
    sul, norte = site.gateways
    account = f"gw_{sul.plant}"
    [device], [other_device] = sul.devices, norte.devices
    ca = central_ca(site)
    genuine = plant_readings(device, 1, 55.5)
    refused = publish_tls(
        central.address,
        DOMAIN,
        ca,
        account,
        password(site, account) + "x",
        genuine,
        f"{PLANTS}/{sul.plant}/mov/dados/{device}",
        network=LAN,
    )
    assert refused[0].returncode != 0 and "not authori" in (refused[0].stdout + refused[0].stderr).lower(), refused
    # The gateway's own account on another plant's topic: acknowledged, delivered to nobody; then a genuine one.
    forged = plant_readings(other_device, 1, 66.5)
    for payloads, topic in (
        (forged, f"{PLANTS}/{norte.plant}/mov/dados/{other_device}"),
        (genuine, f"{PLANTS}/{sul.plant}/mov/dados/{device}"),
    ):
        [out] = publish_tls(central.address, DOMAIN, ca, account, password(site, account), payloads, topic, network=LAN)
        assert out.returncode == 0, out.stdout + out.stderr
    wait_for("the gateway account's genuine reading", lambda: [p for p in readings_of(sul) if "55.5" in p])
    assert not [p for _, p in received() if "66.5" in p], "a gateway published under another plant's site"


def test_one_gateway_deployed_alone_with_limit(site: Site) -> None:
    """docs/plants.md: `site.yml --limit <gateway>` deploys that gateway alone; a setting of its own reaches its
    broker, and nothing else is touched. (Last: its broker's restart would show in the steps above.)"""
    _, norte = site.gateways
    hosts_yml = site.inventory / "hosts.yml"
    inventory = yaml.safe_load(hosts_yml.read_text())
    inventory["edge"]["hosts"][norte.name]["mov_edge_autosave_s"] = 3
    hosts_yml.write_text(yaml.safe_dump(inventory, sort_keys=False))
    run = site.play("site.yml", "--limit", norte.name)
    assert run.code == 0, run.explain()
    recap = run.recap()
    assert set(recap) == {norte.name} and recap[norte.name]["changed"] > 0, run.explain()
    for gateway, seconds in zip(site.gateways, ("5", "3"), strict=True):
        out = site.sudo(
            gateway, "grep '^autosave_interval ' /etc/mosquitto/mosquitto.conf; systemctl is-active mosquitto"
        )
        assert out.stdout.split() == ["autosave_interval", seconds, "active"], (gateway.name, out)
