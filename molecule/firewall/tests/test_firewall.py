"""What the world sees of a host behind the firewall role, Docker included.

The prober (molecule/prober.py) is a container on a network this test creates
with a non-private subnet (198.18.0.0/24): a prober on 172.x would be let in
by the private-source whitelists some fixes use, and would lie.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator

import pytest
from prober import Prober

BOX = f"mov-{os.environ.get('MOLECULE_SCENARIO_NAME', 'firewall')}"
PROBER = Prober(network="mov-probe", subnet="198.18.0.0/24", box_address="198.18.0.10", box=BOX)

# Host services the prepare of this test starts on the box: open and closed ports alike.
HOST_LISTENERS = (22, 80, 443, 9100)  # 22 stands in for sshd, not installed in this scenario
PRIVATE_CONTAINER_PORT = 8080  # published by a container, not in the public list
PUBLIC_CONTAINER_PORT = 8883  # published by a container, in firewall_docker_public_tcp_ports

LISTENER_SCRIPT = """
import socket, sys, threading
def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen()
    while True:
        s.accept()[0].close()
for port in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(port),)).start()
"""


def probe(*ports: int) -> dict[int, bool]:
    """Connect from outside (the prober container) to each port of the box."""
    return PROBER.probe(*ports)


@pytest.fixture(scope="module", autouse=True)
def probe_network() -> Iterator[None]:
    with PROBER.attached():
        yield


@pytest.fixture(scope="module", autouse=True)
def services(host, busybox_image: str) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Listeners on the host and two published containers, one private, one public."""
    ports = " ".join(map(str, HOST_LISTENERS))
    host.check_output(
        f"systemd-run --unit mov-probe-listeners --collect python3 -c {shlex.quote(LISTENER_SCRIPT)} {ports}"
    )
    host.run("docker rm -f mov-canary-private mov-canary-public")
    canaries = (("mov-canary-private", PRIVATE_CONTAINER_PORT), ("mov-canary-public", PUBLIC_CONTAINER_PORT))
    for name, port in canaries:
        host.check_output(
            f"docker run -d --restart unless-stopped --name {name} -p {port}:{port} "
            f"{busybox_image} httpd -f -p {port} -h /www"
        )
    # Both canaries answer from inside the box: what the tests see is the firewall, not a dead canary.
    for port in (PRIVATE_CONTAINER_PORT, PUBLIC_CONTAINER_PORT):
        fetch = f"import urllib.request as u; u.urlopen('http://127.0.0.1:{port}/', timeout=5)"
        assert host.run(f'python3 -c "{fetch}"').rc == 0
    yield
    host.run("docker rm -f mov-canary-private mov-canary-public")
    host.run("systemctl stop mov-probe-listeners")


def test_ufw_is_active_with_a_closed_default(host) -> None:  # type: ignore[no-untyped-def]
    status = host.check_output("ufw status verbose")
    assert "Status: active" in status
    assert "deny (incoming)" in status
    assert "allow (outgoing)" in status
    assert "deny (routed)" in status


def test_only_the_allowed_ports_answer(host) -> None:  # type: ignore[no-untyped-def]
    seen = probe(22, 80, 443, 9100)
    assert seen == {22: True, 80: True, 443: True, 9100: False}


def test_a_published_container_port_outside_the_list_is_unreachable() -> None:
    seen = probe(PRIVATE_CONTAINER_PORT, PUBLIC_CONTAINER_PORT)
    assert seen == {PRIVATE_CONTAINER_PORT: False, PUBLIC_CONTAINER_PORT: True}


def test_the_probe_sees_the_bypass_when_the_fix_is_removed(host) -> None:  # type: ignore[no-untyped-def]
    """Without the DOCKER-USER rules (today's behaviour of UFW + Docker), the canary is reachable.

    This keeps the other tests honest: if this one fails, the prober cannot see a bypass at all.
    """
    host.check_output("iptables -F DOCKER-USER")
    try:
        assert probe(PRIVATE_CONTAINER_PORT) == {PRIVATE_CONTAINER_PORT: True}
    finally:
        host.check_output("ufw reload")
    assert probe(PRIVATE_CONTAINER_PORT) == {PRIVATE_CONTAINER_PORT: False}


def test_still_closed_after_docker_restarts(host) -> None:  # type: ignore[no-untyped-def]
    host.check_output("systemctl restart docker")
    for _ in range(30):
        if host.run("docker inspect -f '{{.State.Running}}' mov-canary-private").stdout.strip() == "true":
            break
        host.run("sleep 1")
    seen = probe(PRIVATE_CONTAINER_PORT, PUBLIC_CONTAINER_PORT, 9100)
    assert seen == {PRIVATE_CONTAINER_PORT: False, PUBLIC_CONTAINER_PORT: True, 9100: False}


def test_containers_still_reach_each_other_and_out(host, busybox_image: str) -> None:  # type: ignore[no-untyped-def]
    """The fix must not break the platform: container-to-container traffic passes."""
    addr = host.check_output(
        "docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' mov-canary-private"
    )
    result = host.run(
        f"docker run --rm {busybox_image} sh -c "
        f"'printf \"GET / HTTP/1.0\\r\\n\\r\\n\" | nc -w 3 {addr} {PRIVATE_CONTAINER_PORT}'"
    )
    assert result.rc == 0 and "canary" in result.stdout, result.stderr


def test_a_rule_outside_the_lists_is_removed_by_the_role(host) -> None:  # type: ignore[no-untyped-def]
    """Checked through the rules file the role converged: no stray allow survives."""
    added = host.check_output("ufw show added")
    assert "9100" not in added
    assert "ufw limit 22/tcp" in added
