"""Wrong inventory values for the host roles fail at preflight, naming the variable.

Each role's cases run in one ansible-playbook run, each case a host of its own (conftest.role_preflights)."""

from __future__ import annotations

import pytest
from conftest import role_preflights

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxvY2FsLXRlc3Qta2V5LW5vdC1hLXJlYWwtb25lLTAwMDA operator@laptop"
GOOD_COMMON: dict[str, object] = {"common_admin_ssh_keys": [KEY], "common_timezone": "America/Sao_Paulo"}


BAD: list[tuple[str, dict[str, object], str]] = [
    ("common", {"common_admin_ssh_keys": []}, "common_admin_ssh_keys is empty"),
    (
        "common",
        {**GOOD_COMMON, "common_admin_ssh_keys": ["/home/me/.ssh/id_ed25519"]},
        "common_admin_ssh_keys[0] is not an SSH public key",
    ),
    (
        "common",
        {**GOOD_COMMON, "common_timezone": "Mars/Olympus_Mons"},
        "common_timezone (Mars/Olympus_Mons) is not a known time zone",
    ),
    (
        "common",
        {**GOOD_COMMON, "common_timezone": "../../etc/passwd"},
        "common_timezone (../../etc/passwd) is not an IANA time zone name",
    ),
    ("common", {**GOOD_COMMON, "common_admin_user": "root"}, "common_admin_user (root)"),
    ("common", {**GOOD_COMMON, "common_sshd_port": "twenty-two"}, "common_sshd_port"),
    (
        "firewall",
        {"firewall_allowed_tcp_ports": [80, 70000]},
        "firewall_allowed_tcp_ports holds 70000, which is not a port number",
    ),
    ("firewall", {"firewall_allowed_tcp_ports": [22, 443]}, "firewall_allowed_tcp_ports lists the SSH port 22"),
    ("firewall", {"firewall_logging": "loud"}, "firewall_logging"),
    ("docker", {"docker_install_source": "snap"}, "docker_install_source"),
    (
        "cron",
        {"cron_jobs": [{"name": "Backup Now", "schedule": "@daily", "command": "true"}]},
        "cron_jobs[0] (Backup Now)",
    ),
    (
        "cron",
        {"cron_jobs": [{"name": "backup", "schedule": "0 3 * *", "command": "true"}]},
        "must be five cron fields",
    ),
    (
        "cron",
        {
            "cron_jobs": [
                {"name": "a", "schedule": "@daily", "command": "true"},
                {"name": "a", "schedule": "@hourly", "command": "true"},
            ]
        },
        "cron_jobs has duplicate names: a",
    ),
    ("cron", {"cron_jobs": [{"name": "a", "schedule": "@daily"}]}, "command"),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Case -> the preflight's failure messages: "good" is the valid common settings, "bad-N" is BAD[N]. One run a
    role; only the docker role's checks read host facts (the distribution)."""
    tmp = tmp_path_factory.mktemp("host-preflight")
    found: dict[str, list[str]] = {}
    for role in sorted({role for role, _, _ in BAD}):
        cases: dict[str, dict[str, object]] = {"good": GOOD_COMMON} if role == "common" else {}
        cases |= {f"bad-{n}": variables for n, (r, variables, _) in enumerate(BAD) if r == role}
        found |= role_preflights(role, cases, tmp, gather_facts=role == "docker")
    return found


def test_valid_host_settings_pass(outcomes: dict[str, list[str]]) -> None:
    assert outcomes["good"] == []


@pytest.mark.parametrize("case", range(len(BAD)), ids=[f"{r}-{e[:30]}" for r, _, e in BAD])
def test_bad_input_fails_at_preflight_naming_the_variable(outcomes: dict[str, list[str]], case: int) -> None:
    role, variables, expected = BAD[case]
    failures = outcomes[f"bad-{case}"]
    assert failures, f"{role} passed: {variables}"
    assert any(expected in failure for failure in failures), failures
