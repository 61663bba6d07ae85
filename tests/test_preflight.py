"""playbooks/preflight.yml against this machine: every bad input fails with a message naming the problem and the fix.

One ansible-playbook run checks every case at once: each case is a host of its own (all of them this machine,
through the local connection) with one thing wrong, and mov_preflight_all_or_nothing is off, so each host
fails (or passes) on its own. The JSON callback says which task failed on which host and with what message.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, ansible_env, host_outcomes

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxvY2FsLXRlc3Qta2V5LW5vdC1hLXJlYWwtb25lLTAwMDA operator@laptop"


@pytest.fixture(scope="module")
def held_port() -> Iterator[int]:
    """A port this test process listens on, standing for a foreign service on one of the platform's ports."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _good(tmp: Path, port: int) -> dict[str, Any]:
    """A staging host that passes every check on this machine."""
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
        "ansible_host": "127.0.0.1",
        "mov_env": "staging",
        "mov_tls_mode": "selfsigned",
        "mov_domain": "localhost",
        "mov_extra_domains": [],
        "mov_public_address": "127.0.0.1",
        "mov_preflight_check_dns": True,
        "mov_alert_contacts": {"webhook_url": "", "emails": ["ops@example.com"]},
        "mov_admin_ssh_keys": [KEY],
        "vault_mov_secrets": {"grafana_admin_password": "not-a-real-one"},
        "mov_preflight_vault_file": str(tmp / "vault-encrypted.yml"),
        # The port is free for this host: only the held port is taken, and it is not in this list.
        "mov_preflight_ports": [port + 1 if port < 65535 else port - 1],
    }


def _cases(tmp: Path, port: int, own_name: str) -> dict[str, tuple[dict[str, Any], str | None]]:
    """host name -> (changes to the good host, expected message or None for a pass)."""
    acme = {
        "mov_tls_mode": "acme",
        "mov_acme_email": "ops@mov-platform.net",
        "mov_domain": "localhost",
        "mov_preflight_check_dns": False,
    }
    return {
        "good": ({}, None),
        "port_held_by_the_platform": ({"mov_preflight_ports": [port], "mov_preflight_port_owners": [own_name]}, None),
        "env_mismatch": ({"mov_env": "prod"}, "mov_env (prod) does not match the inventory directory (staging)"),
        "documentation_address": (
            {"ansible_host": "203.0.113.10"},
            "ansible_host (203.0.113.10) of documentation_address is a documentation address",
        ),
        "acme_without_email": ({**acme, "mov_acme_email": ""}, "mov_acme_email () is not an e-mail address"),
        "acme_without_port_80": ({**acme, "mov_public_tcp_ports": [443, 8883]}, "must hold 80 and 443"),
        "placeholder_domain": (
            {**acme, "mov_domain": "mov.example.com"},
            "mov.example.com (mov_domain / mov_extra_domains) is a reserved example name",
        ),
        "nobody_alerted": (
            {"mov_alert_contacts": {"webhook_url": "", "emails": []}},
            "mov_alert_contacts has neither a webhook_url nor emails",
        ),
        "vault_missing": (
            {"mov_preflight_vault_file": str(tmp / "no-such-vault.yml")},
            "no-such-vault.yml does not exist",
        ),
        "vault_in_plaintext": (
            {"mov_preflight_vault_file": str(tmp / "vault-plaintext.yml")},
            "vault-plaintext.yml is not encrypted",
        ),
        "vault_not_loaded": ({"vault_mov_secrets": None}, "vault_mov_secrets is not defined"),
        "no_admin_keys": ({"mov_admin_ssh_keys": []}, "mov_admin_ssh_keys is empty"),
        "clock_off": ({"mov_preflight_reference_epoch": 1000000000}, "off the controller's (at most 30 s"),
        "python_too_old": (
            {"host_tools_python": str(tmp / "python3.9")},
            "python3.9; this host has 3.9. Debian 12 (3.11) and 13 (3.13) ship one",
        ),
        "unsupported_os": (
            {"mov_preflight_supported_os": {"Ubuntu": ["24.04"]}},
            "the platform supports Ubuntu 24.04 (mov_preflight_supported_os)",
        ),
        "too_little_memory": (
            {"mov_preflight_min_ram_mb": 100000000},
            "MB of memory; the platform needs 100000000 MB (mov_preflight_min_ram_mb)",
        ),
        "too_little_disk": (
            {"mov_preflight_min_disk_gb": 1000000},
            "GB free; the platform needs 1000000 GB (mov_preflight_min_disk_gb)",
        ),
        "port_taken": ({"mov_preflight_ports": [port]}, "port {port} is held by {owner}"),
        "domain_unresolved": (
            {"mov_domain": "mov-preflight-test.invalid"},
            "mov-preflight-test.invalid does not resolve, not to domain_unresolved's public address",
        ),
        "domain_elsewhere": (
            {"mov_public_address": "198.51.100.7"},
            "localhost resolves to 127.0.0.1, not to domain_elsewhere's public address 198.51.100.7",
        ),
    }


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, held_port: int) -> tuple[dict[str, list[str]], str]:
    tmp = tmp_path_factory.mktemp("preflight")
    (tmp / "vault-encrypted.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    (tmp / "vault-plaintext.yml").write_text("---\nvault_mov_secrets: {}\n")
    # A host whose python3 is Python 3.9 (Debian 11's), standing in for the interpreter the host tools would run on.
    old_python = tmp / "python3.9"
    old_python.write_text("#!/bin/sh\necho 3.9\n")
    old_python.chmod(0o755)
    own_name = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    hosts = {}
    for name, (changes, _) in _cases(tmp, held_port, own_name).items():
        host = {**_good(tmp, held_port), **changes}
        hosts[name] = {k: v for k, v in host.items() if v is not None}
    inventory = tmp / "staging"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"mov": {"hosts": hosts}}))
    env = dict(
        ansible_env(executor="plain"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json",
        ANSIBLE_FORKS="8",
        ANSIBLE_CACHE_PLUGIN="memory",
    )
    result = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(inventory),
            str(REPO / "playbooks/preflight.yml"),
            "-e",
            "mov_preflight_all_or_nothing=false",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON report (exit {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return host_outcomes(report), own_name


def _expectations() -> list[tuple[str, str | None]]:
    return [(name, expected) for name, (_, expected) in _cases(Path(), 0, "").items()]


@pytest.mark.parametrize(("host", "expected"), _expectations(), ids=[n for n, _ in _expectations()])
def test_preflight_case(
    outcomes: tuple[dict[str, list[str]], str], held_port: int, host: str, expected: str | None
) -> None:
    by_host, own_name = outcomes
    assert host in by_host, f"{host} never ran: {sorted(by_host)}"
    failures = by_host[host]
    if expected is None:
        assert failures == [], failures
        return
    want = expected.format(port=held_port, owner=own_name)
    assert any(want in failure for failure in failures), failures


def test_site_runs_preflight_first() -> None:
    site = yaml.safe_load((REPO / "site.yml").read_text())
    assert site[0]["ansible.builtin.import_playbook"] == "playbooks/preflight.yml"
