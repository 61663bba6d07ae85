"""Behaviour of a host hardened by the common role."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

ADMIN = "mov"
KEY_ON_BOX = "/root/.verify_admin_key"


@pytest.fixture(scope="module")
def key_on_box(host):  # type: ignore[no-untyped-def]
    """The scenario's admin private key, copied into the box so ssh runs there."""
    private = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "admin_key").read_text()
    host.run(f"install -m 600 /dev/null {KEY_ON_BOX}")
    host.run(f"cat > {KEY_ON_BOX} <<'EOF'\n{private}EOF")
    yield KEY_ON_BOX
    host.run(f"rm -f {KEY_ON_BOX}")


def ssh(host, user: str, key: str, *extra: str):  # type: ignore[no-untyped-def]
    opts = "-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5"
    return host.run(f"ssh {opts} {' '.join(extra)} -i {key} {user}@127.0.0.1 id -un")


def effective_sshd(host) -> dict[str, str]:  # type: ignore[no-untyped-def]
    out = host.check_output("sshd -T -C user=nobody,host=localhost,addr=127.0.0.1")
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_sshd_effective_config_refuses_root_and_passwords(host) -> None:  # type: ignore[no-untyped-def]
    conf = effective_sshd(host)
    assert conf["permitrootlogin"] == "no"
    assert conf["passwordauthentication"] == "no"
    assert conf["kbdinteractiveauthentication"] == "no"
    assert conf["authenticationmethods"] == "publickey"
    assert conf["x11forwarding"] == "no"
    assert not re.search(r"cbc|arcfour|3des", conf["ciphers"])
    assert "sha1" not in conf["macs"]


def test_admin_logs_in_with_its_key(host, key_on_box) -> None:  # type: ignore[no-untyped-def]
    result = ssh(host, ADMIN, key_on_box)
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == ADMIN


def test_root_is_refused_even_with_an_authorized_key(host, key_on_box) -> None:  # type: ignore[no-untyped-def]
    pub = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "admin_key.pub").read_text().strip()
    host.run(f"install -d -m 700 /root/.ssh && echo '{pub}' > /root/.ssh/authorized_keys")
    try:
        result = ssh(host, "root", key_on_box)
    finally:
        host.run("rm -f /root/.ssh/authorized_keys")
    assert result.rc != 0
    assert "Permission denied" in result.stderr


def test_password_login_is_not_even_offered(host, key_on_box) -> None:  # type: ignore[no-untyped-def]
    result = ssh(
        host,
        ADMIN,
        key_on_box,
        "-o PreferredAuthentications=password,keyboard-interactive",
        "-o PubkeyAuthentication=no",
    )
    assert result.rc != 0
    assert "Permission denied (publickey)" in result.stderr


def test_admin_key_files_are_private(host) -> None:  # type: ignore[no-untyped-def]
    keys = host.file(f"/home/{ADMIN}/.ssh/authorized_keys")
    assert keys.user == ADMIN
    assert keys.mode == 0o600
    sudoers = host.file("/etc/sudoers.d/50-mov-admin")
    assert sudoers.mode == 0o440
    assert host.run(f"sudo -u {ADMIN} sudo -n true").rc == 0


def test_fail2ban_sshd_jail_is_active_and_bans(host) -> None:  # type: ignore[no-untyped-def]
    status = host.check_output("fail2ban-client status sshd")
    assert "Currently banned" in status
    banned = "192.0.2.77"
    host.check_output(f"fail2ban-client set sshd banip {banned}")
    try:
        assert banned in host.check_output("fail2ban-client get sshd banip")
        # fail2ban applies the ban action asynchronously.
        for _ in range(20):
            if banned in host.check_output("nft list ruleset"):
                break
            host.run("sleep 0.5")
        else:
            pytest.fail(f"the ban of {banned} did not reach the packet filter (nft list ruleset)")
    finally:
        host.run(f"fail2ban-client set sshd unbanip {banned}")


def test_unattended_upgrades_enabled(host) -> None:  # type: ignore[no-untyped-def]
    dump = host.check_output("apt-config dump")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    assert 'APT::Periodic::Update-Package-Lists "1";' in dump
    assert host.service("apt-daily-upgrade.timer").is_enabled
    dry_run = host.run("unattended-upgrade --dry-run --debug")
    assert dry_run.rc == 0, dry_run.stderr
    assert "security" in dry_run.stdout + dry_run.stderr


# Debian's own periodic jobs that download or install packages: what they do is unattended-upgrades' (above).
NETWORK_JOBS = {"apt-daily.timer", "apt-daily-upgrade.timer"}


# The active and enabled units, as roles/host_state digests them: its own systemctl commands.
UNIT_COMMANDS = [
    shlex.join(argv)
    for argv in yaml.safe_load((Path(__file__).parents[3] / "roles/host_state/defaults/main.yml").read_text())[
        "host_state_commands"
    ]
    if argv[0] == "systemctl"
]


def unit_lists(host) -> list[str]:  # type: ignore[no-untyped-def]
    assert UNIT_COMMANDS, "roles/host_state lists no systemctl command"
    return [host.check_output(command) for command in UNIT_COMMANDS]


def test_every_periodic_job_leaves_the_units_as_they_were(host) -> None:  # type: ignore[no-untyped-def]
    """A job that changes the host's units when its timer first fires makes the next run after that hour find the
    host changed (roles/host_state) and apply the host roles again: apt-listchanges' hourly timer disabled itself
    after its first run, which the site scenario met when a CI run crossed midnight. Each timer's service is run now,
    as its first firing would."""
    timers = host.check_output("systemctl list-units --type=timer --state=active --no-legend --plain").splitlines()
    names = sorted({line.split()[0] for line in timers} - NETWORK_JOBS)
    assert names, timers
    before = unit_lists(host)
    for timer in names:
        service = host.check_output(f"systemctl show -p Unit --value {timer}")
        started = host.run(f"timeout 300 systemctl start {service}")
        assert started.rc == 0, (timer, started.stderr)
    assert unit_lists(host) == before, names


def test_time_zone_and_time_sync(host) -> None:  # type: ignore[no-untyped-def]
    assert host.file("/etc/localtime").linked_to.endswith("America/Sao_Paulo")
    assert host.check_output("date +%Z") in ("-03", "BRT")
    assert host.service("systemd-timesyncd").is_enabled
    assert "NTP=0.debian.pool.ntp.org" in host.file("/etc/systemd/timesyncd.conf.d/50-mov.conf").content_string


def test_journald_limits_in_effect(host) -> None:  # type: ignore[no-untyped-def]
    conf = host.check_output("systemd-analyze cat-config systemd/journald.conf")
    assert "SystemMaxUse=500M" in conf
    assert "MaxRetentionSec=1month" in conf


def _banned_after(host, jail: str, ip: str, lines: list[tuple[str, str]]) -> str:  # type: ignore[no-untyped-def]
    """Journal lines written the way the service writes them (identifier, message); fail2ban's ban list after."""
    for identifier, message in lines:
        host.check_output(f"logger -t {identifier} -- '{message}'")
    for _ in range(40):
        status = str(host.check_output(f"fail2ban-client status {jail}"))
        if ip in status:
            return status
        host.run("sleep 0.5")
    return status


def _nft_after_ban(host, command: str, *needles: str) -> str:  # type: ignore[no-untyped-def]
    """nft's listing once it holds every needle: fail2ban lists an address as banned before its action has added
    the chain's rule and the set's element (a few nft calls, run after the ban is recorded)."""
    listing = ""
    for _ in range(30):
        listing = str(host.run(command).stdout)
        if all(needle in listing for needle in needles):
            break
        host.run("sleep 0.5")
    return listing


def test_fail2ban_bans_nginx_login_failures(host) -> None:  # type: ignore[no-untyped-def]
    ip = "198.51.100.9"
    failure = ("mov_nginx_auth", f'client={ip} status=401 method=POST user="-" uri="/login"')
    try:
        assert ip in _banned_after(host, "mov-nginx-auth", ip, [failure] * 5)
        ruleset = _nft_after_ban(host, "nft list ruleset", ip, "443")
        assert ip in ruleset and "443" in ruleset
    finally:
        host.run(f"fail2ban-client set mov-nginx-auth unbanip {ip}")


def test_fail2ban_bans_refused_mqtt_logins_before_dockers_dnat(host) -> None:  # type: ignore[no-untyped-def]
    ip = "198.51.100.7"
    refused = [
        ("mosquitto", f"2026-12-06T01:10:10: New connection from {ip}:56242 on port 8883."),
        ("mosquitto", "2026-12-06T01:10:10: Client sensor-7 disconnected, not authorised."),
    ]
    try:
        assert ip in _banned_after(host, "mov-mosquitto-auth", ip, refused * 5)
        chain = _nft_after_ban(host, "nft list chain inet f2b-table f2b-mov-prerouting", "tcp dport 8883", "drop")
        # -150 is what nft calls "mangle": before Docker's DNAT (dstnat, -100).
        assert "hook prerouting priority mangle;" in chain, chain
        assert "tcp dport 8883" in chain and "drop" in chain, chain
        assert ip in _nft_after_ban(host, "nft list set inet f2b-table addr-set-mov-mosquitto-auth", ip)
    finally:
        host.run(f"fail2ban-client set mov-mosquitto-auth unbanip {ip}")


def test_fail2ban_counts_no_mqtt_failure_on_the_internal_listener(host) -> None:  # type: ignore[no-untyped-def]
    ip = "198.51.100.17"
    internal = [
        ("mosquitto", f"2026-12-06T01:10:10: New connection from {ip}:4000 on port 1883."),
        ("mosquitto", "2026-12-06T01:10:10: Client telegraf disconnected, not authorised."),
    ]
    assert ip not in _banned_after(host, "mov-mosquitto-auth", ip, internal * 6)
