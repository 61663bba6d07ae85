"""movctl on the box, every command against the real stack (mosquitto + analytics from the offline bundle) and the
real backup tool; then scripts/movctl from the controller through `docker exec`.

The tests run in file order and leave the stack as they found it: running and healthy (test_stack.py follows).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

BOX = f"mov-{os.environ.get('MOLECULE_SCENARIO_NAME', 'stack')}"
REPO = Path(__file__).resolve().parents[3]
MARKER = "/opt/mov/mosquitto/data/movctl-test.marker"
# A stray image of the project: built by test_cleanup, used by no release.
BROKEN_IMAGE = "mov/analytics:0.1.0-broken-health"


def movctl(host, *args: str):  # type: ignore[no-untyped-def]
    return host.run("movctl " + " ".join(args))


def as_json(result) -> Any:  # type: ignore[no-untyped-def]
    assert result.stdout.strip(), (result.rc, result.stderr)
    return json.loads(result.stdout)


def wait_all_healthy(host, timeout: float = 90) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        doc = as_json(movctl(host, "test", "--json"))
        if doc["ok"] or time.monotonic() > deadline:
            return doc  # type: ignore[no-any-return]
        time.sleep(2)


def started_at(host, container: str) -> str:  # type: ignore[no-untyped-def]
    return host.check_output(f"docker inspect -f '{{{{.State.StartedAt}}}}' {container}")  # type: ignore[no-any-return]


def test_movctl_and_its_configuration_are_installed(host) -> None:  # type: ignore[no-untyped-def]
    tool = host.file("/usr/local/bin/movctl")
    assert tool.user == "root" and tool.mode == 0o755
    config = host.file("/etc/mov/movctl.json")
    assert config.user == "root" and config.mode == 0o644
    doc = json.loads(config.content_string)
    assert doc["stack"]["services"] == ["mosquitto", "influxdb", "analytics", "dockerproxy"]
    assert doc["backup"]["tool"] == "/usr/local/bin/mov-backup"
    assert "test-" not in config.content_string  # no secret of the box's vars
    assert movctl(host, "check-config").rc == 0
    help_text = movctl(host, "--help")
    assert help_text.rc == 0 and "exit codes" in help_text.stdout


def test_status_before_any_backup(host) -> None:  # type: ignore[no-untyped-def]
    host.check_output("rm -f /var/lib/mov-backup/status.json")  # as on a fresh box, whatever ran before
    assert wait_all_healthy(host)["ok"]
    text = movctl(host, "status")
    assert text.rc == 1, text.stdout  # nothing backed up yet: needs attention
    lines = text.stdout.splitlines()
    assert any(line.split() == ["SERVICE", "STATE", "HEALTH", "UPTIME"] for line in lines), text.stdout
    assert any(line.split()[:3] == ["mosquitto", "running", "healthy"] for line in lines), text.stdout
    assert "certificate  localhost: expires in" in text.stdout
    doc = as_json(movctl(host, "status", "--json"))
    assert doc["attention"] == ["no backup has run yet (movctl backup)"]
    assert {s["service"]: (s["state"], s["health"]) for s in doc["services"]} == {
        "mosquitto": ("running", "healthy"),
        "influxdb": ("running", "healthy"),
        "analytics": ("running", "healthy"),
        "dockerproxy": ("running", "healthy"),
    }
    assert all(s["uptime_s"] >= 0 for s in doc["services"])
    assert doc["certificate"]["days_left"] > 300
    assert {d["path"] for d in doc["disk"]} == {"/opt/mov", "/var/lib/docker"}


def test_unknown_services_are_refused(host) -> None:  # type: ignore[no-untyped-def]
    for command in ("start", "stop", "restart", "logs"):
        result = movctl(host, command, "grafana")
        assert result.rc == 2, (command, result.stdout, result.stderr)
        assert "unknown service 'grafana'" in result.stderr and "mosquitto, influxdb, analytics" in result.stderr


def test_stop_start_restart(host) -> None:  # type: ignore[no-untyped-def]
    stopped = movctl(host, "stop", "analytics")
    assert stopped.rc == 0, stopped.stderr
    status = as_json(movctl(host, "status", "--json"))
    assert "analytics is exited" in status["attention"]
    failing = movctl(host, "test")
    assert failing.rc == 1 and "FAILED: analytics" in failing.stderr

    started = movctl(host, "start", "analytics", "--json")
    assert started.rc == 0, started.stderr
    assert [(s["service"], s["state"], s["health"]) for s in as_json(started)["services"]] == [
        ("analytics", "running", "healthy")
    ]

    before = started_at(host, "mov-mosquitto-1")
    restarted = movctl(host, "restart", "mosquitto")
    assert restarted.rc == 0, restarted.stderr
    assert "restarted: mosquitto" in restarted.stdout
    assert started_at(host, "mov-mosquitto-1") != before
    assert wait_all_healthy(host)["ok"]


def test_logs(host) -> None:  # type: ignore[no-untyped-def]
    text = movctl(host, "logs", "mosquitto", "--tail", "5")
    assert text.rc == 0 and text.stdout.strip(), text.stderr
    assert all(line.startswith("mosquitto") for line in text.stdout.splitlines() if line.strip())
    lines = [json.loads(line) for line in movctl(host, "logs", "--json", "--tail", "3").stdout.splitlines()]
    assert lines and {line["service"] for line in lines} <= {"mosquitto", "influxdb", "analytics", "dockerproxy"}
    assert all(line["time"] for line in lines)
    follow = host.run("timeout 5 movctl logs mosquitto -f --tail 1")
    assert follow.rc == 124 and follow.stdout.strip()  # still following when timeout stopped it


def test_the_host_checks_pass(host) -> None:  # type: ignore[no-untyped-def]
    result = movctl(host, "test")
    assert result.rc == 0, result.stdout + result.stderr
    doc = as_json(movctl(host, "test", "--json"))
    checks = {c["name"]: c for c in doc["checks"]}
    assert set(checks) == {"mosquitto", "influxdb", "analytics", "dockerproxy", "mqtt-tls", "nginx"}
    assert checks["mqtt-tls"]["ok"] and "CONNACK" in checks["mqtt-tls"]["detail"]
    assert "skipped" in checks["nginx"]["detail"]  # no nginx in this scenario


def test_backup_then_restore_refuses_then_forces(host) -> None:  # type: ignore[no-untyped-def]
    host.check_output(f"printf before > {MARKER} && chown 1883:1883 {MARKER}")
    backup = movctl(host, "backup", "--json")
    assert backup.rc == 0, backup.stdout + backup.stderr
    snapshot = as_json(backup)["status"]["snapshot"]
    assert snapshot
    status = as_json(movctl(host, "status", "--json"))
    assert status["backup"]["result"] == "ok" and status["backup"]["snapshot"] == snapshot
    assert status["ok"] and status["attention"] == []
    assert movctl(host, "status").rc == 0

    host.check_output(f"printf after > {MARKER}")
    refused = movctl(host, "restore")
    assert refused.rc == 4, refused.stdout + refused.stderr
    assert "refused" in refused.stderr and "movctl restore --force" in refused.stderr
    assert host.file(MARKER).content_string == "after"
    assert wait_all_healthy(host, timeout=10)["ok"]  # a refusal stops nothing

    missing = movctl(host, "restore", "20200101T000000Z")
    assert missing.rc == 1 and "20200101T000000Z" in missing.stderr

    forced = movctl(host, "restore", snapshot, "--force", "--json")
    assert forced.rc == 0, forced.stdout + forced.stderr
    doc = as_json(forced)
    assert doc["ok"] and doc["snapshot"] == snapshot
    assert {s["service"]: s["health"] for s in doc["services"]} == {
        "mosquitto": "healthy",
        "influxdb": "healthy",
        "analytics": "healthy",
        "dockerproxy": "healthy",
    }
    assert host.file(MARKER).content_string == "before"
    host.check_output(f"rm -f {MARKER}")


def test_update_is_the_controllers(host) -> None:  # type: ignore[no-untyped-def]
    result = movctl(host, "update")
    assert result.rc == 2
    assert "from the controller" in result.stderr and "playbooks/update.yml -i inventories/molecule" in result.stderr


def test_not_installed_exit_code(host) -> None:  # type: ignore[no-untyped-def]
    result = movctl(host, "--config", "/nonexistent.json", "status", "--json")
    assert result.rc == 3 and as_json(result)["exit_code"] == 3


def test_cleanup(host) -> None:  # type: ignore[no-untyped-def]
    # An image of the project that no release uses (as a failed update leaves one), mosquitto stopped by the
    # operator, a one-off container of a current service, one of a service the compose file no longer has, one put
    # in the project by hand without compose's labels, and another project's stopped container.
    dockerfile = "FROM mov/analytics:0.1.0\\nLABEL org.mov.test=stray\\n"
    host.check_output(f"printf '{dockerfile}' | docker build -q -t {BROKEN_IMAGE} -")
    assert host.run(f"docker image inspect {BROKEN_IMAGE}").rc == 0
    strays = ("movctl-oneoff", "movctl-oldservice", "movctl-stopped", "movctl-other")
    host.run(f"docker rm -f {' '.join(strays)}")
    project = "--label com.docker.compose.project=mov"
    host.check_output(
        f"docker create --name movctl-oneoff {project} --label com.docker.compose.service=mosquitto "
        "--label com.docker.compose.oneoff=True mov/mosquitto:2.0.21 true"
    )
    host.check_output(
        f"docker create --name movctl-oldservice {project} --label com.docker.compose.service=telegraf "
        "--label com.docker.compose.oneoff=False mov/mosquitto:2.0.21 true"
    )
    host.check_output(f"docker create --name movctl-stopped {project} mov/mosquitto:2.0.21 true")
    host.check_output("docker create --name movctl-other mov/mosquitto:2.0.21 true")
    stopped = movctl(host, "stop", "mosquitto")
    assert stopped.rc == 0, stopped.stderr
    volumes = host.check_output("docker volume ls -q")

    dry = movctl(host, "cleanup", "--dry-run", "--json")
    assert dry.rc == 0, dry.stderr
    plan = as_json(dry)
    assert BROKEN_IMAGE in plan["images"]
    assert "mov/analytics:0.1.0" not in plan["images"] and "mov/mosquitto:2.0.21" not in plan["images"]
    assert sorted(plan["containers"]) == ["movctl-oldservice", "movctl-oneoff", "movctl-stopped"]
    assert plan["removed_images"] == [] and host.run(f"docker image inspect {BROKEN_IMAGE}").rc == 0

    done = movctl(host, "cleanup")
    assert done.rc == 0, done.stdout + done.stderr
    assert host.run(f"docker image inspect {BROKEN_IMAGE}").rc != 0
    for gone in ("movctl-oneoff", "movctl-oldservice", "movctl-stopped"):
        assert host.run(f"docker container inspect {gone}").rc != 0, gone
    assert host.run("docker container inspect movctl-other").rc == 0
    # The service the operator stopped is still there, stopped, and comes back as it was.
    assert host.check_output("docker inspect -f '{{.State.Status}}' mov-mosquitto-1") == "exited"
    for image in ("mov/analytics:0.1.0", "mov/mosquitto:2.0.21"):
        assert host.run(f"docker image inspect {image}").rc == 0, image
    assert host.check_output("docker volume ls -q") == volumes
    host.run("docker rm -f movctl-other")
    # All of them: whether compose's stop also stopped mosquitto's dependants is compose's business.
    started = movctl(host, "start")
    assert started.rc == 0, started.stdout + started.stderr
    assert wait_all_healthy(host)["ok"]


def test_scripts_movctl_reaches_the_box_with_docker_exec(tmp_path: Path) -> None:
    inventory = tmp_path / "molecule"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(
        f"mov:\n  hosts:\n    {BOX}:\n      ansible_connection: community.docker.docker\n"
        f"      ansible_host: {BOX}\n      ansible_user: root\n"
    )

    def controller(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REPO / "scripts" / "movctl"), "-i", str(inventory), *args],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )

    status = controller("status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    assert {s["service"] for s in json.loads(status.stdout)["services"]} == {
        "mosquitto",
        "influxdb",
        "analytics",
        "dockerproxy",
    }
    refused = controller("restart", "grafana")
    assert refused.returncode == 2 and "mosquitto, influxdb, analytics, dockerproxy" in refused.stderr
    checks = controller("test")
    assert checks.returncode == 0, checks.stdout + checks.stderr
