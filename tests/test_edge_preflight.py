"""Wrong edge settings fail at preflight, naming the variable (and the platform setting behind it)."""

from __future__ import annotations

import pytest
from conftest import PreflightRunner

GOOD_ACME = {
    "certbot_mode": "acme",
    "certbot_cert_name": "mov.example.com",
    "certbot_domains": ["mov.example.com"],
    "certbot_email": "ops@example.com",
    "certbot_acme_directory": "https://acme-v02.api.letsencrypt.org/directory",
}


def test_valid_edge_settings_pass(role_preflight: PreflightRunner) -> None:
    for role, variables in (("certbot", GOOD_ACME), ("nginx", {"nginx_domains": ["mov.example.com"]})):
        result = role_preflight(role, variables)
        assert result.returncode == 0, result.stdout + result.stderr


def test_local_ca_needs_no_email(role_preflight: PreflightRunner) -> None:
    result = role_preflight("certbot", {**GOOD_ACME, "certbot_mode": "selfsigned", "certbot_email": ""})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("role", "variables", "expected"),
    [
        (
            "certbot",
            {**GOOD_ACME, "certbot_email": "ops-at-example.com"},
            "certbot_email (mov_acme_email) is 'ops-at-example.com', which is not an e-mail address",
        ),
        ("certbot", {**GOOD_ACME, "certbot_email": ""}, "certbot_email (mov_acme_email) is ''"),
        (
            "certbot",
            {**GOOD_ACME, "certbot_acme_directory": "http://acme.example/dir"},
            "certbot_acme_directory (mov_acme_directory) must be an https:// URL",
        ),
        (
            "certbot",
            {**GOOD_ACME, "certbot_domains": ["mov.example.com", "not a name"]},
            "certbot_domains (mov_domain + mov_extra_domains) must list DNS names",
        ),
        ("certbot", {**GOOD_ACME, "certbot_mode": "letsencrypt"}, "certbot_mode"),
        ("nginx", {"nginx_domains": ["https://mov.example.com"]}, "not valid: https://mov.example.com"),
        ("nginx", {"nginx_grafana_upstream": "grafana"}, "nginx_grafana_upstream"),
        ("nginx", {"nginx_ssl_protocols": ["TLSv1.1", "TLSv1.2"]}, "nginx_ssl_protocols"),
    ],
)
def test_wrong_edge_settings_fail_naming_the_variable(
    role_preflight: PreflightRunner, role: str, variables: dict[str, object], expected: str
) -> None:
    result = role_preflight(role, variables)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr, result.stdout[-2000:]
