"""The platform on the central VPS once the users' steps ran (test_site.py, then test_edge.py): the compose stack's
running containers, every command of movctl on the host and from the controller, and the nightly jobs as cron runs
them. What is expected comes from the env's config tree (Site.tree) and the roles that apply it.

Each step leaves the platform running and healthy: the next step, and the audits after the last one, find it so.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, Host, Site
from device import reading
from test_site import digest, movctl, publish_ok, secrets_of, wait_for

# What the tree sets and these steps expect of the host.
TREE = (
    "mov_env",
    "mov_domain",
    "mov_compose_services",
    "mov_service_uids",
    "stack_images",
    "mov_ports",
    "mov_mosquitto_log_tag",
    "mov_releases_keep",
    "mov_preflight_disk_paths",
    "mov_cleanup_schedule",
    "mov_status_page_schedule",
    "mov_status_page_dir",
    "mov_report_dir",
    "cleanup_old_files",
)
# The stack role's own settings, which the tree leaves at the role's values.
STACK_DEFAULTS = yaml.safe_load((REPO / "roles" / "stack" / "defaults" / "main.yml").read_text())
READ_ONLY_SERVICES = yaml.safe_load((REPO / "roles" / "stack" / "vars" / "main.yml").read_text())[
    "_stack_read_only_services"
]
COMPOSE = "docker compose -f /opt/mov/compose.yaml"
MARKER = "/opt/mov/mosquitto/data/movctl-test.marker"
# Images of the project that no release uses: one built by the movctl cleanup step, one by the nightly one.
STRAY_IMAGE = "mov/analytics:0.1.0-stray"
OLD_IMAGE = "mov/mosquitto:0.0.1-nightly-old"


@pytest.fixture(scope="module")
def tree(site: Site) -> dict[str, Any]:
    return site.tree(site.hosts[0], *TREE)


# --- helpers -------------------------------------------------------------------------------------------------------


def root(site: Site, host: Host, command: str, timeout: float = 300) -> str:
    """A command as root on the host that must succeed; its output."""
    out = site.sudo(host, command, timeout=timeout)
    assert out.returncode == 0, f"{host.name}: {command}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
    return out.stdout.strip()


def succeeds(site: Site, host: Host, command: str) -> bool:
    return site.sudo(host, command).returncode == 0


def owner(site: Site, host: Host, path: str) -> tuple[int, int, int]:
    """A path's uid, gid and mode."""
    uid, gid, mode = root(site, host, f"stat -c '%u %g %a' {path}").split()
    return int(uid), int(gid), int(mode, 8)


def on_host(site: Site, host: Host, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """movctl on the host, as an admin runs it there."""
    return site.sudo(host, shlex.join(["movctl", *args]), timeout=timeout)


def as_json(out: subprocess.CompletedProcess[str]) -> Any:
    assert out.stdout.strip(), (out.returncode, out.stderr)
    return json.loads(out.stdout)


def all_healthy(site: Site, host: Host, timeout: float = 120) -> dict[str, Any]:
    """`movctl test --json` once every check passes, or the last one after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        doc: dict[str, Any] = as_json(on_host(site, host, "test", "--json"))
        if doc["ok"] or time.monotonic() > deadline:
            return doc
        time.sleep(2)


def compose_services(site: Site, host: Host) -> dict[str, dict[str, str]]:
    out = root(site, host, f"{COMPOSE} ps --all --format json")
    rows = json.loads(out) if out.startswith("[") else [json.loads(line) for line in out.splitlines() if line]
    return {row["Service"]: row for row in rows}


def healthy_services(site: Site, host: Host, expected: list[str]) -> list[dict[str, str]]:
    """The compose services' rows once each expected one runs healthy (else none: wait_for tries again)."""
    rows = compose_services(site, host)
    ready = all(rows.get(s, {}).get("State") == "running" and rows[s].get("Health") == "healthy" for s in expected)
    return list(rows.values()) if ready else []


def proc_status(site: Site, host: Host, container: str) -> dict[str, list[str]]:
    """/proc/1/status of a container's main process, each line's values by name."""
    text = root(site, host, f"docker exec {container} cat /proc/1/status")
    return {name: values.split() for name, _, values in (line.partition(":") for line in text.splitlines())}


def started_at(site: Site, host: Host, container: str) -> str:
    return root(site, host, f"docker inspect -f '{{{{.State.StartedAt}}}}' {container}")


def published_ports(tree: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(host address, host port, container port) of every port of the tree's table that a compose service binds:
    the world's on every address, the rest on the loopback (group_vars/all/main.yml, mov_ports)."""
    return {
        ("0.0.0.0" if p["reach"] == "public" else "127.0.0.1", str(p["port"]), f"{p['port']}/tcp")
        for p in tree["mov_ports"].values()
        if p["by"] in tree["mov_compose_services"]
    }


# --- the compose stack ---------------------------------------------------------------------------------------------


def test_every_service_runs_healthy_from_the_bundle_images(site: Site, tree: dict[str, Any]) -> None:
    expected = tree["mov_compose_services"]
    for host in site.hosts:
        rows = wait_for("every service running and healthy", healthy_services, site, host, expected, timeout=120)
        assert {row["Service"]: row["Image"] for row in rows} == {s: tree["stack_images"][s] for s in expected}
        # The bundle on the host matches its checksums, and nothing was pulled (no registry here).
        root(site, host, "cd /opt/mov/bundle && sha256sum --check --strict SHA256SUMS")


def test_containers_run_as_their_service_uids(site: Site, tree: dict[str, Any]) -> None:
    """Each service's process runs as the uid and gid of its own (mov_service_uids), none of them the host admin's
    uid 1000 (InfluxDB's image's own user: the double's image has it too)."""
    for host in site.hosts:
        for service in tree["mov_compose_services"]:
            ids = tree["mov_service_uids"][service]
            status = proc_status(site, host, f"mov-{service}-1")
            assert set(status["Uid"]) == {str(ids["uid"])} and set(status["Gid"]) == {str(ids["gid"])}, service


def test_influxdb_volumes_belong_to_its_own_uid_and_it_writes_there(site: Site, tree: dict[str, Any]) -> None:
    """The deploy made InfluxDB's Docker-managed volumes (labelled as compose's own, never filled from the image's
    directories owned by uid 1000) and gave them to InfluxDB's uid; the double wrote its state and the CLI's configs
    there, through every restore before this step."""
    ids = tree["mov_service_uids"]["influxdb"]
    for host in site.hosts:
        for volume, written in (("mov_influxdb_data", "double-state.json"), ("mov_influxdb_config", "influx-configs")):
            [info] = json.loads(root(site, host, f"docker volume inspect {volume}"))
            assert info["Labels"]["com.docker.compose.project"] == "mov", info["Labels"]
            owners = root(site, host, f"find {info['Mountpoint']} -printf '%u:%g\\n' | sort -u").split()
            assert owners == [f"{ids['uid']}:{ids['gid']}"], (volume, owners)
            assert succeeds(site, host, f"test -e {info['Mountpoint']}/{written}"), volume


def test_influxdb_reads_its_admin_token_from_a_compose_secret(site: Site) -> None:
    """`docker inspect` (what the Docker API proxy lets Telegraf see) shows every container's environment: InfluxDB's
    admin token reaches it as a compose secret through the image's *_FILE variable. (That no secret of the vault is
    in any container's environment is the audit's search of `docker inspect`.)"""
    for host in site.hosts:
        [influxdb] = json.loads(root(site, host, "docker inspect mov-influxdb-1"))
        assert "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE=/run/secrets/influxdb_admin_token" in influxdb["Config"]["Env"]


# The HTTP status the Docker API proxy answers a method and path, asked from the analytics container on the compose
# network.
THROUGH_PROXY = """
import sys, urllib.request, urllib.error
request = urllib.request.Request("http://dockerproxy:2375" + sys.argv[2], method=sys.argv[1])
try:
    print(urllib.request.urlopen(request, timeout=10).status)
except urllib.error.HTTPError as error:
    print(error.code)
"""


def through_proxy(site: Site, host: Host, method: str, path: str) -> int:
    command = ["docker", "exec", "mov-analytics-1", "python3", "-c", THROUGH_PROXY, method, path]
    return int(root(site, host, shlex.join(command)))


def test_docker_api_proxy_passes_only_the_read_calls_telegraf_makes(site: Site) -> None:
    """HAProxy in front of the engine's socket: Telegraf's docker input's calls (influxdata/telegraf v1.32.3
    plugins/inputs/docker/client.go) pass, with or without the API version; every other call, a write or a read
    that would give away files, logs, secrets or a shell, gets 403 and never reaches the engine."""
    for host in site.hosts:
        full_id = root(site, host, "docker inspect -f '{{.Id}}' mov-mosquitto-1")
        allowed = [
            ("HEAD", "/_ping"),
            ("GET", "/_ping"),
            ("GET", "/info"),
            ("GET", "/v1.43/containers/json?all=1"),
            ("GET", f"/v1.43/containers/{full_id}/json"),
            ("GET", f"/v1.43/containers/{full_id}/stats?stream=false"),
        ]
        for method, path in allowed:
            assert through_proxy(site, host, method, path) == 200, (method, path)
        refused = [
            ("POST", f"/v1.43/containers/{full_id}/stop"),
            ("POST", f"/v1.43/containers/{full_id}/exec"),
            ("DELETE", f"/v1.43/containers/{full_id}"),
            ("POST", "/v1.43/containers/create"),
            ("GET", f"/v1.43/containers/{full_id}/logs?stdout=1"),
            ("GET", f"/v1.43/containers/{full_id}/archive?path=/etc"),
            ("GET", f"/v1.43/containers/{full_id}/json/../../../secrets"),
            ("GET", "/v1.43/containers/mov-mosquitto-1/json"),
            ("GET", "/v1.43/secrets"),
            ("GET", "/v1.43/volumes"),
            ("GET", "/v1.43/images/json"),
            ("GET", "/v1.43/events"),
        ]
        for method, path in refused:
            assert through_proxy(site, host, method, path) == 403, (method, path)
        # Still running: the stop above never reached the engine.
        assert root(site, host, "docker inspect -f '{{.State.Status}}' mov-mosquitto-1") == "running"


def test_running_containers_hold_no_privilege(site: Site, tree: dict[str, Any]) -> None:
    """Read from the running containers, not the template: no capability, no privilege gain, a bounded number of
    processes, and, for the services that write only to their volumes (roles/stack, _stack_read_only_services), a
    read-only root filesystem with a private /tmp."""
    read_only = [s for s in READ_ONLY_SERVICES if s in tree["mov_compose_services"]]
    assert "mosquitto" in read_only and "analytics" in read_only, read_only
    for host in site.hosts:
        for service in tree["mov_compose_services"]:
            container = f"mov-{service}-1"
            [inspected] = json.loads(root(site, host, f"docker inspect {container}"))
            config = inspected["HostConfig"]
            assert config["CapDrop"] == ["ALL"] and not config["CapAdd"], (container, config["CapDrop"])
            assert "no-new-privileges:true" in config["SecurityOpt"], (container, config["SecurityOpt"])
            assert config["PidsLimit"] == STACK_DEFAULTS["stack_pids_limit"], container
            status = proc_status(site, host, container)
            assert int(status["CapEff"][0], 16) == 0 and status["NoNewPrivs"] == ["1"], (container, status["CapEff"])
            if service not in read_only:
                continue
            assert config["ReadonlyRootfs"] is True and "/tmp" in config["Tmpfs"], container
            refused = site.sudo(host, f"docker exec {container} sh -c 'touch /etc/mov-probe'")
            assert refused.returncode != 0 and "Read-only file system" in refused.stderr, (container, refused.stderr)
            assert succeeds(site, host, f"docker exec {container} sh -c 'touch /tmp/probe && rm /tmp/probe'")


def test_published_ports_are_exactly_those_of_the_port_table(site: Site, tree: dict[str, Any]) -> None:
    for host in site.hosts:
        published = set()
        for container in root(site, host, "docker ps -q --filter label=com.docker.compose.project=mov").split():
            bindings = json.loads(
                root(site, host, f"docker inspect -f '{{{{json .HostConfig.PortBindings}}}}' {container}")
            )
            for inner, addresses in (bindings or {}).items():
                published |= {(b["HostIp"] or "0.0.0.0", b["HostPort"], inner) for b in addresses}
        assert published == published_ports(tree)


def test_compose_file_has_health_limits_rotation_and_no_secret(site: Site, tree: dict[str, Any]) -> None:
    secrets = secrets_of(site)
    for host in site.hosts:
        assert owner(site, host, "/opt/mov/compose.yaml") == (0, 0, 0o640)
        text = root(site, host, "cat /opt/mov/compose.yaml")
        assert [digest(s) for s in secrets if s in text] == [], "compose.yaml holds a secret (digests above)"
        config = json.loads(root(site, host, f"{COMPOSE} config --format json"))
        assert set(config["networks"]) == {"internal"}
        assert {"mosquitto_data"} <= set(config["volumes"])
        assert sorted(config["services"]) == sorted(tree["mov_compose_services"])
        for name, service in config["services"].items():
            assert service["restart"] == "unless-stopped", name
            assert service["healthcheck"]["test"], name
            assert int(service["mem_limit"]) > 0, name
            if name == "mosquitto":  # the journal, where fail2ban reads refused logins
                tag = tree["mov_mosquitto_log_tag"]
                assert service["logging"] == {"driver": "journald", "options": {"tag": tag}}, service["logging"]
            else:
                assert service["logging"]["options"]["max-size"] == STACK_DEFAULTS["stack_log_max_size"], name
            assert ":" in service["image"] and not service["image"].endswith(":latest"), name
        assert owner(site, host, "/opt/mov/bundle/images.tar") == (0, 0, 0o600)


def test_the_workers_secrets_are_files_of_its_own_and_it_reads_the_current_ones(
    site: Site, tree: dict[str, Any]
) -> None:
    ids = tree["mov_service_uids"]["analytics"]
    for host in site.hosts:
        for path, mode in (("mqtt.password", 0o400), ("influxdb.token", 0o600)):
            assert owner(site, host, f"/opt/mov/analytics/secrets/{path}") == (ids["uid"], ids["gid"], mode), path
        # Digests only: a failed assertion shows its values.
        token = digest(root(site, host, "cat /opt/mov/analytics/secrets/influxdb.token"))
        inside = digest(root(site, host, "docker exec mov-analytics-1 cat /run/secrets/analytics_influxdb_token"))
        assert token == inside != digest("")


def analytics_metric(site: Site, host: Host, name: str) -> float:
    """The sum of a metric's samples on the worker's /metrics (on its container's loopback)."""
    fetch = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9108/metrics').read().decode())"
    text = root(site, host, f"docker exec mov-analytics-1 python3 -c {shlex.quote(fetch)}")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_a_reading_over_8883_counts_in_the_workers_metrics(site: Site) -> None:
    device = "industria_abc/sensor_001"
    name = "mov_analytics_readings_processed_total"
    for host in site.hosts:
        before = analytics_metric(site, host, name)
        publish_ok(site, host, device, [reading(device, 24.5)])
        wait_for(
            "the worker's count of processed readings",
            lambda h=host, b=before: [1] if analytics_metric(site, h, name) > b else [],
        )


def test_releases_record_images_and_configs(site: Site, tree: dict[str, Any]) -> None:
    for host in site.hosts:
        names = sorted(root(site, host, "ls /opt/mov/releases").split())
        # The deploys of the steps before, down to the number kept.
        assert 1 < len(names) <= tree["mov_releases_keep"], names
        release = json.loads(root(site, host, f"cat /opt/mov/releases/{names[-1]}/release.json"))
        assert release["services"] == tree["mov_compose_services"]
        for service in tree["mov_compose_services"]:
            image = release["images"][service]
            assert image["ref"] == tree["stack_images"][service], service
            assert image["id"] == root(site, host, f"docker inspect -f '{{{{.Image}}}}' mov-{service}-1"), service
        assert release["compose_sha256"] == root(site, host, "sha256sum /opt/mov/compose.yaml").split()[0]
        assert release["config_sha256"]
        assert owner(site, host, f"/opt/mov/releases/{names[-1]}")[2] == 0o700


# --- movctl --------------------------------------------------------------------------------------------------------


def test_movctl_and_its_configuration_are_installed(site: Site, tree: dict[str, Any]) -> None:
    secrets = secrets_of(site)
    for host in site.hosts:
        assert owner(site, host, "/usr/local/bin/movctl") == (0, 0, 0o755)
        assert owner(site, host, "/etc/mov/movctl.json") == (0, 0, 0o644)
        text = root(site, host, "cat /etc/mov/movctl.json")
        doc = json.loads(text)
        assert doc["stack"]["services"] == tree["mov_compose_services"]
        assert doc["backup"]["tool"] == "/usr/local/bin/mov-backup"
        assert [digest(s) for s in secrets if s in text] == [], "movctl.json holds a secret (digests above)"
        assert on_host(site, host, "check-config").returncode == 0
        usage = on_host(site, host, "--help")
        assert usage.returncode == 0 and "exit codes" in usage.stdout


def test_movctl_status_before_any_backup(site: Site, tree: dict[str, Any]) -> None:
    for host in site.hosts:
        root(site, host, "rm -f /var/lib/mov-backup/status.json")  # as on a fresh host (the next step backs up)
        assert all_healthy(site, host)["ok"]
        text = on_host(site, host, "status")
        assert text.returncode == 1, text.stdout  # nothing backed up yet: needs attention
        lines = text.stdout.splitlines()
        assert any(line.split() == ["SERVICE", "STATE", "HEALTH", "UPTIME"] for line in lines), text.stdout
        assert any(line.split()[:3] == ["mosquitto", "running", "healthy"] for line in lines), text.stdout
        assert f"certificate  {tree['mov_domain']}: expires in" in text.stdout, text.stdout
        doc = as_json(on_host(site, host, "status", "--json"))
        assert doc["attention"] == ["no backup has run yet (movctl backup)"]
        states = {s["service"]: (s["state"], s["health"]) for s in doc["services"]}
        assert states == {s: ("running", "healthy") for s in tree["mov_compose_services"]}
        assert all(s["uptime_s"] >= 0 for s in doc["services"])
        assert doc["certificate"]["days_left"] > 300
        assert {d["path"] for d in doc["disk"]} == set(tree["mov_preflight_disk_paths"])


def test_movctl_refuses_unknown_services(site: Site, tree: dict[str, Any]) -> None:
    assert "grafana" not in tree["mov_compose_services"]
    for host in site.hosts:
        for command in ("start", "stop", "restart", "logs"):
            out = on_host(site, host, command, "grafana")
            assert out.returncode == 2, (command, out.stdout, out.stderr)
            assert "unknown service 'grafana'" in out.stderr, out.stderr
            assert ", ".join(tree["mov_compose_services"]) in out.stderr, out.stderr


def test_movctl_stop_start_restart(site: Site) -> None:
    for host in site.hosts:
        stopped = on_host(site, host, "stop", "analytics")
        assert stopped.returncode == 0, stopped.stderr
        assert "analytics is exited" in as_json(on_host(site, host, "status", "--json"))["attention"]
        failing = on_host(site, host, "test")
        assert failing.returncode == 1 and "FAILED: analytics" in failing.stderr, failing.stderr

        started = on_host(site, host, "start", "analytics", "--json")
        assert started.returncode == 0, started.stderr
        assert [(s["service"], s["state"], s["health"]) for s in as_json(started)["services"]] == [
            ("analytics", "running", "healthy")
        ]

        before = started_at(site, host, "mov-mosquitto-1")
        restarted = on_host(site, host, "restart", "mosquitto")
        assert restarted.returncode == 0 and "restarted: mosquitto" in restarted.stdout, restarted.stderr
        assert started_at(site, host, "mov-mosquitto-1") != before
        assert all_healthy(site, host)["ok"]


def test_movctl_logs(site: Site, tree: dict[str, Any]) -> None:
    for host in site.hosts:
        text = on_host(site, host, "logs", "mosquitto", "--tail", "5")
        assert text.returncode == 0 and text.stdout.strip(), text.stderr
        assert all(line.startswith("mosquitto") for line in text.stdout.splitlines() if line.strip()), text.stdout
        lines = [json.loads(line) for line in on_host(site, host, "logs", "--json", "--tail", "3").stdout.splitlines()]
        assert lines and {line["service"] for line in lines} <= set(tree["mov_compose_services"])
        assert all(line["time"] for line in lines)
        follow = site.sudo(host, "timeout 5 movctl logs mosquitto -f --tail 1")
        assert follow.returncode == 124 and follow.stdout.strip()  # still following when timeout stopped it


def test_movctl_host_checks_pass(site: Site, tree: dict[str, Any]) -> None:
    for host in site.hosts:
        out = on_host(site, host, "test")
        assert out.returncode == 0, out.stdout + out.stderr
        checks = {c["name"]: c for c in as_json(on_host(site, host, "test", "--json"))["checks"]}
        assert set(checks) == {*tree["mov_compose_services"], "mqtt-tls", "nginx-http", "nginx-https"}, checks
        assert all(c["ok"] for c in checks.values()), checks
        assert "CONNACK" in checks["mqtt-tls"]["detail"], checks["mqtt-tls"]
        assert all("HTTP/" in checks[n]["detail"] for n in ("nginx-http", "nginx-https")), checks


def test_movctl_backup_then_restore_refuses_then_forces(site: Site, tree: dict[str, Any]) -> None:
    broker = tree["mov_service_uids"]["mosquitto"]
    for host in site.hosts:
        root(site, host, f"printf before > {MARKER} && chown {broker['uid']}:{broker['gid']} {MARKER}")
        backup = on_host(site, host, "backup", "--json")
        assert backup.returncode == 0, backup.stdout + backup.stderr
        snapshot = as_json(backup)["status"]["snapshot"]
        assert snapshot
        status = as_json(on_host(site, host, "status", "--json"))
        assert status["backup"]["result"] == "ok" and status["backup"]["snapshot"] == snapshot, status["backup"]
        assert status["ok"] and status["attention"] == [], status["attention"]
        assert on_host(site, host, "status").returncode == 0

        root(site, host, f"printf after > {MARKER}")
        refused = on_host(site, host, "restore")
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert "refused" in refused.stderr and "movctl restore --force" in refused.stderr, refused.stderr
        assert root(site, host, f"cat {MARKER}") == "after"
        assert all_healthy(site, host, timeout=10)["ok"]  # a refusal stops nothing

        missing = on_host(site, host, "restore", "20200101T000000Z")
        assert missing.returncode == 1 and "20200101T000000Z" in missing.stderr, missing.stderr

        forced = on_host(site, host, "restore", snapshot, "--force", "--json")
        assert forced.returncode == 0, forced.stdout + forced.stderr
        doc = as_json(forced)
        assert doc["ok"] and doc["snapshot"] == snapshot
        assert {s["service"]: s["health"] for s in doc["services"]} == dict.fromkeys(
            tree["mov_compose_services"], "healthy"
        )
        assert root(site, host, f"cat {MARKER}") == "before"
        root(site, host, f"rm -f {MARKER}")


def test_movctl_update_is_the_controllers(site: Site, tree: dict[str, Any]) -> None:
    for host in site.hosts:
        out = on_host(site, host, "update")
        assert out.returncode == 2 and "from the controller" in out.stderr, out.stderr
        assert f"playbooks/update.yml -i inventories/{tree['mov_env']}" in out.stderr, out.stderr


def test_movctl_not_installed_exit_code(site: Site) -> None:
    for host in site.hosts:
        out = on_host(site, host, "--config", "/nonexistent.json", "status", "--json")
        assert out.returncode == 3 and as_json(out)["exit_code"] == 3


def test_movctl_cleanup(site: Site, tree: dict[str, Any]) -> None:
    """An image of the project that no release uses (as a failed update leaves one), mosquitto stopped by the
    operator, a one-off container of a current service, one of a service the compose file no longer has, one put in
    the project by hand without compose's labels, and another project's stopped container: the dry run lists what
    goes, the run removes it, and the stopped service, the current images and every volume stay."""
    images = tree["stack_images"]
    strays = ("movctl-oneoff", "movctl-oldservice", "movctl-stopped", "movctl-other")
    project = "--label com.docker.compose.project=mov"
    for host in site.hosts:
        dockerfile = f"FROM {images['analytics']}\\nLABEL org.mov.test=stray\\n"
        root(site, host, f"printf '{dockerfile}' | docker build -q -t {STRAY_IMAGE} -", timeout=600)
        site.sudo(host, f"docker rm -f {' '.join(strays)}")
        root(
            site,
            host,
            f"docker create --name movctl-oneoff {project} --label com.docker.compose.service=mosquitto "
            f"--label com.docker.compose.oneoff=True {images['mosquitto']} true && "
            f"docker create --name movctl-oldservice {project} --label com.docker.compose.service=telegraf "
            f"--label com.docker.compose.oneoff=False {images['mosquitto']} true && "
            f"docker create --name movctl-stopped {project} {images['mosquitto']} true && "
            f"docker create --name movctl-other {images['mosquitto']} true",
        )
        stopped = on_host(site, host, "stop", "mosquitto")
        assert stopped.returncode == 0, stopped.stderr
        volumes = root(site, host, "docker volume ls -q")

        dry = on_host(site, host, "cleanup", "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        plan = as_json(dry)
        assert STRAY_IMAGE in plan["images"] and not set(images.values()) & set(plan["images"]), plan["images"]
        assert sorted(plan["containers"]) == ["movctl-oldservice", "movctl-oneoff", "movctl-stopped"], plan
        assert plan["removed_images"] == [] and succeeds(site, host, f"docker image inspect {STRAY_IMAGE}")

        done = on_host(site, host, "cleanup")
        assert done.returncode == 0, done.stdout + done.stderr
        assert not succeeds(site, host, f"docker image inspect {STRAY_IMAGE}")
        for gone in ("movctl-oneoff", "movctl-oldservice", "movctl-stopped"):
            assert not succeeds(site, host, f"docker container inspect {gone}"), gone
        assert succeeds(site, host, "docker container inspect movctl-other")
        # The service the operator stopped is still there, stopped, and comes back as it was.
        assert root(site, host, "docker inspect -f '{{.State.Status}}' mov-mosquitto-1") == "exited"
        for service in tree["mov_compose_services"]:
            assert succeeds(site, host, f"docker image inspect {images[service]}"), service
        assert root(site, host, "docker volume ls -q") == volumes
        root(site, host, "docker rm -f movctl-other")
        # All of them: whether compose's stop also stopped mosquitto's dependants is compose's business.
        started = on_host(site, host, "start")
        assert started.returncode == 0, started.stdout + started.stderr
        assert all_healthy(site, host)["ok"]


def test_scripts_movctl_from_the_controller(site: Site, tree: dict[str, Any], tmp_path: Path) -> None:
    """scripts/movctl over SSH (test_site.py's step ran its status as text), and through `docker exec` with an
    inventory that reaches the box as inventories/local reaches its own (community.docker.docker)."""
    services = tree["mov_compose_services"]
    for host in site.hosts:
        status = movctl(site, host, "status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        assert {s["service"] for s in json.loads(status.stdout)["services"]} == set(services)
        refused = movctl(site, host, "restart", "grafana")
        assert refused.returncode == 2 and ", ".join(services) in refused.stderr, refused.stderr
        checks = movctl(site, host, "test")
        assert checks.returncode == 0, checks.stdout + checks.stderr

        inventory = tmp_path / host.name
        inventory.mkdir()
        box = {"ansible_connection": "community.docker.docker", "ansible_host": host.container, "ansible_user": "root"}
        (inventory / "hosts.yml").write_text(yaml.safe_dump({"mov": {"hosts": {host.name: box}}}))
        command = [str(REPO / "scripts" / "movctl"), "-i", str(inventory), "status", "--json"]
        status = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert {s["service"] for s in json.loads(status.stdout)["services"]} == set(services)


# --- the nightly jobs ----------------------------------------------------------------------------------------------


def cron_command(site: Site, host: Host, name: str) -> tuple[str, str]:
    """The schedule and command of the job `name`, as in root's crontab."""
    lines = root(site, host, "crontab -l -u root").splitlines()
    entry = lines[lines.index(f"#Ansible: mov: {name}") + 1]
    fields = entry.split(None, 5)
    return " ".join(fields[:5]), fields[5]


def run_job(site: Site, host: Host, name: str) -> subprocess.CompletedProcess[str]:
    """The job as cron runs it: its crontab line under cron's bare environment."""
    _, command = cron_command(site, host, name)
    return site.sudo(host, f"env -i PATH=/usr/bin:/bin HOME=/root SHELL=/bin/sh /bin/sh -c {shlex.quote(command)}")


def last_result(site: Site, host: Host, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(root(site, host, f"cat /var/lib/mov-cron/{name}.json"))
    return result


def test_each_role_owns_its_job_and_files(site: Site, tree: dict[str, Any]) -> None:
    old_files = [dict(f, max_age_days=int(f["max_age_days"])) for f in tree["cleanup_old_files"]]
    for host in site.hosts:
        assert cron_command(site, host, "cleanup")[0] == tree["mov_cleanup_schedule"]
        assert cron_command(site, host, "status-page")[0] == tree["mov_status_page_schedule"]
        for tool in ("/usr/local/bin/mov-cleanup", "/usr/local/bin/mov-status-page"):
            assert owner(site, host, tool) == (0, 0, 0o755), tool
        for config in ("/etc/mov/cleanup.json", "/etc/mov/status-page.json"):
            assert owner(site, host, config)[::2] == (0, 0o644), config
        assert json.loads(root(site, host, "cat /etc/mov/cleanup.json"))["old_files"] == old_files
        assert owner(site, host, tree["mov_status_page_dir"])[::2] == (0, 0o755)


def test_the_nightly_cleanup(site: Site, tree: dict[str, Any]) -> None:
    """An image of a platform repository that no release names, used only by a stopped one-off container; a stopped
    container of a service the compose file does not have; mosquitto stopped by the operator; old reports beside
    recent ones, another file and a link to the current release's record: the job as cron runs it removes exactly
    what it should, and never a volume."""
    images = tree["stack_images"]
    reports = f"{tree['mov_report_dir']}/out"
    project = "--label com.docker.compose.project=mov"
    for host in site.hosts:
        site.sudo(host, f"docker rm -f nightly-base nightly-oneoff nightly-oldservice; docker image rm -f {OLD_IMAGE}")
        root(
            site,
            host,
            f"docker create --name nightly-base {images['mosquitto']} true && "
            f"docker commit --change 'LABEL mov.test=nightly-old' nightly-base {OLD_IMAGE} && "
            "docker rm nightly-base && "
            f"docker create --name nightly-oneoff {project} --label com.docker.compose.service=analytics "
            f"--label com.docker.compose.oneoff=True {OLD_IMAGE} true && "
            f"docker create --name nightly-oldservice {project} --label com.docker.compose.service=grafana "
            f"--label com.docker.compose.oneoff=False {images['mosquitto']} true",
        )
        assert on_host(site, host, "stop", "mosquitto").returncode == 0
        mosquitto = root(site, host, "docker inspect -f '{{.Id}}' mov-mosquitto-1")
        release = root(site, host, "ls -d /opt/mov/releases/*/release.json | tail -n 1")
        root(
            site,
            host,
            f"find {reports} -mindepth 1 -delete && mkdir {reports}/2019 && cd {reports} && "
            "touch -d '400 days ago' report-2019-01-06.html 2019/report-2019-01-13.pdf notes.txt && "
            f"touch report-recent.html && ln -s {release} report-link.json && "
            "touch -h -d '400 days ago' report-link.json",
        )
        release_before = root(site, host, f"cat {release}")
        root(site, host, "docker volume create nightly-orphan")
        volumes = root(site, host, "docker volume ls -q")
        assert "mov_mosquitto_data" in volumes.split()

        run = run_job(site, host, "cleanup")
        assert run.returncode == 0, run.stdout + run.stderr
        assert last_result(site, host, "cleanup")["result"] == "ok"
        log = root(site, host, "cat /var/log/mov-cron/cleanup.log")
        assert "cleanup ok" in log and OLD_IMAGE in log

        assert not succeeds(site, host, f"docker image inspect {OLD_IMAGE}")
        for gone in ("nightly-oneoff", "nightly-oldservice"):
            assert not succeeds(site, host, f"docker container inspect {gone}"), gone
        assert (
            root(site, host, "docker inspect -f '{{.Id}} {{.State.Status}}' mov-mosquitto-1") == f"{mosquitto} exited"
        )
        for service in tree["mov_compose_services"]:
            assert succeeds(site, host, f"docker image inspect {images[service]}"), service
        assert root(site, host, "docker volume ls -q") == volumes
        left = set(root(site, host, f"cd {reports} && find . -mindepth 1 | sort").split())
        assert left == {"./2019", "./notes.txt", "./report-recent.html", "./report-link.json"}
        assert root(site, host, f"cat {release}") == release_before
        root(
            site,
            host,
            f"docker volume rm nightly-orphan && rm -rf {reports}/2019 {reports}/notes.txt {reports}/report-*",
        )
        assert on_host(site, host, "start").returncode == 0
        assert all_healthy(site, host)["ok"]


def test_the_status_page_job_writes_the_hosts_state(site: Site, tree: dict[str, Any]) -> None:
    page = tree["mov_status_page_dir"]
    secrets = secrets_of(site)
    for host in site.hosts:
        root(site, host, f"rm -f {page}/index.html {page}/status.json")
        run = run_job(site, host, "status-page")
        assert run.returncode == 0, run.stdout + run.stderr
        # cron's own minute run may have held the lock: then it is the one that writes the page.
        wait_for(
            "the status page's files",
            lambda h=host: [1] if succeeds(site, h, f"test -s {page}/status.json -a -s {page}/index.html") else [],
            timeout=75,
        )
        assert last_result(site, host, "status-page")["result"] == "ok"
        for name in ("index.html", "status.json"):
            assert owner(site, host, f"{page}/{name}")[::2] == (0, 0o644), name
        document = root(site, host, f"cat {page}/status.json")
        services = next(s for s in json.loads(document)["sections"] if s["title"] == "Services")
        on_page = {row["label"]: row["value"].split(", ")[:2] for row in services["rows"]}
        real = {
            s["service"]: [s["state"], s["health"]]
            for s in as_json(on_host(site, host, "status", "--json"))["services"]
        }
        assert on_page == real == {s: ["running", "healthy"] for s in tree["mov_compose_services"]}
        html = root(site, host, f"cat {page}/index.html")
        assert all(s in html for s in tree["mov_compose_services"]), html
        assert [digest(s) for s in secrets if s in html + document] == [], "the page holds a secret (digests above)"


def test_the_report_role_gives_the_images_user_its_directories_and_secrets(site: Site, tree: dict[str, Any]) -> None:
    """The weekly report runs in the worker's image as its user (mov_report_command, group_vars/all/report.yml): that
    user owns out/ and secrets/, reads its InfluxDB token and the mail relay's password (written only when the vault
    has one), and writes a report with the mounts the job gives its container."""
    ids = tree["mov_service_uids"]["analytics"]
    report = tree["mov_report_dir"]
    smtp = site.vault().get("vault_mov_smtp_password")
    for host in site.hosts:
        for path, mode in ((report, 0o750), (f"{report}/out", 0o750), (f"{report}/secrets", 0o700)):
            assert succeeds(site, host, f"test -d {path}") and owner(site, host, path) == (ids["uid"], ids["gid"], mode)
        assert owner(site, host, f"{report}/secrets/influxdb.token") == (ids["uid"], ids["gid"], 0o600)
        if smtp:
            assert owner(site, host, f"{report}/secrets/smtp.password") == (ids["uid"], ids["gid"], 0o400)
            written = digest(root(site, host, f"cat {report}/secrets/smtp.password"))
            assert written == digest(str(smtp)), "the mail relay's password is not the vault's"
        else:
            assert not succeeds(site, host, f"test -e {report}/secrets/smtp.password")
        mounts = f"-v {report}/out:/reports -v {report}/secrets:/run/report-secrets:ro"
        probe = (
            f'test "$(id -u)" = {ids["uid"]} && cat /run/report-secrets/influxdb.token >/dev/null'
            " && touch /reports/report-probe.html"
        )
        image = tree["stack_images"]["analytics"]
        root(site, host, f"docker run --rm {mounts} --entrypoint sh {image} -c {shlex.quote(probe)}")
        assert owner(site, host, f"{report}/out/report-probe.html")[0] == ids["uid"]
        root(site, host, f"rm {report}/out/report-probe.html")
