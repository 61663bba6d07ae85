"""Wrong inventory values for the host roles fail at preflight, naming the variable."""

from __future__ import annotations

import pytest
from conftest import PreflightRunner

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxvY2FsLXRlc3Qta2V5LW5vdC1hLXJlYWwtb25lLTAwMDA operator@laptop"
GOOD_COMMON = {"common_admin_ssh_keys": [KEY], "common_timezone": "America/Sao_Paulo"}


def test_valid_host_settings_pass(role_preflight: PreflightRunner) -> None:
    result = role_preflight("common", GOOD_COMMON)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("role", "variables", "expected"),
    [
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
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
def test_bad_input_fails_at_preflight_naming_the_variable(
    role_preflight: PreflightRunner, role: str, variables: dict[str, object], expected: str
) -> None:
    result = role_preflight(role, variables)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert expected in " ".join(output.split()), output
