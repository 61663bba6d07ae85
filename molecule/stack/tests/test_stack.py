"""Behaviour of the compose stack on the box: mosquitto + analytics from the offline bundle.

InfluxDB cannot run here; a TEST DOUBLE of its v2 API (molecule/_shared/influx-api-double) is the stack's `influxdb`
service: the deploy's token step talks to it, and it prints every point the worker writes (`docker logs`).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from prober import Prober

BOX = f"mov-{os.environ.get('MOLECULE_SCENARIO_NAME', 'stack')}"
REPO = Path(__file__).resolve().parents[3]
COMPOSE = "docker compose -f /opt/mov/compose.yaml"
MOSQUITTO_IMAGE = "mov/mosquitto:2.0.21"
ANALYTICS_IMAGE = "mov/analytics:0.1.0"
INFLUX = "mov-influxdb-1"  # the API double, as the compose service influxdb
ADMIN_TOKEN = "test-only-influxdb-admin-token-0123456789"
PROBER = Prober(network="mov-stack-probe", subnet="198.18.1.0/24", box_address="198.18.1.10", box=BOX)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=120)


def services(host) -> dict[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    out = host.check_output(f"{COMPOSE} ps --all --format json")
    rows = json.loads(out) if out.startswith("[") else [json.loads(line) for line in out.splitlines() if line]
    return {row["Service"]: row for row in rows}


def wait_healthy(host, service: str, timeout: float = 60) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    health = ""
    while time.monotonic() < deadline:
        health = services(host).get(service, {}).get("Health", "")
        if health == "healthy":
            break
        time.sleep(1)
    return health


def analytics_metric(host, name: str) -> float:  # type: ignore[no-untyped-def]
    text = host.check_output(
        "docker exec mov-analytics-1 python3 -c "
        "\"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9108/metrics').read().decode())\""
    )
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def probe_network() -> Iterator[None]:
    with PROBER.attached():
        yield


def probe(*ports: int) -> dict[int, bool]:
    return PROBER.probe(*ports)


def test_every_service_runs_healthy_from_the_bundle_images(host) -> None:  # type: ignore[no-untyped-def]
    state = services(host)
    assert set(state) == {"mosquitto", "influxdb", "analytics", "dockerproxy"}
    for name, row in state.items():
        assert row["State"] == "running", (name, row)
        assert wait_healthy(host, name) == "healthy", (name, row)
    assert state["mosquitto"]["Image"] == MOSQUITTO_IMAGE
    assert state["analytics"]["Image"] == ANALYTICS_IMAGE
    # The bundle on the host matches its checksum and nothing was pulled (no registry here).
    assert host.run("cd /opt/mov/bundle && sha256sum --check --strict SHA256SUMS").rc == 0


def test_containers_run_as_their_service_uids(host) -> None:  # type: ignore[no-untyped-def]
    """Each service's process runs as a uid and gid of its own, none of them the host admin's uid 1000 (InfluxDB's
    image's own user: the double's image has it too)."""
    expected = {
        "mov-mosquitto-1": "1883",
        "mov-analytics-1": "9108",
        "mov-influxdb-1": "8086",
        "mov-dockerproxy-1": "2375",
    }
    for container, uid in expected.items():
        status = host.check_output(f"docker exec {container} cat /proc/1/status")
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        gids = next(line for line in status.splitlines() if line.startswith("Gid:")).split()[1:]
        assert set(uids) == {uid} and set(gids) == {uid}, (container, uids, gids)


def test_influxdb_volumes_belong_to_its_own_uid_and_it_writes_there(host) -> None:  # type: ignore[no-untyped-def]
    """The deploy made InfluxDB's Docker-managed volumes (labelled as compose's own, never filled from the image's
    directories owned by uid 1000) and gave them to uid 8086; the double wrote its state and the CLI's configs."""
    for volume, written in (("mov_influxdb_data", "double-state.json"), ("mov_influxdb_config", "influx-configs")):
        info = json.loads(host.check_output(f"docker volume inspect {volume}"))[0]
        assert info["Labels"]["com.docker.compose.project"] == "mov", info["Labels"]
        mount = info["Mountpoint"]
        owners = host.check_output(f"find {mount} -printf '%u:%g\\n' | sort -u").split()
        assert owners == ["8086:8086"], (volume, owners)
        assert host.file(f"{mount}/{written}").exists, volume


def test_no_container_keeps_a_secret_in_its_environment(host) -> None:  # type: ignore[no-untyped-def]
    """`docker inspect` (what the Docker API proxy lets Telegraf see) shows every container's environment: the
    InfluxDB admin token and password reach InfluxDB as compose secrets through *_FILE variables instead."""
    ids = host.check_output("docker ps -aq --filter label=com.docker.compose.project=mov").split()
    inspected = host.check_output(f"docker inspect {' '.join(ids)}")
    for secret in (ADMIN_TOKEN, "test-only-influxdb-admin-password", "test-analytics-pw", "test-verify-pw"):
        assert secret not in inspected
    influxdb = json.loads(host.check_output("docker inspect mov-influxdb-1"))[0]["Config"]["Env"]
    assert "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE=/run/secrets/influxdb_admin_token" in influxdb


def _through_proxy(host, method: str, path: str) -> int:  # type: ignore[no-untyped-def]
    """The HTTP status the Docker API proxy answers, asked from the analytics container on the compose network."""
    script = (
        "import sys, urllib.request, urllib.error\n"
        "request = urllib.request.Request('http://dockerproxy:2375' + sys.argv[2], method=sys.argv[1])\n"
        "try:\n"
        "    print(urllib.request.urlopen(request, timeout=10).status)\n"
        "except urllib.error.HTTPError as error:\n"
        "    print(error.code)\n"
    )
    out = host.check_output(
        f"docker exec mov-analytics-1 python3 -c {shlex.quote(script)} {method} {shlex.quote(path)}"
    )
    return int(out.strip())


def test_docker_api_proxy_passes_only_the_read_calls_telegraf_makes(host) -> None:  # type: ignore[no-untyped-def]
    """HAProxy in front of the engine's socket: Telegraf's docker input's calls (influxdata/telegraf v1.32.3
    plugins/inputs/docker/client.go) pass, with or without the API version; every other call, a write or a read
    that would give away files, logs, secrets or a shell, gets 403 and never reaches the engine."""
    full_id = host.check_output("docker inspect -f '{{.Id}}' mov-mosquitto-1").strip()
    allowed = [
        ("HEAD", "/_ping"),
        ("GET", "/_ping"),
        ("GET", "/info"),
        ("GET", "/v1.43/containers/json?all=1"),
        ("GET", f"/v1.43/containers/{full_id}/json"),
        ("GET", f"/v1.43/containers/{full_id}/stats?stream=false"),
    ]
    for method, path in allowed:
        assert _through_proxy(host, method, path) == 200, (method, path)
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
        assert _through_proxy(host, method, path) == 403, (method, path)
    # Still running: the stop above never reached the engine.
    assert host.check_output("docker inspect -f '{{.State.Status}}' mov-mosquitto-1").strip() == "running"


def test_running_containers_hold_no_privilege(host) -> None:  # type: ignore[no-untyped-def]
    """Read from the running containers, not the template: no capability, no privilege gain, a bounded number of
    processes, a read-only root filesystem with a private /tmp, and no process of the container able to write
    outside its volumes."""
    for container in ("mov-mosquitto-1", "mov-analytics-1", "mov-dockerproxy-1"):
        config = json.loads(host.check_output(f"docker inspect {container}"))[0]["HostConfig"]
        assert config["CapDrop"] == ["ALL"] and not config["CapAdd"], (container, config["CapDrop"])
        assert "no-new-privileges:true" in config["SecurityOpt"], (container, config["SecurityOpt"])
        assert config["PidsLimit"] == 512, container
        assert config["ReadonlyRootfs"] is True and "/tmp" in config["Tmpfs"], container
        status = host.check_output(f"docker exec {container} cat /proc/1/status")
        effective = next(line for line in status.splitlines() if line.startswith("CapEff:")).split()[1]
        assert int(effective, 16) == 0, (container, effective)
        assert next(line for line in status.splitlines() if line.startswith("NoNewPrivs:")).split()[1] == "1"
        refused = host.run(f"docker exec {container} sh -c 'touch /etc/mov-probe'")
        assert refused.rc != 0 and "Read-only file system" in refused.stderr, (container, refused.stderr)
        assert host.run(f"docker exec {container} sh -c 'touch /tmp/probe && rm /tmp/probe'").rc == 0


def test_published_ports_are_exactly_the_allowed_ones(host) -> None:  # type: ignore[no-untyped-def]
    ids = host.check_output("docker ps -q --filter label=com.docker.compose.project=mov").split()
    published = set()
    for container in ids:
        inspect = f"docker inspect -f '{{{{json .HostConfig.PortBindings}}}}' {container}"
        bindings = json.loads(host.check_output(inspect))
        for inner, hosts in (bindings or {}).items():
            for binding in hosts:
                published.add((binding["HostIp"] or "0.0.0.0", binding["HostPort"], inner))
    assert published == {
        ("0.0.0.0", "8883", "8883/tcp"),
        ("127.0.0.1", "9001", "9001/tcp"),
        ("127.0.0.1", "8086", "8086/tcp"),
    }


def test_compose_file_has_health_limits_rotation_and_no_secret(host) -> None:  # type: ignore[no-untyped-def]
    compose = host.file("/opt/mov/compose.yaml")
    assert compose.mode == 0o640 and compose.user == "root"
    for secret in ("test-analytics-pw", "test-verify-pw", ADMIN_TOKEN):
        assert secret not in compose.content_string
    config = json.loads(host.check_output(f"{COMPOSE} config --format json"))
    assert set(config["networks"]) == {"internal"}
    assert {"mosquitto_data"} <= set(config["volumes"])
    for name, service in config["services"].items():
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name
        assert int(service["mem_limit"]) > 0, name
        if name == "mosquitto":  # the journal, where fail2ban reads refused logins
            assert service["logging"] == {"driver": "journald", "options": {"tag": "mosquitto"}}, service["logging"]
        else:
            assert service["logging"]["options"]["max-size"] == "10m", name
        assert ":" in service["image"] and not service["image"].endswith(":latest"), name
    for path, owner, mode in (
        ("/opt/mov/analytics/secrets/mqtt.password", "9108", 0o400),
        ("/opt/mov/bundle/images.tar", "root", 0o600),
    ):
        f = host.file(path)
        assert (str(f.uid) if owner.isdigit() else f.user) == owner and f.mode == mode, path


def written_points(host, measurement: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Line protocol the InfluxDB double accepted for `measurement`, in order."""
    records = [json.loads(line) for line in host.run(f"docker logs {INFLUX}").stdout.splitlines() if line]
    return [r["point"] for r in records if "point" in r and r["point"].startswith(measurement + ",")]


def test_a_reading_over_8883_reaches_the_analytics_worker(host) -> None:  # type: ignore[no-untyped-def]
    before = analytics_metric(host, "mov_analytics_readings_processed_total")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    reading = json.dumps(
        {
            "timestamp": stamp,
            "fields": {"temperatura_c": 31.0},
            "tags": {
                "dispositivo": "sensor_001",
                "localizacao": "sala_servidores",
                "tipo": "temperatura",
                "cliente": "industria_abc",
            },
        }
    )
    host.check_output(
        f"docker run --rm --network host -v /opt/mov/tls/ca.pem:/ca.pem:ro {MOSQUITTO_IMAGE} "
        "mosquitto_pub -h localhost -p 8883 --cafile /ca.pem -u industria_abc/sensor_001 -P test-abc-001-pw "
        f"-q 1 -t mov/dados/industria_abc/sensor_001 -m '{reading}'"
    )
    deadline = time.monotonic() + 20
    points: list[str] = []
    while time.monotonic() < deadline:
        points = [p for p in written_points(host, "mov_status") if "dispositivo=sensor_001" in p]
        if points:
            break
        time.sleep(0.5)
    assert points, "no status point for sensor_001 reached the InfluxDB double"
    assert 'status="alerta"' in points[-1], points[-1]
    assert analytics_metric(host, "mov_analytics_readings_processed_total") >= before + 1
    assert wait_healthy(host, "analytics", timeout=20) == "healthy"


def test_a_wrong_password_is_refused_over_8883(host) -> None:  # type: ignore[no-untyped-def]
    result = host.run(
        f"docker run --rm --network host -v /opt/mov/tls/ca.pem:/ca.pem:ro {MOSQUITTO_IMAGE} "
        "mosquitto_pub -h localhost -p 8883 --cafile /ca.pem -u industria_abc/sensor_001 -P wrong "
        "-q 1 -t mov/dados/industria_abc/sensor_001 -m x"
    )
    assert result.rc != 0
    assert "not authori" in (result.stdout + result.stderr)


def test_the_outside_sees_only_mqtt_tls(host, probe_network: None) -> None:  # type: ignore[no-untyped-def]
    assert probe(8883, 1883, 9001, 9108, 3000, 8086) == {
        8883: True,
        1883: False,
        9001: False,
        9108: False,
        3000: False,
        8086: False,
    }
    # The websocket listener answers on the box's loopback: closed outside is the binding, not a dead broker.
    assert host.run("python3 -c \"import socket; socket.create_connection(('127.0.0.1', 9001), 3)\"").rc == 0


def test_releases_record_images_and_configs(host) -> None:  # type: ignore[no-untyped-def]
    releases = sorted(host.check_output("ls /opt/mov/releases").split())
    # The converge's, then the token rotation's (a new worker token is a new config).
    assert len(releases) == 2, releases
    release = json.loads(host.file(f"/opt/mov/releases/{releases[-1]}/release.json").content_string)
    assert release["services"] == ["mosquitto", "influxdb", "analytics", "dockerproxy"]
    for name, ref in (("mosquitto", MOSQUITTO_IMAGE), ("analytics", ANALYTICS_IMAGE)):
        image = release["images"][name]
        assert image["ref"] == ref
        running = host.check_output(f"docker inspect -f '{{{{.Image}}}}' mov-{name}-1")
        assert image["id"] == running
    assert release["compose_sha256"] == host.file("/opt/mov/compose.yaml").sha256sum
    assert release["config_sha256"]
    assert host.file(f"/opt/mov/releases/{releases[-1]}").mode == 0o700


def test_the_first_deploy_wrote_the_workers_token_before_the_worker_started(host) -> None:  # type: ignore[no-untyped-def]
    """No token file existed before the converge (prepare writes none, configure makes no empty one while InfluxDB
    is in the stack), and the worker's token is a compose secret that must exist when its container is created:
    the deploy could only succeed by starting InfluxDB alone and writing the token first. The worker holds the
    token InfluxDB issued for it, and InfluxDB took its writes."""
    token = host.file("/opt/mov/analytics/secrets/influxdb.token")
    assert token.mode == 0o600 and token.uid == 9108
    inside = host.check_output("docker exec mov-analytics-1 cat /run/secrets/analytics_influxdb_token").strip()
    assert inside == token.content_string.strip() and inside
    records = [json.loads(line) for line in host.run(f"docker logs {INFLUX}").stdout.splitlines() if line]
    assert not [r for r in records if r.get("auth") == "" and r.get("request", "").startswith("POST /api/v2/write")]


def test_a_rotated_token_recreates_its_consumer_before_the_old_one_goes(host) -> None:  # type: ignore[no-untyped-def]
    """side_effect rotated the worker's token and deployed again: a new token (mov:analytics@<rotation>) was made and
    written, the worker was recreated (not restarted: a restart keeps the bind-mounted secret it started with) and
    writes with it, and the old token was deleted only after the new worker had started, so no write of the old
    worker was refused (test_the_first_deploy_... finds no refused write in the whole log)."""
    rotation = json.loads(host.file("/tmp/stack-token-rotation.json").content_string)
    after = host.check_output("docker inspect -f '{{.Id}}' mov-analytics-1")
    assert after != rotation["before_container"], "the worker's container was not recreated"
    inside = host.check_output("docker exec mov-analytics-1 cat /run/secrets/analytics_influxdb_token").strip()
    assert inside == host.file("/opt/mov/analytics/secrets/influxdb.token").content_string.strip()
    assert inside and inside != rotation["before_token"]
    assert wait_healthy(host, "analytics") == "healthy"
    listing = json.loads(_admin_get(host, "/api/v2/authorizations"))["authorizations"]
    ours = [(a["description"], a["token"] == inside) for a in listing if a["description"].startswith("mov:analytics")]
    assert ours == [("mov:analytics@side-effect-1", True)]
    created = rotation["after_created"]  # read by side_effect: a later test may restart the worker
    deleted = [
        line.split(" ", 1)[0]
        for line in host.run(f"docker logs -t {INFLUX}").stdout.splitlines()
        if f'"DELETE /api/v2/authorizations/{rotation["before_id"]}"' in line
    ]
    assert len(deleted) == 1 and _utc(deleted[0]) > _utc(created), (deleted, created)


def test_a_rotated_influxdb_admin_password_is_set_through_the_api(host) -> None:  # type: ignore[no-untyped-def]
    """side_effect gave the admin password a new value: the deploy found signin refused, set it with the admin
    token (POST /api/v2/users/{id}/password) and signin takes the new one, not the old."""
    signin = (
        'python3 -c "import base64, sys, urllib.request as u, urllib.error as e\n'
        "req = u.Request('http://127.0.0.1:8086/api/v2/signin', method='POST', headers={'Authorization': 'Basic '"
        " + base64.b64encode(('admin:' + sys.argv[1]).encode()).decode()})\n"
        'try: print(u.urlopen(req).status)\nexcept e.HTTPError as x: print(x.code)" '
    )
    assert host.check_output(signin + "test-only-influxdb-admin-password-rotated") == "204"
    assert host.check_output(signin + "test-only-influxdb-admin-password") == "401"


def _admin_get(host, path: str) -> str:  # type: ignore[no-untyped-def]
    return str(
        host.check_output(
            "python3 -c \"import urllib.request as u; print(u.urlopen(u.Request('http://127.0.0.1:8086"
            f"{path}', headers={{'Authorization': 'Token {ADMIN_TOKEN}'}})).read().decode())\""
        )
    )


def _utc(stamp: str) -> datetime:
    """docker's RFC 3339 time with nanoseconds, to a datetime (microseconds)."""
    base, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{base}.{(fraction or '0')[:6].ljust(6, '0')}+00:00")


def test_the_influxdb_role_keeps_its_flux_tasks(host) -> None:  # type: ignore[no-untyped-def]
    """side_effect edited the task's flux and left a task of the role's that the tree no longer lists; the deploy
    after it put the flux back and deleted that one: the org holds the tree's task once, as the tree writes it."""
    tasks = [t for t in json.loads(_admin_get(host, "/api/v2/tasks"))["tasks"] if t["description"].startswith("mov:")]
    assert [(t["description"], t["name"], t["status"]) for t in tasks] == [
        ("mov:mov_historico", "mov_historico", "active")
    ]
    assert tasks[0]["flux"].startswith('option task = {name: "mov_historico", every: 1h}\n')
    records = [json.loads(line) for line in host.run(f"docker logs {INFLUX}").stdout.splitlines() if line]
    calls = [r["request"] for r in records if r.get("request", "").split(" ")[-1].startswith("/api/v2/tasks")]
    # The converge created the task once (its second token step found it); side_effect posted the stale one and
    # edited the flux; its deploy put the flux back and deleted the stale one.
    assert calls.count("POST /api/v2/tasks") == 2
    assert sum(1 for c in calls if c.startswith("PATCH /api/v2/tasks/")) == 2
    assert sum(1 for c in calls if c.startswith("DELETE /api/v2/tasks/")) == 1
