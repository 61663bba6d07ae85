"""The users' commands, in the order a user runs them, against fresh boxes over SSH (conftest.py).

Each test is one step of a user's life with the platform and depends on the steps before it: run with -x.

Both executors of docs/operations/deploy.md run here. Plain Ansible, the default, runs the first deploy, a --tags
run, the first update, and the deploy that is killed with the run that recovers from it; Mitogen, the opt-in, runs
the no-op second run and the later operations (verify, backup, restore, drill, the broken update, rollback, the fast
path), which spend less of CI's time in Ansible's per-task cost.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from conftest import DOMAIN, ENV, GATEWAYS, IMAGE_BUILDS, IMAGE_OVERRIDES, LAN, REPO, Host, Site, keygen
from device import publish as device_publish
from device import publish_websockets, reading
from executors import FAST_PATH_TAGS
from platform_secrets import MQTT_USERNAMES, ROTATIONS
from prober import Prober, docker

PUBLIC_PORTS = [22, 80, 443, 8883]
# Every other port a part of the platform listens on somewhere (broker's plain and websockets listeners, Grafana,
# InfluxDB, the worker's metrics, Telegraf's health and metrics, Loki, Alloy, the Docker API proxy).
INTERNAL_PORTS = [1883, 3000, 8086, 9001, 9108, 9273, 8080, 3100, 12345, 2375]
ANALYTICS = "mov/analytics"
T = TypeVar("T")


# --- helpers -------------------------------------------------------------------------------------------------------


def running_image(site: Site, host: Host, service: str) -> str:
    out = site.sudo(host, f"docker inspect -f '{{{{.Config.Image}}}}' mov-{service}-1")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def stored_points(site: Site, host: Host, bucket: str) -> list[str]:
    """Points in a bucket of the InfluxDB double, read with the `influx` CLI double inside its container (the admin
    token stays in the container: its compose secret, named by the image's *_FILE variable)."""
    query = f'from(bucket: "{bucket}") |> range(start: 0)'
    command = f"""INFLUX_TOKEN="$(cat "$DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE")" influx query --raw '{query}'"""
    out = site.sudo(host, f"docker exec mov-influxdb-1 sh -c {shlex.quote(command)}")
    assert out.returncode == 0, out.stderr
    return [line.split(",", 3)[3] for line in out.stdout.splitlines() if line.startswith(",_result,")]


def points_of(site: Site, host: Host, needle: str, bucket: str = "mov_status") -> list[str]:
    return [p for p in stored_points(site, host, bucket) if needle in p]


def double_state(site: Site, host: Host) -> dict[str, object]:
    out = site.sudo(host, "docker exec mov-influxdb-1 cat /var/lib/influxdb2/double-state.json")
    assert out.returncode == 0, out.stderr
    state: dict[str, object] = json.loads(out.stdout)
    return state


# One call to the InfluxDB double's API from inside its container, described on stdin: with the admin token (its
# compose secret, named by the image's *_FILE variable, never leaves the container) or, given "basic", a signin with
# that user:password. Prints the status and the JSON answer.
INFLUX_API_CALL = """
import base64, json, os, sys, urllib.error, urllib.request
call = json.load(sys.stdin)
if "basic" in call:
    auth = "Basic " + base64.b64encode(call["basic"].encode()).decode()
else:
    auth = "Token " + open(os.environ["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE"]).read().strip()
data = json.dumps(call["body"]).encode() if "body" in call else None
request = urllib.request.Request("http://127.0.0.1:8086" + call["path"], data=data, method=call["method"],
                                 headers={"Authorization": auth, "Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=30) as answer:
        status, raw = answer.status, answer.read()
except urllib.error.HTTPError as error:
    status, raw = error.code, error.read()
print(json.dumps({"status": status, "body": json.loads(raw) if raw.strip() else None}))
"""


def influx_api(site: Site, host: Host, method: str, path: str, body: object = None, basic: str = "") -> tuple[int, Any]:
    """The InfluxDB double's answer to one API call (INFLUX_API_CALL): its status and JSON body. A password goes on
    stdin, never on a command line (sudo logs those to the journal)."""
    call: dict[str, object] = {"method": method, "path": path}
    if body is not None:
        call["body"] = body
    if basic:
        call["basic"] = basic
    command = f"docker exec -i mov-influxdb-1 python3 -c {shlex.quote(INFLUX_API_CALL)}"
    out = site.sudo(host, command, stdin=json.dumps(call))
    assert out.returncode == 0, f"{method} {path}: {out.stderr}"
    answer = json.loads(out.stdout)
    return int(answer["status"]), answer["body"]


def double_requests(site: Site, host: Host, since: str = "") -> list[tuple[datetime, dict[str, Any]]]:
    """Every request and point the InfluxDB double logged (since an RFC 3339 time of the box, or since its container
    was created), with docker's time of each."""
    out = site.sudo(host, f"docker logs -t {f'--since {since} ' if since else ''}mov-influxdb-1")
    assert out.returncode == 0, out.stderr
    records = []
    for line in out.stdout.splitlines():
        stamp, _, text = line.partition(" ")
        if text.startswith("{"):
            records.append((docker_time(stamp), json.loads(text)))
    return records


def refused_writes(records: list[tuple[datetime, dict[str, Any]]]) -> list[str]:
    """Writes the double refused for want of a valid token (the request's line names no authorization)."""
    return [f"{t} {r['request']}" for t, r in records if r.get("request") == "POST /api/v2/write" and not r["auth"]]


def docker_time(stamp: str) -> datetime:
    """docker's RFC 3339 time with nanoseconds, to a datetime (microseconds)."""
    base, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{base}.{(fraction or '0')[:6].ljust(6, '0')}+00:00")


def digest(secret: str) -> str:
    """A secret's fingerprint: what the steps compare and may show."""
    return hashlib.sha256(secret.strip().encode()).hexdigest()[:16]


def publish_as_device(
    site: Site, host: Host, device: str, payloads: list[dict[str, object]], topic: str = "", password: str | None = None
) -> list[subprocess.CompletedProcess[str]]:
    """A device on the plant's network publishes over 8883 (scenarios/device.py) with its password from the vault
    unless given. Returns each mosquitto_pub's result."""
    if password is None:
        secrets = site.vault()["vault_mov_secrets"]
        assert isinstance(secrets, dict)
        password = str(secrets["mqtt"][device])
    ca = site.sudo(host, "cat /opt/mov/tls/ca.pem")
    assert ca.returncode == 0, ca.stderr
    return device_publish(host.address, DOMAIN, ca.stdout, device, password, payloads, topic, network=LAN)


def publish_ok(site: Site, host: Host, device: str, payloads: list[dict[str, object]], topic: str = "") -> None:
    for out in publish_as_device(site, host, device, payloads, topic):
        assert out.returncode == 0, out.stdout + out.stderr


def wait_for(what: str, check: Callable[..., list[T]], *args: object, timeout: float = 60) -> list[T]:
    """check(*args) until it returns something."""
    deadline = time.monotonic() + timeout
    while True:
        result = check(*args)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(1)


def releases(site: Site, host: Host) -> list[str]:
    out = site.sudo(host, "ls -1 /opt/mov/releases")
    assert out.returncode == 0, out.stderr
    return sorted(out.stdout.split())


def release_image(site: Site, host: Host, release: str, service: str) -> str:
    out = site.sudo(host, f"cat /opt/mov/releases/{release}/compose.yaml")
    assert out.returncode == 0, out.stderr
    return str(yaml.safe_load(out.stdout)["services"][service]["image"])


def set_stack_vars(**changes: object) -> None:
    """Edit the env's group_vars/mov/stack.yml, as a user bumps a version."""
    path = REPO / "inventories" / ENV / "group_vars" / "mov" / "stack.yml"
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text("---\n" + yaml.safe_dump(data, sort_keys=False))


def analytics_overrides(tag: str) -> dict[str, str]:
    return {**IMAGE_OVERRIDES, "analytics": f"{ANALYTICS}:{tag}"}


@contextmanager
def process_snapshots(site: Site) -> Iterator[set[str]]:
    """Every command line seen on the boxes while the block runs (`ps` twice a second): what another user of the
    host, or a process listing in a support ticket, would see."""
    seen: set[str] = set()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for host in site.hosts:
                out = docker("exec", host.container, "ps", "-eo", "args", "--no-headers", check=False, timeout=30)
                seen.update(out.stdout.splitlines())
            stop.wait(0.5)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=60)


# --- the steps -----------------------------------------------------------------------------------------------------


def test_first_deploy_as_root(site: Site) -> None:
    run = site.play("site.yml", root=True)
    assert run.code == 0, run.explain()
    # The worker's token is a compose secret that must exist when its container is created, and none existed before:
    # the deploy started InfluxDB alone and wrote the token first (roles/stack, run.yml), so no write went unsigned.
    for host in site.hosts:
        assert not refused_writes(double_requests(site, host)), host.name


def test_root_login_is_closed_and_the_admin_has_sudo(site: Site) -> None:
    for host in site.hosts:
        root = site.ssh(host, "true", user="root", key=site.provider_key)
        assert root.returncode == 255 and "Permission denied" in root.stderr, root
        admin = site.ssh(host, "sudo -n true && id -un")
        assert admin.returncode == 0 and admin.stdout.strip() == "movadmin", admin


def test_second_run_changes_nothing_across_the_site(site: Site) -> None:
    # Through Mitogen, the documented faster executor, with ansible.cfg's host key checking on and the env's known
    # hosts (scanned from the boxes): its no-op must be as empty as plain Ansible's.
    stamp = "stat -c '%i %Y' /var/lib/mov/host-state.json"  # roles/host_state's host_state_file
    boxes = [*site.hosts, *site.gateways]
    stamps = {h.name: site.sudo(h, stamp).stdout for h in boxes}
    run = site.play("site.yml", executor="mitogen")
    assert run.code == 0, run.explain()
    recap = run.recap()
    assert set(recap) == {h.name for h in [*site.hosts, *site.gateways]}, run.explain()
    changed = [line for line in run.output.splitlines() if line.startswith("changed:")]
    assert all(c["changed"] == 0 and c["failed"] == 0 for c in recap.values()), f"{recap}\n" + "\n".join(changed)
    # The first run's -e ansible_user=root is a connection setting, not an input: the host roles are not applied
    # again on a host, central VPS or gateway, that is as that run left it (roles/host_state).
    folded = " ".join(run.output.split())  # the message is folded over lines in the YAML output
    said = re.findall(r"Host roles .{0,400}", folded)
    skipped = folded.count("Host roles skipped: the host is as the last full deploy left it")
    assert skipped == len(site.hosts) + len(site.gateways), said
    # Their plays ended for every host (meta: end_host) rather than skipping each of their tasks one by one: no task
    # of a role that only those plays run was started (the timer lists every task started, skipped ones too).
    started = [t for t in started_tasks(run.output) if t.split(" : ")[0] in PLAY_ENDED_ROLES]
    assert started == [], started
    # Nor was a host digested again at the end to write its stamp anew (roles/host_state, tasks/record.yml): it is
    # the one the run compared with. (A record replaces the file: a new inode.)
    assert {h.name: site.sudo(h, stamp).stdout for h in boxes} == stamps, stamps
    assert all(stamps.values()), stamps
    # The status page's generator, unchanged with its configuration, is left to its minute job (roles/status_page).
    assert (
        task_results(run.output, "status_page : Write the page now (then every minute, the cron job status-page)") == []
    )


# The roles that only playbooks/host.yml, services.yml and edge.yml run (the others are included elsewhere too).
PLAY_ENDED_ROLES = ("common", "docker", "firewall", "report", "telegraf", "logs", "nginx", "certbot")


def started_tasks(output: str) -> list[str]:
    """The tasks a run started, skipped ones included, from the timer's TASKS RECAP ("role : name ---- 0.12s")."""
    recap = output.split("TASKS RECAP", 1)[-1] if "TASKS RECAP" in output else ""
    return [m.group(1) for m in re.finditer(r"^(.+?) -+ [\d.]+s$", recap, re.MULTILINE)]


def test_a_hand_edit_on_the_host_is_put_back_by_the_next_run(site: Site) -> None:
    jail = "/etc/fail2ban/jail.d/50-mov.local"
    for host in site.hosts:
        edit = site.sudo(host, f"printf '[sshd]\\nenabled = false\\n' >> {jail} && systemctl stop fail2ban")
        assert edit.returncode == 0, edit.stderr
    # The role that owns both, alone (a --tags run applies what it selects; the check still says what differs).
    run = site.play("playbooks/host.yml", "--tags", "common")
    assert run.code == 0, run.explain()
    folded = " ".join(run.output.split())  # the message is folded over lines in the YAML output
    assert folded.count("run): the host changed since:") == len(site.hosts), run.explain()
    assert jail in folded, run.explain()
    for host in site.hosts:
        state = site.sudo(host, f"grep -c 'enabled = false' {jail}; systemctl is-active fail2ban")
        assert state.stdout.split() == ["0", "active"], state


def test_mitogen_refuses_a_box_whose_host_key_differs(site: Site) -> None:
    # The env's known hosts file with another key for each box's address: Mitogen's SSH connection must refuse them.
    # Its own message (mitogen/ssh.py, hostkey_failed_msg) also shows that Mitogen's connection ran, not Ansible's.
    with tempfile.TemporaryDirectory(prefix="mov-hostkeys-") as tmp:
        other = keygen(Path(tmp) / "other-host-key", "not the box").with_suffix(".pub").read_text().split()
        known_hosts = Path(tmp) / "known_hosts"
        known_hosts.write_text("".join(f"{h.address} {other[0]} {other[1]}\n" for h in site.hosts))
        common_args = json.dumps(
            {"ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts} -o IdentitiesOnly=yes"}
        )
        run = site.ansible("ansible", "mov", "-m", "ansible.builtin.ping", "-e", common_args, executor="mitogen")
    assert run.code == 4, run.explain()  # ansible's exit code when hosts were unreachable
    refused = re.findall(r"^(\S+) \| UNREACHABLE!", run.output, re.M)
    assert sorted(refused) == sorted(h.name for h in site.hosts), run.explain()
    # The result's message is folded over lines in the YAML output.
    assert "SSH reported an unrecognized or mismatching host key" in " ".join(run.output.split()), run.explain()


def test_verify_playbook(site: Site) -> None:
    run = site.play("playbooks/verify.yml", executor="mitogen")
    assert run.code == 0, run.explain()


def test_a_device_reading_over_8883_stores_its_status_and_alerts(site: Site) -> None:
    def critical_alerts(at_least: int) -> list[dict[str, str]]:
        found = [a for a in site.hooks() if '"status": "critico"' in a["body"] and "sensor_001" in a["body"]]
        return found if len(found) >= at_least else []

    for count, host in enumerate(site.hosts, start=1):
        publish_ok(site, host, "industria_abc/sensor_001", [reading("industria_abc/sensor_001", 36.5)])
        points = wait_for(
            "a status point of sensor_001 in the InfluxDB double", points_of, site, host, "dispositivo=sensor_001"
        )
        assert 'status="critico"' in str(points), points
        # Every box's worker posts to the one receiver: one critical alert of sensor_001 per box so far.
        alerts = wait_for(f"{count} critical alert(s) at the webhook", critical_alerts, count)
        assert '"value": 36.5' in alerts[-1]["body"], alerts


def test_a_device_cannot_publish_as_another(site: Site) -> None:
    """The ACL: sensor_001's account publishing on sensor_002's topic is refused, and no status is stored for it."""
    for host in site.hosts:
        forged = reading("industria_abc/sensor_002", 36.9)
        publish_ok(site, host, "industria_abc/sensor_001", [forged], topic="mov/dados/industria_abc/sensor_002")
        # A genuine reading after it: once its status is stored, the forged one would have been too.
        publish_ok(site, host, "industria_abc/sensor_001", [reading("industria_abc/sensor_001", 31.5)])
        wait_for("sensor_001's later status", points_of, site, host, 'status="alerta"')
        assert not [p for p in stored_points(site, host, "mov_status") if "dispositivo=sensor_002" in p]


def test_mqtt_over_websockets_through_nginx(site: Site) -> None:
    """A real MQTT client (paho's websockets transport) through nginx on 443 to Mosquitto's websockets listener: a
    device's reading reaches the worker and its status is stored; the ACL holds there too (a reading on another
    device's topic is acknowledged and stored nowhere); anonymous and wrong-password clients are refused."""
    secrets = site.vault()["vault_mov_secrets"]
    assert isinstance(secrets, dict)
    device, password = "industria_abc/sensor_001", str(secrets["mqtt"]["industria_abc/sensor_001"])
    for host in site.hosts:
        ca = site.sudo(host, "cat /opt/mov/tls/ca.pem")
        assert ca.returncode == 0, ca.stderr

        nginx = (host.address, DOMAIN, ca.stdout, "/mqtt")
        forged = reading("industria_abc/sensor_002", 38.25)
        assert publish_websockets(*nginx, [forged], "mov/dados/industria_abc/sensor_002", device, password) == "ok"
        # From alerta (the step before) to critico: a status point the worker stores only for this reading.
        genuine = reading(device, 36.75)
        assert publish_websockets(*nginx, [genuine], f"mov/dados/{device}", device, password) == "ok"
        wait_for("sensor_001's status from its websockets reading", points_of, site, host, "36.75")
        assert not [p for p in stored_points(site, host, "mov_status") if "sensor_002" in p or "38.25" in p]
        refused = publish_websockets(*nginx, [genuine], f"mov/dados/{device}", None)
        assert refused != "ok", "an anonymous websockets client was let in"
        refused = publish_websockets(*nginx, [genuine], f"mov/dados/{device}", device, password + "x")
        assert refused != "ok", "a wrong password was let in over websockets"


def write_readings_as_telegraf(site: Site, host: Host, count: int) -> None:
    """Telegraf's part of the data path (its image cannot be had here): readings from 20 minutes ago written to the
    data bucket through the InfluxDB double's write API, as Telegraf's output does. The backup, the restore and the
    drill then have data to carry and compare."""
    start = time.time_ns() - 1_200 * 10**9
    lines = "\n".join(
        f"mov_leituras,cliente=industria_abc,dispositivo=sensor_001,localizacao=sala_servidores,"
        f"tipo=temperatura temperatura_c={20 + i / 10} {start + i * 10**9}"
        for i in range(count)
    )
    write = (
        "import os, urllib.request, sys; urllib.request.urlopen(urllib.request.Request("
        "'http://127.0.0.1:8086/api/v2/write?org=mov_industria&bucket=mov_dados', data=sys.stdin.buffer.read(),"
        " headers={'Authorization': 'Token ' + open(os.environ['DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE']).read()}),"
        " timeout=10)"
    )
    out = site.sudo(host, f'docker exec -i mov-influxdb-1 python3 -c "{write}"', stdin=lines)
    assert out.returncode == 0, out.stderr


def test_backup_wipe_restore_gives_back_the_same_data(site: Site) -> None:
    for host in site.hosts:
        write_readings_as_telegraf(site, host, 30)
    started = {h.name: int(site.sudo(h, "date +%s%N").stdout) for h in site.hosts}
    run = site.play("playbooks/backup.yml", executor="mitogen")
    assert run.code == 0, run.explain()
    before = {h.name: (double_state(site, h), broker_config(site, h)) for h in site.hosts}
    for host in site.hosts:
        wipe = site.sudo(host, "cd /opt/mov && docker compose down -v && rm -rf /opt/mov/mosquitto/data/*")
        assert wipe.returncode == 0, wipe.stderr
        assert not double_volume_exists(site, host)
    run = site.play("playbooks/restore.yml", executor="mitogen")
    assert run.code == 0, run.explain()
    for host in site.hosts:
        state, config = before[host.name]
        after = double_state(site, host)
        restored, stored = (settled(points["points"], started[host.name]) for points in (after, state))
        assert restored == stored and restored, "the stored points differ after the restore"
        assert after["buckets"] == state["buckets"]
        assert broker_config(site, host) == config


def settled(points: Any, since_ns: int) -> list[dict[str, str]]:
    """The points a backup started at since_ns must hold: all but the worker's heartbeats (its status points with
    change=false, written every minute) stamped since then, which may be written before or after the snapshot."""
    return [p for p in points if ",change=false," not in p["line"] or int(p["line"].rsplit(" ", 1)[1]) < since_ns]


def broker_config(site: Site, host: Host) -> str:
    """The broker's accounts, ACL and configuration, as checksums."""
    out = site.sudo(host, "cd /opt/mov/mosquitto/config && find . -type f | sort | xargs sha256sum")
    assert out.returncode == 0 and out.stdout, out.stderr
    return out.stdout


def double_volume_exists(site: Site, host: Host) -> bool:
    out = site.sudo(host, "docker volume ls -q")
    return any(name.endswith("influxdb_data") for name in out.stdout.split())


def test_restore_drill(site: Site) -> None:
    run = site.play("playbooks/restore-drill.yml", executor="mitogen")
    assert run.code == 0, run.explain()
    for host in site.hosts:
        drill = json.loads(site.sudo(host, "cat /var/lib/mov-backup/drill.json").stdout)
        assert drill["result"] == "ok", drill
        influx = next(c for c in drill["checks"] if c["part"] == "influxdb")
        assert influx["production"] == influx["restored"] == {"mov_leituras": 30}, influx


def test_update_to_a_bumped_analytics_image_after_a_backup(site: Site) -> None:
    # Retention keeps the newest snapshot of a day (mov_backup_retention.daily), so the count may stay the same:
    # the newest one is what tells.
    newest = {h.name: snapshot_ids(site, h)[-1] for h in site.hosts}
    set_stack_vars(mov_image_overrides=analytics_overrides("0.1.1"))
    with process_snapshots(site) as seen:
        run = site.play("playbooks/update.yml")
    assert run.code == 0, run.explain()
    for host in site.hosts:
        assert snapshot_ids(site, host)[-1] > newest[host.name], "no pre-update snapshot"
        assert running_image(site, host, "analytics") == f"{ANALYTICS}:0.1.1"
    (site.work / "ps-update.txt").write_text("\n".join(sorted(seen)))


def snapshot_ids(site: Site, host: Host) -> list[str]:
    out = site.sudo(host, "ls -1 /var/backups/mov")
    return sorted(n for n in out.stdout.split() if re.match(r"^\d{8}T\d{6}Z$", n))


def test_update_to_a_broken_image_rolls_back_by_itself(site: Site) -> None:
    # A release whose worker serves its health on another port: the healthcheck fails.
    with tempfile.TemporaryDirectory() as ctx:
        (Path(ctx) / "Dockerfile").write_text(f"FROM {ANALYTICS}:0.1.1\nENV MOV_ANALYTICS_HTTP__PORT=9109\n")
        docker("build", "-q", "-t", f"{ANALYTICS}:0.1.2-broken", ctx, timeout=600)
    builds = [b for b in IMAGE_BUILDS if b != "analytics"]  # the broken image is this step's, not built from source
    set_stack_vars(mov_image_overrides=analytics_overrides("0.1.2-broken"), mov_image_builds=builds)
    run = site.play("playbooks/update.yml", executor="mitogen")
    assert run.code != 0, run.explain()
    assert "rolled back" in run.output.lower(), run.explain()
    for host in site.hosts:
        assert running_image(site, host, "analytics") == f"{ANALYTICS}:0.1.1"
        health = site.sudo(host, "docker inspect -f '{{.State.Health.Status}}' mov-analytics-1").stdout.strip()
        assert health == "healthy"
        # The compose file is the previous release's again, and the broken one never became a release.
        assert "0.1.2-broken" not in site.sudo(host, "cat /opt/mov/compose.yaml").stdout
        assert all("0.1.2-broken" not in release_image(site, host, r, "analytics") for r in releases(site, host))
    # The user puts the version back.
    set_stack_vars(mov_image_overrides=analytics_overrides("0.1.1"), mov_image_builds=IMAGE_BUILDS)


def test_rollback_to_a_named_release(site: Site) -> None:
    host = site.hosts[0]
    target = next(
        r for r in reversed(releases(site, host)) if release_image(site, host, r, "analytics") == f"{ANALYTICS}:0.1.0"
    )
    run = site.play(
        "playbooks/rollback.yml", "-e", f"stack_rollback_to={target}", "--limit", host.name, executor="mitogen"
    )
    assert run.code == 0, run.explain()
    assert running_image(site, host, "analytics") == f"{ANALYTICS}:0.1.0"


def test_movctl_status_over_ssh(site: Site) -> None:
    out = subprocess.run(
        [
            str(REPO / "scripts" / "movctl"),
            "-i",
            str(site.inventory),
            "--vault-password-file",
            str(site.vault_password),
            "status",
        ],
        cwd=REPO,
        env=site.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for service in ("mosquitto", "influxdb", "analytics"):
        assert service in out.stdout, out.stdout


def movctl(site: Site, host: Host, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """scripts/movctl from the controller, over SSH to one of the site's hosts."""
    command = [str(REPO / "scripts" / "movctl"), "-i", str(site.inventory), "--host", host.name]
    command += ["--vault-password-file", str(site.vault_password), *args]
    return subprocess.run(command, cwd=REPO, env=site.env(), capture_output=True, text=True, timeout=timeout)


def test_movctl_bench_refuses_while_a_backup_or_a_deploy_runs_and_above_its_caps(site: Site) -> None:
    host = site.hosts[0]
    held = site.sudo(host, "flock -o /run/lock/mov-backup.lock sleep 30 >/dev/null 2>&1 & sleep 1; echo held")
    assert held.returncode == 0, held.stderr
    out = movctl(site, host, "bench", "--duration", "2")
    assert out.returncode == 4 and "a backup, restore or drill runs" in out.stderr, out.stdout + out.stderr
    site.sudo(host, "pkill -f 'flock -o /run/lock/mov-backup.lock' || true")
    site.sudo(host, "touch /run/mov-deploy.json")
    out = movctl(site, host, "bench", "--duration", "2")
    site.sudo(host, "rm -f /run/mov-deploy.json")
    assert out.returncode == 4 and "a deploy runs (/run/mov-deploy.json" in out.stderr, out.stdout + out.stderr
    out = movctl(site, host, "bench", "--rate", "100000", "--devices", "500")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "bench.max_rate" in out.stderr and "bench.max_devices" in out.stderr, out.stderr


def test_movctl_bench_measures_the_platform_and_leaves_nothing_behind(site: Site) -> None:
    """Three temporary devices through the real broker over TLS, each status point read back from the InfluxDB
    double (the real one in the e2e job); afterwards no account and no point of the bench's client."""
    host = site.hosts[0]
    passwd_before = site.sudo(host, "cat /opt/mov/mosquitto/config/passwd").stdout
    out = movctl(site, host, "bench", "--devices", "3", "--rate", "30", "--duration", "8")
    print(out.stdout)  # the table, for bench/results.md
    assert out.returncode == 0, out.stdout + out.stderr
    for row in ("MQTT publish (PUBACK)", "publish to status point", "InfluxDB write", "mosquitto", "analytics"):
        assert row in out.stdout, out.stdout
    results = site.sudo(host, "cat $(ls -1 /var/lib/mov/bench/bench-*.json | tail -1)")
    doc = json.loads(results.stdout)
    mqtt = doc["mqtt"]
    assert mqtt["failed"] == 0 and mqtt["acked"] == mqtt["published"] >= 150, mqtt
    assert mqtt["status_latency_ms"]["samples"] >= 5 and mqtt["status_latency_ms"]["missing"] == 0, mqtt
    assert doc["influxdb_write"]["samples"] >= 5 and doc["influxdb_write"]["failed"] == 0, doc
    assert {"mosquitto", "analytics", "influxdb"} <= set(doc["containers"]), doc["containers"]
    assert doc["deleted_from"] == ["mov_dados", "mov_status"], doc
    # The devices' readings changed their status: the worker stored points of them, and the bench deleted them all.
    log = site.sudo(host, "docker logs mov-influxdb-1 2>&1 | grep -c 'cliente=movbench' || true").stdout.strip()
    assert int(log or 0) > 0, "the bench's devices caused no point"
    assert not [p for b in ("mov_dados", "mov_status") for p in stored_points(site, host, b) if "cliente=movbench" in p]
    assert site.sudo(host, "cat /opt/mov/mosquitto/config/passwd").stdout == passwd_before


# The influxdb role's Flux task (influxdb_tasks, group_vars/all/services.yml) and one of the role's that the tree no
# longer lists, as an operator's edit and an older deploy leave them.
FLUX_TASK = "mov:mov_historico"
STALE_TASK = {"description": "mov:mov_retirada", "flux": 'option task = {name: "mov_retirada", every: 1h}'}


@pytest.fixture(scope="module")
def before_rotation() -> dict[str, Any]:
    """What the rotation step read before it rotated, for the step after it: per host, and the old secrets."""
    return {}


def edit_influxdb_before_the_rotation(site: Site, host: Host) -> dict[str, str]:
    """The worker's container and token (its digest) before the rotation; then an operator's edit of the role's
    Flux task and a task of the role's that the tree no longer lists (the double keeps tasks as InfluxDB does and
    never runs one). Returns them with the box's time after the edits."""
    status, listing = influx_api(site, host, "GET", "/api/v2/authorizations")
    assert status == 200, status
    [worker] = [a for a in listing["authorizations"] if a["description"].split("@")[0] == "mov:analytics"]
    status, tasks = influx_api(site, host, "GET", "/api/v2/tasks")
    assert status == 200, status
    [task] = [t for t in tasks["tasks"] if t["description"] == FLUX_TASK]
    edit = {"flux": 'option task = {name: "mov_historico", every: 2h}'}
    assert influx_api(site, host, "PATCH", f"/api/v2/tasks/{task['id']}", edit)[0] == 200
    status, stale = influx_api(site, host, "POST", "/api/v2/tasks", {"orgID": task["orgID"], **STALE_TASK})
    assert status == 201, status
    out = site.sudo(host, "docker inspect -f '{{.Id}}' mov-analytics-1 && date -u +%Y-%m-%dT%H:%M:%S.%NZ")
    assert out.returncode == 0, out.stderr
    container, now = out.stdout.split()
    return {
        "container": container,
        "token_id": worker["id"],
        "token": digest(worker["token"]),
        "task_id": task["id"],
        "flux": task["flux"],
        "stale_id": stale["id"],
        "since": now,
    }


def test_rotated_passwords_and_a_deploy_killed_in_the_stack_role_then_a_normal_run_converges(
    site: Site, before_rotation: dict[str, Any]
) -> None:
    """docs/operations/rotate-secret.md's runbook for a device's and the verify account's passwords, the worker's
    InfluxDB token and InfluxDB's admin password, with an operator's edit of a Flux task of the influxdb role's and a
    task it no longer lists (the next step checks what the deploy did with those), deployed by a run that dies while
    compose recreates the worker (the config says 0.1.1; the rollback above left 0.1.0): the next normal run
    converges, the new passwords work and the old one is refused. A gateway's account too (it keeps its username):
    the central broker refuses its old password, and test_edge.py's first step, a reading through that gateway,
    proves its bridge took the new one."""
    device = "industria_abc/sensor_001"
    _, plant, plant_device = GATEWAYS[0]
    gateway = f"gw_{plant}"
    old = site.vault()["vault_mov_secrets"]
    assert isinstance(old, dict)
    before_rotation.update({h.name: edit_influxdb_before_the_rotation(site, h) for h in site.hosts}, secrets=old)
    rotate = subprocess.run(
        [
            sys.executable,
            "scripts/platform_secrets.py",
            "--env",
            ENV,
            "--vault-password-file",
            str(site.vault_password),
            "--rotate",
            f"mqtt/{device}",
            "--rotate",
            "mqtt/verify",
            "--rotate",
            f"mqtt/{gateway}",
            "--rotate",
            "influxdb_token/analytics",
            "--rotate",
            "influxdb_admin_password",
        ],
        cwd=REPO,
        env=site.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rotate.returncode == 0, rotate.stdout + rotate.stderr
    new = site.vault()["vault_mov_secrets"]
    assert isinstance(new, dict)
    assert all(new["mqtt"][a] != old["mqtt"][a] for a in (device, "verify", gateway))
    assert new["influxdb_admin_password"] != old["influxdb_admin_password"]
    assert new["influxdb_token_rotations"]["analytics"] != (old.get("influxdb_token_rotations") or {}).get("analytics")
    # Killed in a fast-path run (the stack's configure and run steps): what a kill leaves behind is the stack role's,
    # and the full run after it applies the rotation everywhere.
    killed = site.play_killed(
        "site.yml",
        "--tags",
        FAST_PATH_TAGS,
        when=re.compile(r"^TASK \[stack : Bring the stack to compose\.yaml"),
        after_s=2,
    )
    assert "killed here" in killed.output, killed.explain()
    run = site.play("site.yml")  # its verify logs in as the verify account with the new password
    assert run.code == 0, run.explain()
    for host in site.hosts:
        assert running_image(site, host, "analytics") == f"{ANALYTICS}:0.1.1"
        assert release_image(site, host, releases(site, host)[-1], "analytics") == f"{ANALYTICS}:0.1.1"
        refused = publish_as_device(site, host, device, [reading(device, 22.0)], password=str(old["mqtt"][device]))
        assert refused[0].returncode != 0 and "not authori" in (refused[0].stdout + refused[0].stderr).lower(), refused[
            0
        ]
        publish_ok(site, host, device, [reading(device, 22.5)])
        # The verify account's new username logged in (the run's verify), so the one it replaced is gone.
        passwd = site.sudo(host, "cat /opt/mov/mosquitto/config/passwd").stdout
        users = [line.split(":", 1)[0] for line in passwd.splitlines()]
        assert new["mqtt_usernames"]["verify"] in users and "verify" not in users, users
        assert gateway in users and gateway not in new.get("mqtt_usernames", {}), users
        stale = publish_as_device(
            site,
            host,
            gateway,
            [reading(plant_device, 22.0)],
            topic=f"mov/plantas/{plant}/mov/dados/{plant_device}",
            password=str(old["mqtt"][gateway]),
        )
        assert stale[0].returncode != 0 and "not authori" in (stale[0].stdout + stale[0].stderr).lower(), stale[0]


def test_the_influxdb_rotations_are_applied_and_the_flux_tasks_put_back(
    site: Site, before_rotation: dict[str, Any]
) -> None:
    """What the step above's full run did with the InfluxDB rotations and edits (read before the next step recreates
    the worker again). The worker's token: a new one (mov:analytics@<rotation>) was made and written, the worker was
    recreated with it (a restart keeps the bind-mounted secret it started with, and the killed run's recreate came
    before the token step), it writes with it, and the old token was deleted only once that worker had started, so
    no write was refused. The admin password: signin refused it, the deploy set it with the admin token (POST
    /api/v2/users/{id}/password), and signin takes the new one, not the old. The Flux tasks: the deploy put the
    task's flux back and deleted the one the tree does not list, and created none."""
    new = site.vault()["vault_mov_secrets"]
    assert isinstance(new, dict)
    old = before_rotation["secrets"]
    description = f"mov:analytics@{new['influxdb_token_rotations']['analytics']}"
    for host in site.hosts:
        before = before_rotation[host.name]
        worker = site.sudo(host, "docker inspect -f '{{.Id}} {{.Created}}' mov-analytics-1")
        assert worker.returncode == 0, worker.stderr
        container, created = worker.stdout.split()
        assert container != before["container"], "the worker's container was not recreated"
        # Digests only: a failed assertion shows its values.
        inside = digest(site.sudo(host, "docker exec mov-analytics-1 cat /run/secrets/analytics_influxdb_token").stdout)
        on_host = digest(site.sudo(host, "cat /opt/mov/analytics/secrets/influxdb.token").stdout)
        assert inside == on_host != before["token"] and inside != digest("")
        listing = influx_api(site, host, "GET", "/api/v2/authorizations")[1]["authorizations"]
        ours = [(a["description"], digest(a["token"])) for a in listing if a["description"].startswith("mov:analytics")]
        assert ours == [(description, inside)], ours
        # The rotation step's last reading changed sensor_001's status: the worker stored it with its new token.
        wait_for("a point the worker wrote with its new token", points_written_with, site, host, before, description)
        requests = double_requests(site, host, before["since"])
        deleted = [t for t, r in requests if r.get("request") == f"DELETE /api/v2/authorizations/{before['token_id']}"]
        assert len(deleted) == 1 and deleted[0] > docker_time(created), (deleted, created)
        assert not refused_writes(requests)

        [admin] = influx_api(site, host, "GET", "/api/v2/users")[1]["users"]
        for which, expected in (("new", 204), ("old", 401)):
            password = (new if which == "new" else old)["influxdb_admin_password"]
            status = influx_api(site, host, "POST", "/api/v2/signin", basic=f"{admin['name']}:{password}")[0]
            assert status == expected, f"signin with the {which} admin password"
        set_password = [r["request"] for _, r in requests if r.get("request", "").startswith("POST /api/v2/users/")]
        assert set_password == [f"POST /api/v2/users/{admin['id']}/password"], set_password

        tasks = influx_api(site, host, "GET", "/api/v2/tasks")[1]["tasks"]
        kept = [(t["description"], t["status"], t["flux"] == before["flux"]) for t in tasks]
        assert [t for t in kept if t[0].startswith("mov:")] == [(FLUX_TASK, "active", True)], kept
        changes = [
            r["request"] for _, r in requests if re.match(r"(POST|PATCH|DELETE) /api/v2/tasks", r.get("request", ""))
        ]
        assert changes == [f"DELETE /api/v2/tasks/{before['stale_id']}", f"PATCH /api/v2/tasks/{before['task_id']}"]


def points_written_with(site: Site, host: Host, before: dict[str, str], auth: str) -> list[dict[str, Any]]:
    return [r for _, r in double_requests(site, host, before["since"]) if "point" in r and r["auth"] == auth]


RELOAD_RULES = (
    "stack : Reload the analytics worker's rules when they changed (the same process; devices keep their state)"
)


def test_a_threshold_changed_through_the_fast_path_is_applied(site: Site) -> None:
    """docs/operations/deploy.md's fast path for a setting of the worker or Grafana: only the roles that render
    them and the stack's configure and run steps (deploy, verify, release). A threshold reaches the running worker by
    its reload (POST /-/reload): the same container goes on, with its devices' state."""
    worker_id = "docker compose -f /opt/mov/compose.yaml ps -q analytics"
    before = {h.name: (site.sudo(h, worker_id).stdout, reload_sets(site, h)) for h in site.hosts}
    override = site.inventory / "group_vars" / "mov" / "zz-thresholds.yml"
    override.write_text("---\nmov_thresholds:\n  temperatura_c:\n    alerta: 33\n    critico: 38\n")
    run = site.play("site.yml", "--tags", FAST_PATH_TAGS, executor="mitogen")
    assert run.code == 0, run.explain()
    assert all(run.recap()[h.name]["changed"] > 0 for h in site.hosts), run.explain()
    reloaded = task_results(run.output, RELOAD_RULES)
    assert len(reloaded) == len(site.hosts) and all(r.startswith("changed") for r in reloaded), reloaded
    # compose.yaml is unchanged and a --tags run applies no host role: the exposure is what the last run verified.
    # (ansible.cfg shows no skipped task; a probe that ran prints a result per host.)
    assert task_results(run.output, "stack : These ports stay closed") == [], run.explain()
    for host in site.hosts:
        worker, recorded = before[host.name]
        assert site.sudo(host, worker_id).stdout == worker, "the fast path recreated the worker"
        # Only the worker's rules changed among the files reloaded live. The run before this one retired the
        # rotated MQTT accounts, rewriting the broker's password file after its configure step, and recorded the
        # reload sets again: the broker's checksum recorded then is still the right one.
        now = reload_sets(site, host)
        assert now["mosquitto"] == recorded["mosquitto"] and now["analytics"] != recorded["analytics"], (recorded, now)
        rules = site.sudo(host, "cat /opt/mov/analytics/rules/rules.yaml")
        assert "alerta: 33" in rules.stdout, rules.stdout
        # 36.4 is "critico" under the old thresholds (35) and "alerta" under the new ones (33, 38): from "normal"
        # (the step before ended on 22.5), a change either way, so the worker writes its status point at once (an
        # unchanged status waits for the minute's heartbeat). "alerta" is the reloaded worker's.
        publish_ok(site, host, "industria_abc/sensor_001", [reading("industria_abc/sensor_001", 36.4)])
        [point] = wait_for("the status of the 36.4 reading", points_of, site, host, "value=36.4")
        assert "dispositivo=sensor_001" in point and 'status="alerta"' in point, point


def reload_sets(site: Site, host: Host) -> dict[str, str]:
    """The checksums of the files each service reloads live, as the last deploy recorded them (roles/stack)."""
    recorded: dict[str, str] = json.loads(site.sudo(host, "cat /opt/mov/reload-sha256.json").stdout)
    return recorded


def task_results(output: str, task: str) -> list[str]:
    """The result lines ("ok: [host]", "changed: [host]", ...) of every run of one task in a playbook's output."""
    results: list[str] = []
    current = ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            current = line[len("TASK [") :].split("]")[0]
        elif current == task and re.match(r"^(ok|changed|failed|skipping|fatal): \[", line):
            results.append(line)
    return results


def test_the_world_sees_only_ssh_http_https_and_mqtts(site: Site, prober: list[Prober]) -> None:
    for p in prober:
        seen = p.probe(*PUBLIC_PORTS, *INTERNAL_PORTS)
        assert [port for port, is_open in seen.items() if is_open] == PUBLIC_PORTS, seen


@pytest.mark.audit
def test_no_secret_in_the_journal_logs_processes_or_deploy_output(site: Site) -> None:
    """Every secret of the vault, and the InfluxDB tokens the deploy made, searched for where they would leak: the
    boxes' journal (the gateways' too), /var/log, each container's log and `docker inspect` (its environment: what
    the Docker API proxy shows Telegraf), the command lines seen during an update (backup and deploy included), and
    the output of every ansible-playbook run of this scenario."""
    secrets = set(secrets_of(site))
    assert len(secrets) >= 8, "the vault lost its secrets?"
    leaks: list[str] = []
    patterns = "\n".join(sorted(secrets)) + "\n"
    for host in [*site.hosts, *site.gateways]:
        search = (
            "f=$(mktemp) && cat > $f && { journalctl --no-pager -o cat | grep -F -c -f $f; "
            "grep -r -F -l -f $f /var/log; "
            "for c in $(docker ps -aq); do docker logs $c 2>&1 | grep -F -q -f $f && echo container:$c; "
            "docker inspect $c | grep -F -q -f $f && echo inspect:$c; done; "
            "rm -f $f; true; }"
        )
        out = site.sudo(host, search, stdin=patterns)
        lines = out.stdout.split()
        assert lines and lines[0] == "0", f"{host.name}: the journal holds a secret ({lines[:1]} lines)"
        leaks += [f"{host.name}: {where}" for where in lines[1:]]
    ps = (site.work / "ps-update.txt").read_text()
    leaks += [f"a command line during the update: {secret[:4]}..." for secret in secrets if secret in ps]
    for run in site.runs:
        leaks += [f"{run.log.name}: {secret[:4]}..." for secret in secrets if secret in run.output]
    assert not leaks, leaks


def secrets_of(site: Site) -> list[str]:
    """Every secret of the vault, and the InfluxDB tokens the deploy wrote on the central VPSes (the worker's, the
    status page's): what no log, file, command line or output may hold."""
    store = site.vault()["vault_mov_secrets"]
    assert isinstance(store, dict)
    # Names, not secrets (scripts/platform_secrets.py keeps them beside the secrets they go with): the broker logs a
    # client's username on every connection, and a rotated service account's is "<name>@<rotation id>"; a rotated
    # InfluxDB token's description is "mov:<name>@<rotation id>", which InfluxDB's requests name.
    secrets = set(flatten({k: v for k, v in store.items() if k not in (MQTT_USERNAMES, ROTATIONS)}))
    for host in site.hosts:
        tokens = site.sudo(host, "cat /opt/mov/analytics/secrets/influxdb.token /etc/mov/status-page/influxdb.token")
        assert tokens.returncode == 0, tokens.stderr
        secrets.update(tokens.stdout.split())
    return sorted(s for s in secrets if len(s) >= 12)


def flatten(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from flatten(item)
    elif isinstance(value, list):
        for item in value:
            yield from flatten(item)
    elif value is not None:
        yield str(value)
