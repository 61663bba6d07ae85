"""A real ACME flow, offline: issuance from pebble through nginx's webroot, a forced renewal, and the deploy
hook handing each certificate to nginx (443) and Mosquitto (8883) without restarting either."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

BOX = f"mov-{os.environ.get('MOLECULE_SCENARIO_NAME', 'certbot')}"
SCENARIO = Path(__file__).resolve().parent.parent
REPO = SCENARIO.parent.parent
LIVE = "/etc/letsencrypt/live/mov.test"
ACME_ENV = "REQUESTS_CA_BUNDLE=/etc/pebble/ca.pem"


def served_serial(host, port: int) -> str:  # type: ignore[no-untyped-def]
    return str(
        host.check_output(
            f"openssl s_client -connect 127.0.0.1:{port} -servername mov.test </dev/null "
            "2>/dev/null | openssl x509 -noout -serial"
        )
    )


def issued_serial(host) -> str:  # type: ignore[no-untyped-def]
    return str(host.check_output(f"openssl x509 -noout -serial -in {LIVE}/cert.pem"))


def main_pids(host) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {unit: host.check_output(f"systemctl show -p MainPID --value {unit}") for unit in ("nginx", "mosquitto")}


def test_certificate_issued_by_the_acme_server(host) -> None:  # type: ignore[no-untyped-def]
    issuer = host.check_output(f"openssl x509 -noout -issuer -ext subjectAltName -in {LIVE}/cert.pem")
    assert "Pebble" in issuer and "DNS:mov.test" in issuer
    renewal = host.file("/etc/letsencrypt/renewal/mov.test.conf").content_string
    assert "server = https://localhost:14000/dir" in renewal
    assert "authenticator = webroot" in renewal


def test_both_servers_serve_the_issued_certificate(host) -> None:  # type: ignore[no-untyped-def]
    serial = issued_serial(host)
    assert served_serial(host, 443) == serial
    assert served_serial(host, 8883) == serial


def test_platform_copy_is_readable_by_mosquitto_only(host) -> None:  # type: ignore[no-untyped-def]
    key = host.file("/opt/mov/tls/privkey.pem")
    assert key.user == "mosquitto" and key.mode == 0o600
    assert host.file("/opt/mov/tls/fullchain.pem").user == "mosquitto"
    assert host.run("runuser -u mosquitto -- cat /opt/mov/tls/privkey.pem").rc == 0
    assert host.run("runuser -u nobody -- cat /opt/mov/tls/privkey.pem").rc != 0


def test_renewal_is_scheduled_with_the_acme_environment(host) -> None:  # type: ignore[no-untyped-def]
    assert host.service("certbot.timer").is_enabled
    assert host.service("certbot.timer").is_running
    dropin = host.file("/etc/systemd/system/certbot.service.d/mov.conf").content_string
    assert 'Environment="REQUESTS_CA_BUNDLE=/etc/pebble/ca.pem"' in dropin
    assert host.file("/etc/letsencrypt/renewal-hooks/deploy/50-mov-tls").mode == 0o755


def test_renewal_reaches_nginx_and_mosquitto_without_restart(host) -> None:  # type: ignore[no-untyped-def]
    before, pids = issued_serial(host), main_pids(host)
    host.check_output(f"{ACME_ENV} certbot renew --force-renewal --no-random-sleep-on-renew --cert-name mov.test")
    after = issued_serial(host)
    assert after != before
    assert served_serial(host, 443) == after
    assert served_serial(host, 8883) == after
    assert main_pids(host) == pids
    assert "installed certificate mov.test" in host.check_output("journalctl --no-pager -t mov-tls")


def test_a_name_not_pointing_here_fails_clearly_and_nginx_keeps_its_certificate(host) -> None:  # type: ignore[no-untyped-def]
    serial = served_serial(host, 443)
    result = subprocess.run(
        [
            "ansible-playbook",
            str(SCENARIO / "converge.yml"),
            "-i",
            f"{BOX},",
            "-c",
            "community.docker.docker",
            "-e",
            json.dumps({"certbot_domains": ["mov.test", "elsewhere.test"]}),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, ANSIBLE_ROLES_PATH=str(REPO / "roles"), ANSIBLE_NOCOLOR="1"),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "certbot could not get the certificate mov.test for mov.test, elsewhere.test" in output, output[-3000:]
    assert "Domain: elsewhere.test" in output
    assert served_serial(host, 443) == serial
    assert served_serial(host, 8883) == serial


@pytest.mark.parametrize("port", [443, 8883])
def test_served_chain_verifies_against_pebble_root(host, port: int) -> None:  # type: ignore[no-untyped-def]
    """The full chain is served: it verifies against pebble's (per-run) root."""
    host.check_output("curl -sk https://127.0.0.1:15000/roots/0 > /tmp/pebble-root.pem")
    result = host.run(
        f"openssl s_client -connect 127.0.0.1:{port} -servername mov.test -verify_return_error "
        "-CAfile /tmp/pebble-root.pem </dev/null"
    )
    assert result.rc == 0, result.stdout[-2000:]
