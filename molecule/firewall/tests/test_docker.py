"""Behaviour of a host with the docker role applied."""

from __future__ import annotations

import json

from packaging.version import Version


def test_compose_and_the_engine_are_recent_enough_for_the_stacks_healthchecks(host) -> None:  # type: ignore[no-untyped-def]
    """start_interval: Compose 2.24.1 and Engine 25 (roles/docker's minimums), here Debian 13's own packages."""
    version = host.check_output("docker compose version --short").lstrip("v")
    assert Version(version.split("-")[0]) >= Version("2.24.1")
    engine = host.check_output("docker version --format '{{.Server.Version}}'")
    assert Version(engine.split("+")[0]) >= Version("25.0")


def test_daemon_json_is_what_dockerd_runs_with(host) -> None:  # type: ignore[no-untyped-def]
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LoggingDriver"] == "json-file"
    assert info["LiveRestoreEnabled"] is True
    env = host.check_output("systemctl show docker -p Environment")
    assert "DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1" in env


def test_a_container_runs_and_its_log_rotates(host, busybox_image) -> None:  # type: ignore[no-untyped-def]
    host.run("docker rm -f mov-logspam")
    # ~400 KiB of output against a 64k x 2 rotation.
    filler = "x" * 90
    host.check_output(
        f"docker run --name mov-logspam {busybox_image} "
        f"sh -c 'i=0; while [ $i -lt 4000 ]; do echo line-$i-{filler}; i=$((i+1)); done'"
    )
    try:
        state = host.check_output("docker inspect -f '{{.State.ExitCode}}' mov-logspam")
        assert state == "0"
        log_path = host.check_output("docker inspect -f '{{.LogPath}}' mov-logspam")
        files = host.check_output(f"ls {log_path}*").split()
        assert len(files) == 2, files
        for path in files:
            assert host.file(path).size <= 80 * 1024, path
        tail = host.check_output("docker logs --tail 1 mov-logspam")
        assert tail.startswith("line-3999-")
    finally:
        host.run("docker rm -f mov-logspam")


def test_docker_survives_a_restart_with_live_restore(host, busybox_image) -> None:  # type: ignore[no-untyped-def]
    host.run("docker rm -f mov-sleeper")
    host.check_output(f"docker run -d --name mov-sleeper {busybox_image} sleep 600")
    try:
        started = host.check_output("docker inspect -f '{{.State.StartedAt}}' mov-sleeper")
        host.check_output("systemctl restart docker")
        assert host.check_output("docker inspect -f '{{.State.Running}}' mov-sleeper") == "true"
        assert host.check_output("docker inspect -f '{{.State.StartedAt}}' mov-sleeper") == started
    finally:
        host.run("docker rm -f mov-sleeper")
